//! SecuMon's shared vocabulary: the data model (samples and series, check results, events,
//! log records, findings), the configuration schema, and the wire protocol `secumon.v1`.
//! It does no I/O beyond reading a configuration file, so every other crate can depend on it.
//!
//! ```
//! use secumon_core::{IngestBatch, Labels, Sample};
//!
//! let batch = IngestBatch {
//!     agent_id: "4f1c".into(),
//!     sequence: 1,
//!     host: "web-1".into(),
//!     samples: vec![Sample::new("load1", Labels::new(), 1_700_000_000_000, 0.42)],
//!     ..Default::default()
//! };
//! let wire = batch.to_proto();
//! assert_eq!(IngestBatch::from_proto(wire).unwrap(), batch);
//! ```

#![warn(missing_docs)]

pub mod batch;
pub mod config;
pub mod exposition;
pub mod managed;
pub mod model;
pub mod rules;
#[doc(hidden)]
pub mod testing;

/// Generated protobuf messages of package `secumon.v1`.
pub mod proto {
    #![allow(clippy::all, missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/secumon.v1.rs"));
}

pub use batch::{BatchError, ClockReading, IngestBatch};
pub use config::{AgentConfig, ConfigError};
pub use model::{
    CheckResult, CheckStatus, Event, Finding, FindingStatus, Labels, LogRecord, Sample, SeriesKey, Severity, now_ms,
};
