//! Prometheus remote write 1.0 on the receiving side: the request's wire format (a
//! snappy-compressed, block format, protobuf `prometheus.WriteRequest`) and its mapping onto
//! SecuMon batches, one per host.
//!
//! A series' host is its `host` label, else the host part of its `instance` label (the
//! scraped target, `web-1:9100` → `web-1`), else `prometheus`; `instance` and the other
//! labels stay as sent. A `tenant` label, which only the server sets, is kept as
//! `exported_tenant` (Prometheus' own rule for a label that clashes with a target's).
//! Exemplars, native histograms and metadata are not read.

use std::collections::BTreeMap;

use secumon_core::model::{HOST_LABEL, TENANT_LABEL};
use secumon_core::{Labels, Sample};

/// Largest body accepted, compressed.
pub const MAX_COMPRESSED_BYTES: usize = 16 << 20;
/// Largest body accepted once decompressed.
pub const MAX_DECOMPRESSED_BYTES: usize = 64 << 20;
/// The host of series that name none.
pub const DEFAULT_HOST: &str = "prometheus";

/// `prometheus.WriteRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    /// The series with their samples.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// `prometheus.TimeSeries`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    /// The series' labels, `__name__` included.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// Its samples, oldest first.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<WireSample>,
}

/// `prometheus.Label`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    /// The label's name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Its value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `prometheus.Sample`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireSample {
    /// The value (Prometheus' staleness marker included, kept bit for bit).
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Milliseconds since 1970.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// Why a request was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteWriteError {
    /// The body is not snappy's block format, or too large once decompressed.
    #[error("the body is not snappy-compressed (block format) within {MAX_DECOMPRESSED_BYTES} bytes: {0}")]
    Snappy(String),
    /// The decompressed body is not a `WriteRequest`.
    #[error("the body is not a Prometheus WriteRequest: {0}")]
    Protobuf(#[from] prost::DecodeError),
    /// A series has no `__name__` label.
    #[error("a series has no __name__ label: {0}")]
    NoName(String),
}

/// Decodes a request body.
pub fn decode(body: &[u8]) -> Result<WriteRequest, RemoteWriteError> {
    let length = snap::raw::decompress_len(body).map_err(|e| RemoteWriteError::Snappy(e.to_string()))?;
    if length > MAX_DECOMPRESSED_BYTES {
        return Err(RemoteWriteError::Snappy(format!("it says {length} bytes")));
    }
    let raw = snap::raw::Decoder::new().decompress_vec(body).map_err(|e| RemoteWriteError::Snappy(e.to_string()))?;
    Ok(<WriteRequest as prost::Message>::decode(raw.as_slice())?)
}

/// Encodes a request as a sender does (for tests and tools).
pub fn encode(request: &WriteRequest) -> Vec<u8> {
    let raw = prost::Message::encode_to_vec(request);
    // Compressing a byte vector held in memory cannot fail but for a length over 2^32 - 1.
    snap::raw::Encoder::new().compress_vec(&raw).unwrap_or_default()
}

/// The request's samples by host.
pub fn samples_by_host(request: WriteRequest) -> Result<BTreeMap<String, Vec<Sample>>, RemoteWriteError> {
    let mut hosts: BTreeMap<String, Vec<Sample>> = BTreeMap::new();
    for series in request.timeseries {
        let mut name = None;
        let mut labels = Labels::new();
        let mut host = None;
        for label in series.labels {
            match label.name.as_str() {
                "__name__" => name = Some(label.value),
                HOST_LABEL => host = Some(label.value),
                TENANT_LABEL => {
                    labels.insert(format!("exported_{TENANT_LABEL}"), label.value);
                }
                _ => {
                    labels.insert(label.name, label.value);
                }
            }
        }
        let Some(name) = name else {
            let described: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
            return Err(RemoteWriteError::NoName(format!("{{{}}}", described.join(", "))));
        };
        let host = host
            .or_else(|| labels.get("instance").map(|instance| instance_host(instance).to_string()))
            .filter(|host| !host.is_empty())
            .unwrap_or_else(|| DEFAULT_HOST.to_string());
        let samples = hosts.entry(host).or_default();
        samples.extend(series.samples.iter().map(|s| Sample::new(name.clone(), labels.clone(), s.timestamp, s.value)));
    }
    Ok(hosts)
}

/// `web-1:9100` → `web-1`, `[::1]:9100` → `::1`, `web-1` → `web-1`.
fn instance_host(instance: &str) -> &str {
    if let Some(rest) = instance.strip_prefix('[') {
        return rest.split_once(']').map_or(instance, |(host, _)| host);
    }
    match instance.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => instance,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> TimeSeries {
        TimeSeries {
            labels: labels.iter().map(|(n, v)| Label { name: n.to_string(), value: v.to_string() }).collect(),
            samples: samples.iter().map(|&(timestamp, value)| WireSample { value, timestamp }).collect(),
        }
    }

    #[test]
    fn hosts_come_from_host_then_instance_and_tenant_is_kept_aside() {
        let request = WriteRequest {
            timeseries: vec![
                series(&[("__name__", "up"), ("instance", "web-1:9100"), ("job", "node")], &[(1_000, 1.0)]),
                series(&[("__name__", "up"), ("instance", "[::1]:9100")], &[(1_000, 0.0)]),
                series(&[("__name__", "load1"), ("host", "db-1"), ("tenant", "x")], &[(1_000, 0.5), (2_000, 0.7)]),
                series(&[("__name__", "job:rate:sum")], &[(1_000, 3.0)]),
            ],
        };
        let decoded = decode(&encode(&request)).unwrap();
        assert_eq!(decoded, request);
        let hosts = samples_by_host(decoded).unwrap();
        assert_eq!(hosts.keys().collect::<Vec<_>>(), ["::1", "db-1", "prometheus", "web-1"]);
        let web = &hosts["web-1"][0];
        assert_eq!((web.series.name.as_str(), web.series.labels["instance"].as_str()), ("up", "web-1:9100"));
        let db = &hosts["db-1"];
        assert_eq!(db.len(), 2);
        assert_eq!(db[0].series.labels, Labels::from([("exported_tenant".to_string(), "x".to_string())]));
        assert_eq!(hosts["prometheus"][0].series.name, "job:rate:sum");
    }

    #[test]
    fn bodies_that_are_not_snappy_protobuf_or_lack_a_name_are_refused() {
        assert!(matches!(decode(b"plain text"), Err(RemoteWriteError::Snappy(_))));
        let not_protobuf = snap::raw::Encoder::new().compress_vec(&[0xff; 10]).unwrap();
        assert!(matches!(decode(&not_protobuf), Err(RemoteWriteError::Protobuf(_))));
        let nameless = WriteRequest { timeseries: vec![series(&[("job", "x")], &[(1, 1.0)])] };
        let error = samples_by_host(nameless).unwrap_err().to_string();
        assert!(error.contains("job=\"x\""), "{error}");
    }
}
