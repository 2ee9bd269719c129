//! I/O per block device from `/proc/diskstats`: bytes and operations read and written,
//! and time spent, as counters from which IOPS and throughput are derived.

use std::path::{Path, PathBuf};

use secumon_core::{Labels, Sample};

use crate::{CollectError, Collector, parse_error, read_proc};

/// diskstats counts in 512-byte sectors whatever the device's own sector size.
const SECTOR_BYTES: f64 = 512.0;

/// Field (after major, minor, name), series, and how many of the field make one base unit.
const FIELDS: [(usize, &str, f64); 7] = [
    (0, "disk_reads_completed_total", 1.0),
    (2, "disk_read_bytes_total", 1.0 / SECTOR_BYTES),
    (3, "disk_read_time_seconds_total", 1000.0),
    (4, "disk_writes_completed_total", 1.0),
    (6, "disk_written_bytes_total", 1.0 / SECTOR_BYTES),
    (7, "disk_write_time_seconds_total", 1000.0),
    (9, "disk_io_time_seconds_total", 1000.0),
];

/// Whole disks only: partitions would count the same I/O twice, and loop and RAM devices
/// are not disks.
fn is_reported(device: &str) -> bool {
    let ignored_prefix = ["loop", "ram", "zram", "fd", "sr"];
    if ignored_prefix.iter().any(|p| device.starts_with(p)) {
        return false;
    }
    let partition_of = |prefix: &str| {
        device.strip_prefix(prefix).is_some_and(|rest| {
            let letters = rest.trim_end_matches(|c: char| c.is_ascii_digit());
            letters.len() < rest.len() && letters.chars().all(|c| c.is_ascii_lowercase()) && !letters.is_empty()
        })
    };
    let nvme_partition = device.starts_with("nvme")
        && device.contains('p')
        && device.rsplit('p').next().is_some_and(|n| n.chars().all(|c| c.is_ascii_digit()));
    let mmc_partition = device.starts_with("mmcblk") && device.contains('p');
    !(["sd", "vd", "hd", "xvd"].iter().any(|p| partition_of(p)) || nvme_partition || mmc_partition)
}

/// `disk_{read,written}_bytes_total`, `disk_{reads,writes}_completed_total`,
/// `disk_{read,write,io}_time_seconds_total` labelled `device`.
pub struct DiskIoCollector {
    root: PathBuf,
}

impl DiskIoCollector {
    /// A collector reading `proc_root` (`/proc` on the host; a fixture tree in tests).
    pub fn new(proc_root: &Path) -> Self {
        Self { root: proc_root.to_path_buf() }
    }
}

impl Collector for DiskIoCollector {
    fn name(&self) -> &'static str {
        "diskio"
    }

    fn collect(&mut self, timestamp_ms: i64, out: &mut Vec<Sample>) -> Result<(), CollectError> {
        let (path, text) = read_proc(&self.root, "diskstats")?;
        for line in text.lines() {
            let fields: Vec<&str> = line.split_ascii_whitespace().collect();
            if fields.len() < 14 {
                return Err(parse_error(&path, format!("short line {line:?}")));
            }
            let device = fields[2];
            if !is_reported(device) {
                continue;
            }
            let labels = Labels::from([("device".to_string(), device.to_string())]);
            for (index, name, per_unit) in FIELDS {
                let raw = fields[3 + index];
                let value: u64 =
                    raw.parse().map_err(|_| parse_error(&path, format!("bad counter {raw:?} for {device}")))?;
                out.push(Sample::new(name, labels.clone(), timestamp_ms, value as f64 / per_unit));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DISKSTATS: &str = "   7       0 loop0 12 0 100 1 0 0 0 0 0 4 1 0 0 0 0\n\
 252       0 vda 81936 2740 5765894 42319 1155042 1064457 36014080 1218399 0 998276 1266180 0 0 0 0 12 8\n\
 252       1 vda1 81700 2740 5760000 42000 1155000 1064457 36014000 1218000 0 998000 1260000 0 0 0 0\n\
 259       0 nvme0n1 500 0 4000 10 600 0 8000 20 0 30 30\n\
 259       1 nvme0n1p1 400 0 3000 10 500 0 7000 20 0 30 30\n";

    #[test]
    fn whole_disks_in_base_units() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("diskstats"), DISKSTATS).unwrap();
        let mut samples = Vec::new();
        DiskIoCollector::new(dir.path()).collect(1, &mut samples).unwrap();
        let devices: std::collections::BTreeSet<&str> =
            samples.iter().map(|s| s.series.labels["device"].as_str()).collect();
        assert_eq!(devices.into_iter().collect::<Vec<_>>(), vec!["nvme0n1", "vda"]);
        let get = |name: &str| {
            samples.iter().find(|s| s.series.name == name && s.series.labels["device"] == "vda").unwrap().value
        };
        assert_eq!(get("disk_reads_completed_total"), 81936.0);
        assert_eq!(get("disk_read_bytes_total"), 5_765_894.0 * 512.0);
        assert_eq!(get("disk_writes_completed_total"), 1_155_042.0);
        assert_eq!(get("disk_written_bytes_total"), 36_014_080.0 * 512.0);
        assert_eq!(get("disk_write_time_seconds_total"), 1218.399);
        assert_eq!(get("disk_io_time_seconds_total"), 998.276);
    }

    #[test]
    fn partitions_and_virtual_devices_are_skipped() {
        for device in ["sda", "vdb", "xvda", "nvme0n1", "mmcblk0", "dm-0", "md0"] {
            assert!(is_reported(device), "{device}");
        }
        for device in ["sda1", "vdb12", "xvda1", "nvme0n1p2", "mmcblk0p1", "loop3", "ram0", "zram0", "sr0"] {
            assert!(!is_reported(device), "{device}");
        }
    }
}
