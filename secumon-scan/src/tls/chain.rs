//! The certificate chain: what the server presents (recorded through a real rustls
//! handshake that accepts anything), the roots it is checked against, and the verdict.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use super::TlsOptions;
use super::starttls::connect;
use crate::check::CheckError;

/// The CAs of `ca_file`, or the system's when none is given.
pub(crate) fn root_store(ca_file: Option<&PathBuf>) -> Result<Arc<rustls::RootCertStore>, CheckError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let invalid = |e: String| CheckError::Invalid(format!("CA file {}: {e}", path.display()));
            for certificate in CertificateDer::pem_file_iter(path).map_err(|e| invalid(e.to_string()))? {
                roots.add(certificate.map_err(|e| invalid(e.to_string()))?).map_err(|e| invalid(e.to_string()))?;
            }
        }
        None => {
            for certificate in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(certificate);
            }
        }
    }
    Ok(Arc::new(roots))
}

pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Why the chain is not trusted for `name`, or `trusted`.
pub(super) fn validate(chain: &[Vec<u8>], name: &str, roots: Arc<rustls::RootCertStore>) -> String {
    let Some((leaf, intermediates)) = chain.split_first() else { return "no certificate received".into() };
    let verifier = match rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider()).build() {
        Ok(verifier) => verifier,
        Err(error) => return format!("cannot validate: {error}"),
    };
    let Ok(server_name) = ServerName::try_from(name.to_string()) else {
        return format!("{name:?} is not a server name");
    };
    let intermediates: Vec<CertificateDer<'_>> =
        intermediates.iter().map(|c| CertificateDer::from(c.as_slice())).collect();
    match verifier.verify_server_cert(
        &CertificateDer::from(leaf.as_slice()),
        &intermediates,
        &server_name,
        &[],
        UnixTime::now(),
    ) {
        Ok(_) => "trusted".into(),
        Err(error) => error.to_string(),
    }
}

/// A chain, leaf first, and the stapled OCSP response if there was one.
type Presented = (Vec<Vec<u8>>, Option<Vec<u8>>);

/// Records what the server presented and lets the handshake go on whatever it is.
#[derive(Debug)]
struct Recorder {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    seen: Mutex<Option<Presented>>,
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let chain = std::iter::once(end_entity).chain(intermediates).map(|c| c.as_ref().to_vec()).collect();
        let stapled = (!ocsp_response.is_empty()).then(|| ocsp_response.to_vec());
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = Some((chain, stapled));
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The chain and the stapled OCSP response, if any, through a real rustls handshake.
pub(super) async fn capture_chain(
    address: SocketAddr,
    options: &TlsOptions,
    name: &str,
    roots: Arc<rustls::RootCertStore>,
) -> Option<Presented> {
    let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider()).build().ok()?;
    let recorder = Arc::new(Recorder { inner, seen: Mutex::new(None) });
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .ok()?
        .dangerous()
        .with_custom_certificate_verifier(recorder.clone())
        .with_no_client_auth();
    let stream = connect(address, options.starttls, options.timeout).await.ok()?;
    let server_name = ServerName::try_from(name.to_string()).ok()?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let _ = tokio::time::timeout(options.timeout, connector.connect(server_name, stream)).await;
    recorder.seen.lock().unwrap_or_else(|p| p.into_inner()).take()
}
