//! OCSP: asks the responder named in the leaf certificate (Authority Information Access)
//! whether it is good, revoked or unknown, and reads the same answer from a stapled
//! response. Requests and responses are small DER structures built and read here.

use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use x509_parser::extensions::{GeneralName, ParsedExtension};

/// What OCSP says about the leaf.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OcspStatus {
    Good,
    Revoked,
    Unknown,
}

/// The responder's answer, or why there is none.
#[derive(Debug, Clone, Serialize)]
pub struct OcspAnswer {
    pub responder: Option<String>,
    /// `None` when the responder could not be asked or did not say.
    pub status: Option<OcspStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The OCSP responder URL of a certificate, if it names one.
pub fn responder_url(leaf_der: &[u8]) -> Option<String> {
    let (_, certificate) = x509_parser::parse_x509_certificate(leaf_der).ok()?;
    certificate.extensions().iter().find_map(|extension| match extension.parsed_extension() {
        ParsedExtension::AuthorityInfoAccess(aia) => aia.iter().find_map(|access| match access.access_location {
            GeneralName::URI(uri) if access.access_method.to_id_string() == "1.3.6.1.5.5.7.48.1" => {
                Some(uri.to_string())
            }
            _ => None,
        }),
        _ => None,
    })
}

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let length = content.len();
    if length < 0x80 {
        out.push(length as u8);
    } else {
        let bytes: Vec<u8> = length.to_be_bytes().into_iter().skip_while(|b| *b == 0).collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

fn sha1(data: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, data).as_ref().to_vec()
}

/// An OCSPRequest for the leaf, identified through its issuer (RFC 6960 CertID, SHA-1).
pub fn request(leaf_der: &[u8], issuer_der: &[u8]) -> Option<Vec<u8>> {
    let (_, leaf) = x509_parser::parse_x509_certificate(leaf_der).ok()?;
    let (_, issuer) = x509_parser::parse_x509_certificate(issuer_der).ok()?;
    // AlgorithmIdentifier { sha1, NULL }
    let algorithm = der(0x30, &[&der(0x06, &[0x2b, 0x0e, 0x03, 0x02, 0x1a])[..], &[0x05, 0x00]].concat());
    let cert_id = der(
        0x30,
        &[
            algorithm,
            der(0x04, &sha1(issuer.subject().as_raw())),
            der(0x04, &sha1(&issuer.public_key().subject_public_key.data)),
            der(0x02, leaf.raw_serial()),
        ]
        .concat(),
    );
    let request = der(0x30, &cert_id);
    let request_list = der(0x30, &request);
    let tbs_request = der(0x30, &request_list);
    Some(der(0x30, &tbs_request))
}

/// Reads one DER element: (tag, content, rest).
fn element(bytes: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *bytes.first()?;
    let first = *bytes.get(1)?;
    let (length, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 {
            return None;
        }
        let length = bytes.get(2..2 + count)?.iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (length, 2 + count)
    };
    let content = bytes.get(header..header.checked_add(length)?)?;
    Some((tag, content, &bytes[header + length..]))
}

/// The certificate status in a DER OCSPResponse (the first SingleResponse).
pub fn parse_response(bytes: &[u8]) -> Result<OcspStatus, String> {
    let malformed = || "malformed OCSP response".to_string();
    let (_, response, _) = element(bytes).ok_or_else(malformed)?;
    let (_, status, rest) = element(response).ok_or_else(malformed)?;
    if status != [0] {
        let reason = match status.first() {
            Some(1) => "malformedRequest",
            Some(2) => "internalError",
            Some(3) => "tryLater",
            Some(5) => "sigRequired",
            Some(6) => "unauthorized",
            _ => "unknown",
        };
        return Err(format!("responder answered {reason}"));
    }
    // [0] EXPLICIT ResponseBytes { responseType OID, response OCTET STRING }
    let (_, wrapper, _) = element(rest).ok_or_else(malformed)?;
    let (_, response_bytes, _) = element(wrapper).ok_or_else(malformed)?;
    let (_, _oid, rest) = element(response_bytes).ok_or_else(malformed)?;
    let (_, basic, _) = element(rest).ok_or_else(malformed)?;
    // BasicOCSPResponse { tbsResponseData, ... }
    let (_, basic, _) = element(basic).ok_or_else(malformed)?;
    let (_, mut data, _) = element(basic).ok_or_else(malformed)?;
    // ResponseData { [0] version OPTIONAL, responderID, producedAt, responses, ... }
    loop {
        let (tag, content, rest) = element(data).ok_or_else(malformed)?;
        if tag == 0x30 {
            // responses: SEQUENCE OF SingleResponse { certID, certStatus, ... }
            let (_, single, _) = element(content).ok_or_else(malformed)?;
            let (_, _cert_id, rest) = element(single).ok_or_else(malformed)?;
            let (status_tag, _, _) = element(rest).ok_or_else(malformed)?;
            return Ok(match status_tag & 0x1f {
                0 => OcspStatus::Good,
                1 => OcspStatus::Revoked,
                _ => OcspStatus::Unknown,
            });
        }
        data = rest;
    }
}

/// Asks the leaf's responder about it (plain HTTP POST, as responders serve).
pub async fn ask(leaf_der: &[u8], issuer_der: Option<&[u8]>, timeout: Duration) -> OcspAnswer {
    let responder = responder_url(leaf_der);
    let result = async {
        let url = responder.clone().ok_or("the certificate names no OCSP responder")?;
        let issuer = issuer_der.ok_or("the server sent no issuer certificate to identify the leaf with")?;
        let body = request(leaf_der, issuer).ok_or("cannot read the certificates")?;
        let uri: hyper::Uri = url.parse().map_err(|e| format!("responder URL {url:?}: {e}"))?;
        if uri.scheme_str() != Some("http") {
            return Err(format!("responder {url} is not plain HTTP"));
        }
        let host = uri.host().ok_or("responder URL has no host")?.to_string();
        let port = uri.port_u16().unwrap_or(80);
        let stream = tokio::net::TcpStream::connect((host.as_str(), port)).await.map_err(|e| format!("{url}: {e}"))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| format!("{url}: {e}"))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let request = hyper::Request::post(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
            .header(hyper::header::HOST, uri.authority().map(|a| a.as_str()).unwrap_or(&host))
            .header(hyper::header::CONTENT_TYPE, "application/ocsp-request")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let response = sender.send_request(request).await.map_err(|e| format!("{url}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("{url} answered HTTP {}", response.status()));
        }
        let bytes = Limited::new(response.into_body(), 64 * 1024)
            .collect()
            .await
            .map_err(|e| format!("{url}: {e}"))?
            .to_bytes();
        parse_response(&bytes)
    };
    match tokio::time::timeout(timeout, result).await {
        Ok(Ok(status)) => OcspAnswer { responder, status: Some(status), error: None },
        Ok(Err(error)) => OcspAnswer { responder, status: None, error: Some(error) },
        Err(_) => OcspAnswer { responder, status: None, error: Some("the responder did not answer in time".into()) },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_and_garbage() {
        assert_eq!(der(0x04, &[1, 2]), vec![0x04, 2, 1, 2]);
        let long = der(0x04, &[0u8; 300]);
        assert_eq!(&long[..4], &[0x04, 0x82, 0x01, 0x2c]);
        assert_eq!(element(&long).unwrap().1.len(), 300);
        assert!(parse_response(&[0x30, 0x03, 0x0a, 0x01, 0x06]).unwrap_err().contains("unauthorized"));
        for seed in 0..2_000u64 {
            fastrand::seed(seed);
            let bytes: Vec<u8> = (0..fastrand::usize(0..80)).map(|_| fastrand::u8(..)).collect();
            let _ = parse_response(&bytes);
        }
    }
}
