//! Benchmarks only; see `benches/`.

use std::fmt::Write as _;

use secumon_core::Sample;

/// Samples in Prometheus' text exposition with timestamps (ms), as VictoriaMetrics'
/// `/api/v1/import/prometheus` takes them: the benchmarks feed it the data they feed
/// SecuMon, to query both the same way.
pub fn exposition_with_timestamps(samples: &[Sample]) -> String {
    let mut out = String::with_capacity(samples.len() * 96);
    for sample in samples {
        out.push_str(&sample.series.name);
        out.push('{');
        for (i, (name, value)) in sample.series.labels.iter().enumerate() {
            let value = value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
            let _ = write!(out, "{}{name}=\"{value}\"", if i == 0 { "" } else { "," });
        }
        let _ = writeln!(out, "}} {} {}", sample.value, sample.timestamp_ms);
    }
    out
}
