//! SNMP (snmp2): v1 and v2c with a community, v3 with authentication and privacy; get,
//! getnext, walk and bulk walk; names for the common OIDs (system group, ifTable/ifXTable,
//! hrStorage, hrProcessorLoad) so a user asks for `ifHCInOctets`, not a dotted string; and
//! a check that turns interface counters into per-interface rates, like host network
//! metrics. Values are exact: an octet string is text only when snmpget would print it as
//! text (printable ASCII and white space), otherwise its bytes in hex (always for MAC-address columns such as `ifPhysAddress`), and
//! OIDs are decoded arc by arc (zeroDotZero is `0.0`).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use secumon_core::{CheckStatus, Labels};
use serde::{Deserialize, Serialize};
use snmp2::{AsyncSession, Oid, Value, v3};

use crate::check::{Check, CheckError, Outcome, resolve};
use crate::spec::required;

/// Names for common OIDs (columns and scalars, without the instance suffix).
pub const NAMES: &[(&str, &str)] = &[
    ("sysDescr", "1.3.6.1.2.1.1.1"),
    ("sysObjectID", "1.3.6.1.2.1.1.2"),
    ("sysUpTime", "1.3.6.1.2.1.1.3"),
    ("sysContact", "1.3.6.1.2.1.1.4"),
    ("sysName", "1.3.6.1.2.1.1.5"),
    ("sysLocation", "1.3.6.1.2.1.1.6"),
    ("sysServices", "1.3.6.1.2.1.1.7"),
    ("ifNumber", "1.3.6.1.2.1.2.1"),
    ("ifIndex", "1.3.6.1.2.1.2.2.1.1"),
    ("ifDescr", "1.3.6.1.2.1.2.2.1.2"),
    ("ifType", "1.3.6.1.2.1.2.2.1.3"),
    ("ifMtu", "1.3.6.1.2.1.2.2.1.4"),
    ("ifSpeed", "1.3.6.1.2.1.2.2.1.5"),
    ("ifPhysAddress", "1.3.6.1.2.1.2.2.1.6"),
    ("ifAdminStatus", "1.3.6.1.2.1.2.2.1.7"),
    ("ifOperStatus", "1.3.6.1.2.1.2.2.1.8"),
    ("ifInOctets", "1.3.6.1.2.1.2.2.1.10"),
    ("ifInUcastPkts", "1.3.6.1.2.1.2.2.1.11"),
    ("ifInDiscards", "1.3.6.1.2.1.2.2.1.13"),
    ("ifInErrors", "1.3.6.1.2.1.2.2.1.14"),
    ("ifOutOctets", "1.3.6.1.2.1.2.2.1.16"),
    ("ifOutUcastPkts", "1.3.6.1.2.1.2.2.1.17"),
    ("ifOutDiscards", "1.3.6.1.2.1.2.2.1.19"),
    ("ifOutErrors", "1.3.6.1.2.1.2.2.1.20"),
    ("ifName", "1.3.6.1.2.1.31.1.1.1.1"),
    ("ifHCInOctets", "1.3.6.1.2.1.31.1.1.1.6"),
    ("ifHCInUcastPkts", "1.3.6.1.2.1.31.1.1.1.7"),
    ("ifHCOutOctets", "1.3.6.1.2.1.31.1.1.1.10"),
    ("ifHCOutUcastPkts", "1.3.6.1.2.1.31.1.1.1.11"),
    ("ifHighSpeed", "1.3.6.1.2.1.31.1.1.1.15"),
    ("ifAlias", "1.3.6.1.2.1.31.1.1.1.18"),
    ("hrStorageDescr", "1.3.6.1.2.1.25.2.3.1.3"),
    ("hrStorageAllocationUnits", "1.3.6.1.2.1.25.2.3.1.4"),
    ("hrStorageSize", "1.3.6.1.2.1.25.2.3.1.5"),
    ("hrStorageUsed", "1.3.6.1.2.1.25.2.3.1.6"),
    ("hrProcessorLoad", "1.3.6.1.2.1.25.3.3.1.2"),
];

/// `ifHCInOctets.2`, `sysDescr.0`, `1.3.6.1.2.1.1.5.0` or `.1.3...` to a dotted OID.
pub fn oid_for(text: &str) -> Result<String, CheckError> {
    let text = text.trim().trim_start_matches('.');
    let (head, instance) = match text.split_once('.') {
        Some((head, rest)) if !head.chars().all(|c| c.is_ascii_digit()) => (head, Some(rest)),
        _ => (text, None),
    };
    let base = match NAMES.iter().find(|(name, _)| name.eq_ignore_ascii_case(head)) {
        Some((_, oid)) => oid.to_string(),
        None if head.split('.').all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit())) => head.to_string(),
        None => {
            return Err(CheckError::Invalid(format!(
                "{text:?} is neither a dotted OID nor a known name (such as ifHCInOctets)"
            )));
        }
    };
    let oid = match instance {
        Some(instance) if instance.split('.').all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit())) => {
            format!("{base}.{instance}")
        }
        Some(instance) => return Err(CheckError::Invalid(format!("instance {instance:?} in {text:?} is not numeric"))),
        None => base,
    };
    if oid.split('.').count() < 2 {
        return Err(CheckError::Invalid(format!("{text:?} is too short to be an OID")));
    }
    Ok(oid)
}

/// The known name of a dotted OID, with its instance: `ifHCInOctets.2`.
pub fn name_for(oid: &str) -> String {
    NAMES
        .iter()
        .filter(|(_, base)| oid == *base || oid.starts_with(&format!("{base}.")))
        .max_by_key(|(_, base)| base.len())
        .map(|(name, base)| format!("{name}{}", &oid[base.len()..]))
        .unwrap_or_else(|| oid.to_string())
}

fn parse_oid(dotted: &str) -> Result<Oid<'static>, CheckError> {
    let parts: Vec<u64> = dotted
        .split('.')
        .map(|p| p.parse().map_err(|_| CheckError::Invalid(format!("bad OID {dotted:?}"))))
        .collect::<Result<_, _>>()?;
    Oid::from(&parts).map_err(|e| CheckError::Invalid(format!("bad OID {dotted:?}: {e:?}")))
}

/// How to talk to an agent.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// SNMPv1 with a community string.
    V1 {
        /// The community (`public`...).
        community: String,
    },
    /// SNMPv2c with a community string.
    V2c {
        /// The community (`public`...).
        community: String,
    },
    /// SNMPv3 with a user (authPriv or authNoPriv).
    V3 {
        /// The security name.
        user: String,
        /// `MD5`, `SHA` (SHA-1), `SHA224`, `SHA256`, `SHA384` or `SHA512`.
        auth_protocol: String,
        /// The authentication pass phrase.
        auth_password: String,
        /// The privacy protocol (`DES`, `AES`...) and pass phrase; `None` for authNoPriv.
        privacy: Option<(String, String)>,
    },
}

impl Credentials {
    /// From the usual settings: version `1`, `2c` or `3`; v3 needs a user and an
    /// authentication password, privacy is used when its password is given.
    pub fn from_settings(
        version: &str,
        community: Option<&str>,
        user: Option<&str>,
        auth: (Option<&str>, Option<&str>),
        privacy: (Option<&str>, Option<&str>),
    ) -> Result<Self, CheckError> {
        let community = community.unwrap_or("public").to_string();
        match version {
            "1" | "v1" => Ok(Self::V1 { community }),
            "2c" | "v2c" | "2" => Ok(Self::V2c { community }),
            "3" | "v3" => {
                let user = user.ok_or_else(|| CheckError::Invalid("SNMPv3 needs a user".into()))?;
                let auth_password =
                    auth.1.ok_or_else(|| CheckError::Invalid("SNMPv3 needs an authentication password".into()))?;
                Ok(Self::V3 {
                    user: user.to_string(),
                    auth_protocol: auth.0.unwrap_or("SHA").to_string(),
                    auth_password: auth_password.to_string(),
                    privacy: privacy.1.map(|password| (privacy.0.unwrap_or("AES").to_string(), password.to_string())),
                })
            }
            other => Err(CheckError::Invalid(format!("SNMP version {other:?} is not 1, 2c or 3"))),
        }
    }
}

/// Columns whose octet strings are MAC addresses (PhysAddress, MacAddress): shown in hex
/// even when their bytes happen to be printable.
const MAC_COLUMNS: &[&str] = &[
    "1.3.6.1.2.1.2.2.1.6",    // ifPhysAddress
    "1.3.6.1.2.1.3.1.1.2",    // atPhysAddress
    "1.3.6.1.2.1.4.22.1.2",   // ipNetToMediaPhysAddress
    "1.3.6.1.2.1.4.35.1.4",   // ipNetToPhysicalPhysAddress
    "1.3.6.1.2.1.17.1.1",     // dot1dBaseBridgeAddress
    "1.3.6.1.2.1.17.4.3.1.1", // dot1dTpFdbAddress
];

/// An owned SNMP value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "lowercase")]
pub enum SnmpValue {
    /// `INTEGER`.
    Integer(i64),
    /// An octet string that net-snmp prints as `STRING`: every byte printable ASCII or
    /// white space (tab, line feed, vertical tab, form feed, carriage return).
    String(String),
    /// Any other octet string, as its bytes in lowercase hex joined by colons
    /// (`52:54:00:ab:cd:ef`), as net-snmp's `Hex-STRING` holds them.
    #[serde(rename = "hex-string")]
    HexString(String),
    /// An OBJECT IDENTIFIER, dotted.
    Oid(String),
    /// An IpAddress, dotted.
    IpAddress(String),
    /// `Counter32`.
    Counter32(u32),
    /// `Gauge32` (also Unsigned32).
    Gauge32(u32),
    /// `TimeTicks`, in hundredths of a second.
    TimeTicks(u32),
    /// `Counter64`.
    Counter64(u64),
    /// An Opaque value's bytes, in hex like [`SnmpValue::HexString`].
    Opaque(String),
    /// `NULL`.
    Null,
    /// The agent has no such object.
    NoSuchObject,
    /// The agent has no such instance.
    NoSuchInstance,
    /// A walk ran past the end of the MIB view.
    EndOfMibView,
    /// Any other type, as the SNMP library prints it.
    Other(String),
}

impl SnmpValue {
    /// The value of the variable `oid` (dotted): its column decides whether an octet string
    /// is a MAC address.
    fn from_value(oid: &str, value: &Value<'_>) -> Self {
        match value {
            Value::Integer(n) => Self::Integer(*n),
            Value::OctetString(bytes) => {
                let mac = MAC_COLUMNS.iter().any(|column| oid.starts_with(&format!("{column}.")));
                match std::str::from_utf8(bytes) {
                    Ok(text) if !mac && is_printable(bytes) => Self::String(text.to_string()),
                    _ => Self::HexString(hex(bytes)),
                }
            }
            Value::ObjectIdentifier(oid) => Self::Oid(oid_text(oid)),
            Value::IpAddress(ip) => Self::IpAddress(std::net::Ipv4Addr::from(*ip).to_string()),
            Value::Counter32(n) => Self::Counter32(*n),
            Value::Unsigned32(n) => Self::Gauge32(*n),
            Value::Timeticks(n) => Self::TimeTicks(*n),
            Value::Counter64(n) => Self::Counter64(*n),
            Value::Null => Self::Null,
            Value::NoSuchObject => Self::NoSuchObject,
            Value::NoSuchInstance => Self::NoSuchInstance,
            Value::EndOfMibView => Self::EndOfMibView,
            Value::Opaque(bytes) => Self::Opaque(hex(bytes)),
            other => Self::Other(format!("{other:?}")),
        }
    }

    /// The value's type as the details name it (`counter64`, `string`, `hex-string`...).
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Integer(_) => "integer",
            Self::String(_) => "string",
            Self::HexString(_) => "hex-string",
            Self::Oid(_) => "oid",
            Self::IpAddress(_) => "ipaddress",
            Self::Counter32(_) => "counter32",
            Self::Gauge32(_) => "gauge32",
            Self::TimeTicks(_) => "timeticks",
            Self::Counter64(_) => "counter64",
            Self::Opaque(_) => "opaque",
            Self::Null => "null",
            Self::NoSuchObject => "nosuchobject",
            Self::NoSuchInstance => "nosuchinstance",
            Self::EndOfMibView => "endofmibview",
            Self::Other(_) => "other",
        }
    }

    /// The value as a number, for samples.
    pub fn number(&self) -> Option<f64> {
        match self {
            Self::Integer(n) => Some(*n as f64),
            Self::Counter32(n) | Self::Gauge32(n) | Self::TimeTicks(n) => Some(f64::from(*n)),
            Self::Counter64(n) => Some(*n as f64),
            _ => None,
        }
    }

    fn ends_walk(&self) -> bool {
        matches!(self, Self::EndOfMibView | Self::NoSuchObject | Self::NoSuchInstance)
    }
}

/// What an `snmp` check found: the variables walked, or those got (with the interfaces).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
#[non_exhaustive]
pub enum SnmpDetails {
    /// A walk (`walk: true`): every variable under the configured subtrees.
    Walk {
        /// Each variable, in walk order.
        variables: Vec<SnmpVariable>,
    },
    /// A get: each variable by its name, and the interface table when asked for.
    Get(SnmpGetDetails),
}

/// The details of an `snmp` get.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SnmpGetDetails {
    /// Each interface's operational state, when `interfaces` is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interfaces: Option<Vec<SnmpInterface>>,
    /// The variables the agent does not have; absent when it has them all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
    /// Each variable got, by its name (`sysDescr.0`, or the dotted OID).
    #[serde(flatten)]
    pub values: BTreeMap<String, SnmpValue>,
}

/// One variable of a walk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SnmpVariable {
    /// The dotted OID.
    pub oid: String,
    /// Its name (`ifName.2`), or the OID when it has none here.
    pub name: String,
    /// Its value.
    pub value: SnmpValue,
}

/// One interface of the agent's interface table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SnmpInterface {
    /// The ifIndex, as text.
    pub index: String,
    /// Its ifName (or ifDescr; the index when neither is there).
    pub name: String,
    /// Whether ifOperStatus is `up` (1).
    pub up: bool,
}

/// A session with one agent, every request bounded by `timeout` (and retried once).
pub struct SnmpClient {
    session: AsyncSession,
    timeout: Duration,
    bulk_capable: bool,
}

impl SnmpClient {
    /// Opens a session with the agent at `address`; v3 discovers the engine first.
    pub async fn connect(
        address: SocketAddr,
        credentials: &Credentials,
        timeout: Duration,
    ) -> Result<Self, CheckError> {
        let request_id = fastrand::i32(1..i32::MAX / 2);
        let io = |e: std::io::Error| CheckError::Other(format!("SNMP socket: {e}"));
        let (session, bulk_capable) = match credentials {
            Credentials::V1 { community } => {
                (AsyncSession::new_v1(address, community.as_bytes(), request_id).await.map_err(io)?, false)
            }
            Credentials::V2c { community } => {
                (AsyncSession::new_v2c(address, community.as_bytes(), request_id).await.map_err(io)?, true)
            }
            Credentials::V3 { user, auth_protocol, auth_password, privacy } => {
                let protocol = match auth_protocol.to_ascii_uppercase().as_str() {
                    "MD5" => v3::AuthProtocol::Md5,
                    "SHA" | "SHA1" => v3::AuthProtocol::Sha1,
                    "SHA224" => v3::AuthProtocol::Sha224,
                    "SHA256" => v3::AuthProtocol::Sha256,
                    "SHA384" => v3::AuthProtocol::Sha384,
                    "SHA512" => v3::AuthProtocol::Sha512,
                    other => {
                        return Err(CheckError::Invalid(format!(
                            "auth protocol {other:?} is not MD5, SHA, SHA224, SHA256, SHA384 or SHA512"
                        )));
                    }
                };
                let auth = match privacy {
                    None => v3::Auth::AuthNoPriv,
                    Some((cipher, password)) => v3::Auth::AuthPriv {
                        cipher: match cipher.to_ascii_uppercase().as_str() {
                            "DES" => v3::Cipher::Des,
                            "AES" | "AES128" => v3::Cipher::Aes128,
                            "AES192" => v3::Cipher::Aes192,
                            "AES256" => v3::Cipher::Aes256,
                            other => {
                                return Err(CheckError::Invalid(format!(
                                    "privacy protocol {other:?} is not DES, AES, AES192 or AES256"
                                )));
                            }
                        },
                        privacy_password: password.as_bytes().to_vec(),
                    },
                };
                let security = v3::Security::new(user.as_bytes(), auth_password.as_bytes())
                    .with_auth_protocol(protocol)
                    .with_auth(auth);
                let mut session = AsyncSession::new_v3(address, request_id, security).await.map_err(io)?;
                tokio::time::timeout(timeout, session.init())
                    .await
                    .map_err(|_| CheckError::Other(format!("no SNMPv3 answer from {address}")))?
                    .map_err(|e| CheckError::Other(format!("SNMPv3 discovery with {address}: {e:?}")))?;
                (session, true)
            }
        };
        Ok(Self { session, timeout, bulk_capable })
    }

    /// Values of `oids`, each dotted.
    pub async fn get(&mut self, oids: &[String]) -> Result<Vec<(String, SnmpValue)>, CheckError> {
        let parsed: Vec<Oid<'static>> = oids.iter().map(|o| parse_oid(o)).collect::<Result<_, _>>()?;
        let refs: Vec<&Oid<'_>> = parsed.iter().collect();
        let timeout = self.timeout;
        let pdu = tokio::time::timeout(timeout, self.session.get_many(&refs))
            .await
            .map_err(|_| CheckError::Other("SNMP get timed out".into()))?
            .map_err(|e| CheckError::Other(format!("SNMP get: {e:?}")))?;
        check_error(pdu.error_status)?;
        Ok(pdu.varbinds.map(|(oid, value)| variable(&oid, &value)).collect())
    }

    /// The next variable after `oid`.
    pub async fn getnext(&mut self, oid: &str) -> Result<(String, SnmpValue), CheckError> {
        let parsed = parse_oid(oid)?;
        let pdu = tokio::time::timeout(self.timeout, self.session.getnext(&parsed))
            .await
            .map_err(|_| CheckError::Other("SNMP getnext timed out".into()))?
            .map_err(|e| CheckError::Other(format!("SNMP getnext: {e:?}")))?;
        check_error(pdu.error_status)?;
        let mut varbinds = pdu.varbinds;
        varbinds
            .next()
            .map(|(oid, value)| variable(&oid, &value))
            .ok_or_else(|| CheckError::Other("empty SNMP answer".into()))
    }

    /// Every variable under `root`: GETBULK (v2c/v3) when `bulk`, GETNEXT otherwise.
    pub async fn walk(&mut self, root: &str, bulk: bool) -> Result<Vec<(String, SnmpValue)>, CheckError> {
        let prefix = format!("{root}.");
        let mut out = Vec::new();
        let mut current = root.to_string();
        loop {
            let batch: Vec<(String, SnmpValue)> = if bulk && self.bulk_capable {
                let parsed = parse_oid(&current)?;
                let pdu = tokio::time::timeout(self.timeout, self.session.getbulk(&[&parsed], 0, 25))
                    .await
                    .map_err(|_| CheckError::Other("SNMP getbulk timed out".into()))?
                    .map_err(|e| CheckError::Other(format!("SNMP getbulk: {e:?}")))?;
                check_error(pdu.error_status)?;
                pdu.varbinds.map(|(oid, value)| variable(&oid, &value)).collect()
            } else {
                vec![self.getnext(&current).await?]
            };
            if batch.is_empty() {
                return Ok(out);
            }
            for (oid, value) in batch {
                if !oid.starts_with(&prefix) || value.ends_walk() || oid == current {
                    return Ok(out);
                }
                current.clone_from(&oid);
                out.push((oid, value));
            }
            if out.len() > 100_000 {
                return Err(CheckError::Other(format!("walk of {root} returned over 100 000 variables; stopped")));
            }
        }
    }
}

/// Whether net-snmp's snmpget shows these bytes as `STRING` rather than `Hex-STRING`: its
/// guess (sprint_realloc_octet_string in snmplib/mib.c) is text only when every byte is
/// `isprint()` or `isspace()`, which for bytes means ASCII 0x20-0x7e and `\t \n \v \f \r` in
/// any locale (a lone byte of 0x80 or more is never a printable character, even in a UTF-8
/// one). So UTF-8 beyond ASCII (`Zoë`) is hex there, and here too: the type must be the one
/// the reference tool shows.
fn is_printable(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| (0x20..=0x7e).contains(&b) || matches!(b, b'\t' | b'\n' | 0x0b | 0x0c | b'\r'))
}

/// Bytes as `52:54:00:ab:cd:ef`.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// A BER-encoded OID's arcs, dotted. The first subidentifier holds the first two arcs
/// (X = 40 * first + second, first at most 2), so `0x00` is `0.0` (zeroDotZero). An arc too
/// large for 64 bits, or a truncated one, leaves the encoding in hex, marked as such.
pub(crate) fn oid_text(oid: &Oid<'_>) -> String {
    let bytes = oid.as_bytes();
    let mut arcs: Vec<u64> = Vec::new();
    let mut current: u64 = 0;
    let mut complete = true;
    for &byte in bytes {
        if current > (u64::MAX >> 7) {
            return format!("ber:{}", hex(bytes));
        }
        current = (current << 7) | u64::from(byte & 0x7f);
        complete = byte & 0x80 == 0;
        if complete {
            if arcs.is_empty() {
                let first = (current / 40).min(2);
                arcs.push(first);
                arcs.push(current - 40 * first);
            } else {
                arcs.push(current);
            }
            current = 0;
        }
    }
    if !complete {
        return format!("ber:{}", hex(bytes));
    }
    arcs.iter().map(u64::to_string).collect::<Vec<_>>().join(".")
}

fn check_error(status: u32) -> Result<(), CheckError> {
    const NAMES: [&str; 19] = [
        "noError",
        "tooBig",
        "noSuchName",
        "badValue",
        "readOnly",
        "genErr",
        "noAccess",
        "wrongType",
        "wrongLength",
        "wrongEncoding",
        "wrongValue",
        "noCreation",
        "inconsistentValue",
        "resourceUnavailable",
        "commitFailed",
        "undoFailed",
        "authorizationError",
        "notWritable",
        "inconsistentName",
    ];
    match status {
        0 => Ok(()),
        n => Err(CheckError::Other(format!("SNMP error {}", NAMES.get(n as usize).copied().unwrap_or("unknown")))),
    }
}

/// A varbind as (dotted OID, value).
fn variable(oid: &Oid<'_>, value: &Value<'_>) -> (String, SnmpValue) {
    let oid = oid_text(oid);
    let value = SnmpValue::from_value(&oid, value);
    (oid, value)
}

/// Counters of the previous run, for rates: (interface, counter) → (value, when).
type PreviousCounters = HashMap<(String, &'static str), (u64, Instant)>;

/// An SNMP check: the values of `oids` as samples, and with `interfaces`, per-interface
/// traffic, error and status samples (rates from the second run on).
pub struct SnmpCheck {
    /// The check's name in the configuration.
    pub id: String,
    /// The agent's host name or address.
    pub host: String,
    /// The agent's UDP port (161).
    pub port: u16,
    /// How to authenticate.
    pub credentials: Credentials,
    /// OIDs to get (names such as `sysUpTime.0`, or dotted); `sysUpTime.0` by default.
    pub oids: Vec<String>,
    /// Also walk the interface table into per-interface samples.
    pub interfaces: bool,
    /// Walk each of `oids`' subtrees into the details (no samples) instead of getting them.
    pub walk: bool,
    /// How long each request is given (2 s; retried once).
    pub timeout: Duration,
    previous: Mutex<PreviousCounters>,
}

impl std::fmt::Debug for SnmpCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "snmp {}:{}", self.host, self.port)
    }
}

impl SnmpCheck {
    /// A get of `sysUpTime.0` on port 161, 2 s per request.
    pub fn new(id: impl Into<String>, host: impl Into<String>, credentials: Credentials) -> Self {
        Self {
            id: id.into(),
            host: host.into(),
            port: 161,
            credentials,
            oids: vec!["sysUpTime.0".into()],
            interfaces: false,
            walk: false,
            timeout: Duration::from_secs(2),
            previous: Mutex::new(HashMap::new()),
        }
    }
}

/// An `snmp` check as configured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct SnmpSpec {
    /// The agent's name or address.
    pub host: Option<String>,
    /// UDP port (161).
    pub port: Option<u16>,
    /// `1`, `2c` (default) or `3`.
    pub version: Option<String>,
    /// v1/v2c community (`public`).
    pub community: Option<String>,
    /// v3 user.
    pub user: Option<String>,
    /// v3 authentication: `MD5`, `SHA` (default), `SHA-224` … `SHA-512`.
    pub auth_protocol: Option<String>,
    /// v3 authentication password.
    pub auth_password: Option<String>,
    /// v3 privacy: `DES`, `AES` (default), `AES-192`, `AES-256`.
    pub priv_protocol: Option<String>,
    /// v3 privacy password.
    pub priv_password: Option<String>,
    /// Names (`sysUpTime.0`) or dotted OIDs to get (or, with `walk`, to walk).
    pub oids: Option<Vec<String>>,
    /// Per-interface traffic, error and status samples.
    pub interfaces: Option<bool>,
    /// Walk each OID's subtree into the details instead of getting it.
    pub walk: Option<bool>,
    /// How long each request's answer is awaited (2 s).
    #[serde(default, with = "humantime_serde")]
    pub request_timeout: Option<Duration>,
}

impl SnmpSpec {
    pub(crate) fn build(self, id: String, kind: &str) -> Result<Box<dyn Check>, CheckError> {
        let credentials = Credentials::from_settings(
            self.version.as_deref().unwrap_or("2c"),
            self.community.as_deref(),
            self.user.as_deref(),
            (self.auth_protocol.as_deref(), self.auth_password.as_deref()),
            (self.priv_protocol.as_deref(), self.priv_password.as_deref()),
        )?;
        let mut check = SnmpCheck::new(id, required(self.host, kind, "host")?, credentials);
        check.port = self.port.unwrap_or(check.port);
        if let Some(oids) = self.oids {
            // Checked now, so a typo is a configuration error rather than a run-time one.
            for oid in &oids {
                oid_for(oid)?;
            }
            check.oids = oids;
        }
        check.interfaces = self.interfaces.unwrap_or(false);
        check.walk = self.walk.unwrap_or(false);
        check.timeout = self.request_timeout.unwrap_or(check.timeout);
        Ok(Box::new(check))
    }
}

/// The interface columns turned into samples: (column, sample name, is a counter).
const INTERFACE_COLUMNS: &[(&str, &str, bool)] = &[
    ("ifHCInOctets", "snmp_if_receive_bytes", true),
    ("ifHCOutOctets", "snmp_if_transmit_bytes", true),
    ("ifInErrors", "snmp_if_receive_errors", true),
    ("ifOutErrors", "snmp_if_transmit_errors", true),
    ("ifInDiscards", "snmp_if_receive_drops", true),
    ("ifOutDiscards", "snmp_if_transmit_drops", true),
    ("ifOperStatus", "snmp_if_oper_up", false),
];

#[async_trait]
impl Check for SnmpCheck {
    fn id(&self) -> &str {
        &self.id
    }

    fn kind(&self) -> &'static str {
        "snmp"
    }

    fn target(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    async fn execute(&self) -> Result<Outcome, CheckError> {
        let address = SocketAddr::new(resolve(&self.host).await?[0], self.port);
        let mut client = SnmpClient::connect(address, &self.credentials, self.timeout).await?;
        let oids: Vec<String> = self.oids.iter().map(|o| oid_for(o)).collect::<Result<_, _>>()?;
        if self.walk {
            let mut variables = Vec::new();
            for root in &oids {
                for (oid, value) in client.walk(root, true).await? {
                    variables.push(SnmpVariable { name: name_for(&oid), oid, value });
                }
            }
            return Ok(Outcome::new(CheckStatus::Ok, SnmpDetails::Walk { variables }));
        }
        let values = if oids.is_empty() { Vec::new() } else { client.get(&oids).await? };
        let mut details = SnmpGetDetails { interfaces: None, problems: Vec::new(), values: BTreeMap::new() };
        let mut outcome_samples = Vec::new();
        let mut missing = Vec::new();
        for (oid, value) in &values {
            let name = name_for(oid);
            if matches!(value, SnmpValue::NoSuchObject | SnmpValue::NoSuchInstance) {
                missing.push(name.clone());
            }
            if let Some(number) = value.number() {
                outcome_samples.push((
                    "snmp_value".to_string(),
                    Labels::from([("oid".to_string(), name.clone())]),
                    number,
                ));
            }
            details.values.insert(name, value.clone());
        }
        if self.interfaces {
            let names = client.walk(&oid_for("ifName")?, true).await?;
            let descriptions = if names.is_empty() { client.walk(&oid_for("ifDescr")?, true).await? } else { names };
            let label_of: HashMap<String, String> = descriptions
                .into_iter()
                .filter_map(|(oid, value)| match value {
                    SnmpValue::String(name) => Some((oid.rsplit('.').next()?.to_string(), name)),
                    _ => None,
                })
                .collect();
            let mut columns = Vec::with_capacity(INTERFACE_COLUMNS.len());
            for (column, sample, counter) in INTERFACE_COLUMNS {
                columns.push((sample, *counter, client.walk(&oid_for(column)?, true).await?));
            }
            let now = Instant::now();
            let mut previous = self.previous.lock().unwrap_or_else(|p| p.into_inner());
            let mut interfaces = Vec::new();
            for (sample, counter, walked) in columns {
                for (oid, value) in walked {
                    let index = oid.rsplit('.').next().unwrap_or_default().to_string();
                    let interface = label_of.get(&index).cloned().unwrap_or_else(|| index.clone());
                    let labels = Labels::from([("interface".to_string(), interface.clone())]);
                    let Some(number) = value.number() else { continue };
                    if counter {
                        outcome_samples.push((format!("{sample}_total"), labels.clone(), number));
                        let raw = number as u64;
                        if let Some((before, at)) = previous.insert((interface.clone(), sample), (raw, now)) {
                            let seconds = now.duration_since(at).as_secs_f64();
                            // A counter that went down wrapped or restarted: no rate this time.
                            if raw >= before && seconds > 0.0 {
                                outcome_samples.push((
                                    format!("{sample}_per_second"),
                                    labels,
                                    (raw - before) as f64 / seconds,
                                ));
                            }
                        }
                    } else {
                        // ifOperStatus: 1 up, 2 down, others testing/unknown/dormant...
                        outcome_samples.push((sample.to_string(), labels, f64::from(u8::from(number == 1.0))));
                        interfaces.push(SnmpInterface { index, name: interface, up: number == 1.0 });
                    }
                }
            }
            details.interfaces = Some(interfaces);
        }
        let status = if missing.is_empty() { CheckStatus::Ok } else { CheckStatus::Warning };
        details.problems = missing.iter().map(|m| format!("{m}: no such object")).collect();
        Ok(Outcome { status, details: SnmpDetails::Get(details).into(), samples: outcome_samples })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_keep_their_json() {
        let walked = SnmpDetails::Walk {
            variables: vec![SnmpVariable {
                oid: "1.3.6.1.2.1.31.1.1.1.1.1".into(),
                name: "ifName.1".into(),
                value: SnmpValue::String("lo".into()),
            }],
        };
        crate::details::assert_wire(
            "snmp",
            walked.into(),
            serde_json::json!({"variables": [
                {"oid": "1.3.6.1.2.1.31.1.1.1.1.1", "name": "ifName.1", "value": {"type": "string", "value": "lo"}},
            ]}),
        );
        let got = SnmpGetDetails {
            interfaces: Some(vec![SnmpInterface { index: "2".into(), name: "eth0".into(), up: true }]),
            problems: vec!["sysContact.0: no such object".into()],
            values: BTreeMap::from([
                ("sysUpTime.0".to_string(), SnmpValue::TimeTicks(4200)),
                ("ifHCInOctets.2".to_string(), SnmpValue::Counter64(u64::MAX)),
                ("sysContact.0".to_string(), SnmpValue::NoSuchObject),
            ]),
        };
        crate::details::assert_wire(
            "snmp",
            SnmpDetails::Get(got).into(),
            serde_json::json!({
                "sysUpTime.0": {"type": "timeticks", "value": 4200},
                "ifHCInOctets.2": {"type": "counter64", "value": 18_446_744_073_709_551_615u64},
                "sysContact.0": {"type": "nosuchobject"},
                "interfaces": [{"index": "2", "name": "eth0", "up": true}],
                "problems": ["sysContact.0: no such object"],
            }),
        );
        let plain = SnmpGetDetails {
            interfaces: None,
            problems: Vec::new(),
            values: BTreeMap::from([("sysName.0".to_string(), SnmpValue::String("probe".into()))]),
        };
        crate::details::assert_wire(
            "snmp",
            SnmpDetails::Get(plain).into(),
            serde_json::json!({"sysName.0": {"type": "string", "value": "probe"}}),
        );
        crate::details::assert_wire(
            "snmp",
            SnmpDetails::Get(SnmpGetDetails {
                interfaces: Some(Vec::new()),
                problems: Vec::new(),
                values: BTreeMap::new(),
            })
            .into(),
            serde_json::json!({"interfaces": []}),
        );
    }

    #[test]
    fn type_names_are_the_json_types() {
        for value in [
            SnmpValue::Integer(-1),
            SnmpValue::String("a".into()),
            SnmpValue::HexString("00".into()),
            SnmpValue::Oid("1.3".into()),
            SnmpValue::IpAddress("192.0.2.1".into()),
            SnmpValue::Counter32(1),
            SnmpValue::Gauge32(1),
            SnmpValue::TimeTicks(1),
            SnmpValue::Counter64(1),
            SnmpValue::Opaque("00".into()),
            SnmpValue::Null,
            SnmpValue::NoSuchObject,
            SnmpValue::NoSuchInstance,
            SnmpValue::EndOfMibView,
            SnmpValue::Other("x".into()),
        ] {
            assert_eq!(serde_json::to_value(&value).unwrap()["type"], value.type_name(), "{value:?}");
        }
    }

    #[test]
    fn names_and_dotted_oids() {
        assert_eq!(oid_for("ifHCInOctets.2").unwrap(), "1.3.6.1.2.1.31.1.1.1.6.2");
        assert_eq!(oid_for("sysDescr.0").unwrap(), "1.3.6.1.2.1.1.1.0");
        assert_eq!(oid_for(".1.3.6.1.2.1.1.5.0").unwrap(), "1.3.6.1.2.1.1.5.0");
        assert_eq!(oid_for("hrProcessorLoad").unwrap(), "1.3.6.1.2.1.25.3.3.1.2");
        assert!(oid_for("ifBogus.1").unwrap_err().to_string().contains("ifBogus"));
        assert!(oid_for("sysDescr.x").is_err());
        assert_eq!(name_for("1.3.6.1.2.1.31.1.1.1.6.2"), "ifHCInOctets.2");
        assert_eq!(name_for("1.3.6.1.2.1.1.1.0"), "sysDescr.0");
        assert_eq!(name_for("1.3.6.1.4.1.9"), "1.3.6.1.4.1.9");
    }

    #[test]
    fn values_are_exact() {
        let oid = |bytes: &'static [u8]| Oid::new(std::borrow::Cow::Borrowed(bytes));
        assert_eq!(oid_text(&oid(&[0x00])), "0.0", "zeroDotZero");
        assert_eq!(oid_text(&oid(&[0x2b, 6, 1, 2, 1, 1, 1, 0])), "1.3.6.1.2.1.1.1.0");
        assert_eq!(oid_text(&oid(&[0x88, 0x37, 3])), "2.999.3", "a first subidentifier over 80");
        assert_eq!(oid_text(&oid(&[0x2b, 0x86])), "ber:2b:86", "truncated");
        const MAC: &[u8] = &[0x52, 0x54, 0x00, 0xab, 0xcd, 0xef];
        let value = |oid: &str, bytes: &'static [u8]| SnmpValue::from_value(oid, &Value::OctetString(bytes));
        assert_eq!(value("1.3.6.1.4.1.9.1", MAC), SnmpValue::HexString("52:54:00:ab:cd:ef".into()));
        assert_eq!(value("1.3.6.1.2.1.2.2.1.6.2", b"ABCDEF"), SnmpValue::HexString("41:42:43:44:45:46".into()));
        assert_eq!(value("1.3.6.1.2.1.1.6.0", b"Lab 1\n"), SnmpValue::String("Lab 1\n".into()));
        assert_eq!(value("1.3.6.1.2.1.1.6.0", b"a\0b"), SnmpValue::HexString("61:00:62".into()));
        // net-snmp's rule: ASCII printable or white space is text, any byte over 0x7e is not.
        assert_eq!(value("1.3.6.1.2.1.1.4.0", b"\ta ~\x0b\x0c\r"), SnmpValue::String("\ta ~\x0b\x0c\r".into()));
        assert_eq!(value("1.3.6.1.2.1.1.4.0", b""), SnmpValue::String(String::new()));
        assert_eq!(value("1.3.6.1.2.1.1.4.0", "Zoë".as_bytes()), SnmpValue::HexString("5a:6f:c3:ab".into()));
        assert_eq!(value("1.3.6.1.2.1.1.4.0", b"a\x7fb"), SnmpValue::HexString("61:7f:62".into()), "DEL");
        assert_eq!(value("1.3.6.1.2.1.1.4.0", b"a\x1bb"), SnmpValue::HexString("61:1b:62".into()), "ESC");
        assert_eq!(
            serde_json::to_value(value("1.3.6.1.2.1.2.2.1.6.2", MAC)).unwrap(),
            serde_json::json!({"type": "hex-string", "value": "52:54:00:ab:cd:ef"})
        );
    }
}
