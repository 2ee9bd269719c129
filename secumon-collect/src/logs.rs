//! Log collection: tails files matched by globs, surviving rotation and restarts, and
//! follows the systemd journal through `journalctl`.
//!
//! - Rename + create rotation: the renamed file is read through the handle we hold until it
//!   has been quiet for a grace period, so a writer that reopens late loses nothing.
//! - copytruncate: when a file is truncated, the rotated copy beside it (`app.log.1`,
//!   `app.log-DATE`) is found by the hashes of the bytes already read, and the lines written
//!   after our last read are read from it before the truncated file. What no tailer can
//!   save are the lines written between logrotate's copy and its truncate.
//! - Read positions are persisted, so an agent restart neither loses nor repeats lines.
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
use std::time::{Duration, Instant};

use secumon_core::{Labels, LogRecord};
use serde::{Deserialize, Serialize};

/// Bytes read from one file per poll, so a huge backlog is shipped over several batches.
const MAX_BYTES_PER_POLL: u64 = 4 * 1024 * 1024;
/// Reads of [`MAX_BYTES_PER_POLL`] from one rotated file per poll.
const ROTATED_READS_PER_POLL: usize = 4;
/// Longer lines are cut; a log line is not a place for megabytes.
const MAX_LINE_BYTES: usize = 64 * 1024;

/// Why log tailing could not start or could not record its progress.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// A configured file glob is not a valid pattern.
    #[error("invalid log source pattern {pattern:?}: {reason}")]
    Pattern {
        /// The glob as configured.
        pattern: String,
        /// Why it was rejected.
        reason: String,
    },
    /// The read positions could not be written to the state file.
    #[error("cannot save log positions to {path}: {source}")]
    State {
        /// The state file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Where reading stopped in one file, identified by device and inode so a rotated file is
/// told apart from its successor at the same path, and by hashes of the bytes already read
/// so the same content is recognised under another name or inode (the copy that
/// copytruncate leaves) and a truncated file is told apart from the one we read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Position {
    device: u64,
    inode: u64,
    offset: u64,
    /// Hash of the bytes just before `offset`: if they change, the file was truncated and
    /// rewritten past our offset between two reads (copytruncate).
    #[serde(default)]
    before_offset: u64,
    /// Hash of the first `min(offset, HEAD_BYTES)` bytes. `None` in positions saved by
    /// older agents, which then match on `before_offset` alone.
    #[serde(default)]
    head: Option<u64>,
}

/// Bytes hashed before the offset to recognise the same content.
const FINGERPRINT_BYTES: u64 = 64;
/// Bytes hashed at the start of a file: with the bytes before the offset, they tell the
/// rotated copy of a file apart from older rotations that begin the same way.
const HEAD_BYTES: u64 = 1024;
/// Rotated files looked at beside a truncated one; more would be a directory of archives.
const MAX_ROTATED_CANDIDATES: usize = 64;

fn hash_range(file: &File, start: u64, end: u64) -> u64 {
    let mut bytes = vec![0u8; end.saturating_sub(start) as usize];
    let read = file.read_at(&mut bytes, start).unwrap_or(0);
    // FNV-1a: tiny, and a collision only costs a re-read of one file.
    bytes[..read].iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| (hash ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

fn fingerprint(file: &File, offset: u64) -> u64 {
    hash_range(file, offset.saturating_sub(FINGERPRINT_BYTES), offset)
}

impl Position {
    fn at(file: &File, device: u64, inode: u64, offset: u64) -> Self {
        Self {
            device,
            inode,
            offset,
            before_offset: fingerprint(file, offset),
            head: Some(hash_range(file, 0, offset.min(HEAD_BYTES))),
        }
    }

    fn advance(&mut self, file: &File, offset: u64) {
        let head_grew = self.offset < HEAD_BYTES;
        self.offset = offset;
        self.before_offset = fingerprint(file, offset);
        if head_grew || self.head.is_none() {
            self.head = Some(hash_range(file, 0, offset.min(HEAD_BYTES)));
        }
    }

    /// Whether `file` (of length `len`) still holds, unchanged, the bytes read so far.
    fn matches(&self, file: &File, len: u64) -> bool {
        len >= self.offset
            && fingerprint(file, self.offset) == self.before_offset
            && self.head.is_none_or(|head| hash_range(file, 0, self.offset.min(HEAD_BYTES)) == head)
    }
}

struct TailedFile {
    file: File,
    position: Position,
}

/// A file that left its path (renamed by a rotation, or the copy copytruncate made) with
/// lines we have not read yet. It is read until it has been quiet for its grace period,
/// because a writer may go on appending through its old handle until it reopens.
struct RotatedFile {
    /// The tailed path it was rotated from: its records keep that source.
    source: PathBuf,
    tailed: TailedFile,
    /// How long it must stop growing before it is let go; zero for a copy nobody writes to.
    quiet_for: Duration,
    last_len: u64,
    last_growth: Instant,
}

/// A rotated file's position, saved so a restart while it is being drained resumes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SavedRotated {
    source: PathBuf,
    position: Position,
}

/// Persisted state: file positions and the journal cursor.
#[derive(Debug, Default, Serialize, Deserialize)]
struct SavedState {
    files: BTreeMap<PathBuf, Position>,
    #[serde(default)]
    rotated: Vec<SavedRotated>,
    journal_cursor: Option<String>,
}

/// Tails the files matching some globs.
pub struct LogTailer {
    patterns: Vec<glob::Pattern>,
    state_path: PathBuf,
    files: HashMap<PathBuf, TailedFile>,
    /// Rotated files still being drained, oldest first.
    rotated: Vec<RotatedFile>,
    rotation_grace: Duration,
    /// Positions from the last run, used when a file is first seen again.
    saved: BTreeMap<PathBuf, Position>,
    /// Rotated files that were being drained when the last run stopped.
    saved_rotated: Vec<SavedRotated>,
    /// Files present at the very first start are tailed from their end; files that appear
    /// later, from their start.
    first_start: bool,
    journal: Option<JournalFollower>,
    journal_cursor: Option<String>,
    /// The state as last written by [`LogTailer::commit`].
    committed: Option<Vec<u8>>,
}

/// How long a renamed file is read after it last grew, unless set otherwise.
pub const DEFAULT_ROTATION_GRACE: Duration = Duration::from_secs(5);

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
            rotated: Vec::new(),
            rotation_grace: DEFAULT_ROTATION_GRACE,
            saved: saved.files,
            saved_rotated: saved.rotated,
            first_start,
            journal: None,
            journal_cursor: saved.journal_cursor,
            committed: None,
        })
    }

    /// How long a file renamed away by a rotation is still read after it last grew
    /// (default [`DEFAULT_ROTATION_GRACE`]): a writer that reopens its log late goes on
    /// appending to the renamed file until then.
    #[must_use]
    pub fn with_rotation_grace(mut self, grace: Duration) -> Self {
        self.rotation_grace = grace;
        self
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

    /// New complete lines since the last poll, from every file and the journal. Lines
    /// of a rotated file come before those of its successor.
    pub fn poll(&mut self, timestamp_ms: i64) -> Vec<LogRecord> {
        let mut records = Vec::new();
        for saved in std::mem::take(&mut self.saved_rotated) {
            self.resume_rotated(saved);
        }
        for path in self.matching_paths() {
            if !self.files.contains_key(&path) {
                self.start_tailing(&path);
            }
        }
        let tracked: Vec<PathBuf> = self.files.keys().cloned().collect();
        for path in &tracked {
            self.notice_rotation(path);
        }
        self.drain_rotated(timestamp_ms, &mut records);
        for tailed_path in tracked {
            if let Some(tailed) = self.files.get_mut(&tailed_path) {
                read_lines(tailed, &tailed_path, timestamp_ms, &mut records);
            }
        }
        self.first_start = false;
        if let Some(journal) = &mut self.journal {
            journal.drain(&mut records, &mut self.journal_cursor);
        }
        records
    }

    /// Saves the positions reached by the polls so far; call once their records are shipped.
    pub fn commit(&mut self) -> Result<(), LogError> {
        let state = SavedState {
            files: self.files.iter().map(|(path, tailed)| (path.clone(), tailed.position)).collect(),
            rotated: self
                .rotated
                .iter()
                .map(|r| SavedRotated { source: r.source.clone(), position: r.tailed.position })
                .collect(),
            journal_cursor: self.journal_cursor.clone(),
        };
        let error = |source| LogError::State { path: self.state_path.display().to_string(), source };
        let temporary = self.state_path.with_extension("tmp");
        let bytes = serde_json::to_vec(&state).map_err(|e| error(e.into()))?;
        // Most cycles find no new line: writing the same positions again would cost a file
        // creation and a rename every cycle for nothing.
        if self.committed.as_ref() == Some(&bytes) {
            return Ok(());
        }
        std::fs::write(&temporary, &bytes).map_err(error)?;
        std::fs::rename(&temporary, &self.state_path).map_err(error)?;
        self.committed = Some(bytes);
        Ok(())
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
            Some(saved) if saved.device == device && saved.inode == inode && saved.matches(&file, meta.len()) => {
                saved.offset
            }
            // Rotated or truncated while we were away: the rest of what we were reading is
            // in the rotated file, if it is still beside it; the new content is all unread.
            Some(saved) => {
                self.recover_rotated(path, &saved, self.rotation_grace);
                0
            }
            None if self.first_start => meta.len(),
            None => 0,
        };
        let position = Position::at(&file, device, inode, offset);
        self.files.insert(path.to_path_buf(), TailedFile { file, position });
    }

    /// Moves a file that was renamed away to the rotated files, and finds the copy of one
    /// that was truncated; either way, its successor at `path` is then read from its start.
    fn notice_rotation(&mut self, path: &Path) {
        let Some(tailed) = self.files.get_mut(path) else { return };
        let replaced = match std::fs::metadata(path) {
            Ok(meta) => meta.dev() != tailed.position.device || meta.ino() != tailed.position.inode,
            Err(_) => true,
        };
        if replaced {
            if let Some(tailed) = self.files.remove(path) {
                self.rotated.push(RotatedFile::new(path, tailed, self.rotation_grace));
            }
            if path.exists() {
                self.saved.remove(path);
                let first_start = std::mem::replace(&mut self.first_start, false);
                self.start_tailing(path);
                self.first_start = first_start;
            }
            return;
        }
        let Ok(len) = tailed.file.metadata().map(|m| m.len()) else { return };
        if tailed.position.matches(&tailed.file, len) {
            return;
        }
        // Truncated under us (copytruncate): the lines written between our last read and
        // the copy are only in the copy, so they are read from there first.
        let read_so_far = tailed.position;
        tailed.position = Position::at(&tailed.file, read_so_far.device, read_so_far.inode, 0);
        if read_so_far.offset > 0 {
            self.recover_rotated(path, &read_so_far, Duration::ZERO);
        }
    }

    /// Finds, beside `path`, the rotated file that holds what `read_so_far` describes and
    /// queues the rest of it for reading.
    fn recover_rotated(&mut self, path: &Path, read_so_far: &Position, quiet_for: Duration) {
        match find_rotated(path, read_so_far) {
            Some(tailed) => self.rotated.push(RotatedFile::new(path, tailed, quiet_for)),
            None => tracing::warn!(
                path = %path.display(),
                offset = read_so_far.offset,
                "log file truncated or replaced and no rotated copy of it found beside it: \
                 lines written after the last read may be lost"
            ),
        }
    }

    fn resume_rotated(&mut self, saved: SavedRotated) {
        let source = saved.source.clone();
        match find_rotated(&saved.source, &saved.position) {
            Some(tailed) => self.rotated.push(RotatedFile::new(&source, tailed, self.rotation_grace)),
            None => tracing::warn!(path = %source.display(), "rotated log file being read at the last stop is gone"),
        }
    }

    fn drain_rotated(&mut self, timestamp_ms: i64, out: &mut Vec<LogRecord>) {
        let now = Instant::now();
        self.rotated.retain_mut(|rotated| {
            // A few reads per poll: a rotated file is finite, but a large backlog is still
            // shipped over several batches. Caught up once a read finds no whole line.
            let (mut caught_up, mut len) = (false, 0);
            for _ in 0..ROTATED_READS_PER_POLL {
                let before = rotated.tailed.position.offset;
                let Some(now_len) = read_lines(&mut rotated.tailed, &rotated.source, timestamp_ms, out) else {
                    return false;
                };
                len = now_len;
                if rotated.tailed.position.offset == before {
                    caught_up = true;
                    break;
                }
            }
            if len > rotated.last_len {
                rotated.last_len = len;
                rotated.last_growth = now;
            }
            if !caught_up || now.duration_since(rotated.last_growth) < rotated.quiet_for {
                return true;
            }
            // Let go: nobody will finish a last line without its newline there, so it is
            // shipped as it is.
            let offset = rotated.tailed.position.offset;
            if len > offset {
                let mut rest = vec![0u8; (len - offset) as usize];
                if let Ok(read) = rotated.tailed.file.read_at(&mut rest, offset) {
                    out.push(record(&rotated.source, timestamp_ms, &rest[..read]));
                }
            }
            false
        });
    }
}

impl RotatedFile {
    fn new(source: &Path, tailed: TailedFile, quiet_for: Duration) -> Self {
        let last_len = tailed.file.metadata().map(|m| m.len()).unwrap_or(0);
        Self { source: source.to_path_buf(), tailed, quiet_for, last_len, last_growth: Instant::now() }
    }
}

/// The file in `path`'s directory, named after it (`app.log.1`, `app.log-20260101`, but not
/// compressed archives, whose bytes differ), that holds unchanged the bytes `read_so_far`
/// describes, opened at that position; the most recently modified if several do.
fn find_rotated(path: &Path, read_so_far: &Position) -> Option<TailedFile> {
    let directory = path.parent()?;
    let name = path.file_name()?.to_str()?;
    let mut best: Option<(std::time::SystemTime, TailedFile)> = None;
    let entries = std::fs::read_dir(if directory.as_os_str().is_empty() { Path::new(".") } else { directory }).ok()?;
    for entry in entries.flatten().take(MAX_ROTATED_CANDIDATES * 4) {
        let candidate = entry.file_name();
        let Some(candidate) = candidate.to_str() else { continue };
        if candidate == name || !candidate.starts_with(name) {
            continue;
        }
        let Ok(file) = File::open(entry.path()) else { continue };
        let Ok(meta) = file.metadata() else { continue };
        let same_file = (meta.dev(), meta.ino()) == (read_so_far.device, read_so_far.inode);
        // With nothing read yet every file matches the empty prefix: only the same inode
        // (the file renamed away) is then known to be the one.
        if !meta.is_file() || !read_so_far.matches(&file, meta.len()) || (read_so_far.offset == 0 && !same_file) {
            continue;
        }
        let modified = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
        if best.as_ref().is_none_or(|(newest, _)| modified > *newest) {
            let position = Position { device: meta.dev(), inode: meta.ino(), ..*read_so_far };
            best = Some((modified, TailedFile { file, position }));
        }
    }
    best.map(|(_, tailed)| tailed)
}

/// Reads the complete lines after the position (at most [`MAX_BYTES_PER_POLL`]); returns
/// the file's length, or `None` if it cannot be read.
fn read_lines(tailed: &mut TailedFile, path: &Path, timestamp_ms: i64, out: &mut Vec<LogRecord>) -> Option<u64> {
    let len = tailed.file.metadata().ok()?.len();
    let available = len.saturating_sub(tailed.position.offset).min(MAX_BYTES_PER_POLL);
    if available == 0 {
        return Some(len);
    }
    let mut buffer = vec![0u8; available as usize];
    let read = tailed.file.read_at(&mut buffer, tailed.position.offset).ok()?;
    buffer.truncate(read);
    // Only whole lines: a line still being written is read next time.
    let Some(last_newline) = buffer.iter().rposition(|&b| b == b'\n') else {
        if buffer.len() as u64 == MAX_BYTES_PER_POLL {
            let offset = tailed.position.offset + buffer.len() as u64; // one giant line: ship it cut
            tailed.position.advance(&tailed.file, offset);
            out.push(record(path, timestamp_ms, &buffer));
        }
        return Some(len);
    };
    for line in buffer[..last_newline].split(|&b| b == b'\n') {
        out.push(record(path, timestamp_ms, line));
    }
    let offset = tailed.position.offset + last_newline as u64 + 1;
    tailed.position.advance(&tailed.file, offset);
    Some(len)
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
    fn unchanged_positions_are_not_written_again() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        let state = dir.path().join("positions.json");
        append(&log, "history\n");
        let mut tailer = LogTailer::open(&[format!("{}/*.log", dir.path().display())], &state).unwrap();
        tailer.poll(1);
        tailer.commit().unwrap();
        // Each write replaces the file by a rename, so a new inode means it was written.
        let inode = |path: &Path| std::fs::metadata(path).unwrap().ino();
        let first = inode(&state);
        assert!(tailer.poll(2).is_empty());
        tailer.commit().unwrap();
        assert_eq!(inode(&state), first, "nothing read, nothing written");
        append(&log, "news\n");
        assert_eq!(lines(&tailer.poll(3)), vec!["news"]);
        tailer.commit().unwrap();
        assert_ne!(inode(&state), first, "new positions are written");
        drop(tailer);
        let mut tailer = LogTailer::open(&[format!("{}/*.log", dir.path().display())], &state).unwrap();
        assert!(tailer.poll(4).is_empty(), "the saved positions are the last ones");
    }

    #[test]
    fn copytruncate_lines_written_after_the_last_read_come_from_the_copy() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("b.log");
        let state = dir.path().join("positions.json");
        append(&log, "");
        // An older rotation that starts like the file: must not be taken for its copy.
        std::fs::write(dir.path().join("b.log.2"), "one\nstale\n").unwrap();
        let mut tailer = LogTailer::open(&[log.display().to_string()], &state).unwrap();
        tailer.poll(1);
        append(&log, "one\ntwo\n");
        assert_eq!(lines(&tailer.poll(2)), vec!["one", "two"]);
        // Written after our read, then copied and truncated (what copytruncate does), then
        // more written to the emptied file; the copy ends in a line cut by the rotation.
        append(&log, "three\nfour\nfiv");
        std::fs::copy(&log, dir.path().join("b.log.1")).unwrap();
        std::fs::OpenOptions::new().write(true).open(&log).unwrap().set_len(0).unwrap();
        append(&log, "e-rest\nsix\n");
        assert_eq!(lines(&tailer.poll(3)), vec!["three", "four", "fiv", "e-rest", "six"]);
        append(&log, "seven\n");
        assert_eq!(lines(&tailer.poll(4)), vec!["seven"]);
    }

    #[test]
    fn copytruncate_while_stopped_is_recovered_from_the_copy_at_restart() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("b.log");
        let state = dir.path().join("positions.json");
        append(&log, "");
        let patterns = vec![log.display().to_string()];
        let mut tailer = LogTailer::open(&patterns, &state).unwrap();
        tailer.poll(1);
        append(&log, "one\n");
        assert_eq!(lines(&tailer.poll(2)), vec!["one"]);
        tailer.commit().unwrap();
        drop(tailer);
        append(&log, "two\n");
        std::fs::copy(&log, dir.path().join("b.log-20261129")).unwrap();
        std::fs::OpenOptions::new().write(true).open(&log).unwrap().set_len(0).unwrap();
        append(&log, "three\n");
        let mut tailer = LogTailer::open(&patterns, &state).unwrap().with_rotation_grace(Duration::ZERO);
        assert_eq!(lines(&tailer.poll(3)), vec!["two", "three"]);
    }

    #[test]
    fn a_renamed_file_is_read_until_quiet_for_the_grace_period() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("a.log");
        let state = dir.path().join("positions.json");
        append(&log, "");
        let grace = Duration::from_millis(400);
        let mut tailer = LogTailer::open(&[log.display().to_string()], &state).unwrap().with_rotation_grace(grace);
        tailer.poll(1);
        // The writer keeps its handle across the rename, as a daemon does until it reopens.
        let mut writer = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        writer.write_all(b"before rename\n").unwrap();
        std::fs::rename(&log, dir.path().join("a.log.1")).unwrap();
        append(&log, "new file\n");
        assert_eq!(lines(&tailer.poll(2)), vec!["before rename", "new file"]);
        writer.write_all(b"late 1\n").unwrap();
        std::thread::sleep(grace / 2);
        assert_eq!(lines(&tailer.poll(3)), vec!["late 1"]);
        tailer.commit().unwrap();
        writer.write_all(b"late 2\n").unwrap();
        // A restart while the renamed file is drained finds it again by its content.
        drop(tailer);
        let mut tailer = LogTailer::open(&[log.display().to_string()], &state).unwrap().with_rotation_grace(grace);
        assert_eq!(lines(&tailer.poll(4)), vec!["late 2"]);
        std::thread::sleep(grace + grace / 2);
        assert!(tailer.poll(5).is_empty());
        // Quiet for longer than the grace: let go, so later writes there are not read.
        writer.write_all(b"too late\n").unwrap();
        append(&log, "newer\n");
        assert_eq!(lines(&tailer.poll(6)), vec!["newer"]);
    }

    #[test]
    fn rotation_while_stopped_finds_the_renamed_file_but_no_other_archive() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("a.log");
        let state = dir.path().join("positions.json");
        append(&log, "");
        let patterns = vec![log.display().to_string()];
        let open = || LogTailer::open(&patterns, &state).unwrap().with_rotation_grace(Duration::ZERO);
        let mut tailer = open();
        tailer.poll(1);
        tailer.commit().unwrap();
        drop(tailer);
        // Nothing read yet: an archive that merely starts the same (empty) way is not it...
        // (written before the removal, so it cannot reuse the removed file's inode)
        std::fs::write(dir.path().join("a.log.3"), "old archive\n").unwrap();
        std::fs::remove_file(&log).unwrap();
        append(&log, "unread\n");
        let mut tailer = open();
        assert_eq!(lines(&tailer.poll(2)), vec!["unread"]);
        tailer.commit().unwrap();
        drop(tailer);
        // ...but the file renamed away, same inode, is.
        append(&log, "also unread\n");
        std::fs::rename(&log, dir.path().join("a.log.1")).unwrap();
        append(&log, "new\n");
        let mut tailer = open();
        assert_eq!(lines(&tailer.poll(3)), vec!["also unread", "new"]);
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
