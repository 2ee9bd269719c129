//! SecuMon's probe checks. Each check implements [`Check`]; [`run_check`] runs one with a
//! timeout and turns whatever happens (success, a failed expectation, an unresolvable name,
//! a timeout) into a [`CheckResult`], never a panic or an error. The [`Scheduler`] runs many
//! on their intervals under a global concurrency limit.
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

mod check;
mod config;
mod dns;
mod http;
mod ping;
mod ports;
mod render;
mod scheduler;
pub mod snmp;
mod spec;
pub mod tls;
mod trace;

pub use check::{Check, CheckError, Outcome, run_check};
pub use config::{CheckConfig, ProbeConfig, ProbeSection};
pub use dns::{DnsAnswer, DnsCheck, DnsSpec, RECORD_TYPES, query as dns_query, record_type, resolver_address};
pub use http::{DEFAULT_USER_AGENT, HttpCheck, HttpResponse, HttpSpec, Timings, TlsSummary, request as http_request};
pub use ping::{PingCheck, PingSpec, PingStats, ping};
pub use ports::{
    PortList, PortReport, PortState, PortsSpec, TcpScan, UdpScan, port_outcome, scan_tcp, scan_tcp_with_progress,
    scan_udp,
};
pub use render::render_text;
pub use scheduler::{ScheduledCheck, Scheduler};
pub use snmp::{Credentials, SnmpCheck, SnmpClient, SnmpSpec, SnmpValue};
pub use spec::{CHECK_TYPES, CheckSpec, Progress, host_port};
pub use tls::{StartTls, TlsCheck, TlsOptions, TlsReport, TlsSpec, analyse as analyse_tls};
pub use trace::{
    Hop, TraceCheck, TraceMode, TraceOptions, TraceReport, TraceSpec, Unreachable, trace, unreachable_reason,
};
