//! The server's own health stored as series, so rules, queries and the console see it like
//! any host's: every `/metrics` value (ingest outcomes, store write time and faults,
//! notification queue and failures, open push streams, stream clients…) plus the process'
//! resident memory, CPU time and open descriptors, written every interval as a batch of the
//! host `secumon-server` (label `instance` = this machine's name, agent id
//! `server:<machine>`, which no enrolled agent can take) through the same sink as agents'
//! batches: stored, seen by the default tenant's alert rules and the live stream.
//!
//! While the store refuses writes these batches fail like everyone's; the store's own
//! writability reaches the alert engine separately (`self_monitor`).

use std::time::Duration;

use secumon_core::model::{HOST_LABEL, TENANT_LABEL};
use secumon_core::{IngestBatch, Labels, Sample, now_ms};
use secumon_store::DEFAULT_TENANT;
use secumon_transport::{BatchSink, Peer};
use tokio::sync::watch;

/// How the agent ids of the server's own series begin (`server:MACHINE`): the server is not
/// a monitored host (reports leave it out).
pub const AGENT_ID_PREFIX: &str = "server:";

/// The host name the server's own series carry.
pub const SERVER_HOST: &str = "secumon-server";

/// How often the server writes its health as series.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

/// This process' resident memory, CPU time and open descriptors in the exposition format,
/// under Prometheus' usual names; empty where /proc cannot be read.
pub fn process_exposition() -> String {
    let mut out = String::new();
    let page = rustix::param::page_size() as f64;
    let ticks = match rustix::param::clock_ticks_per_second() {
        0 => 100.0,
        ticks => ticks as f64,
    };
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    if let Some(resident) = statm.split_whitespace().nth(1).and_then(|p| p.parse::<f64>().ok()) {
        out.push_str(&format!(
            "# HELP process_resident_memory_bytes Resident memory of the server process.\n\
             # TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {}\n",
            resident * page
        ));
    }
    // utime and stime are fields 14 and 15; the name (field 2) may hold spaces, so count
    // from the closing parenthesis.
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    if let (Some(user), Some(system)) =
        (fields.get(11).and_then(|f| f.parse::<f64>().ok()), fields.get(12).and_then(|f| f.parse::<f64>().ok()))
    {
        out.push_str(&format!(
            "# HELP process_cpu_seconds_total CPU time the server process used (user and system).\n\
             # TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total {}\n",
            (user + system) / ticks
        ));
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        out.push_str(&format!(
            "# HELP process_open_fds Open file descriptors of the server process.\n\
             # TYPE process_open_fds gauge\nprocess_open_fds {}\n",
            fds.count()
        ));
    }
    out
}

/// The samples of an exposition text (as `/metrics` writes it), each with `labels` added
/// to its own, stamped `timestamp_ms`. A text that does not parse gives none (and is logged:
/// the server wrote it itself).
pub fn samples_from_exposition(text: &str, labels: &Labels, timestamp_ms: i64) -> Vec<Sample> {
    let exposed = match secumon_core::exposition::parse(text) {
        Ok(exposed) => exposed,
        Err(error) => {
            tracing::error!(%error, "the server's own /metrics text does not parse");
            return Vec::new();
        }
    };
    exposed
        .into_iter()
        .map(|sample| {
            let mut all = labels.clone();
            // `host` and `tenant` are the stored series' own (this host, the default
            // tenant): a metric's per-tenant label is kept as `of_tenant`.
            all.extend(sample.labels.into_iter().map(|(key, value)| match key.as_str() {
                HOST_LABEL | TENANT_LABEL => (format!("of_{key}"), value),
                _ => (key, value),
            }));
            Sample::new(sample.name, all, timestamp_ms, sample.value)
        })
        .collect()
}

/// Writes the server's health through `sink` every `interval` until `stopped`; `render`
/// gives the `/metrics` text. `process` tells apart several server processes of one machine
/// (a scale-out's roles): it is added to the `instance` label and the agent id.
pub async fn run<S: BatchSink>(
    sink: std::sync::Arc<S>,
    render: impl Fn() -> String + Send + 'static,
    interval: Duration,
    mut stopped: watch::Receiver<bool>,
    process: Option<String>,
) {
    let mut machine = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim().to_string();
    if let Some(process) = process {
        machine = format!("{machine}/{process}");
    }
    let agent_id = format!("{AGENT_ID_PREFIX}{machine}");
    let labels = Labels::from([("instance".to_string(), machine)]);
    let peer = Peer { tenant: Some(DEFAULT_TENANT.to_string()), agent_id: None };
    // Sequences from the clock, so a restarted server never reuses one.
    let mut sequence = 0u64;
    let mut failing = false;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stopped.wait_for(|stop| *stop) => return,
            _ = ticker.tick() => {}
        }
        let now = now_ms();
        sequence = (sequence + 1).max(now.max(0) as u64);
        let mut text = render();
        text.push_str(&process_exposition());
        let batch = IngestBatch {
            agent_id: agent_id.clone(),
            sequence,
            host: SERVER_HOST.to_string(),
            agent_labels: labels.clone(),
            created_at_ms: now,
            samples: samples_from_exposition(&text, &labels, now),
            ..Default::default()
        };
        match sink.commit(&peer, batch).await {
            Ok(_) if failing => {
                failing = false;
                tracing::info!("the server's own series are stored again");
            }
            Ok(_) => {}
            Err(error) if !failing => {
                failing = true;
                tracing::warn!(%error, "cannot store the server's own series; trying again every interval");
            }
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_lines_become_samples_with_their_labels() {
        let text = "# HELP a An a.\n# TYPE a counter\na 3\n\
                    b{outcome=\"committed\"} 1.5\nc{x=\"q\\\"uo,te\",y=\"two\"} -2\n\
                    d{tenant=\"acme\"} 7\n";
        let labels = Labels::from([("instance".to_string(), "m1".to_string())]);
        let samples = samples_from_exposition(text, &labels, 42);
        assert!(samples_from_exposition("a 1\nnot a line\n", &labels, 42).is_empty(), "a text that does not parse");
        // Name, labels, value of each sample.
        type Found = Vec<(String, Vec<(String, String)>, f64)>;
        let found: Found = samples
            .iter()
            .map(|s| (s.series.name.clone(), s.series.labels.clone().into_iter().collect(), s.value))
            .collect();
        let pair = |k: &str, v: &str| (k.to_string(), v.to_string());
        assert_eq!(
            found,
            vec![
                ("a".to_string(), vec![pair("instance", "m1")], 3.0),
                ("b".to_string(), vec![pair("instance", "m1"), pair("outcome", "committed")], 1.5),
                ("c".to_string(), vec![pair("instance", "m1"), pair("x", "q\"uo,te"), pair("y", "two")], -2.0),
                ("d".to_string(), vec![pair("instance", "m1"), pair("of_tenant", "acme")], 7.0),
            ]
        );
        assert!(samples.iter().all(|s| s.timestamp_ms == 42));
    }

    #[test]
    fn the_process_is_measured() {
        // Use some CPU first: a fresh test process may not have used a clock tick yet.
        let started = std::time::Instant::now();
        let mut spin = 0u64;
        while started.elapsed() < Duration::from_millis(200) {
            spin = std::hint::black_box(spin.wrapping_add(1));
        }
        let text = process_exposition();
        let samples = samples_from_exposition(&text, &Labels::new(), 0);
        let value = |name: &str| samples.iter().find(|s| s.series.name == name).map(|s| s.value);
        assert!(value("process_resident_memory_bytes").is_some_and(|v| v > 1e6), "{text}");
        assert!(value("process_cpu_seconds_total").is_some_and(|v| v > 0.0), "{text}");
        assert!(value("process_open_fds").is_some_and(|v| v >= 3.0), "{text}");
    }
}
