//! The on-disk form of the event queue: `<state_dir>/events/journal.jsonl`, an
//! append-only file of [`Record`]s, one JSON object per line (ARCHITECTURE.md
//! "Files on the device": `/var/lib/braid/events/`).
//!
//! Crash safety:
//!
//! - Every change is appended with one `write(2)` of whole lines before the change
//!   is acted on (an event is in the file before it is sent; an `ack` is written
//!   only after the control plane confirmed delivery). A process killed at any
//!   point (SIGKILL, panic, OOM) leaves every record it wrote in the page cache,
//!   so the next start replays them. fdatasync follows within milliseconds on a
//!   helper thread, which covers power loss except for that last moment.
//! - A crash can only tear the *last* line (appends are sequential). On open, a
//!   last line without its newline, or one that is not valid JSON, is cut off; an
//!   invalid line elsewhere (disk corruption) is skipped and counted.
//! - Compaction writes the live queue to `journal.jsonl.tmp`, fsyncs it, renames it
//!   over the journal and fsyncs the directory: a crash leaves either the old or
//!   the new journal, both complete. A leftover `.tmp` is deleted on open.
//!
//! Replay applies the records in order ([`Queue::apply`]); an event is gone from
//! the file only after an `ack` (delivered) or a `drop` (no room) record.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::queue::{Queue, Record};

/// Directory under `<state_dir>` holding the journal.
pub const DIR_NAME: &str = "events";
/// Journal file name.
pub const FILE_NAME: &str = "journal.jsonl";
/// Journal size under which compaction is never attempted, bytes.
const COMPACT_MIN_BYTES: u64 = 256 * 1024;

/// What opening the journal found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replay {
    /// Records applied.
    pub records: usize,
    /// Invalid lines skipped in the middle of the file.
    pub bad_lines: usize,
    /// Bytes of a torn last line that were cut off.
    pub torn_bytes: usize,
}

/// An open journal.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    path: PathBuf,
    file: File,
    /// Current size of the file, bytes.
    bytes: u64,
    /// Size right after the last compaction, bytes.
    compacted_bytes: u64,
}

/// Errors of the journal, naming the file.
#[derive(Debug, thiserror::Error)]
#[error("event journal {path}: {source}")]
pub struct JournalError {
    /// The file or directory concerned.
    pub path: PathBuf,
    /// The I/O error.
    #[source]
    pub source: io::Error,
}

fn err(path: &Path) -> impl FnOnce(io::Error) -> JournalError + '_ {
    move |source| JournalError {
        path: path.to_owned(),
        source,
    }
}

/// `<state_dir>/events/journal.jsonl`.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(DIR_NAME).join(FILE_NAME)
}

impl Journal {
    /// Open (or create) the journal under `state_dir`, replay it into a queue, and
    /// compact it. The directory is created with mode 0700, the file 0600.
    /// Errors: the directory or file cannot be created, read or written.
    pub fn open(state_dir: &Path) -> Result<(Self, Queue, Replay), JournalError> {
        let dir = state_dir.join(DIR_NAME);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(err(&dir))?;
        let path = dir.join(FILE_NAME);
        let _ = fs::remove_file(tmp_path(&path));
        let mut text = Vec::new();
        match File::open(&path) {
            Ok(mut f) => {
                f.read_to_end(&mut text).map_err(err(&path))?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(err(&path)(e)),
        }
        let (queue, replay) = replay(&text);
        let file = open_append(&path).map_err(err(&path))?;
        let mut journal = Self {
            dir,
            path,
            file,
            bytes: text.len() as u64,
            compacted_bytes: 0,
        };
        journal.compact(&queue)?;
        Ok((journal, queue, replay))
    }

    /// The journal file's path.
    pub fn file_path(&self) -> &Path {
        &self.path
    }

    /// Append `records` with a single write. Errors: the write failed (the file may
    /// then end in a torn line, which the next open cuts off).
    pub fn append(&mut self, records: &[Record]) -> Result<(), JournalError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::with_capacity(256 * records.len());
        for r in records {
            // Records hold strings, numbers and JSON values only: this cannot fail.
            serde_json::to_writer(&mut buf, r).map_err(|e| JournalError {
                path: self.path.clone(),
                source: io::Error::other(e),
            })?;
            buf.push(b'\n');
        }
        self.file.write_all(&buf).map_err(err(&self.path))?;
        self.bytes += buf.len() as u64;
        Ok(())
    }

    /// A second handle on the current file, for fdatasync off the lock.
    pub fn sync_handle(&self) -> Result<File, JournalError> {
        self.file.try_clone().map_err(err(&self.path))
    }

    /// Compact when the file has grown well past what the live queue needs.
    pub fn maybe_compact(&mut self, queue: &Queue) -> Result<(), JournalError> {
        if self.bytes > COMPACT_MIN_BYTES && self.bytes > 4 * self.compacted_bytes.max(1) {
            self.compact(queue)?;
        }
        Ok(())
    }

    /// Rewrite the journal as a snapshot of `queue` (tmp + fsync + rename + dir fsync).
    pub fn compact(&mut self, queue: &Queue) -> Result<(), JournalError> {
        let tmp = tmp_path(&self.path);
        let mut buf = Vec::new();
        for r in queue.snapshot() {
            serde_json::to_writer(&mut buf, &r).map_err(|e| JournalError {
                path: tmp.clone(),
                source: io::Error::other(e),
            })?;
            buf.push(b'\n');
        }
        {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(err(&tmp))?;
            f.write_all(&buf).map_err(err(&tmp))?;
            f.sync_all().map_err(err(&tmp))?;
        }
        fs::rename(&tmp, &self.path).map_err(err(&self.path))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(err(&self.dir))?;
        self.file = open_append(&self.path).map_err(err(&self.path))?;
        self.bytes = buf.len() as u64;
        self.compacted_bytes = self.bytes;
        Ok(())
    }
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".tmp");
    PathBuf::from(p)
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
}

/// Rebuild a queue from journal bytes (see the module doc for torn and bad lines).
fn replay(text: &[u8]) -> (Queue, Replay) {
    let mut queue = Queue::default();
    let mut report = Replay::default();
    let complete = match text.iter().rposition(|&b| b == b'\n') {
        Some(i) => i + 1,
        None => 0,
    };
    report.torn_bytes = text.len() - complete;
    let lines: Vec<&[u8]> = text[..complete]
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let n = lines.len();
    for (i, line) in lines.into_iter().enumerate() {
        match serde_json::from_slice::<Record>(line) {
            Ok(r) => {
                queue.apply(r);
                report.records += 1;
            }
            // A bad last line is a torn write that happened to end in a newline
            // byte; anywhere else it is damage.
            Err(_) if i + 1 == n => report.torn_bytes += line.len() + 1,
            Err(_) => report.bad_lines += 1,
        }
    }
    (queue, report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use braid_protocol::event::{Category, Event, Severity};
    use std::os::unix::fs::PermissionsExt;

    fn ev(n: usize) -> Event {
        Event::new(Severity::Info, Category::Link, format!("e{n}"))
    }

    fn messages(q: &Queue) -> Vec<String> {
        q.entries()
            .map(|e| e.env.payload["message"].as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn queued_events_survive_reopen_and_acks_remove_them() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, mut q, replay) = Journal::open(dir.path()).unwrap();
        assert_eq!(
            replay,
            Replay {
                records: 0,
                ..Default::default()
            }
        );
        for i in 0..4 {
            let recs = q.push(&ev(i));
            j.append(&recs).unwrap();
        }
        let sent = q.take_unsent();
        j.append(&[q.confirm(sent[1].seq).unwrap()]).unwrap();
        drop(j);
        let (_j, q2, replay) = Journal::open(dir.path()).unwrap();
        assert_eq!(messages(&q2), ["e2", "e3"]);
        assert_eq!(replay.records, 5 + 1);
        // Same envelopes (ids, ts) after the restart.
        assert_eq!(
            q2.entries().map(|e| e.env.id.clone()).collect::<Vec<_>>(),
            q.entries().map(|e| e.env.id.clone()).collect::<Vec<_>>()
        );
        let meta = fs::metadata(path(dir.path())).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let dmeta = fs::metadata(dir.path().join(DIR_NAME)).unwrap();
        assert_eq!(dmeta.permissions().mode() & 0o777, 0o700);
    }

    #[test]
    fn a_torn_last_line_is_cut_and_a_bad_middle_line_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, mut q, _) = Journal::open(dir.path()).unwrap();
        for i in 0..3 {
            j.append(&q.push(&ev(i))).unwrap();
        }
        drop(j);
        let p = path(dir.path());
        let mut text = fs::read(&p).unwrap();
        // Damage the middle line's JSON, then add a torn record at the end.
        let first_nl = text.iter().position(|&b| b == b'\n').unwrap();
        let second_nl = first_nl
            + 1
            + text[first_nl + 1..]
                .iter()
                .position(|&b| b == b'\n')
                .unwrap();
        text[second_nl - 2] = b'#';
        text.extend_from_slice(br#"{"op":"push","seq":9,"env":{"id":"x"#);
        fs::write(&p, &text).unwrap();
        let (_j, q2, replay) = Journal::open(dir.path()).unwrap();
        assert_eq!(replay.bad_lines, 1);
        assert!(replay.torn_bytes > 10);
        let m = messages(&q2);
        assert_eq!(m.len(), 2, "{m:?}");
        assert!(!fs::read_to_string(&p).unwrap().contains("\"seq\":9"));
    }

    #[test]
    fn compaction_keeps_only_the_live_queue_and_tmp_leftovers_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, mut q, _) = Journal::open(dir.path()).unwrap();
        for round in 0..2000 {
            j.append(&q.push(&ev(round))).unwrap();
            let sent = q.take_unsent();
            j.append(&[q.confirm(sent[0].seq).unwrap()]).unwrap();
            j.maybe_compact(&q).unwrap();
        }
        j.append(&q.push(&ev(5000))).unwrap();
        assert!(
            fs::metadata(path(dir.path())).unwrap().len() < 2 * COMPACT_MIN_BYTES,
            "compaction bounds the file"
        );
        drop(j);
        // A crash during a later compaction leaves a tmp file: ignored and removed.
        fs::write(tmp_path(&path(dir.path())), b"garbage").unwrap();
        let (_j, q2, replay) = Journal::open(dir.path()).unwrap();
        assert_eq!(messages(&q2), ["e5000"]);
        assert_eq!(replay.bad_lines, 0);
        assert!(!tmp_path(&path(dir.path())).exists());
        assert_eq!(q2.entries().next().unwrap().seq, 2000);
    }

    #[test]
    fn an_unwritable_state_dir_is_an_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        fs::write(&file, b"x").unwrap();
        let e = Journal::open(&file).unwrap_err();
        assert!(e.to_string().contains("not-a-dir"), "{e}");
    }
}
