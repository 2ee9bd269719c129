//! CPU time per mode and usage ratios, total and per core, from `/proc/stat`; load
//! averages from `/proc/loadavg`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use secumon_core::{Labels, Sample};

use crate::{CollectError, Collector, parse_error, read_proc};

const MODES: [&str; 8] = ["user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"];

/// Kernel ticks per mode, in `MODES` order. Guest time is already inside user and nice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct CpuTicks([u64; 8]);

impl CpuTicks {
    fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// Everything but idle and iowait.
    fn busy(&self) -> u64 {
        self.total() - self.0[3] - self.0[4]
    }

    /// Share of time busy between `earlier` and `self`; `None` if no time passed or a
    /// counter went backwards (CPU hot-unplug, counter reset).
    fn usage_since(&self, earlier: &CpuTicks) -> Option<f64> {
        if self.0.iter().zip(earlier.0.iter()).any(|(now, before)| now < before) {
            return None;
        }
        let total = self.total() - earlier.total();
        let busy = self.busy().saturating_sub(earlier.busy());
        (total > 0).then(|| (busy as f64 / total as f64).clamp(0.0, 1.0))
    }
}

/// `/proc/stat`'s CPU lines: the machine total and each core by number.
#[derive(Debug, Clone, PartialEq, Default)]
struct CpuStat {
    total: CpuTicks,
    cores: Vec<(String, CpuTicks)>,
    context_switches: Option<u64>,
    interrupts: Option<u64>,
}

fn parse_stat(path: &Path, text: &str) -> Result<CpuStat, CollectError> {
    let mut stat = CpuStat::default();
    let mut seen_total = false;
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace();
        let Some(label) = fields.next() else { continue };
        match label {
            "ctxt" => stat.context_switches = fields.next().and_then(|n| n.parse().ok()),
            "intr" => stat.interrupts = fields.next().and_then(|n| n.parse().ok()),
            _ => {}
        }
        if !label.starts_with("cpu") {
            continue;
        }
        let mut ticks = CpuTicks::default();
        for (slot, field) in ticks.0.iter_mut().zip(fields) {
            *slot = field.parse().map_err(|_| parse_error(path, format!("bad number {field:?} in {label}")))?;
        }
        match &label[3..] {
            "" => {
                stat.total = ticks;
                seen_total = true;
            }
            core if core.bytes().all(|b| b.is_ascii_digit()) => stat.cores.push((core.to_string(), ticks)),
            _ => {}
        }
    }
    if seen_total { Ok(stat) } else { Err(parse_error(path, "no cpu line")) }
}

/// `cpu_seconds_total{mode}`, `cpu_core_seconds_total{core,mode}`, `cpu_mode_ratio{mode}`, `cpu_usage_ratio`,
/// `cpu_core_usage_ratio{core}`, `cpu_cores`, `cpu_context_switches_total`,
/// `cpu_interrupts_total`.
pub struct CpuCollector {
    root: PathBuf,
    ticks_per_second: f64,
    previous: Option<(CpuTicks, HashMap<String, CpuTicks>)>,
}

impl CpuCollector {
    /// A collector reading `proc_root` (`/proc` on the host; a fixture tree in tests).
    pub fn new(proc_root: &Path) -> Self {
        let ticks = rustix::param::clock_ticks_per_second();
        Self {
            root: proc_root.to_path_buf(),
            ticks_per_second: if ticks == 0 { 100.0 } else { ticks as f64 },
            previous: None,
        }
    }
}

impl Collector for CpuCollector {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn collect(&mut self, timestamp_ms: i64, out: &mut Vec<Sample>) -> Result<(), CollectError> {
        let (path, text) = read_proc(&self.root, "stat")?;
        let stat = parse_stat(&path, &text)?;
        for (mode, ticks) in MODES.iter().zip(stat.total.0) {
            let labels = Labels::from([("mode".to_string(), mode.to_string())]);
            out.push(Sample::new("cpu_seconds_total", labels, timestamp_ms, ticks as f64 / self.ticks_per_second));
        }
        for (core, ticks) in &stat.cores {
            for (mode, value) in MODES.iter().zip(ticks.0) {
                let labels = Labels::from([("core".to_string(), core.clone()), ("mode".to_string(), mode.to_string())]);
                out.push(Sample::new(
                    "cpu_core_seconds_total",
                    labels,
                    timestamp_ms,
                    value as f64 / self.ticks_per_second,
                ));
            }
        }
        out.push(Sample::new("cpu_cores", Labels::new(), timestamp_ms, stat.cores.len() as f64));
        if let Some(n) = stat.context_switches {
            out.push(Sample::new("cpu_context_switches_total", Labels::new(), timestamp_ms, n as f64));
        }
        if let Some(n) = stat.interrupts {
            out.push(Sample::new("cpu_interrupts_total", Labels::new(), timestamp_ms, n as f64));
        }
        if let Some((total_before, cores_before)) = &self.previous {
            if let Some(ratio) = stat.total.usage_since(total_before) {
                out.push(Sample::new("cpu_usage_ratio", Labels::new(), timestamp_ms, ratio));
                let elapsed = (stat.total.total() - total_before.total()) as f64;
                for (i, mode) in MODES.iter().enumerate() {
                    let share = (stat.total.0[i] - total_before.0[i]) as f64 / elapsed;
                    let labels = Labels::from([("mode".to_string(), mode.to_string())]);
                    out.push(Sample::new("cpu_mode_ratio", labels, timestamp_ms, share));
                }
            }
            for (core, ticks) in &stat.cores {
                if let Some(ratio) = cores_before.get(core).and_then(|before| ticks.usage_since(before)) {
                    let labels = Labels::from([("core".to_string(), core.clone())]);
                    out.push(Sample::new("cpu_core_usage_ratio", labels, timestamp_ms, ratio));
                }
            }
        }
        self.previous = Some((stat.total, stat.cores.into_iter().collect()));
        Ok(())
    }
}

/// `load1`, `load5`, `load15`.
pub struct LoadCollector {
    root: PathBuf,
}

impl LoadCollector {
    /// A collector reading `proc_root` (`/proc` on the host; a fixture tree in tests).
    pub fn new(proc_root: &Path) -> Self {
        Self { root: proc_root.to_path_buf() }
    }
}

impl Collector for LoadCollector {
    fn name(&self) -> &'static str {
        "load"
    }

    fn collect(&mut self, timestamp_ms: i64, out: &mut Vec<Sample>) -> Result<(), CollectError> {
        let (path, text) = read_proc(&self.root, "loadavg")?;
        let mut fields = text.split_ascii_whitespace();
        for name in ["load1", "load5", "load15"] {
            let field = fields.next().ok_or_else(|| parse_error(&path, "fewer than three load averages"))?;
            let value: f64 = field.parse().map_err(|_| parse_error(&path, format!("bad load average {field:?}")))?;
            out.push(Sample::new(name, Labels::new(), timestamp_ms, value));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT_1: &str = "cpu  1000 10 500 8000 100 20 30 40 0 0\n\
cpu0 600 5 300 3900 50 10 15 20 0 0\n\
cpu1 400 5 200 4100 50 10 15 20 0 0\n\
intr 12345 0 0\nctxt 999\nbtime 1700000000\nprocesses 42\n";
    const STAT_2: &str = "cpu  1300 10 600 8500 100 20 30 40 0 0\n\
cpu0 850 5 350 4000 50 10 15 20 0 0\n\
cpu1 450 5 250 4500 50 10 15 20 0 0\n";

    fn proc_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    fn value(samples: &[Sample], name: &str, label: Option<(&str, &str)>) -> Option<f64> {
        samples
            .iter()
            .find(|s| {
                s.series.name == name
                    && label.is_none_or(|(k, v)| s.series.labels.get(k).map(String::as_str) == Some(v))
            })
            .map(|s| s.value)
    }

    #[test]
    fn usage_ratios_come_from_the_second_cycle() {
        let dir = proc_dir(&[("stat", STAT_1)]);
        let mut cpu = CpuCollector::new(dir.path());
        cpu.ticks_per_second = 100.0;
        let mut first = Vec::new();
        cpu.collect(1, &mut first).unwrap();
        assert_eq!(value(&first, "cpu_seconds_total", Some(("mode", "user"))), Some(10.0));
        assert_eq!(value(&first, "cpu_seconds_total", Some(("mode", "steal"))), Some(0.4));
        let core1_idle = first.iter().find(|s| {
            s.series.name == "cpu_core_seconds_total"
                && s.series.labels["core"] == "1"
                && s.series.labels["mode"] == "idle"
        });
        assert_eq!(core1_idle.map(|s| s.value), Some(41.0));
        assert_eq!(value(&first, "cpu_cores", None), Some(2.0));
        assert_eq!(value(&first, "cpu_usage_ratio", None), None, "no ratio without a previous cycle");

        std::fs::write(dir.path().join("stat"), STAT_2).unwrap();
        let mut second = Vec::new();
        cpu.collect(2, &mut second).unwrap();
        // total: +300 user +100 system +500 idle = 900 ticks, 400 busy.
        assert_eq!(value(&second, "cpu_usage_ratio", None), Some(400.0 / 900.0));
        assert_eq!(value(&second, "cpu_mode_ratio", Some(("mode", "idle"))), Some(500.0 / 900.0));
        assert_eq!(value(&second, "cpu_mode_ratio", Some(("mode", "user"))), Some(300.0 / 900.0));
        assert_eq!(value(&first, "cpu_context_switches_total", None), Some(999.0));
        assert_eq!(value(&first, "cpu_interrupts_total", None), Some(12345.0));
        // core 0: +250 user +50 system +100 idle; core 1: +50 +50 +400.
        assert_eq!(value(&second, "cpu_core_usage_ratio", Some(("core", "0"))), Some(300.0 / 400.0));
        assert_eq!(value(&second, "cpu_core_usage_ratio", Some(("core", "1"))), Some(100.0 / 500.0));
    }

    #[test]
    fn counters_going_backwards_give_no_ratio() {
        let dir = proc_dir(&[("stat", STAT_2)]);
        let mut cpu = CpuCollector::new(dir.path());
        cpu.collect(1, &mut Vec::new()).unwrap();
        std::fs::write(dir.path().join("stat"), STAT_1).unwrap();
        let mut samples = Vec::new();
        cpu.collect(2, &mut samples).unwrap();
        assert_eq!(value(&samples, "cpu_usage_ratio", None), None);
        assert_eq!(value(&samples, "cpu_core_usage_ratio", None), None);
    }

    #[test]
    fn garbage_is_a_parse_error_naming_the_file() {
        let dir = proc_dir(&[("stat", "cpu  1 2 x\n"), ("loadavg", "0.5\n")]);
        let err = CpuCollector::new(dir.path()).collect(1, &mut Vec::new()).unwrap_err().to_string();
        assert!(err.contains("stat") && err.contains("\"x\""), "{err}");
        let err = LoadCollector::new(dir.path()).collect(1, &mut Vec::new()).unwrap_err().to_string();
        assert!(err.contains("loadavg"), "{err}");
    }

    #[test]
    fn load_averages() {
        let dir = proc_dir(&[("loadavg", "0.52 0.58 1.59 1/467 12345\n")]);
        let mut samples = Vec::new();
        LoadCollector::new(dir.path()).collect(5, &mut samples).unwrap();
        let got: Vec<(&str, f64)> = samples.iter().map(|s| (s.series.name.as_str(), s.value)).collect();
        assert_eq!(got, vec![("load1", 0.52), ("load5", 0.58), ("load15", 1.59)]);
    }

    #[test]
    fn live_usage_is_a_ratio() {
        let mut cpu = CpuCollector::new(Path::new("/proc"));
        cpu.collect(1, &mut Vec::new()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
        let mut samples = Vec::new();
        cpu.collect(2, &mut samples).unwrap();
        let ratio = value(&samples, "cpu_usage_ratio", None).expect("a ratio on the second cycle");
        assert!((0.0..=1.0).contains(&ratio), "{ratio}");
        let cores = std::fs::read_to_string("/proc/stat")
            .unwrap()
            .lines()
            .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
            .count();
        assert_eq!(value(&samples, "cpu_cores", None), Some(cores as f64));
    }
}
