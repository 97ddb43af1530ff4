//! tracer's JSON lines, followed as they are written, across tracer's own
//! rotation (FILE becomes FILE.1, FILE.1 becomes FILE.2, ...): the file may
//! hold an earlier run's records (a node's /var/log/tracer), and a busy node
//! fills and rotates it many times a minute.

use std::{
    cell::RefCell,
    fs,
    io::{BufRead as _, BufReader},
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Result};
use serde_json::Value;

/// The records appended to a file from the moment this was made, those
/// whose line `keep` accepts parsed and kept in memory (a test that does not
/// keep up with tracer loses records to rotation, so lines are sorted out
/// before they are parsed).
pub struct Records {
    state: RefCell<Follower>,
}

struct Follower {
    path: PathBuf,
    keep: fn(&str) -> bool,
    /// The file being read (it may have been renamed since), and how far.
    reader: Option<(BufReader<fs::File>, u64)>,
    /// A line read without its newline yet.
    partial: String,
    kept: Vec<Value>,
    /// Records read in all, kept or not.
    read: u64,
}

impl Records {
    /// The records appended to `path` from now on.
    pub fn appended_to(path: &Path, keep: fn(&str) -> bool) -> Self {
        let reader = fs::File::open(path).ok().and_then(|file| {
            let inode = file.metadata().ok()?.ino();
            let mut reader = BufReader::new(file);
            std::io::Seek::seek(&mut reader, std::io::SeekFrom::End(0)).ok()?;
            Some((reader, inode))
        });
        Self {
            state: RefCell::new(Follower {
                path: path.to_path_buf(),
                keep,
                reader,
                partial: String::new(),
                kept: Vec::new(),
                read: 0,
            }),
        }
    }

    /// The first kept record matching `pred`, waiting up to `timeout`;
    /// `alive` says whether the tracer writing them still runs (no point
    /// waiting for a dead one).
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        mut alive: impl FnMut() -> Result<()>,
        pred: impl Fn(&Value) -> bool,
    ) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            self.state.borrow_mut().catch_up()?;
            if let Some(found) = self.state.borrow().kept.iter().find(|r| pred(r)) {
                return Ok(found.clone());
            }
            if let Err(e) = alive() {
                bail!("{e:#}, before {what}; {}", self.summary());
            }
            if Instant::now() > deadline {
                bail!("no {what} within {timeout:?}; {}", self.summary());
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// How many records were read, and the last ones kept.
    fn summary(&self) -> String {
        let state = self.state.borrow();
        let last: Vec<String> = state
            .kept
            .iter()
            .rev()
            .take(20)
            .rev()
            .map(Value::to_string)
            .collect();
        format!(
            "{} records read from {}, {} kept, the last ones:\n{}",
            state.read,
            state.path.display(),
            state.kept.len(),
            last.join("\n")
        )
    }
}

impl Follower {
    /// Reads what was appended, following the file through rotations.
    fn catch_up(&mut self) -> Result<()> {
        loop {
            let Some(inode) = self.reader.as_ref().map(|(_, inode)| *inode) else {
                // No file yet: tracer creates it.
                let Ok(file) = fs::File::open(&self.path) else {
                    return Ok(());
                };
                let inode = file.metadata()?.ino();
                self.reader = Some((BufReader::new(file), inode));
                continue;
            };
            self.drain()?;
            // At the end of our file: still the current one, or rotated away?
            let current = fs::metadata(&self.path).map(|m| m.ino()).ok();
            if current == Some(inode) || current.is_none() {
                return Ok(());
            }
            // tracer may have written to our file between the read above
            // and its rename: read it to its end, now final.
            self.drain()?;
            self.reader = match self.renamed_to(inode) {
                // Ours is now FILE.k: the next one written is FILE.(k-1).
                Some(k) => {
                    let next = if k == 1 {
                        self.path.clone()
                    } else {
                        rotated(&self.path, k - 1)
                    };
                    let file = fs::File::open(&next)?;
                    let inode = file.metadata()?.ino();
                    Some((BufReader::new(file), inode))
                }
                None => bail!(
                    "records were lost: {} rotated past its last file before the test read it",
                    self.path.display()
                ),
            };
        }
    }

    /// Reads the current file to its end, keeping what `keep` accepts.
    fn drain(&mut self) -> Result<()> {
        let Some((reader, _)) = self.reader.as_mut() else {
            return Ok(());
        };
        let mut line = String::new();
        while reader.read_line(&mut line)? > 0 {
            if !line.ends_with('\n') {
                self.partial.push_str(&line);
                line.clear();
                continue;
            }
            let whole = std::mem::take(&mut self.partial) + &line;
            line.clear();
            self.read += 1;
            if (self.keep)(&whole) {
                if let Ok(record) = serde_json::from_str::<Value>(&whole) {
                    self.kept.push(record);
                }
            }
        }
        Ok(())
    }

    /// The k of the FILE.k that now has `inode`.
    fn renamed_to(&self, inode: u64) -> Option<u32> {
        (1..=1000).find(|&k| fs::metadata(rotated(&self.path, k)).is_ok_and(|m| m.ino() == inode))
    }
}

fn rotated(path: &Path, k: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{k}"));
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    fn append(path: &Path, lines: &[&str]) {
        let mut file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        for line in lines {
            writeln!(file, "{line}").unwrap();
        }
    }

    /// As tracer rotates with 3 files: FILE.1 -> FILE.2, FILE -> FILE.1.
    fn rotate(path: &Path) {
        let _ = fs::rename(rotated(path, 1), rotated(path, 2));
        fs::rename(path, rotated(path, 1)).unwrap();
    }

    fn numbers(records: &Records) -> Vec<u64> {
        records
            .state
            .borrow()
            .kept
            .iter()
            .map(|r| r["n"].as_u64().unwrap())
            .collect()
    }

    #[test]
    fn records_are_followed_across_rotations_without_loss() {
        let dir = std::env::temp_dir().join(format!("tracer-records-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("events.jsonl");
        append(&path, &[r#"{"n":0}"#]);
        // What was there before is an earlier run's.
        let records = Records::appended_to(&path, |line| !line.contains("skip"));
        append(&path, &[r#"{"n":1}"#, r#"{"n":2,"skip":true}"#]);
        records.state.borrow_mut().catch_up().unwrap();
        // Written after the test read the file, then rotated away at once;
        // then rotated twice before the test looks again.
        append(&path, &[r#"{"n":3}"#]);
        rotate(&path);
        append(&path, &[r#"{"n":4}"#]);
        rotate(&path);
        append(&path, &[r#"{"n":5}"#]);
        fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(br#"{"n":"#)
            .unwrap();
        records.state.borrow_mut().catch_up().unwrap();
        // Half a line is left until its end is written.
        assert_eq!(numbers(&records), [1, 3, 4, 5]);
        append(&path, &[r#"6}"#]);
        let found = records
            .wait_for("n 6", Duration::from_secs(1), || Ok(()), |r| r["n"] == 6)
            .unwrap();
        assert_eq!(found["n"], 6);
        assert_eq!(records.state.borrow().read, 6);
        fs::remove_dir_all(&dir).unwrap();
    }
}
