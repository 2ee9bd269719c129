//! STARTTLS: the plaintext dialogue (SMTP, IMAP, POP3) that upgrades a connection to TLS
//! before the handshake, and [`connect`], which opens every connection the analysis makes.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::check::CheckError;

/// A plaintext protocol upgraded to TLS before the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum StartTls {
    /// SMTP (`EHLO`, `STARTTLS`).
    Smtp,
    /// IMAP (`a1 STARTTLS`).
    Imap,
    /// POP3 (`STLS`).
    Pop3,
}

impl std::str::FromStr for StartTls {
    type Err = CheckError;

    fn from_str(text: &str) -> Result<Self, CheckError> {
        match text.to_ascii_lowercase().as_str() {
            "smtp" => Ok(Self::Smtp),
            "imap" => Ok(Self::Imap),
            "pop3" => Ok(Self::Pop3),
            _ => Err(CheckError::Invalid(format!("STARTTLS protocol {text:?} is not smtp, imap or pop3"))),
        }
    }
}
/// Opens a connection, upgraded with STARTTLS when asked.
pub(super) async fn connect(
    address: SocketAddr,
    starttls: Option<StartTls>,
    timeout: Duration,
) -> Result<TcpStream, CheckError> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(address))
        .await
        .map_err(|_| CheckError::Other(format!("connecting to {address} timed out")))?
        .map_err(|e| CheckError::Other(format!("cannot connect to {address}: {e}")))?;
    match starttls {
        None => Ok(stream),
        Some(protocol) => tokio::time::timeout(timeout, upgrade(stream, protocol))
            .await
            .map_err(|_| CheckError::Other(format!("{protocol:?} STARTTLS dialogue timed out")))?,
    }
}

async fn upgrade(stream: TcpStream, protocol: StartTls) -> Result<TcpStream, CheckError> {
    let mut reader = BufReader::new(stream);
    let fail = |what: String| CheckError::Other(format!("STARTTLS ({protocol:?}): {what}"));
    // A reply's last line: SMTP continues with `250-`, ends with `250 `.
    async fn line(reader: &mut BufReader<TcpStream>) -> Result<String, CheckError> {
        let mut text = String::new();
        let read = reader.read_line(&mut text).await?;
        if read == 0 {
            return Err(CheckError::Other("the server closed the connection during STARTTLS".into()));
        }
        Ok(text.trim_end().to_string())
    }
    async fn reply(reader: &mut BufReader<TcpStream>) -> Result<String, CheckError> {
        loop {
            let text = line(reader).await?;
            if text.len() < 4 || text.as_bytes()[3] != b'-' {
                return Ok(text);
            }
        }
    }
    match protocol {
        StartTls::Smtp => {
            let greeting = reply(&mut reader).await?;
            if !greeting.starts_with("220") {
                return Err(fail(format!("greeting {greeting:?}")));
            }
            reader.get_mut().write_all(b"EHLO secumon.probe\r\n").await?;
            let ehlo = reply(&mut reader).await?;
            if !ehlo.starts_with("250") {
                return Err(fail(format!("EHLO answered {ehlo:?}")));
            }
            reader.get_mut().write_all(b"STARTTLS\r\n").await?;
            let ready = reply(&mut reader).await?;
            if !ready.starts_with("220") {
                return Err(fail(format!("STARTTLS answered {ready:?}")));
            }
        }
        StartTls::Imap => {
            let greeting = line(&mut reader).await?;
            if !greeting.starts_with("* OK") {
                return Err(fail(format!("greeting {greeting:?}")));
            }
            reader.get_mut().write_all(b"a1 STARTTLS\r\n").await?;
            loop {
                let answer = line(&mut reader).await?;
                if answer.starts_with("a1 OK") {
                    break;
                }
                if answer.starts_with("a1 ") {
                    return Err(fail(format!("STARTTLS answered {answer:?}")));
                }
            }
        }
        StartTls::Pop3 => {
            let greeting = line(&mut reader).await?;
            if !greeting.starts_with("+OK") {
                return Err(fail(format!("greeting {greeting:?}")));
            }
            reader.get_mut().write_all(b"STLS\r\n").await?;
            let answer = line(&mut reader).await?;
            if !answer.starts_with("+OK") {
                return Err(fail(format!("STLS answered {answer:?}")));
            }
        }
    }
    if !reader.buffer().is_empty() {
        return Err(fail("the server sent data before the TLS handshake".into()));
    }
    Ok(reader.into_inner())
}
