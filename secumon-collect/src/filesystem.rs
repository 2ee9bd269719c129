//! Space and inodes per mounted filesystem: mounts from `/proc/self/mounts`, figures from
//! `statvfs`, pseudo filesystems left out.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use secumon_core::{Labels, Sample};

use crate::{CollectError, Collector, read_proc};

/// Kernel and in-memory filesystems that say nothing about disk space.
const PSEUDO_FILESYSTEMS: &[&str] = &[
    "autofs",
    "binfmt_misc",
    "bpf",
    "cgroup",
    "cgroup2",
    "configfs",
    "debugfs",
    "devpts",
    "devtmpfs",
    "efivarfs",
    "fusectl",
    "fuse.lxcfs",
    "hugetlbfs",
    "mqueue",
    "nsfs",
    "overlay",
    "proc",
    "pstore",
    "ramfs",
    "rpc_pipefs",
    "securityfs",
    "selinuxfs",
    "squashfs",
    "sysfs",
    "tmpfs",
    "tracefs",
];

#[derive(Debug, Clone, PartialEq, Eq)]
struct Mount {
    device: String,
    mountpoint: String,
    fstype: String,
}

/// Real filesystems from a mounts table (plus the `include` types).
fn parse_mounts(text: &str, include: &[String]) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_ascii_whitespace();
            let (device, mountpoint, fstype) = (fields.next()?, fields.next()?, fields.next()?);
            Some(Mount { device: unescape(device), mountpoint: unescape(mountpoint), fstype: fstype.to_string() })
        })
        .filter(|m| !PSEUDO_FILESYSTEMS.contains(&m.fstype.as_str()) || include.contains(&m.fstype))
        .collect()
}

/// The mounts table writes space, tab, newline and backslash as `\040`-style octal.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal =
            bytes.get(i + 1..i + 4).filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match octal {
            Some(digits) => {
                out.push(digits.iter().fold(0u8, |acc, d| acc.wrapping_mul(8).wrapping_add(d - b'0')));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `filesystem_{size,free,avail}_bytes`, `filesystem_used_ratio`, `filesystem_files{,_free}`
/// labelled `mountpoint`, `device`, `fstype`.
pub struct FilesystemCollector {
    root: PathBuf,
    include_fstypes: Vec<String>,
}

impl FilesystemCollector {
    /// `include_fstypes` names pseudo filesystem types to report anyway (`tmpfs`).
    pub fn new(proc_root: &Path, include_fstypes: &[String]) -> Self {
        Self { root: proc_root.to_path_buf(), include_fstypes: include_fstypes.to_vec() }
    }
}

impl Collector for FilesystemCollector {
    fn name(&self) -> &'static str {
        "filesystem"
    }

    fn collect(&mut self, timestamp_ms: i64, out: &mut Vec<Sample>) -> Result<(), CollectError> {
        let (_, text) = read_proc(&self.root, "self/mounts")?;
        // A device mounted twice (bind mounts) is reported once, at its first mountpoint that
        // answers statvfs.
        let mut reported = HashSet::new();
        for mount in parse_mounts(&text, &self.include_fstypes) {
            if reported.contains(&mount.device) {
                continue;
            }
            let stat = match rustix::fs::statvfs(mount.mountpoint.as_str()) {
                Ok(stat) => stat,
                // A stale network mount or a forbidden path must not hide the others.
                Err(error) => {
                    tracing::debug!(mountpoint = %mount.mountpoint, %error, "statvfs failed; skipped");
                    continue;
                }
            };
            reported.insert(mount.device.clone());
            let block = if stat.f_frsize > 0 { stat.f_frsize } else { stat.f_bsize };
            let size = stat.f_blocks * block;
            let free = stat.f_bfree * block;
            let avail = stat.f_bavail * block;
            let labels = Labels::from([
                ("mountpoint".to_string(), mount.mountpoint),
                ("device".to_string(), mount.device),
                ("fstype".to_string(), mount.fstype),
            ]);
            let mut push = |name: &str, value: f64| out.push(Sample::new(name, labels.clone(), timestamp_ms, value));
            push("filesystem_size_bytes", size as f64);
            push("filesystem_free_bytes", free as f64);
            push("filesystem_avail_bytes", avail as f64);
            // Like df: used over what users could have (used + available to them).
            let used = size.saturating_sub(free);
            if used + avail > 0 {
                push("filesystem_used_ratio", used as f64 / (used + avail) as f64);
            }
            push("filesystem_files", stat.f_files as f64);
            push("filesystem_files_free", stat.f_ffree as f64);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTS: &str = "proc /proc proc rw,nosuid 0 0\n\
sysfs /sys sysfs rw 0 0\n\
/dev/vda1 / ext4 rw,relatime 0 0\n\
tmpfs /run tmpfs rw 0 0\n\
overlay /var/lib/docker/overlay2/x/merged overlay rw 0 0\n\
/dev/vda1 /srv/bind ext4 rw 0 0\n\
/dev/sdb1 /mnt/my\\040disk xfs rw 0 0\n\
nas:/export /mnt/nas nfs4 rw 0 0\n";

    #[test]
    fn keeps_real_filesystems_once_and_unescapes_names() {
        let mounts = parse_mounts(MOUNTS, &[]);
        let points: Vec<&str> = mounts.iter().map(|m| m.mountpoint.as_str()).collect();
        assert_eq!(points, vec!["/", "/srv/bind", "/mnt/my disk", "/mnt/nas"]);
        assert_eq!(mounts[2].fstype, "xfs");
        assert_eq!(unescape(r"a\011b\134c\012"), "a\tb\\c\n");
        let with_tmpfs = parse_mounts(MOUNTS, &["tmpfs".to_string()]);
        assert!(with_tmpfs.iter().any(|m| m.mountpoint == "/run"), "asked-for tmpfs is kept");
        assert_eq!(unescape(r"trailing\04"), r"trailing\04");
    }

    #[test]
    fn measures_what_statvfs_reports_and_skips_unreachable_mounts() {
        let proc = tempfile::tempdir().unwrap();
        let target = tempfile::tempdir().unwrap();
        std::fs::create_dir(proc.path().join("self")).unwrap();
        // /dev/test's first mountpoint is gone: it is reported at its second; /dev/gone not at all.
        let mounts = format!(
            "/dev/test /nonexistent/first ext4 rw 0 0\n/dev/test {} ext4 rw 0 0\n/dev/test /tmp ext4 rw 0 0\n/dev/gone /nonexistent/mount ext4 rw 0 0\n",
            target.path().display()
        );
        std::fs::write(proc.path().join("self/mounts"), mounts).unwrap();
        let mut samples = Vec::new();
        FilesystemCollector::new(proc.path(), &[]).collect(3, &mut samples).unwrap();
        assert!(samples.iter().all(|s| s.series.labels["device"] == "/dev/test"));
        let mountpoints: HashSet<&str> = samples.iter().map(|s| s.series.labels["mountpoint"].as_str()).collect();
        assert_eq!(mountpoints, HashSet::from([target.path().to_str().unwrap()]), "reported once, where it answers");
        let stat = rustix::fs::statvfs(target.path()).unwrap();
        let size = samples.iter().find(|s| s.series.name == "filesystem_size_bytes").unwrap();
        assert_eq!(size.value, (stat.f_blocks * stat.f_frsize) as f64);
        assert_eq!(size.series.labels["fstype"], "ext4");
        let ratio = samples.iter().find(|s| s.series.name == "filesystem_used_ratio").unwrap().value;
        assert!((0.0..=1.0).contains(&ratio));
    }

    #[test]
    fn root_size_matches_df() {
        let output = std::process::Command::new("df").args(["-B1", "--output=size", "/"]).output();
        let Some(output) = output.ok().filter(|o| o.status.success()) else {
            secumon_core::testing::peer_missing("df is not installed or failed");
            return;
        };
        let df_size: f64 = String::from_utf8_lossy(&output.stdout).lines().nth(1).unwrap().trim().parse().unwrap();
        let mut samples = Vec::new();
        FilesystemCollector::new(Path::new("/proc"), &[]).collect(1, &mut samples).unwrap();
        let Some(root) =
            samples.iter().find(|s| s.series.name == "filesystem_size_bytes" && s.series.labels["mountpoint"] == "/")
        else {
            // In a container whose root is an overlay, "/" is rightly left out.
            eprintln!("skipped: / is a pseudo filesystem here");
            return;
        };
        assert!((root.value - df_size).abs() / df_size < 0.01, "ours {} df {df_size}", root.value);
    }
}
