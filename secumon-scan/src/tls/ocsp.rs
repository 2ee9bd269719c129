//! OCSP: asks the responder named in the leaf certificate (Authority Information Access)
//! whether it is good, revoked (since when, and why) or unknown, and reads the same answer
//! from a stapled response. Requests and responses are small DER structures built and read
//! here.

use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use x509_parser::extensions::{GeneralName, ParsedExtension};

/// What OCSP says about the leaf.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OcspStatus {
    /// Not revoked.
    Good,
    /// Revoked.
    Revoked,
    /// The responder does not know the certificate.
    Unknown,
}

impl OcspStatus {
    /// `good`, `revoked` or `unknown`, as the details write it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Good => "good",
            Self::Revoked => "revoked",
            Self::Unknown => "unknown",
        }
    }
}

/// When and why a revoked certificate was revoked (RFC 6960 RevokedInfo).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Revocation {
    /// The revocation time, RFC 3339 in UTC (`2024-01-01T00:00:00Z`).
    pub time: String,
    /// The revocation time, in Unix seconds.
    pub time_unix: i64,
    /// The CRLReason as RFC 5280 names it (`keyCompromise`, `superseded`, ...); `None`
    /// when the responder gives no reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl std::fmt::Display for Revocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.reason {
            Some(reason) => write!(f, "{reason}, revoked at {}", self.time),
            None => write!(f, "no reason given, revoked at {}", self.time),
        }
    }
}

/// The first SingleResponse of an OCSP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SingleResponse {
    /// What the response says.
    pub status: OcspStatus,
    /// Set when `status` is revoked.
    pub revocation: Option<Revocation>,
}

/// The responder's answer, or why there is none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct OcspAnswer {
    /// The responder's URL, from the certificate.
    pub responder: Option<String>,
    /// `None` when the responder could not be asked or did not say.
    pub status: Option<OcspStatus>,
    /// When and why, if revoked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revocation: Option<Revocation>,
    /// Why there is no answer, when there is none.
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
    parse_single_response(bytes).map(|single| single.status)
}

/// The first SingleResponse of a DER OCSPResponse: status, and for a revoked certificate
/// the time and reason.
pub fn parse_single_response(bytes: &[u8]) -> Result<SingleResponse, String> {
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
            let (status_tag, status, _) = element(rest).ok_or_else(malformed)?;
            return Ok(match status_tag & 0x1f {
                0 => SingleResponse { status: OcspStatus::Good, revocation: None },
                1 => SingleResponse { status: OcspStatus::Revoked, revocation: Some(revoked_info(status)?) },
                _ => SingleResponse { status: OcspStatus::Unknown, revocation: None },
            });
        }
        data = rest;
    }
}

/// RevokedInfo ::= SEQUENCE { revocationTime GeneralizedTime,
///                             revocationReason [0] EXPLICIT CRLReason OPTIONAL }
/// (the SEQUENCE tag itself is replaced by the `[1] IMPLICIT` of certStatus).
fn revoked_info(content: &[u8]) -> Result<Revocation, String> {
    let malformed = || "malformed OCSP revocation".to_string();
    let (tag, time, rest) = element(content).ok_or_else(malformed)?;
    if tag != 0x18 {
        return Err(malformed());
    }
    let (time, time_unix) = generalized_time(time).ok_or_else(malformed)?;
    let reason = match element(rest) {
        Some((0xa0, reason, _)) => match element(reason) {
            Some((0x0a, [code], _)) => Some(crl_reason(*code)),
            _ => return Err(malformed()),
        },
        _ => None,
    };
    Ok(Revocation { time, time_unix, reason })
}

/// RFC 5280 CRLReason names; 7 is unused.
fn crl_reason(code: u8) -> String {
    match code {
        0 => "unspecified".into(),
        1 => "keyCompromise".into(),
        2 => "cACompromise".into(),
        3 => "affiliationChanged".into(),
        4 => "superseded".into(),
        5 => "cessationOfOperation".into(),
        6 => "certificateHold".into(),
        8 => "removeFromCRL".into(),
        9 => "privilegeWithdrawn".into(),
        10 => "aACompromise".into(),
        other => format!("reason {other}"),
    }
}

/// `YYYYMMDDHHMMSS[.fff]Z` (DER GeneralizedTime, always UTC) as RFC 3339 and Unix seconds.
fn generalized_time(bytes: &[u8]) -> Option<(String, i64)> {
    let text = std::str::from_utf8(bytes).ok()?;
    let text = text.strip_suffix('Z')?;
    let whole = text.split('.').next()?;
    if whole.len() != 14 || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let number = |range: std::ops::Range<usize>| whole[range].parse::<i64>().ok();
    let (year, month, day) = (number(0..4)?, number(4..6)?, number(6..8)?);
    let (hour, minute, second) = (number(8..10)?, number(10..12)?, number(12..14)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let shifted = if month <= 2 { year - 1 } else { year };
    let era = shifted.div_euclid(400);
    let year_of_era = shifted - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    let unix = days * 86_400 + hour * 3_600 + minute * 60 + second;
    let rfc3339 = format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z");
    Some((rfc3339, unix))
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
        parse_single_response(&bytes)
    };
    let failed =
        |error: String| OcspAnswer { responder: responder.clone(), status: None, revocation: None, error: Some(error) };
    match tokio::time::timeout(timeout, result).await {
        Ok(Ok(single)) => OcspAnswer {
            responder: responder.clone(),
            status: Some(single.status),
            revocation: single.revocation,
            error: None,
        },
        Ok(Err(error)) => failed(error),
        Err(_) => failed("the responder did not answer in time".into()),
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
            let _ = revoked_info(&bytes);
        }
    }

    #[test]
    fn revocation_time_and_reason() {
        let time = b"20240101000000Z";
        let info = [der(0x18, time), der(0xa0, &der(0x0a, &[1]))].concat();
        let revocation = revoked_info(&info).unwrap();
        assert_eq!(revocation.time, "2024-01-01T00:00:00Z");
        assert_eq!(revocation.time_unix, 1_704_067_200);
        assert_eq!(revocation.reason.as_deref(), Some("keyCompromise"));
        assert_eq!(revocation.to_string(), "keyCompromise, revoked at 2024-01-01T00:00:00Z");
        let without_reason = revoked_info(&der(0x18, b"19991231235959.5Z")).unwrap();
        assert_eq!((without_reason.time_unix, without_reason.reason), (946_684_799, None));
        assert!(revoked_info(&der(0x18, b"2024010100Z")).is_err());
        assert!(revoked_info(&der(0x17, time)).is_err(), "UTCTime is not allowed here");
    }
}
