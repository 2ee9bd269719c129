//! Collects this host once with the agent's default collectors and prints every sample as
//! `name{labels} value`, the way the agent would push them.
//!
//! ```text
//! cargo run -p secumon-collect --example collect_once
//! ```
//!
//! CPU and network figures are rates: the first call only primes them, so it collects
//! twice, a second apart.

use std::time::Duration;

use secumon_collect::collectors_for;
use secumon_core::config::MetricsSection;

fn main() {
    let mut collectors = collectors_for(&MetricsSection::default());
    let mut samples = Vec::new();
    for round in 0..2 {
        samples.clear();
        for collector in &mut collectors {
            if let Err(error) = collector.collect(secumon_core::now_ms(), &mut samples) {
                eprintln!("a collector failed: {error}");
            }
        }
        if round == 0 {
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    samples.sort_by(|a, b| (&a.series.name, &a.series.labels).cmp(&(&b.series.name, &b.series.labels)));
    for sample in &samples {
        let labels: Vec<String> = sample.series.labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
        println!("{}{{{}}} {}", sample.series.name, labels.join(","), sample.value);
    }
    eprintln!("{} samples", samples.len());
}
