//! One way to describe a check: each check has a spec type beside it (`PingSpec` in
//! `ping.rs`, …), deserialised with unknown keys refused and turned into the check by a
//! validating `build()`. [`CheckSpec`] tags them by `type`; `probe.yaml`, `secumon scan` and
//! the Python bindings all build their checks through it. Adding a check is its file plus
//! one line in [`check_specs!`].

use std::sync::Arc;

use serde::Serialize;
use serde::de::{self, Deserialize, Deserializer, Visitor};

use crate::check::{Check, CheckError};

macro_rules! check_specs {
    ($($(#[$gate:meta])? $variant:ident($spec:ty) = $kind:literal),+ $(,)?) => {
        /// Any check, as configured, tagged by its `type`.
        #[derive(Debug, Clone, Serialize, serde::Deserialize)]
        #[serde(tag = "type", rename_all = "lowercase")]
        #[non_exhaustive]
        pub enum CheckSpec {
            $(
                #[doc = concat!("A `", $kind, "` check.")]
                $(#[$gate])?
                $variant($spec),
            )+
        }

        /// Every check type this build has (see the crate's features), as written in `type`.
        // One push per check, each behind its feature's gate: a `vec![]` cannot hold those.
        #[allow(clippy::vec_init_then_push)]
        pub fn check_types() -> Vec<&'static str> {
            let mut types = Vec::new();
            $(
                $(#[$gate])?
                types.push($kind);
            )+
            types
        }

        impl CheckSpec {
            /// The check's `type`.
            pub fn kind(&self) -> &'static str {
                match self {
                    $($(#[$gate])? Self::$variant(_) => $kind,)+
                }
            }

            /// Validates the spec and builds the check, named `id`.
            pub fn build(self, id: impl Into<String>) -> Result<Box<dyn Check>, CheckError> {
                let id = id.into();
                match self {
                    $($(#[$gate])? Self::$variant(spec) => spec.build(id, $kind),)+
                }
            }

            /// As [`CheckSpec::build`], telling `progress` how far the check has got where it
            /// can (TCP port scans: ports done of all).
            pub fn build_with_progress(
                self,
                id: impl Into<String>,
                progress: Progress,
            ) -> Result<Box<dyn Check>, CheckError> {
                match self {
                    Self::Tcp(spec) => spec.build_with(id.into(), "tcp", Some(progress)),
                    other => other.build(id),
                }
            }

            /// The keys a check of type `kind` takes, or `None` for no such type.
            pub fn keys(kind: &str) -> Option<&'static [&'static str]> {
                match kind {
                    $($(#[$gate])? $kind => Some(keys_of::<$spec>()),)+
                    _ => None,
                }
            }
        }
    };
}

check_specs! {
    Ping(crate::ping::PingSpec) = "ping",
    #[cfg(feature = "trace")]
    Trace(crate::trace::TraceSpec) = "trace",
    Tcp(crate::ports::PortsSpec) = "tcp",
    Udp(crate::ports::PortsSpec) = "udp",
    #[cfg(feature = "http")]
    Http(crate::http::HttpSpec) = "http",
    #[cfg(feature = "http")]
    Prometheus(crate::prometheus::PrometheusSpec) = "prometheus",
    #[cfg(feature = "dns")]
    Dns(crate::dns::DnsSpec) = "dns",
    #[cfg(feature = "tls")]
    Tls(crate::tls::TlsSpec) = "tls",
    #[cfg(feature = "snmp")]
    Snmp(crate::snmp::SnmpSpec) = "snmp",
}

/// Told how far a long check has got: (units done, units in all), such as ports scanned.
pub type Progress = Arc<dyn Fn(u64, u64) + Send + Sync>;

/// What a spec needs in order to build: the error for a missing required key.
pub(crate) fn required<T>(value: Option<T>, kind: &str, key: &str) -> Result<T, CheckError> {
    value.ok_or_else(|| CheckError::Invalid(format!("{kind} checks need `{key}`")))
}

/// `host:port`, `[v6]:port` or a bare host with `default` as the port.
pub fn host_port(target: &str, default: u16) -> Result<(String, u16), CheckError> {
    if let Ok(address) = target.parse::<std::net::SocketAddr>() {
        return Ok((address.ip().to_string(), address.port()));
    }
    match target.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => {
            let port =
                port.parse().map_err(|_| CheckError::Invalid(format!("{port:?} in {target:?} is not a port")))?;
            Ok((host.to_string(), port))
        }
        _ => Ok((target.trim_matches(['[', ']']).to_string(), default)),
    }
}

/// The field names a derived `Deserialize` struct asks for, read by asking it to
/// deserialise from a deserialiser that only records them.
fn keys_of<T: for<'de> Deserialize<'de>>() -> &'static [&'static str] {
    struct Recorder<'a>(&'a mut &'static [&'static str]);

    impl<'de> Deserializer<'de> for Recorder<'_> {
        type Error = de::value::Error;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("only the field names are read"))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("only the field names are read"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
            unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
        }
    }

    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Recorder(&mut fields));
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_lists_its_keys() {
        for kind in check_types() {
            let keys = CheckSpec::keys(kind).unwrap();
            assert!(!keys.is_empty(), "{kind}");
        }
        assert!(CheckSpec::keys("tcp").unwrap().contains(&"ports"));
        assert!(CheckSpec::keys("smtp").is_none());
    }

    #[test]
    fn a_spec_from_json_builds_its_check() {
        let spec: CheckSpec =
            serde_json::from_value(serde_json::json!({"type": "tcp", "host": "127.0.0.1", "port": 22})).unwrap();
        assert_eq!(spec.kind(), "tcp");
        let check = spec.build("ssh").unwrap();
        assert_eq!((check.id(), check.kind(), check.target()), ("ssh", "tcp", "127.0.0.1".to_string()));

        let unknown =
            serde_json::from_value::<CheckSpec>(serde_json::json!({"type": "ping", "host": "h", "colour": 1}));
        assert!(unknown.unwrap_err().to_string().contains("colour"));
        let Err(missing) = CheckSpec::Tcp(Default::default()).build("x") else { panic!("ports are required") };
        assert_eq!(missing.to_string(), "invalid check: tcp checks need one of `ports` or `port`");
    }

    #[test]
    fn targets_split_into_host_and_port() {
        assert_eq!(host_port("mail.example:25", 443).unwrap(), ("mail.example".into(), 25));
        assert_eq!(host_port("[::1]:8443", 443).unwrap(), ("::1".into(), 8443));
        assert_eq!(host_port("::1", 443).unwrap(), ("::1".into(), 443));
        assert_eq!(host_port("h", 161).unwrap(), ("h".into(), 161));
        assert!(host_port("h:x", 1).is_err());
    }
}
