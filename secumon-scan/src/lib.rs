//! SecuMon's probe checks. Each check implements [`Check`]; [`run_check`] runs one with a
//! timeout and turns whatever happens (success, a failed expectation, an unresolvable name,
//! a timeout) into a [`CheckResult`](secumon_core::CheckResult), never a panic or an error.
//! The [`Scheduler`] runs many on their intervals under a global concurrency limit. Every
//! check is described by a spec ([`CheckSpec`]) that `probe.yaml`, the CLI and the Python
//! bindings build from. A result's details are JSON; [`CheckDetails::from_result`] reads
//! them as the typed details of the check's kind.
//!
//! Features, one per check family (all on by default): `dns`, `http` (with `tls`), `snmp`,
//! `tls`, `trace`. Ping and TCP/UDP port scans are always built.
//!
//! ```no_run
//! # async fn demo() {
//! use std::time::Duration;
//! use secumon_scan::{PortList, TcpScan, run_check};
//! let scan = TcpScan::new("web", "127.0.0.1", PortList::parse("22,80,8000-8100").unwrap());
//! let result = run_check(&scan, Duration::from_secs(30)).await;
//! println!("{:?}: {}", result.status, result.details);
//! # }
//! ```

#![warn(missing_docs)]

mod check;
mod config;
mod details;
#[cfg(feature = "dns")]
mod dns;
#[cfg(feature = "http")]
mod http;
mod ping;
mod ports;
#[cfg(feature = "http")]
mod prometheus;
mod render;
mod scheduler;
#[cfg(feature = "snmp")]
pub mod snmp;
mod spec;
#[cfg(feature = "tls")]
pub mod tls;
#[cfg(feature = "trace")]
mod trace;

pub use check::{Check, CheckError, Outcome, run_check};
pub use config::{CheckConfig, ProbeConfig, ProbeSection};
pub use details::CheckDetails;
#[cfg(feature = "dns")]
pub use dns::{
    DnsAnswer, DnsCheck, DnsDetails, DnsSpec, RECORD_TYPES, TxtString, query as dns_query, record_type,
    resolver_address,
};
#[cfg(feature = "http")]
pub use http::{
    DEFAULT_USER_AGENT, HttpCheck, HttpDetails, HttpResponse, HttpSpec, Redirect, Timings, TlsSummary,
    request as http_request,
};
pub use ping::{PingCheck, PingSpec, PingStats, ping};
pub use ports::{
    PortList, PortReport, PortState, PortsDetails, PortsSpec, TcpScan, UdpScan, port_outcome, scan_tcp,
    scan_tcp_with_progress, scan_udp,
};
#[cfg(feature = "http")]
pub use prometheus::{DEFAULT_MAX_SERIES, PrometheusCheck, PrometheusSpec, ScrapeDetails};
pub use render::render_text;
pub use scheduler::{ScheduledCheck, Scheduler};
#[cfg(feature = "snmp")]
pub use snmp::{
    Credentials, SnmpCheck, SnmpClient, SnmpDetails, SnmpGetDetails, SnmpInterface, SnmpSpec, SnmpValue, SnmpVariable,
};
pub use spec::{CheckSpec, Progress, check_types, host_port};
#[cfg(feature = "tls")]
pub use tls::{StartTls, TlsCheck, TlsOptions, TlsReport, TlsSpec, analyse as analyse_tls};
#[cfg(feature = "trace")]
pub use trace::{
    Hop, TraceCheck, TraceDetails, TraceMode, TraceOptions, TraceReport, TraceSpec, Unreachable, trace,
    unreachable_reason,
};
