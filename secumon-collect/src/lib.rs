//! Host collectors for the SecuMon agent. Each [`Collector`] reads the kernel's own
//! accounting (`/proc`, `statvfs`) and appends samples in base units with Prometheus-style
//! names; [`collectors_for`] builds the set a configuration asks for.
//!
//! ```
//! use secumon_collect::collectors_for;
//! use secumon_core::config::{MetricFamily, MetricsSection};
//! let metrics = MetricsSection { enabled: vec![MetricFamily::Memory], ..Default::default() };
//! let mut collectors = collectors_for(&metrics);
//! let mut samples = Vec::new();
//! collectors[0].collect(secumon_core::now_ms(), &mut samples).unwrap();
//! assert!(samples.iter().any(|s| s.series.name == "memory_total_bytes"));
//! ```
//!
//! The `/proc` files are parsed here rather than through the `procfs` crate: they are a few
//! lines of whitespace-separated numbers, parsing from `&str` makes every collector testable
//! on fixture text, and the agent stays smaller.

#![warn(missing_docs)]

mod cpu;
mod diskio;
mod docker;
mod filesystem;
mod logs;
mod memory;
mod network;
mod processes;
mod services;
mod sockdiag;

use std::path::{Path, PathBuf};

pub use cpu::{CpuCollector, LoadCollector};
pub use diskio::DiskIoCollector;
pub use docker::DockerCollector;
pub use filesystem::FilesystemCollector;
pub use logs::{DEFAULT_ROTATION_GRACE, LogError, LogTailer};
pub use memory::MemoryCollector;
pub use network::NetworkCollector;
pub use processes::ProcessCollector;
use secumon_core::Sample;
use secumon_core::config::{MetricFamily, MetricsSection};
pub use services::ServiceCollector;

/// Why a collector produced nothing this cycle.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CollectError {
    /// A kernel file (or the Docker socket) could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file or socket path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file was read but its content was not what the collector expects.
    #[error("cannot parse {path}: {reason}")]
    Parse {
        /// The file (or API path) whose content was malformed.
        path: String,
        /// What was wrong with it.
        reason: String,
    },
    /// This machine has no such thing to collect (no systemd, no Docker): the agent says so
    /// once and the collector retries rarely.
    #[error("{collector} unavailable: {reason}")]
    Unavailable {
        /// The collector's [`Collector::name`].
        collector: &'static str,
        /// Why, as the system said it.
        reason: String,
    },
}

/// A source of host samples, run once per agent cycle.
pub trait Collector: Send {
    /// Short stable name, e.g. `cpu`.
    fn name(&self) -> &'static str;
    /// Appends this cycle's samples, all stamped `timestamp_ms`.
    fn collect(&mut self, timestamp_ms: i64, out: &mut Vec<Sample>) -> Result<(), CollectError>;
}

/// The collectors `metrics.enabled` asks for, reading the real `/proc`.
pub fn collectors_for(metrics: &MetricsSection) -> Vec<Box<dyn Collector>> {
    let proc = Path::new("/proc");
    let mut collectors: Vec<Box<dyn Collector>> = Vec::new();
    let mut families: Vec<MetricFamily> = Vec::new();
    for family in &metrics.enabled {
        if !families.contains(family) {
            families.push(*family);
        }
    }
    for family in families {
        match family {
            MetricFamily::Cpu => {
                collectors.push(Box::new(CpuCollector::new(proc)));
                collectors.push(Box::new(LoadCollector::new(proc)));
            }
            MetricFamily::Memory => collectors.push(Box::new(MemoryCollector::new(proc))),
            MetricFamily::Disk => {
                collectors.push(Box::new(FilesystemCollector::new(proc, &metrics.include_fstypes)));
                collectors.push(Box::new(DiskIoCollector::new(proc)));
            }
            MetricFamily::Network => collectors.push(Box::new(NetworkCollector::new(proc).with_sock_diag())),
            MetricFamily::Processes => collectors.push(Box::new(ProcessCollector::new(proc, metrics.top_processes))),
            MetricFamily::Services => collectors.push(Box::new(ServiceCollector::new(&metrics.services))),
            MetricFamily::Containers => collectors.push(Box::new(DockerCollector::new(&metrics.docker_socket))),
        }
    }
    collectors
}

/// Reads a whole file under a proc root, naming it in the error.
fn read_proc(root: &Path, relative: &str) -> Result<(PathBuf, String), CollectError> {
    let path = root.join(relative);
    let text = std::fs::read_to_string(&path)
        .map_err(|source| CollectError::Read { path: path.display().to_string(), source })?;
    Ok((path, text))
}

fn parse_error(path: &Path, reason: impl Into<String>) -> CollectError {
    CollectError::Parse { path: path.display().to_string(), reason: reason.into() }
}
