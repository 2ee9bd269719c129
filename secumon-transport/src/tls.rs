//! Mutual TLS between agents and the server (rustls through tonic): both sides present a
//! certificate, and each trusts only certificates signed by the SecuMon CA.

use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

use crate::TransportError;

/// PEM-encoded CA certificate, own certificate and own private key.
#[derive(Clone)]
pub struct TlsMaterial {
    /// The CA bundle the peer's certificate must chain to.
    pub ca_pem: Vec<u8>,
    /// Our certificate (chain).
    pub cert_pem: Vec<u8>,
    /// Our private key.
    pub key_pem: Vec<u8>,
}

impl std::fmt::Debug for TlsMaterial {
    /// Never prints the private key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial").finish_non_exhaustive()
    }
}

impl TlsMaterial {
    /// Reads the three PEM files.
    pub fn load(ca: &Path, cert: &Path, key: &Path) -> Result<Self, TransportError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| TransportError::TlsFile { path: path.display().to_string(), source })
        };
        Ok(Self { ca_pem: read(ca)?, cert_pem: read(cert)?, key_pem: read(key)? })
    }

    /// This material with the certificate and CAs a renewal brought (the key stays).
    pub fn renewed(&self, ca_pem: &str, cert_pem: &str) -> Self {
        Self {
            ca_pem: ca_pem.as_bytes().to_vec(),
            cert_pem: cert_pem.as_bytes().to_vec(),
            key_pem: self.key_pem.clone(),
        }
    }

    /// Client side: trust the CA, present our certificate.
    pub fn client_config(&self) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca_pem))
            .identity(Identity::from_pem(&self.cert_pem, &self.key_pem))
    }

    /// Server side: present our certificate, require a client certificate signed by the CA.
    pub fn server_config(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(Identity::from_pem(&self.cert_pem, &self.key_pem))
            .client_ca_root(Certificate::from_pem(&self.ca_pem))
    }
}

/// Where an enrolled agent keeps the CA bundle and its certificate, which a renewal may
/// replace (CA rotation).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The CA bundle's file.
    pub ca: PathBuf,
    /// The agent certificate's file.
    pub cert: PathBuf,
}

impl TlsFiles {
    /// Writes a renewal's CA bundle, then its certificate, each atomically (a temporary file,
    /// fsync, rename). A crash between the two leaves the new bundle, which still trusts the
    /// old CA, beside the old certificate, which the server admits until it sees the new one.
    pub fn store(&self, material: &TlsMaterial) -> Result<(), TransportError> {
        write_atomically(&self.ca, &material.ca_pem)?;
        write_atomically(&self.cert, &material.cert_pem)
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), TransportError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| TransportError::TlsFile { path: path.display().to_string(), source };
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    let temporary = path.with_file_name(name);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .and_then(|mut file| {
            file.write_all(bytes)?;
            file.sync_all()
        })
        .and_then(|()| std::fs::rename(&temporary, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written.map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewed_files_replace_the_old_ones_whole_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let files = TlsFiles { ca: dir.path().join("ca.pem"), cert: dir.path().join("agent.crt") };
        std::fs::write(&files.ca, "old ca").unwrap();
        std::fs::write(&files.cert, "old cert").unwrap();
        let material = TlsMaterial { ca_pem: b"ca".to_vec(), cert_pem: b"cert".to_vec(), key_pem: b"key".to_vec() };
        let renewed = material.renewed("new ca bundle", "new cert");
        assert_eq!(renewed.key_pem, b"key", "the key stays");
        files.store(&renewed).unwrap();
        assert_eq!(std::fs::read_to_string(&files.ca).unwrap(), "new ca bundle");
        assert_eq!(std::fs::read_to_string(&files.cert).unwrap(), "new cert");
        assert_eq!(std::fs::metadata(&files.cert).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2, "no temporary file left");

        let gone = TlsFiles { ca: dir.path().join("missing/ca.pem"), cert: files.cert.clone() };
        assert!(gone.store(&material).is_err());
        assert_eq!(std::fs::read_to_string(&files.cert).unwrap(), "new cert", "the certificate waits for the CA");
    }
}
