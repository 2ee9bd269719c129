//! `IngestBatch`: what an agent pushes in one go, its validation, and its conversion to and
//! from the wire type `proto::Batch`.

use std::borrow::Cow;
use std::collections::BTreeMap;

use crate::model::{
    CheckResult, CheckStatus, Event, HOST_LABEL, Labels, LogRecord, Sample, SeriesKey, Severity, TENANT_LABEL,
};
use crate::proto;

/// Largest number of values one batch may carry; larger batches are rejected.
pub const MAX_VALUES_PER_BATCH: usize = 1_000_000;
const MAX_ID_LEN: usize = 128;
/// Longest label value a batch may carry, in bytes.
pub const MAX_LABEL_VALUE_LEN: usize = 4096;
/// 2100-01-01 in milliseconds: anything later is a unit mistake (µs or ns).
const MAX_TIMESTAMP_MS: i64 = 4_102_444_800_000;

/// Why a batch cannot be accepted. The message names the offending part.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum BatchError {
    /// The agent id is empty or longer than 128 bytes.
    #[error("agent_id must be 1 to {MAX_ID_LEN} characters")]
    BadAgentId,
    /// The host is empty or longer than 128 bytes.
    #[error("host must be 1 to {MAX_ID_LEN} characters")]
    BadHost,
    /// A series name is not a Prometheus metric name.
    #[error("invalid metric name {0:?}: expected [a-zA-Z_:][a-zA-Z0-9_:]*")]
    BadMetricName(String),
    /// A label name is not a Prometheus label name.
    #[error("series {series}: invalid label name {label:?}: expected [a-zA-Z_][a-zA-Z0-9_]*")]
    BadLabelName {
        /// The series (or the part of the batch) carrying the label.
        series: String,
        /// The label name.
        label: String,
    },
    /// A label is `host` or `tenant`, which only the server sets.
    #[error("series {series}: label {label:?} is set by the server and may not be sent")]
    ReservedLabel {
        /// The series (or the part of the batch) carrying the label.
        series: String,
        /// The label name.
        label: String,
    },
    /// A label value is longer than 4096 bytes.
    #[error("series {series}: label {label:?} value longer than {MAX_LABEL_VALUE_LEN} bytes")]
    LabelValueTooLong {
        /// The series (or the part of the batch) carrying the label.
        series: String,
        /// The label name.
        label: String,
    },
    /// A series carries a different number of timestamps and values.
    #[error("series {series}: {timestamps} timestamps but {values} values")]
    LengthMismatch {
        /// The series name.
        series: String,
        /// How many timestamps it carries.
        timestamps: usize,
        /// How many values it carries.
        values: usize,
    },
    /// A timestamp is negative or after 2100 (seconds, µs or ns instead of milliseconds).
    #[error("{what}: timestamp {timestamp_ms} is not milliseconds since 1970 before 2100")]
    BadTimestamp {
        /// What carries it: a series name, check id, event kind, log source or batch field.
        what: String,
        /// The timestamp.
        timestamp_ms: i64,
    },
    /// The batch carries more than [`MAX_VALUES_PER_BATCH`] values.
    #[error("batch carries more than {MAX_VALUES_PER_BATCH} values")]
    TooLarge,
    /// A check result's status is unspecified on the wire.
    #[error("check {check_id:?}: status is unspecified")]
    MissingCheckStatus {
        /// The check's id.
        check_id: String,
    },
    /// A check result's details are not valid JSON.
    #[error("check {check_id:?}: details are not valid JSON: {reason}")]
    BadCheckDetails {
        /// The check's id.
        check_id: String,
        /// The JSON parser's message.
        reason: String,
    },
    /// An event's severity is unspecified on the wire.
    #[error("event {kind:?}: severity is unspecified")]
    MissingSeverity {
        /// The event's kind.
        kind: String,
    },
}

/// Everything one agent pushes in one batch, identified by `(agent_id, sequence)`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct IngestBatch {
    /// The sending agent's stable id (1 to 128 bytes).
    pub agent_id: String,
    /// The agent's sequence number for this batch; never reused, so a resent batch is
    /// recognised as a duplicate.
    pub sequence: u64,
    /// The agent's host name, stored as the `host` label (1 to 128 bytes).
    pub host: String,
    /// Labels from the agent's config, added to every series of the batch.
    pub agent_labels: Labels,
    /// When the agent made the batch, milliseconds since 1970.
    pub created_at_ms: i64,
    /// Metric samples.
    pub samples: Vec<Sample>,
    /// Probe check results (each with its own samples).
    pub check_results: Vec<CheckResult>,
    /// Discrete changes seen on the host.
    pub events: Vec<Event>,
    /// Log lines.
    pub logs: Vec<LogRecord>,
    /// When the sender sent it, by its clock; `None` from senders that do not say.
    pub clock: Option<ClockReading>,
}

/// A batch's send time by its sender's clock and its receive time by the receiver's: what
/// the receiver measures the sender's clock offset from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClockReading {
    /// The sender's clock when the batch went on the wire.
    pub sent_at_ms: i64,
    /// The sender's latest measured network round trip (0 when unknown).
    pub round_trip_ms: u32,
    /// The receiver's clock when the batch arrived; 0 until the receiver stamps it (it is
    /// not on the wire).
    pub received_at_ms: i64,
    /// How long the batch may have waited, already arrived, before the receiver read it and
    /// stamped `received_at_ms` (batches queued in a stream behind slow commits); 0 when
    /// the receiver was waiting for it. Its clock then read at most this much less than
    /// `sent_at_ms` suggests: the measured offset is a lower bound by this much. Not on the
    /// wire either.
    pub queued_ms: u32,
}

impl ClockReading {
    /// How far the sender's clock is ahead of the receiver's (negative: behind). When the
    /// batch arrived the sender's clock read its send time plus the way out, taken as half
    /// the round trip.
    pub fn offset_ms(&self) -> i64 {
        self.sent_at_ms.saturating_add(i64::from(self.round_trip_ms / 2)).saturating_sub(self.received_at_ms)
    }
}

impl IngestBatch {
    /// The key a sample's series is stored under: its own labels, the agent's labels (the
    /// series' own win on a clash), then `host` and `tenant`, which nobody else may set.
    pub fn stored_series_key(&self, tenant: &str, series: &SeriesKey) -> SeriesKey {
        let mut labels = self.agent_labels.clone();
        labels.extend(series.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
        labels.insert(HOST_LABEL.to_string(), self.host.clone());
        labels.insert(TENANT_LABEL.to_string(), tenant.to_string());
        SeriesKey::new(series.name.clone(), labels)
    }

    /// Every sample the batch adds to a series: its own, then those of its check results
    /// ([`CheckResult::metric_samples`]).
    pub fn metric_samples(&self) -> impl Iterator<Item = Cow<'_, Sample>> + Clone {
        self.samples
            .iter()
            .map(Cow::Borrowed)
            .chain(self.check_results.iter().flat_map(|c| c.metric_samples().into_iter().map(Cow::Owned)))
    }

    /// Number of sample values, including those of check results.
    pub fn value_count(&self) -> usize {
        self.samples.len() + self.check_results.iter().map(|c| c.samples.len()).sum::<usize>()
    }

    /// The wire message; [`IngestBatch::from_proto`] reads it back.
    pub fn to_proto(&self) -> proto::Batch {
        proto::Batch {
            agent_id: self.agent_id.clone(),
            sequence: self.sequence,
            host: self.host.clone(),
            agent_labels: to_map(&self.agent_labels),
            created_at_ms: self.created_at_ms,
            series: series_to_proto(&self.samples),
            check_results: self.check_results.iter().map(check_to_proto).collect(),
            events: self
                .events
                .iter()
                .map(|e| proto::Event {
                    timestamp_ms: e.timestamp_ms,
                    kind: e.kind.clone(),
                    severity: severity_to_proto(e.severity) as i32,
                    labels: to_map(&e.labels),
                    message: e.message.clone(),
                })
                .collect(),
            logs: self
                .logs
                .iter()
                .map(|l| proto::LogRecord {
                    timestamp_ms: l.timestamp_ms,
                    source: l.source.clone(),
                    labels: to_map(&l.labels),
                    line: l.line.clone(),
                })
                .collect(),
            sent_at_ms: self.clock.map_or(0, |c| c.sent_at_ms),
            round_trip_ms: self.clock.map_or(0, |c| c.round_trip_ms),
            // Stamped at every send by the push client, like `sent_at_ms`.
            ..Default::default()
        }
    }

    /// Moves every timestamp the batch carries (its creation, samples, check results and
    /// their samples, events, logs) by `delta_ms`: how a server re-stamps the batch of a
    /// sender whose clock is off. Changes nothing and fails when a moved timestamp would
    /// leave the valid range.
    pub fn shift_timestamps(&mut self, delta_ms: i64) -> Result<(), BatchError> {
        let mut invalid = None;
        self.visit_timestamps(|what, ts| {
            let moved = ts.saturating_add(delta_ms);
            if invalid.is_none() && check_timestamp(what, moved).is_err() {
                invalid = Some(BatchError::BadTimestamp { what: what.to_string(), timestamp_ms: moved });
            }
        });
        if let Some(error) = invalid {
            return Err(error);
        }
        self.visit_timestamps(|_, ts| *ts += delta_ms);
        Ok(())
    }

    /// The latest timestamp of the batch's contents (samples, check results, events, logs).
    pub fn latest_timestamp_ms(&self) -> Option<i64> {
        let samples = self.samples.iter().map(|s| s.timestamp_ms);
        let checks = self
            .check_results
            .iter()
            .flat_map(|c| std::iter::once(c.timestamp_ms).chain(c.samples.iter().map(|s| s.timestamp_ms)));
        let events = self.events.iter().map(|e| e.timestamp_ms);
        let logs = self.logs.iter().map(|l| l.timestamp_ms);
        samples.chain(checks).chain(events).chain(logs).max()
    }

    /// Calls `f` with a name and each timestamp of the batch.
    fn visit_timestamps(&mut self, mut f: impl FnMut(&str, &mut i64)) {
        if self.created_at_ms != 0 {
            f("created_at_ms", &mut self.created_at_ms);
        }
        for sample in &mut self.samples {
            f(&sample.series.name, &mut sample.timestamp_ms);
        }
        for check in &mut self.check_results {
            f(&check.check_id, &mut check.timestamp_ms);
            for sample in &mut check.samples {
                f(&sample.series.name, &mut sample.timestamp_ms);
            }
        }
        for event in &mut self.events {
            f(&event.kind, &mut event.timestamp_ms);
        }
        for log in &mut self.logs {
            f(&log.source, &mut log.timestamp_ms);
        }
    }

    /// Validates a wire batch and turns it into the model. Any invalid part rejects the
    /// whole batch, so a batch is stored entirely or not at all.
    pub fn from_proto(batch: proto::Batch) -> Result<Self, BatchError> {
        if batch.agent_id.is_empty() || batch.agent_id.len() > MAX_ID_LEN {
            return Err(BatchError::BadAgentId);
        }
        if batch.host.is_empty() || batch.host.len() > MAX_ID_LEN {
            return Err(BatchError::BadHost);
        }
        let agent_labels = labels_from_proto("agent labels", batch.agent_labels)?;
        let mut budget = MAX_VALUES_PER_BATCH;
        let samples = series_from_proto(batch.series, &mut budget)?;
        let check_results =
            batch.check_results.into_iter().map(|c| check_from_proto(c, &mut budget)).collect::<Result<_, _>>()?;
        let events = batch
            .events
            .into_iter()
            .map(|e| {
                check_timestamp(&e.kind, e.timestamp_ms)?;
                let severity = severity_from_proto(e.severity)
                    .ok_or_else(|| BatchError::MissingSeverity { kind: e.kind.clone() })?;
                Ok(Event {
                    timestamp_ms: e.timestamp_ms,
                    severity,
                    labels: labels_from_proto(&e.kind, e.labels)?,
                    kind: e.kind,
                    message: e.message,
                })
            })
            .collect::<Result<_, BatchError>>()?;
        let logs = batch
            .logs
            .into_iter()
            .map(|l| {
                check_timestamp(&l.source, l.timestamp_ms)?;
                Ok(LogRecord {
                    timestamp_ms: l.timestamp_ms,
                    labels: labels_from_proto(&l.source, l.labels)?,
                    source: l.source,
                    line: l.line,
                })
            })
            .collect::<Result<_, BatchError>>()?;
        let clock = if batch.sent_at_ms == 0 {
            None
        } else {
            check_timestamp("sent_at_ms", batch.sent_at_ms)?;
            Some(ClockReading {
                sent_at_ms: batch.sent_at_ms,
                round_trip_ms: batch.round_trip_ms,
                ..Default::default()
            })
        };
        Ok(Self {
            agent_id: batch.agent_id,
            sequence: batch.sequence,
            host: batch.host,
            agent_labels,
            created_at_ms: batch.created_at_ms,
            samples,
            check_results,
            events,
            logs,
            clock,
        })
    }
}

/// `true` for a Prometheus metric name.
pub fn is_valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `true` for a Prometheus label name.
pub fn is_valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn check_timestamp(what: &str, timestamp_ms: i64) -> Result<(), BatchError> {
    if (0..MAX_TIMESTAMP_MS).contains(&timestamp_ms) {
        Ok(())
    } else {
        Err(BatchError::BadTimestamp { what: what.to_string(), timestamp_ms })
    }
}

fn labels_from_proto(series: &str, labels: std::collections::HashMap<String, String>) -> Result<Labels, BatchError> {
    for (name, value) in &labels {
        if !is_valid_label_name(name) {
            return Err(BatchError::BadLabelName { series: series.into(), label: name.clone() });
        }
        if name == HOST_LABEL || name == TENANT_LABEL {
            return Err(BatchError::ReservedLabel { series: series.into(), label: name.clone() });
        }
        if value.len() > MAX_LABEL_VALUE_LEN {
            return Err(BatchError::LabelValueTooLong { series: series.into(), label: name.clone() });
        }
    }
    Ok(labels.into_iter().collect())
}

fn to_map(labels: &Labels) -> std::collections::HashMap<String, String> {
    labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// Groups samples by series so each series' labels travel once per batch.
fn series_to_proto(samples: &[Sample]) -> Vec<proto::SeriesSamples> {
    let mut grouped: BTreeMap<&SeriesKey, proto::SeriesSamples> = BTreeMap::new();
    for sample in samples {
        let entry = grouped.entry(&sample.series).or_insert_with(|| proto::SeriesSamples {
            name: sample.series.name.clone(),
            labels: to_map(&sample.series.labels),
            ..Default::default()
        });
        entry.timestamps_ms.push(sample.timestamp_ms);
        entry.values.push(sample.value);
    }
    grouped.into_values().collect()
}

fn series_from_proto(series: Vec<proto::SeriesSamples>, budget: &mut usize) -> Result<Vec<Sample>, BatchError> {
    let mut samples = Vec::new();
    for s in series {
        if !is_valid_metric_name(&s.name) {
            return Err(BatchError::BadMetricName(s.name));
        }
        if s.timestamps_ms.len() != s.values.len() {
            return Err(BatchError::LengthMismatch {
                series: s.name,
                timestamps: s.timestamps_ms.len(),
                values: s.values.len(),
            });
        }
        *budget = budget.checked_sub(s.values.len()).ok_or(BatchError::TooLarge)?;
        let key = SeriesKey::new(s.name.clone(), labels_from_proto(&s.name, s.labels)?);
        for (&timestamp_ms, &value) in s.timestamps_ms.iter().zip(&s.values) {
            check_timestamp(&key.name, timestamp_ms)?;
            samples.push(Sample { series: key.clone(), timestamp_ms, value });
        }
    }
    Ok(samples)
}

fn check_to_proto(c: &CheckResult) -> proto::CheckResult {
    proto::CheckResult {
        check_id: c.check_id.clone(),
        kind: c.kind.clone(),
        target: c.target.clone(),
        status: match c.status {
            CheckStatus::Ok => proto::CheckStatus::Ok,
            CheckStatus::Warning => proto::CheckStatus::Warning,
            CheckStatus::Critical => proto::CheckStatus::Critical,
            CheckStatus::Unknown => proto::CheckStatus::Unknown,
        } as i32,
        timestamp_ms: c.timestamp_ms,
        duration_us: c.duration_us,
        details_json: c.details.to_string(),
        samples: series_to_proto(&c.samples),
    }
}

fn check_from_proto(c: proto::CheckResult, budget: &mut usize) -> Result<CheckResult, BatchError> {
    let status = match proto::CheckStatus::try_from(c.status) {
        Ok(proto::CheckStatus::Ok) => CheckStatus::Ok,
        Ok(proto::CheckStatus::Warning) => CheckStatus::Warning,
        Ok(proto::CheckStatus::Critical) => CheckStatus::Critical,
        Ok(proto::CheckStatus::Unknown) => CheckStatus::Unknown,
        _ => {
            return Err(BatchError::MissingCheckStatus { check_id: c.check_id });
        }
    };
    check_timestamp(&c.check_id, c.timestamp_ms)?;
    let details = if c.details_json.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&c.details_json)
            .map_err(|e| BatchError::BadCheckDetails { check_id: c.check_id.clone(), reason: e.to_string() })?
    };
    Ok(CheckResult {
        samples: series_from_proto(c.samples, budget)?,
        check_id: c.check_id,
        kind: c.kind,
        target: c.target,
        status,
        timestamp_ms: c.timestamp_ms,
        duration_us: c.duration_us,
        details,
    })
}

fn severity_to_proto(s: Severity) -> proto::Severity {
    match s {
        Severity::Info => proto::Severity::Info,
        Severity::Low => proto::Severity::Low,
        Severity::Medium => proto::Severity::Medium,
        Severity::High => proto::Severity::High,
        Severity::Critical => proto::Severity::Critical,
    }
}

fn severity_from_proto(value: i32) -> Option<Severity> {
    match proto::Severity::try_from(value).ok()? {
        proto::Severity::Unspecified => None,
        proto::Severity::Info => Some(Severity::Info),
        proto::Severity::Low => Some(Severity::Low),
        proto::Severity::Medium => Some(Severity::Medium),
        proto::Severity::High => Some(Severity::High),
        proto::Severity::Critical => Some(Severity::Critical),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch() -> IngestBatch {
        let core = Labels::from([("core".to_string(), "0".to_string())]);
        IngestBatch {
            agent_id: "a1".into(),
            sequence: 7,
            host: "web-1".into(),
            agent_labels: Labels::from([("env".to_string(), "prod".to_string())]),
            created_at_ms: 1_700_000_000_000,
            samples: vec![
                Sample::new("cpu_core_usage_ratio", core.clone(), 1_700_000_000_000, 0.25),
                Sample::new("load1", Labels::new(), 1_700_000_000_000, 1.5),
                Sample::new("cpu_core_usage_ratio", core, 1_700_000_001_000, f64::NAN),
            ],
            check_results: vec![CheckResult {
                check_id: "web".into(),
                kind: "http".into(),
                target: "https://127.0.0.1/".into(),
                status: CheckStatus::Warning,
                timestamp_ms: 1_700_000_000_000,
                duration_us: 1234,
                details: serde_json::json!({"status": 200}),
                samples: vec![Sample::new("http_duration_seconds", Labels::new(), 1, 0.1)],
            }],
            events: vec![Event {
                timestamp_ms: 5,
                kind: "service_down".into(),
                severity: Severity::High,
                labels: Labels::new(),
                message: "nginx stopped".into(),
            }],
            logs: vec![LogRecord {
                timestamp_ms: 6,
                source: "/var/log/syslog".into(),
                labels: Labels::new(),
                line: "hello".into(),
            }],
            clock: Some(ClockReading { sent_at_ms: 1_700_000_002_000, round_trip_ms: 40, ..Default::default() }),
        }
    }

    #[test]
    fn round_trips_through_the_wire_type() {
        let original = batch();
        let back = IngestBatch::from_proto(original.to_proto()).expect("valid batch");
        assert_eq!(back.samples.len(), 3);
        assert_eq!(back.check_results, original.check_results);
        assert_eq!(back.events, original.events);
        assert_eq!(back.logs, original.logs);
        let nan = back.samples.iter().find(|s| s.timestamp_ms == 1_700_000_001_000).unwrap();
        assert!(nan.value.is_nan(), "NaN survives the wire");
    }

    #[test]
    fn rejects_reserved_and_invalid_names() {
        let mut wire = batch().to_proto();
        wire.series[0].labels.insert("tenant".into(), "other".into());
        assert!(matches!(
            IngestBatch::from_proto(wire),
            Err(BatchError::ReservedLabel { label, .. }) if label == "tenant"
        ));

        let mut wire = batch().to_proto();
        wire.series[0].name = "9bad name".into();
        assert_eq!(IngestBatch::from_proto(wire), Err(BatchError::BadMetricName("9bad name".into())));
    }

    #[test]
    fn rejects_mismatched_lengths_and_microsecond_timestamps() {
        let mut wire = batch().to_proto();
        wire.series[0].values.pop();
        assert!(matches!(IngestBatch::from_proto(wire), Err(BatchError::LengthMismatch { .. })));

        let mut wire = batch().to_proto();
        wire.series[0].timestamps_ms[0] = 1_700_000_000_000_000;
        assert!(matches!(IngestBatch::from_proto(wire), Err(BatchError::BadTimestamp { .. })));
    }

    #[test]
    fn clock_reading_travels_and_measures_the_offset() {
        let back = IngestBatch::from_proto(batch().to_proto()).unwrap();
        assert_eq!(back.clock, batch().clock);
        let mut old_sender = batch().to_proto();
        old_sender.sent_at_ms = 0;
        assert_eq!(IngestBatch::from_proto(old_sender).unwrap().clock, None);
        let mut garbage = batch().to_proto();
        garbage.sent_at_ms = -5;
        assert!(matches!(IngestBatch::from_proto(garbage), Err(BatchError::BadTimestamp { .. })));

        // Sent at 10:00:00.000 by a clock 2 h ahead, 20 ms on the way, received at 08:00:00.020.
        let two_hours = 7_200_000;
        let reading = ClockReading {
            sent_at_ms: 36_000_000,
            round_trip_ms: 40,
            received_at_ms: 36_000_020 - two_hours,
            queued_ms: 0,
        };
        assert_eq!(reading.offset_ms(), two_hours);
        let behind = ClockReading {
            sent_at_ms: 36_000_000,
            round_trip_ms: 0,
            received_at_ms: 36_000_000 + two_hours,
            queued_ms: 0,
        };
        assert_eq!(behind.offset_ms(), -two_hours);
    }

    #[test]
    fn shift_moves_every_timestamp_or_none() {
        let mut shifted = batch();
        shifted.shift_timestamps(1_000).unwrap();
        let original = batch();
        assert_eq!(shifted.created_at_ms, original.created_at_ms + 1_000);
        for (a, b) in shifted.samples.iter().zip(&original.samples) {
            assert_eq!(a.timestamp_ms, b.timestamp_ms + 1_000);
        }
        assert_eq!(shifted.check_results[0].timestamp_ms, original.check_results[0].timestamp_ms + 1_000);
        assert_eq!(shifted.check_results[0].samples[0].timestamp_ms, 1_001);
        assert_eq!(shifted.events[0].timestamp_ms, 1_005);
        assert_eq!(shifted.logs[0].timestamp_ms, 1_006);
        assert_eq!(original.latest_timestamp_ms(), Some(1_700_000_001_000));
        assert_eq!(IngestBatch::default().latest_timestamp_ms(), None);

        // The check result's sample sits at 1 ms: moving it before 1970 fails, and changes nothing.
        let mut unmovable = batch();
        let error = unmovable.shift_timestamps(-2).unwrap_err();
        assert!(
            matches!(error, BatchError::BadTimestamp { ref what, .. } if what == "http_duration_seconds"),
            "{error}"
        );
        assert_eq!(format!("{unmovable:?}"), format!("{:?}", batch()), "nothing moved (NaN makes == useless)");
    }

    #[test]
    fn stored_key_adds_agent_labels_host_and_tenant() {
        let b = batch();
        let key = b.stored_series_key("acme", &b.samples[0].series);
        assert_eq!(key.to_string(), r#"cpu_core_usage_ratio{core="0",env="prod",host="web-1",tenant="acme"}"#);
    }
}
