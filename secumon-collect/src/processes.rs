//! Processes from `/proc/[pid]`: counts by state, zombies, threads, and the top N by CPU
//! and by memory with their name, pid, user, CPU ratio and resident memory.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use secumon_core::{Labels, Sample};

use crate::{CollectError, Collector};

/// One process as read this cycle.
#[derive(Debug, Clone, PartialEq)]
struct ProcessStat {
    pid: u32,
    name: String,
    state: char,
    /// utime + stime, in clock ticks.
    cpu_ticks: u64,
    /// Start time in ticks after boot: with the pid, identifies the process across cycles.
    start_ticks: u64,
    threads: u64,
    rss_pages: u64,
}

/// Parses `/proc/[pid]/stat`. The name sits in parentheses and may itself hold spaces and
/// parentheses, so the fields are counted from the last `)`.
fn parse_pid_stat(text: &str) -> Option<ProcessStat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let pid = text[..open].trim().parse().ok()?;
    let name = text.get(open + 1..close)?.to_string();
    let fields: Vec<&str> = text.get(close + 1..)?.split_ascii_whitespace().collect();
    // fields[0] is field 3 (state) of proc(5).
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    Some(ProcessStat {
        pid,
        name,
        state: fields.first()?.chars().next()?,
        cpu_ticks: field(14)? + field(15)?,
        start_ticks: field(22)?,
        threads: field(20)?,
        rss_pages: field(24)?,
    })
}

fn state_name(state: char) -> &'static str {
    match state {
        'R' => "running",
        'S' => "sleeping",
        'D' => "disk_sleep",
        'Z' => "zombie",
        'T' | 't' => "stopped",
        'I' => "idle",
        'X' | 'x' => "dead",
        _ => "other",
    }
}

/// `processes{state}`, `processes_threads`, and for the top N by CPU and by memory
/// `process_cpu_ratio` (share of one core, so above 1 for busy multithreaded processes) and
/// `process_resident_memory_bytes`, labelled `pid`, `name`, `user`.
pub struct ProcessCollector {
    root: PathBuf,
    top: usize,
    ticks_per_second: f64,
    page_bytes: f64,
    users: HashMap<u32, String>,
    /// (pid, start) → CPU ticks and when they were read, from the previous cycle.
    previous: HashMap<(u32, u64), (u64, i64)>,
}

impl ProcessCollector {
    /// A collector reading `proc_root`, reporting the `top` processes by CPU and by memory.
    pub fn new(proc_root: &Path, top: usize) -> Self {
        let ticks = rustix::param::clock_ticks_per_second();
        Self {
            root: proc_root.to_path_buf(),
            top,
            ticks_per_second: if ticks == 0 { 100.0 } else { ticks as f64 },
            page_bytes: rustix::param::page_size() as f64,
            users: read_users(Path::new("/etc/passwd")),
            previous: HashMap::new(),
        }
    }

    fn user_name(&self, uid: u32) -> String {
        self.users.get(&uid).cloned().unwrap_or_else(|| uid.to_string())
    }
}

/// Reads a small file whole into `text`, with as few system calls as the kernel allows: an
/// open, a read of the content, a read that finds the end. (`read_to_string` first asks the
/// file's size, which `/proc` gives as 0, then probes with a 32-byte read.)
fn read_small(path: &Path, text: &mut String) -> std::io::Result<()> {
    use std::io::Read;
    text.clear();
    // `Take` has no size query of its own: it reads straight into the spare capacity.
    File::open(path)?.take(u64::MAX).read_to_string(text).map(drop)
}

/// uid → name from a passwd file; an unreadable file just means numeric users.
fn read_users(passwd: &Path) -> HashMap<u32, String> {
    std::fs::read_to_string(passwd)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            let uid = fields.nth(1)?.parse().ok()?;
            Some((uid, name.to_string()))
        })
        .collect()
}

impl Collector for ProcessCollector {
    fn name(&self) -> &'static str {
        "processes"
    }

    fn collect(&mut self, timestamp_ms: i64, out: &mut Vec<Sample>) -> Result<(), CollectError> {
        let entries = std::fs::read_dir(&self.root)
            .map_err(|source| CollectError::Read { path: self.root.display().to_string(), source })?;
        // Every process costs a path lookup, an open and reads in the kernel: the one file
        // read, into one reused buffer, without the size query and probe read of
        // `read_to_string`; the owner is looked up later for the few processes reported.
        let mut path = self.root.clone();
        let mut text = String::with_capacity(1024);
        let mut processes = Vec::new();
        for entry in entries.flatten() {
            let file_name = entry.file_name();
            let Some(pid) = file_name.to_str().filter(|n| n.bytes().all(|b| b.is_ascii_digit())) else { continue };
            path.push(pid);
            path.push("stat");
            // A process may exit between listing and reading: that is not an error.
            let read = read_small(&path, &mut text);
            path.pop();
            path.pop();
            if read.is_err() {
                continue;
            }
            let Some(stat) = parse_pid_stat(&text) else { continue };
            processes.push(stat);
        }

        let mut by_state: HashMap<&'static str, u64> =
            ["running", "sleeping", "disk_sleep", "zombie", "stopped", "idle"].into_iter().map(|s| (s, 0)).collect();
        let mut threads = 0;
        let mut current = HashMap::with_capacity(processes.len());
        let mut ranked = Vec::with_capacity(processes.len());
        for stat in &processes {
            *by_state.entry(state_name(stat.state)).or_default() += 1;
            threads += stat.threads;
            let key = (stat.pid, stat.start_ticks);
            let cpu_ratio = self.previous.get(&key).and_then(|&(ticks, at_ms)| {
                let seconds = (timestamp_ms - at_ms) as f64 / 1000.0;
                (seconds > 0.0 && stat.cpu_ticks >= ticks)
                    .then(|| (stat.cpu_ticks - ticks) as f64 / self.ticks_per_second / seconds)
            });
            current.insert(key, (stat.cpu_ticks, timestamp_ms));
            ranked.push((stat, cpu_ratio));
        }
        self.previous = current;

        for (state, count) in by_state {
            let labels = Labels::from([("state".to_string(), state.to_string())]);
            out.push(Sample::new("processes", labels, timestamp_ms, count as f64));
        }
        out.push(Sample::new("processes_threads", Labels::new(), timestamp_ms, threads as f64));

        // The union of the top N by CPU and the top N by memory.
        let mut chosen = std::collections::BTreeSet::new();
        ranked.sort_by(|a, b| b.1.unwrap_or(0.0).total_cmp(&a.1.unwrap_or(0.0)));
        chosen.extend(ranked.iter().take(self.top).filter(|p| p.1.is_some()).map(|p| p.0.pid));
        ranked.sort_by_key(|p| std::cmp::Reverse(p.0.rss_pages));
        chosen.extend(ranked.iter().take(self.top).map(|p| p.0.pid));
        for (stat, cpu_ratio) in ranked.iter().filter(|p| chosen.contains(&p.0.pid)) {
            // `/proc/<pid>` belongs to the process's effective user. One that has exited
            // since its stat was read is left out rather than reported under no user.
            let Ok(owner) = std::fs::metadata(self.root.join(stat.pid.to_string())) else { continue };
            let labels = Labels::from([
                ("pid".to_string(), stat.pid.to_string()),
                ("name".to_string(), stat.name.clone()),
                ("user".to_string(), self.user_name(owner.uid())),
            ]);
            if let Some(ratio) = cpu_ratio {
                out.push(Sample::new("process_cpu_ratio", labels.clone(), timestamp_ms, *ratio));
            }
            let rss = stat.rss_pages as f64 * self.page_bytes;
            out.push(Sample::new("process_resident_memory_bytes", labels, timestamp_ms, rss));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat_line(pid: u32, name: &str, state: char, cpu: (u64, u64), threads: u64, rss: u64) -> String {
        format!(
            "{pid} ({name}) {state} 1 {pid} {pid} 0 -1 4194560 100 0 0 0 {} {} 0 0 20 0 {threads} 0 {} 1000000 {rss} 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0",
            cpu.0,
            cpu.1,
            1000 + pid
        )
    }

    fn write_proc(dir: &Path, processes: &[(u32, String)]) {
        for (pid, stat) in processes {
            let process_dir = dir.join(pid.to_string());
            std::fs::create_dir_all(&process_dir).unwrap();
            std::fs::write(process_dir.join("stat"), stat).unwrap();
        }
    }

    #[test]
    fn parses_names_with_spaces_and_parentheses() {
        let stat = parse_pid_stat(&stat_line(42, "tmux: server (1)", 'S', (150, 50), 3, 2048)).unwrap();
        assert_eq!(stat.name, "tmux: server (1)");
        assert_eq!((stat.pid, stat.state, stat.cpu_ticks, stat.threads, stat.rss_pages), (42, 'S', 200, 3, 2048));
        assert_eq!(stat.start_ticks, 1042);
        assert!(parse_pid_stat("garbage").is_none());
    }

    #[test]
    fn counts_states_and_ranks_top_processes() {
        let dir = tempfile::tempdir().unwrap();
        write_proc(
            dir.path(),
            &[
                (1, stat_line(1, "init", 'S', (10, 10), 1, 100)),
                (2, stat_line(2, "busy", 'R', (100, 0), 4, 50)),
                (3, stat_line(3, "defunct", 'Z', (0, 0), 1, 0)),
                (4, stat_line(4, "fat", 'S', (0, 0), 2, 100_000)),
            ],
        );
        std::fs::create_dir(dir.path().join("self")).unwrap(); // not a pid
        let mut collector = ProcessCollector::new(dir.path(), 1);
        collector.ticks_per_second = 100.0;
        let mut first = Vec::new();
        collector.collect(10_000, &mut first).unwrap();
        let state = |samples: &[Sample], s: &str| {
            samples.iter().find(|x| x.series.name == "processes" && x.series.labels["state"] == s).unwrap().value
        };
        assert_eq!(state(&first, "sleeping"), 2.0);
        assert_eq!(state(&first, "running"), 1.0);
        assert_eq!(state(&first, "zombie"), 1.0);
        assert_eq!(state(&first, "stopped"), 0.0);
        let threads = first.iter().find(|s| s.series.name == "processes_threads").unwrap();
        assert_eq!(threads.value, 8.0);
        assert!(first.iter().all(|s| s.series.name != "process_cpu_ratio"), "no ratio on the first cycle");

        // One second later, "busy" used 50 ticks (0.5 s of CPU): a ratio of 0.5.
        write_proc(dir.path(), &[(2, stat_line(2, "busy", 'R', (150, 0), 4, 50))]);
        let mut second = Vec::new();
        collector.collect(11_000, &mut second).unwrap();
        let top: Vec<(&str, &str, f64)> = second
            .iter()
            .filter(|s| s.series.name.starts_with("process_"))
            .map(|s| (s.series.name.as_str(), s.series.labels["name"].as_str(), s.value))
            .collect();
        let page = rustix::param::page_size() as f64;
        assert!(top.contains(&("process_cpu_ratio", "busy", 0.5)), "{top:?}");
        assert!(top.contains(&("process_resident_memory_bytes", "fat", 100_000.0 * page)), "{top:?}");
        assert!(!top.iter().any(|t| t.1 == "init"), "top 1 by CPU and top 1 by memory only: {top:?}");
    }

    #[test]
    fn live_processes_include_this_one() {
        let mut collector = ProcessCollector::new(Path::new("/proc"), 500);
        let mut samples = Vec::new();
        collector.collect(1, &mut samples).unwrap();
        let me = std::process::id().to_string();
        let mine = samples
            .iter()
            .find(|s| s.series.name == "process_resident_memory_bytes" && s.series.labels["pid"] == me)
            .expect("this test process is listed");
        assert!(mine.value > 0.0);
        assert!(!mine.series.labels["user"].is_empty());
    }
}
