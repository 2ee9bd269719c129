//! Memory and swap from `/proc/meminfo`, in bytes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use secumon_core::{Labels, Sample};

use crate::{CollectError, Collector, parse_error, read_proc};

/// `memory_*_bytes`, `memory_used_ratio`, `swap_*_bytes`, `swap_{in,out}_bytes_total`.
pub struct MemoryCollector {
    root: PathBuf,
}

impl MemoryCollector {
    /// A collector reading `proc_root` (`/proc` on the host; a fixture tree in tests).
    pub fn new(proc_root: &Path) -> Self {
        Self { root: proc_root.to_path_buf() }
    }
}

/// Fields of `/proc/meminfo` in bytes (the file says kB and means KiB).
fn parse_meminfo(path: &Path, text: &str) -> Result<HashMap<String, u64>, CollectError> {
    let mut fields = HashMap::new();
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let mut parts = rest.split_ascii_whitespace();
        let Some(number) = parts.next() else { continue };
        let value: u64 = number.parse().map_err(|_| parse_error(path, format!("bad value for {key}")))?;
        let bytes = if parts.next() == Some("kB") { value * 1024 } else { value };
        fields.insert(key.to_string(), bytes);
    }
    Ok(fields)
}

impl Collector for MemoryCollector {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn collect(&mut self, timestamp_ms: i64, out: &mut Vec<Sample>) -> Result<(), CollectError> {
        let (path, text) = read_proc(&self.root, "meminfo")?;
        let fields = parse_meminfo(&path, &text)?;
        let get = |key: &str| fields.get(key).copied().ok_or_else(|| parse_error(&path, format!("no {key}")));
        let total = get("MemTotal")?;
        let free = get("MemFree")?;
        // MemAvailable exists since Linux 3.14; before it, free + caches is the usual stand-in.
        let cached = get("Cached")? + fields.get("SReclaimable").copied().unwrap_or(0);
        let buffers = get("Buffers")?;
        let available = fields.get("MemAvailable").copied().unwrap_or(free + cached + buffers);
        let used = total.saturating_sub(available);
        let swap_total = get("SwapTotal")?;
        let swap_free = get("SwapFree")?;
        let mut push = |name: &str, value: f64| out.push(Sample::new(name, Labels::new(), timestamp_ms, value));
        push("memory_total_bytes", total as f64);
        push("memory_free_bytes", free as f64);
        push("memory_available_bytes", available as f64);
        push("memory_used_bytes", used as f64);
        push("memory_cached_bytes", cached as f64);
        push("memory_buffers_bytes", buffers as f64);
        if total > 0 {
            push("memory_used_ratio", used as f64 / total as f64);
        }
        push("swap_total_bytes", swap_total as f64);
        push("swap_free_bytes", swap_free as f64);
        push("swap_used_bytes", swap_total.saturating_sub(swap_free) as f64);
        // Pages swapped since boot; missing on kernels without swap support.
        if let Ok((_, vmstat)) = read_proc(&self.root, "vmstat") {
            let page = rustix::param::page_size() as f64;
            for line in vmstat.lines() {
                let mut fields = line.split_ascii_whitespace();
                let name = match fields.next() {
                    Some("pswpin") => "swap_in_bytes_total",
                    Some("pswpout") => "swap_out_bytes_total",
                    _ => continue,
                };
                if let Some(pages) = fields.next().and_then(|n| n.parse::<f64>().ok()) {
                    push(name, pages * page);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEMINFO: &str = "MemTotal:       16000000 kB\nMemFree:         2000000 kB\nMemAvailable:    6000000 kB\n\
Buffers:          100000 kB\nCached:          3000000 kB\nSwapCached:            0 kB\nSReclaimable:     500000 kB\n\
SwapTotal:       4000000 kB\nSwapFree:        3000000 kB\nHugePages_Total:       0\n";

    #[test]
    fn reads_bytes_from_kib() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("meminfo"), MEMINFO).unwrap();
        std::fs::write(dir.path().join("vmstat"), "nr_free_pages 1\npswpin 10\npswpout 20\n").unwrap();
        let mut samples = Vec::new();
        MemoryCollector::new(dir.path()).collect(7, &mut samples).unwrap();
        let get = |name: &str| samples.iter().find(|s| s.series.name == name).map(|s| s.value).unwrap();
        assert_eq!(get("memory_total_bytes"), 16_000_000.0 * 1024.0);
        assert_eq!(get("memory_available_bytes"), 6_000_000.0 * 1024.0);
        assert_eq!(get("memory_used_bytes"), 10_000_000.0 * 1024.0);
        assert_eq!(get("memory_cached_bytes"), 3_500_000.0 * 1024.0);
        assert_eq!(get("memory_buffers_bytes"), 100_000.0 * 1024.0);
        assert_eq!(get("memory_used_ratio"), 10.0 / 16.0);
        assert_eq!(get("swap_used_bytes"), 1_000_000.0 * 1024.0);
        let page = rustix::param::page_size() as f64;
        assert_eq!(get("swap_in_bytes_total"), 10.0 * page);
        assert_eq!(get("swap_out_bytes_total"), 20.0 * page);
        assert!(samples.iter().all(|s| s.timestamp_ms == 7));
    }

    #[test]
    fn missing_field_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("meminfo"), "MemFree: 1 kB\n").unwrap();
        let err = MemoryCollector::new(dir.path()).collect(1, &mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("no MemTotal"), "{err}");
    }

    #[test]
    fn live_total_matches_the_kernel() {
        let mut samples = Vec::new();
        MemoryCollector::new(Path::new("/proc")).collect(1, &mut samples).unwrap();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
        let kib: f64 = meminfo.lines().next().unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
        let total = samples.iter().find(|s| s.series.name == "memory_total_bytes").unwrap().value;
        assert_eq!(total, kib * 1024.0);
    }
}
