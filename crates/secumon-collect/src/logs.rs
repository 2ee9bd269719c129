//! Log collection: tails files matched by globs, surviving rotation (rename + create) and
//! truncation (copytruncate), with read positions persisted so an agent restart neither
//! loses nor repeats lines; and follows the systemd journal through `journalctl`.
//!
//! The caller polls, ships the returned records durably, then calls `commit` so the saved
//! positions never run ahead of what was shipped.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};

use secumon_core::{Labels, LogRecord};
use serde::{Deserialize, Serialize};

/// Bytes read from one file per poll, so a huge backlog is shipped over several batches.
const MAX_BYTES_PER_POLL: u64 = 4 * 1024 * 1024;
/// Longer lines are cut; a log line is not a place for megabytes.
const MAX_LINE_BYTES: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("invalid log source pattern {pattern:?}: {reason}")]
    Pattern { pattern: String, reason: String },
    #[error("cannot save log positions to {path}: {source}")]
    State { path: String, source: std::io::Error },
}

/// Where reading stopped in one file, identified by device and inode so a rotated file is
/// told apart from its successor at the same path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Position {
    device: u64,
    inode: u64,
    offset: u64,
    /// Hash of the bytes just before `offset`: if they change, the file was truncated and
    /// rewritten past our offset between two reads (copytruncate), so we start over.
    #[serde(default)]
    before_offset: u64,
}

/// Bytes hashed before the offset to recognise the same content.
const FINGERPRINT_BYTES: u64 = 64;

fn fingerprint(file: &File, offset: u64) -> u64 {
    let start = offset.saturating_sub(FINGERPRINT_BYTES);
    let mut bytes = vec![0u8; (offset - start) as usize];
    let read = file.read_at(&mut bytes, start).unwrap_or(0);
    // FNV-1a: tiny, and collisions only cost a re-read of one file.
    bytes[..read].iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| (hash ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

struct TailedFile {
    file: File,
    position: Position,
}

/// Persisted state: file positions and the journal cursor.
#[derive(Debug, Default, Serialize, Deserialize)]
struct SavedState {
    files: BTreeMap<PathBuf, Position>,
    journal_cursor: Option<String>,
}

/// Tails the files matching some globs.
pub struct LogTailer {
    patterns: Vec<glob::Pattern>,
    state_path: PathBuf,
    files: HashMap<PathBuf, TailedFile>,
    /// Positions from the last run, used when a file is first seen again.
    saved: BTreeMap<PathBuf, Position>,
    /// Files present at the very first start are tailed from their end; files that appear
    /// later, from their start.
    first_start: bool,
    journal: Option<JournalFollower>,
    journal_cursor: Option<String>,
}

impl LogTailer {
    /// Tails `patterns` (globs such as `/var/log/nginx/*.log`), keeping positions in
    /// `state_path`.
    pub fn open(patterns: &[String], state_path: &Path) -> Result<Self, LogError> {
        let patterns = patterns
            .iter()
            .map(|p| glob::Pattern::new(p).map_err(|e| LogError::Pattern { pattern: p.clone(), reason: e.to_string() }))
            .collect::<Result<_, _>>()?;
        let saved: Option<SavedState> =
            std::fs::read(state_path).ok().and_then(|bytes| serde_json::from_slice(&bytes).ok());
        let first_start = saved.is_none();
        let saved = saved.unwrap_or_default();
        Ok(Self {
            patterns,
            state_path: state_path.to_path_buf(),
            files: HashMap::new(),
            saved: saved.files,
            first_start,
            journal: None,
            journal_cursor: saved.journal_cursor,
        })
    }

    /// Also follows the journal through `command` (normally `journalctl`), from the saved
    /// cursor, or from now on the first start. Returns false if it cannot be started.
    pub fn follow_journal(&mut self, command: &Path) -> bool {
        match JournalFollower::spawn(command, self.journal_cursor.as_deref()) {
            Ok(follower) => {
                self.journal = Some(follower);
                true
            }
            Err(error) => {
                tracing::info!(command = %command.display(), %error, "no journal to follow");
                false
            }
        }
    }

    /// New complete lines since the last poll, from every file and the journal.
    pub fn poll(&mut self, timestamp_ms: i64) -> Vec<LogRecord> {
        let mut records = Vec::new();
        for path in self.matching_paths() {
            if !self.files.contains_key(&path) {
                self.start_tailing(&path);
            }
        }
        let tracked: Vec<PathBuf> = self.files.keys().cloned().collect();
        for path in tracked {
            self.read_file(&path, timestamp_ms, &mut records);
        }
        self.first_start = false;
        if let Some(journal) = &mut self.journal {
            journal.drain(&mut records, &mut self.journal_cursor);
        }
        records
    }

    /// Saves the positions reached by the polls so far; call once their records are shipped.
    pub fn commit(&self) -> Result<(), LogError> {
        let state = SavedState {
            files: self.files.iter().map(|(path, tailed)| (path.clone(), tailed.position)).collect(),
            journal_cursor: self.journal_cursor.clone(),
        };
        let error = |source| LogError::State { path: self.state_path.display().to_string(), source };
        let temporary = self.state_path.with_extension("tmp");
        let bytes = serde_json::to_vec(&state).map_err(|e| error(e.into()))?;
        std::fs::write(&temporary, bytes).map_err(error)?;
        std::fs::rename(&temporary, &self.state_path).map_err(error)
    }

    fn matching_paths(&self) -> Vec<PathBuf> {
        let mut paths = Vec::new();
        for pattern in &self.patterns {
            if let Ok(found) = glob::glob(pattern.as_str()) {
                paths.extend(found.flatten().filter(|p| p.is_file()));
            }
        }
        paths
    }

    fn start_tailing(&mut self, path: &Path) {
        let Ok(file) = File::open(path) else { return };
        let Ok(meta) = file.metadata() else { return };
        let (device, inode) = (meta.dev(), meta.ino());
        let offset = match self.saved.remove(path) {
            Some(saved)
                if saved.device == device
                    && saved.inode == inode
                    && saved.offset <= meta.len()
                    && fingerprint(&file, saved.offset) == saved.before_offset =>
            {
                saved.offset
            }
            // Rotated or truncated while we were away: its new content is all unread.
            Some(_) => 0,
            None if self.first_start => meta.len(),
            None => 0,
        };
        let before_offset = fingerprint(&file, offset);
        self.files.insert(
            path.to_path_buf(),
            TailedFile { file, position: Position { device, inode, offset, before_offset } },
        );
    }

    fn read_file(&mut self, path: &Path, timestamp_ms: i64, out: &mut Vec<LogRecord>) {
        let Some(tailed) = self.files.get_mut(path) else { return };
        let replaced = match std::fs::metadata(path) {
            Ok(meta) => meta.dev() != tailed.position.device || meta.ino() != tailed.position.inode,
            Err(_) => true,
        };
        // Lines written to the old file before it was renamed are still read, through the
        // handle we hold, before moving on to the new file.
        read_lines(tailed, path, timestamp_ms, out);
        if replaced {
            self.files.remove(path);
            if path.exists() {
                self.start_tailing_from_start(path);
                self.read_file(path, timestamp_ms, out);
            }
        }
    }

    fn start_tailing_from_start(&mut self, path: &Path) {
        self.saved.remove(path);
        let first_start = std::mem::replace(&mut self.first_start, false);
        self.start_tailing(path);
        self.first_start = first_start;
    }
}

/// Reads the complete lines after the saved offset, handling truncation.
fn read_lines(tailed: &mut TailedFile, path: &Path, timestamp_ms: i64, out: &mut Vec<LogRecord>) {
    let Ok(len) = tailed.file.metadata().map(|m| m.len()) else { return };
    if len < tailed.position.offset
        || fingerprint(&tailed.file, tailed.position.offset) != tailed.position.before_offset
    {
        // copytruncate: the file was emptied (and maybe refilled) under us; start over.
        tailed.position.offset = 0;
    }
    let available = (len - tailed.position.offset).min(MAX_BYTES_PER_POLL);
    if available == 0 {
        return;
    }
    let mut buffer = vec![0u8; available as usize];
    let Ok(read) = tailed.file.read_at(&mut buffer, tailed.position.offset) else { return };
    buffer.truncate(read);
    // Only whole lines: a line still being written is read next time.
    let Some(last_newline) = buffer.iter().rposition(|&b| b == b'\n') else {
        if buffer.len() as u64 == MAX_BYTES_PER_POLL {
            tailed.position.offset += buffer.len() as u64; // one giant line: ship it cut
            tailed.position.before_offset = fingerprint(&tailed.file, tailed.position.offset);
            out.push(record(path, timestamp_ms, &buffer));
        }
        return;
    };
    for line in buffer[..last_newline].split(|&b| b == b'\n') {
        out.push(record(path, timestamp_ms, line));
    }
    tailed.position.offset += last_newline as u64 + 1;
    tailed.position.before_offset = fingerprint(&tailed.file, tailed.position.offset);
}

fn record(path: &Path, timestamp_ms: i64, line: &[u8]) -> LogRecord {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = &line[..line.len().min(MAX_LINE_BYTES)];
    LogRecord {
        timestamp_ms,
        source: path.display().to_string(),
        labels: Labels::new(),
        line: String::from_utf8_lossy(line).into_owned(),
    }
}

/// `journalctl -o json --follow` in the background; entries come through a bounded channel,
/// so a slow agent slows journalctl down instead of losing entries.
struct JournalFollower {
    child: Child,
    entries: Receiver<(LogRecord, String)>,
}

impl JournalFollower {
    fn spawn(command: &Path, cursor: Option<&str>) -> std::io::Result<Self> {
        let mut journalctl = Command::new(command);
        journalctl.args(["-o", "json", "--follow"]);
        match cursor {
            Some(cursor) => journalctl.arg(format!("--after-cursor={cursor}")),
            None => journalctl.arg("--lines=0"),
        };
        let mut child = journalctl.stdout(Stdio::piped()).stderr(Stdio::null()).spawn()?;
        let stdout = child.stdout.take().ok_or_else(|| std::io::Error::other("no stdout"))?;
        let (sender, entries) = sync_channel(10_000);
        std::thread::Builder::new().name("journal".into()).spawn(move || read_journal(stdout, sender))?;
        Ok(Self { child, entries })
    }

    fn drain(&mut self, out: &mut Vec<LogRecord>, cursor: &mut Option<String>) {
        loop {
            match self.entries.try_recv() {
                Ok((record, entry_cursor)) => {
                    out.push(record);
                    *cursor = Some(entry_cursor);
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => break,
            }
        }
    }
}

impl Drop for JournalFollower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_journal(stdout: impl std::io::Read, sender: SyncSender<(LogRecord, String)>) {
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        let Some(entry) = journal_entry(&line) else { continue };
        if sender.send(entry).is_err() {
            break;
        }
    }
}

/// One `journalctl -o json` line as a record and its cursor.
fn journal_entry(line: &str) -> Option<(LogRecord, String)> {
    let entry: serde_json::Value = serde_json::from_str(line).ok()?;
    let text = |key: &str| entry.get(key).and_then(|v| v.as_str()).map(str::to_string);
    let cursor = text("__CURSOR")?;
    let micros: i64 = text("__REALTIME_TIMESTAMP")?.parse().ok()?;
    // MESSAGE is an array of bytes when it is not valid UTF-8.
    let message = match entry.get("MESSAGE") {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Array(bytes)) => {
            String::from_utf8_lossy(&bytes.iter().filter_map(|b| b.as_u64().map(|b| b as u8)).collect::<Vec<_>>())
                .into_owned()
        }
        _ => return None,
    };
    let mut labels = Labels::new();
    for (key, label) in [("_SYSTEMD_UNIT", "unit"), ("SYSLOG_IDENTIFIER", "identifier"), ("PRIORITY", "priority")] {
        if let Some(value) = text(key) {
            labels.insert(label.to_string(), value);
        }
    }
    let record = LogRecord { timestamp_ms: micros / 1000, source: "journald".into(), labels, line: message };
    Some((record, cursor))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn lines(records: &[LogRecord]) -> Vec<&str> {
        records.iter().map(|r| r.line.as_str()).collect()
    }

    fn append(path: &Path, text: &str) {
        std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap().write_all(text.as_bytes()).unwrap();
    }

    #[test]
    fn follows_rotation_and_truncation_without_loss_or_doubles_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        let state = dir.path().join("positions.json");
        append(&log, "old history\n");
        let patterns = vec![format!("{}/*.log", dir.path().display())];

        let mut tailer = LogTailer::open(&patterns, &state).unwrap();
        assert!(tailer.poll(1).is_empty(), "history before the first start is not shipped");
        append(&log, "one\ntwo\npart");
        assert_eq!(lines(&tailer.poll(2)), vec!["one", "two"], "a line being written waits");
        append(&log, "ial\r\n");
        assert_eq!(lines(&tailer.poll(3)), vec!["partial"]);
        tailer.commit().unwrap();

        // Restart: nothing repeated, nothing lost.
        drop(tailer);
        append(&log, "while down\n");
        let mut tailer = LogTailer::open(&patterns, &state).unwrap();
        assert_eq!(lines(&tailer.poll(4)), vec!["while down"]);

        // Rotation by rename + create: the old file's last lines, then the new file's.
        append(&log, "last of old\n");
        std::fs::rename(&log, dir.path().join("app.log.1")).unwrap();
        append(&log, "first of new\n");
        assert_eq!(lines(&tailer.poll(5)), vec!["last of old", "first of new"]);

        // copytruncate.
        std::fs::File::create(&log).unwrap();
        append(&log, "after truncate\n");
        assert_eq!(lines(&tailer.poll(6)), vec!["after truncate"]);

        // A new file matching the glob is read from its start.
        append(&dir.path().join("other.log"), "new file\n");
        let got = tailer.poll(7);
        assert_eq!(lines(&got), vec!["new file"]);
        assert!(got[0].source.ends_with("other.log"));
        tailer.commit().unwrap();
        drop(tailer);

        let mut tailer = LogTailer::open(&patterns, &state).unwrap();
        assert!(tailer.poll(8).is_empty(), "nothing repeated after a restart");
    }

    #[test]
    fn uncommitted_lines_are_read_again_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("a.log");
        let state = dir.path().join("positions.json");
        append(&log, "");
        let patterns = vec![log.display().to_string()];
        let mut tailer = LogTailer::open(&patterns, &state).unwrap();
        tailer.poll(1);
        tailer.commit().unwrap();
        append(&log, "shipped?\n");
        assert_eq!(lines(&tailer.poll(2)), vec!["shipped?"]);
        drop(tailer); // crashed before the batch was spooled: no commit
        let mut tailer = LogTailer::open(&patterns, &state).unwrap();
        assert_eq!(lines(&tailer.poll(3)), vec!["shipped?"]);
    }

    #[test]
    fn bad_pattern_is_named() {
        let err = LogTailer::open(&["/var/log/[".to_string()], Path::new("/tmp/x")).err().unwrap();
        assert!(err.to_string().contains("/var/log/["), "{err}");
    }

    #[test]
    fn follows_the_journal_from_its_cursor() {
        let dir = tempfile::tempdir().unwrap();
        // A stand-in journalctl that prints two entries, and records its arguments.
        let script = dir.path().join("journalctl");
        let args_file = dir.path().join("args");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\necho \"$@\" >> {}\n\
                 echo '{{\"__CURSOR\":\"s=1\",\"__REALTIME_TIMESTAMP\":\"1700000000123456\",\"MESSAGE\":\"Started nginx\",\"_SYSTEMD_UNIT\":\"nginx.service\",\"PRIORITY\":\"6\"}}'\n\
                 echo '{{\"__CURSOR\":\"s=2\",\"__REALTIME_TIMESTAMP\":\"1700000001000000\",\"MESSAGE\":[104,105]}}'\n\
                 echo 'not json'\nsleep 5\n",
                args_file.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let state = dir.path().join("positions.json");
        let mut tailer = LogTailer::open(&[], &state).unwrap();
        assert!(tailer.follow_journal(&script));
        let mut records = Vec::new();
        for _ in 0..100 {
            records.extend(tailer.poll(1));
            if records.len() >= 2 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_eq!(lines(&records), vec!["Started nginx", "hi"]);
        assert_eq!(records[0].timestamp_ms, 1_700_000_000_123);
        assert_eq!(records[0].labels["unit"], "nginx.service");
        tailer.commit().unwrap();
        drop(tailer);

        let mut tailer = LogTailer::open(&[], &state).unwrap();
        assert!(tailer.follow_journal(&script));
        std::thread::sleep(std::time::Duration::from_millis(200));
        drop(tailer);
        let args = std::fs::read_to_string(&args_file).unwrap();
        let runs: Vec<&str> = args.lines().collect();
        assert!(runs[0].contains("--lines=0"), "first start begins now: {args}");
        assert!(runs[1].contains("--after-cursor=s=2"), "then resumes after the last shipped entry: {args}");
        assert!(!tailer_follows(Path::new("/nonexistent/journalctl")));
    }

    fn tailer_follows(command: &Path) -> bool {
        LogTailer::open(&[], Path::new("/nonexistent/state")).unwrap().follow_journal(command)
    }
}
