//! The `--output` JSON-lines file.
//!
//! tracer may run for days and the files are handed to other people, so:
//! - a new file is created with mode 0600: events name processes, pods and
//!   command lines, which are not for every local user. An existing file
//!   that another user owns is refused: its owner could read every event,
//!   and could open it up again whatever tracer did to its mode. One that
//!   tracer's own user owns but left open to others (a `touch` under umask
//!   022) is made 0600 before the first line, and that is said on stderr;
//! - a line cut by a full disk is finished, before any other line, once
//!   there is room again (or cut back off when tracer stops first), so a
//!   reader following the file never takes half a line for a whole one;
//! - each line goes out in one write(2) on an O_APPEND descriptor, so a
//!   reader following the file, or a crash, never sees half a line mixed
//!   with another;
//! - disk use is bounded: before a line would push the file past the size
//!   limit the file is rotated (FILE -> FILE.1 -> FILE.2 ...), and at most
//!   `max_files` files exist, the live one included;
//! - a path that cannot be written fails when tracer starts, before anything
//!   is attached, not at the first event.

use std::ffi::{CString, OsString};
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write as _};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{
    FileExt as _, FileTypeExt as _, MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _,
};
use std::os::unix::io::AsRawFd as _;
use std::path::{Path, PathBuf};

/// Mode of every file tracer creates, exactly (the umask is not applied).
const FILE_MODE: u32 = 0o600;
/// Line buffer kept between calls: a JSON event fits many times over.
const INITIAL_BUFFER: usize = 4096;
/// A buffer grown past this by an unusually long line is given back, so one
/// odd event does not pin memory for the rest of the run.
const MAX_KEPT_BUFFER: usize = 1 << 20;

/// Kernel pseudo filesystems (magic numbers from include/uapi/linux/magic.h).
/// Their files may open for writing, as root, and then fail or do something
/// else entirely when written: refusing them up front is the only way to
/// fail at start-up.
const PSEUDO_FILESYSTEMS: [(u32, &str); 13] = [
    (0x0000_9fa0, "proc"),
    (0x6265_6572, "sysfs"),
    (0x6462_6720, "debugfs"),
    (0x7472_6163, "tracefs"),
    (0x0027_e0eb, "cgroup"),
    (0x6367_7270, "cgroup2"),
    (0x7363_6673, "securityfs"),
    (0xcafe_4a11, "bpf"),
    (0x6165_676c, "pstore"),
    (0xde5e_81e4, "efivarfs"),
    (0xf97c_ff8c, "selinuxfs"),
    (0x4341_5d53, "smackfs"),
    (0x4249_4e4d, "binfmt_misc"),
];

/// Appends JSON lines to a size-rotated file; see the module documentation.
pub struct JsonlWriter {
    path: PathBuf,
    file: File,
    /// Size of the live file: read once when it is opened, then counted, so
    /// the write path makes no extra system call.
    file_bytes: u64,
    max_file_bytes: u64,
    max_files: u32,
    /// Line plus newline, assembled here so they leave in a single write(2);
    /// reused so a line costs no allocation.
    buf: Vec<u8>,
    bytes_written: u64,
    rotations: u64,
    /// The older files were shifted by a rotation whose new file could not
    /// be created: the retry must only create it, since shifting again would
    /// delete another old file each time.
    shifted: bool,
    /// The live file ends in an unfinished line (a failed write, or a crash
    /// of an earlier run): the next line starts with a newline so that it is
    /// not glued to the fragment.
    torn: bool,
    /// The end of a line a short write cut (a full disk): written before
    /// any other line, so the fragment in the file is finished, not left.
    unfinished: Vec<u8>,
    /// Bytes after the last newline in the file: the beginning of a cut
    /// line, cut off again at `sync` if it cannot be finished by then.
    fragment_bytes: u64,
    /// Lines in `buf`.
    batch_lines: u64,
    dropped_lines: u64,
}

impl JsonlWriter {
    /// Opens `path` for appending, creating it with mode 0600 if needed; an
    /// existing file keeps its content and mode. Fails at once when the path
    /// cannot be written: a missing directory, a directory, a read-only
    /// filesystem, a file on /proc or another kernel pseudo filesystem, a
    /// FIFO or device, or a directory where the file could not be rotated.
    /// The error message names the path and the reason, on one line (given
    /// a path without newlines).
    ///
    /// `max_file_bytes` must be more than 0 and `max_files` at least 1: that
    /// many files exist at most, the live one plus rotated ones, so the disk
    /// used stays within about `max_files * max_file_bytes`.
    pub fn create(path: &Path, max_file_bytes: u64, max_files: u32) -> io::Result<Self> {
        if max_file_bytes == 0 {
            return Err(invalid(format!(
                "cannot write {}: the maximum file size must be at least 1 byte",
                path.display()
            )));
        }
        if max_files == 0 {
            return Err(invalid(format!(
                "cannot write {}: at least 1 file must be kept",
                path.display()
            )));
        }
        let file = open_log(path)?;
        check_directory(path)?;
        let file_bytes = file
            .metadata()
            .map_err(|e| {
                annotate(
                    e,
                    format_args!("cannot read the size of {}", path.display()),
                )
            })?
            .len();
        let torn = file_bytes > 0 && !ends_with_newline(&file, path, file_bytes);
        Ok(Self {
            path: path.to_path_buf(),
            file,
            file_bytes,
            max_file_bytes,
            max_files,
            buf: Vec::with_capacity(INITIAL_BUFFER),
            bytes_written: 0,
            rotations: 0,
            shifted: false,
            torn,
            unfinished: Vec::new(),
            fragment_bytes: 0,
            batch_lines: 0,
            dropped_lines: 0,
        })
    }

    /// Appends `line` and a newline in one write(2) (repeated only for the
    /// rest of a short write), rotating first when the file is not empty and
    /// the line would take it past the size limit. A line longer than the
    /// limit is still written whole, into a fresh file. `push_line` and
    /// `flush`, for one line.
    ///
    /// `line` must not contain a newline: debug builds assert it; release
    /// builds write each newline as a space, so the file keeps one record
    /// per line (inside a JSON value a raw newline is invalid anyway).
    ///
    /// On error the line is not written, or only its beginning: then its
    /// end goes first at the next write, and nothing else is written until
    /// it has. The writer stays usable: a failed rotation is retried by the
    /// next call.
    pub fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        self.push_line(line)?;
        self.flush()
    }

    /// Adds `line` to the batch that `flush` writes in one write(2): under
    /// a flood of events, one system call for many lines, each whole. When
    /// the line would take the file past the size limit, the batch so far
    /// is written and the file rotated first. On error the line is dropped
    /// (and counted in `dropped_lines`).
    pub fn push_line(&mut self, line: &[u8]) -> io::Result<()> {
        debug_assert!(!line.contains(&b'\n'), "a JSON line contains a newline");
        let needed = (line.len() as u64).saturating_add(1);
        let size = self.file_bytes + self.buf.len() as u64;
        if self.shifted || (size > 0 && size.saturating_add(needed) > self.max_file_bytes) {
            let rotated = self.flush().and_then(|()| self.rotate());
            if rotated.is_err() {
                self.dropped_lines += 1;
            }
            rotated?;
        }
        // After a fragment an earlier run left, the first line starts on a
        // new line.
        let after_fragment = self.buf.is_empty() && self.torn && self.file_bytes > 0;
        encode_line(&mut self.buf, line, after_fragment);
        self.batch_lines += 1;
        Ok(())
    }

    /// Writes the batch of `push_line` in one write(2) (repeated only for
    /// the rest of a short write). The end of a line a full disk cut goes
    /// first: until it is written, the batch is dropped (and counted).
    /// After a short write, what did not fit (the cut line's end and the
    /// whole lines after it) is kept to go first next time.
    pub fn flush(&mut self) -> io::Result<()> {
        if !self.unfinished.is_empty() {
            if let Err(e) = self.finish_line() {
                self.drop_batch();
                return Err(e);
            }
        }
        if self.buf.is_empty() {
            return Ok(());
        }
        let (written, result) = write_fully(&self.file, &self.buf);
        self.advance(written as usize);
        match result {
            Ok(()) => self.torn = false,
            Err(_) if written > 0 => {
                self.torn = false;
                self.unfinished
                    .extend_from_slice(&self.buf[written as usize..]);
            }
            Err(_) => self.dropped_lines += self.batch_lines,
        }
        self.buf.clear();
        self.batch_lines = 0;
        if self.buf.capacity() > MAX_KEPT_BUFFER {
            self.buf = Vec::with_capacity(INITIAL_BUFFER);
        }
        result
    }

    /// Bytes waiting in the batch.
    pub fn batched_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Lines not written over the writer's life: a batch the disk refused,
    /// a failed rotation.
    pub fn dropped_lines(&self) -> u64 {
        self.dropped_lines
    }

    fn drop_batch(&mut self) {
        self.dropped_lines += self.batch_lines;
        self.batch_lines = 0;
        self.buf.clear();
    }

    /// Counts `written` bytes of `buf` as in the file, and how many of them
    /// follow its last newline.
    fn advance(&mut self, written: usize) {
        self.file_bytes += written as u64;
        self.bytes_written += written as u64;
        let chunk = &self.buf[..written];
        self.fragment_bytes = match chunk.iter().rposition(|&b| b == b'\n') {
            Some(end) => (written - end - 1) as u64,
            None => self.fragment_bytes + written as u64,
        };
    }

    /// Flushes the file to stable storage (fsync), for shutdown. A line a
    /// full disk cut is finished if there is room now, else its beginning
    /// is cut off, so the file ends with a whole line.
    pub fn sync(&mut self) -> io::Result<()> {
        // A batch the disk refuses is counted in `dropped_lines`.
        let _ = self.flush();
        if !self.unfinished.is_empty() && self.finish_line().is_err() {
            self.cut_fragment()?;
        }
        self.file.sync_all()
    }

    /// Writes the rest of the batch a short write cut.
    fn finish_line(&mut self) -> io::Result<()> {
        let (written, result) = write_fully(&self.file, &self.unfinished);
        std::mem::swap(&mut self.buf, &mut self.unfinished);
        self.advance(written as usize);
        std::mem::swap(&mut self.buf, &mut self.unfinished);
        self.unfinished.drain(..written as usize);
        if result.is_ok() && self.unfinished.capacity() > MAX_KEPT_BUFFER {
            self.unfinished = Vec::new();
        }
        result
    }

    /// Truncates the file back to before the unfinished line. The size is
    /// read from the file, not counted: another writer may have appended.
    fn cut_fragment(&mut self) -> io::Result<()> {
        let size = self.file.metadata()?.len();
        self.file
            .set_len(size.saturating_sub(self.fragment_bytes))?;
        self.file_bytes = self.file_bytes.saturating_sub(self.fragment_bytes);
        self.bytes_written = self.bytes_written.saturating_sub(self.fragment_bytes);
        self.fragment_bytes = 0;
        self.dropped_lines += self.unfinished.iter().filter(|&&b| b == b'\n').count() as u64;
        self.unfinished.clear();
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes written over the writer's life, newlines included, across
    /// rotations.
    pub fn bytes_written(&self) -> u64 {
        self.bytes_written
    }

    /// Rotations done over the writer's life.
    pub fn rotations(&self) -> u64 {
        self.rotations
    }

    fn rotate(&mut self) -> io::Result<()> {
        if !self.shifted {
            self.shift_files()?;
            self.shifted = true;
        }
        let file = open_log(&self.path)?;
        // Normally 0; another writer may have created the file meanwhile.
        let file_bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
        self.file = file;
        self.file_bytes = file_bytes;
        self.shifted = false;
        self.torn = false;
        self.rotations += 1;
        Ok(())
    }

    /// Makes room for a new live file: drops the oldest file and any beyond
    /// the limit, and renames FILE.k to FILE.k+1 and FILE to FILE.1. Files
    /// that are missing (removed by hand, or never made) are skipped.
    fn shift_files(&self) -> io::Result<()> {
        let n = u64::from(self.max_files);
        // With n files in all, FILE.{n-1} is the oldest kept, and anything
        // from there up goes: higher numbers are left by an earlier run with
        // a larger limit and would otherwise stay forever.
        let first_dropped = n.saturating_sub(1).max(1);
        remove_if_exists(&self.numbered(first_dropped))?;
        let mut k = first_dropped + 1;
        while remove_if_exists(&self.numbered(k))? {
            k += 1;
        }
        if n == 1 {
            return remove_if_exists(&self.path).map(drop);
        }
        for k in (1..n - 1).rev() {
            rename_if_exists(&self.numbered(k), &self.numbered(k + 1))?;
        }
        rename_if_exists(&self.path, &self.numbered(1))
    }

    /// FILE.k
    fn numbered(&self, k: u64) -> PathBuf {
        let mut name = OsString::from(self.path.as_os_str());
        name.push(format!(".{k}"));
        PathBuf::from(name)
    }
}

/// Appends `line` and a newline to `buf`, newlines inside `line` written as
/// spaces, after a newline that ends a torn fragment when `after_fragment`.
fn encode_line(buf: &mut Vec<u8>, line: &[u8], after_fragment: bool) {
    if after_fragment {
        buf.push(b'\n');
    }
    let start = buf.len();
    buf.extend_from_slice(line);
    // A search (memchr) first: serde_json never writes a raw newline, so
    // the byte-by-byte rewrite is for the debug-asserted bug only.
    if line.contains(&b'\n') {
        for byte in &mut buf[start..] {
            if *byte == b'\n' {
                *byte = b' ';
            }
        }
    }
    buf.push(b'\n');
}

/// Writes all of `bytes`, one write(2) unless the kernel takes less, and
/// returns how many bytes reached the file even when it fails.
fn write_fully(mut file: &File, bytes: &[u8]) -> (u64, io::Result<()>) {
    let mut done = 0;
    while done < bytes.len() {
        match file.write(&bytes[done..]) {
            Ok(0) => {
                return (
                    done as u64,
                    Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "the file took no bytes",
                    )),
                )
            }
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (done as u64, Err(e)),
        }
    }
    (done as u64, Ok(()))
}

/// Opens `path` as a log: an existing regular file for appending, or a new
/// one with mode 0600. The error names the path.
fn open_log(path: &Path) -> io::Result<File> {
    let fail = |e: io::Error| {
        annotate(
            e,
            format_args!("cannot open {} for appending", path.display()),
        )
    };
    // Rotation renames the path itself: for a symbolic link that would move
    // the link and leave its target growing (or, for /dev/stdout, rename a
    // device node). A FIFO would block open(2) until a reader appears, and a
    // device or socket cannot be rotated. Refuse them by name before opening.
    if let Ok(meta) = fs::symlink_metadata(path) {
        let kind = meta.file_type();
        if kind.is_symlink() {
            return Err(fail(invalid(
                "it is a symbolic link, and rotation would rename the link: give the file's own path",
            )));
        }
        if kind.is_fifo() || kind.is_char_device() || kind.is_block_device() || kind.is_socket() {
            return Err(fail(invalid(
                "not a regular file (a FIFO, device or socket cannot be rotated)",
            )));
        }
    }
    let file = open_or_create(path).map_err(fail)?;
    check_opened(&file, path).map_err(fail)?;
    Ok(file)
}

fn open_or_create(path: &Path) -> io::Result<File> {
    // Should something replace the path after the checks in open_log:
    // O_NOFOLLOW refuses a symbolic link, and with O_NONBLOCK a FIFO fails
    // to open instead of hanging (the check on the descriptor then refuses
    // anything but a regular file).
    let flags = libc::O_NONBLOCK | libc::O_NOFOLLOW;
    let mut last_error = None;
    // The file may be removed between a failed create and the open of the
    // existing file: a few tries settle it.
    for _ in 0..3 {
        match OpenOptions::new()
            .append(true)
            .create_new(true)
            .mode(FILE_MODE)
            .custom_flags(flags)
            .open(path)
        {
            Ok(file) => {
                // The umask may have cleared bits of 0600: the owner must
                // be able to read back what tracer wrote.
                file.set_permissions(Permissions::from_mode(FILE_MODE))?;
                return Ok(file);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        match OpenOptions::new()
            .append(true)
            .custom_flags(flags)
            .open(path)
        {
            Ok(file) => return Ok(file),
            // Removed in between: try again.
            Err(e) if e.kind() == io::ErrorKind::NotFound => last_error = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last_error.unwrap_or_else(|| io::ErrorKind::NotFound.into()))
}

/// Refuses what opened but cannot serve as a rotated log or is another
/// user's, makes a file of tracer's user 0600, and makes the descriptor
/// blocking again.
fn check_opened(file: &File, path: &Path) -> io::Result<()> {
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(invalid(
            "not a regular file (a FIFO, device or socket cannot be rotated)",
        ));
    }
    let fd = file.as_raw_fd();
    // Before anything changes the file: a pseudo filesystem's files (a
    // `/proc` entry) are the kernel's, and their mode is not tracer's to set.
    // SAFETY: fstatfs only writes into the zeroed struct it is given, and
    // `fd` is open for the duration of the call.
    let mut fs_info: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstatfs(fd, &mut fs_info) } == 0 {
        // Every magic number fits in 32 bits; the field's type varies by C
        // library.
        let magic = fs_info.f_type as u32;
        if let Some((_, name)) = PSEUDO_FILESYSTEMS.iter().find(|(m, _)| *m == magic) {
            return Err(invalid(format!(
                "it is on {name}, a kernel pseudo filesystem, not a place for a log"
            )));
        }
    }
    let owner = nix::unistd::geteuid().as_raw();
    if meta.uid() != owner {
        return Err(invalid(format!(
            "it belongs to user {}, not to tracer's user {owner}: that user could read every event; remove it or write elsewhere",
            meta.uid()
        )));
    }
    if meta.mode() & 0o077 != 0 {
        file.set_permissions(Permissions::from_mode(FILE_MODE))?;
        tracing::warn!(
            "{} was open to other users (mode {:o}): made it {FILE_MODE:o} before writing to it",
            path.display(),
            meta.mode() & 0o777
        );
    }
    // SAFETY: fcntl with F_GETFL/F_SETFL on an open descriptor touches no
    // memory.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Rotation renames files in the directory: check now that it can, rather
/// than fail at the first rotation, maybe days later. access(2) checks the
/// real user, which for tracer (never set-user-ID) is the effective one.
fn check_directory(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let fail = |e: io::Error| {
        annotate(
            e,
            format_args!(
                "cannot rotate {}: directory {} is not writable",
                path.display(),
                dir.display()
            ),
        )
    };
    let c_dir = CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| fail(invalid("the path contains a NUL byte")))?;
    // SAFETY: `c_dir` is a valid NUL-terminated string for the call.
    if unsafe { libc::access(c_dir.as_ptr(), libc::W_OK | libc::X_OK) } != 0 {
        return Err(fail(io::Error::last_os_error()));
    }
    Ok(())
}

/// Whether the existing content ends a line. The log is open for appending
/// only, so the last byte is read through a second, read-only descriptor;
/// when that is not possible the file is assumed to be whole.
fn ends_with_newline(file: &File, path: &Path, size: u64) -> bool {
    let mut last = [0u8];
    let read = File::open(path).and_then(|reader| {
        // Only trust the reader if it is the same file as the log.
        let (a, b) = (reader.metadata()?, file.metadata()?);
        if (a.dev(), a.ino()) != (b.dev(), b.ino()) {
            return Ok(true);
        }
        reader.read_exact_at(&mut last, size - 1)?;
        Ok(last[0] == b'\n')
    });
    read.unwrap_or(true)
}

/// Removes `path`; Ok(false) when there was nothing to remove.
fn remove_if_exists(path: &Path) -> io::Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(annotate(
            e,
            format_args!("cannot remove {}", path.display()),
        )),
    }
}

fn rename_if_exists(from: &Path, to: &Path) -> io::Result<()> {
    match fs::rename(from, to) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(annotate(
            e,
            format_args!("cannot rename {} to {}", from.display(), to.display()),
        )),
    }
}

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message.into())
}

/// "`what`: `e`", keeping the error's kind.
fn annotate(e: io::Error, what: std::fmt::Arguments<'_>) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn read(path: &Path) -> String {
        fs::read_to_string(path).unwrap()
    }

    /// All files in `dir`, by name.
    fn files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn new_file_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let mut w = JsonlWriter::create(&path, 1 << 20, 4).unwrap();
        assert_eq!(mode(&path), 0o600);
        w.write_line(br#"{"a":1}"#).unwrap();
        w.write_line(br#"{"b":2}"#).unwrap();
        w.sync().unwrap();
        assert_eq!(read(&path), "{\"a\":1}\n{\"b\":2}\n");
        assert_eq!(w.path(), path);
        assert_eq!(w.bytes_written(), 16);
        assert_eq!(w.rotations(), 0);
    }

    #[test]
    fn existing_file_is_appended_to() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        fs::write(&path, "old\n").unwrap();
        fs::set_permissions(&path, Permissions::from_mode(0o640)).unwrap();
        let mut w = JsonlWriter::create(&path, 1 << 20, 2).unwrap();
        w.write_line(b"new").unwrap();
        assert_eq!(read(&path), "old\nnew\n");
        assert_eq!(mode(&path), 0o600, "no other user reads the new lines");
        drop(w);
        let mut w = JsonlWriter::create(&path, 1 << 20, 2).unwrap();
        w.write_line(b"again").unwrap();
        assert_eq!(read(&path), "old\nnew\nagain\n");
    }

    /// The issue's case: `nobody` creates the file first in a shared sticky
    /// directory, open to all, to read every event.
    #[test]
    fn a_file_another_user_made_is_refused() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test gives a file to another user: run it as root"
        );
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), Permissions::from_mode(0o1777)).unwrap();
        let path = dir.path().join("e.jsonl");
        fs::write(&path, "").unwrap();
        fs::set_permissions(&path, Permissions::from_mode(0o666)).unwrap();
        std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
        let message = create_error(&path);
        assert!(message.contains("belongs to user 65534"), "{message}");
        assert_eq!(mode(&path), 0o666, "another user's file is left alone");
        assert_eq!(read(&path), "");
    }

    /// A filesystem of its own, `size` big: a full disk for real.
    struct SmallTmpfs(tempfile::TempDir);

    impl SmallTmpfs {
        fn mount(size: &str) -> Self {
            assert!(
                nix::unistd::geteuid().is_root(),
                "this test mounts a small tmpfs to fill it: run it as root"
            );
            let dir = tempfile::tempdir().unwrap();
            nix::mount::mount(
                Some("tmpfs"),
                dir.path(),
                Some("tmpfs"),
                nix::mount::MsFlags::empty(),
                Some(format!("size={size},mode=0700").as_str()),
            )
            .expect("mounting a tmpfs");
            Self(dir)
        }

        fn path(&self) -> &Path {
            self.0.path()
        }
    }

    impl Drop for SmallTmpfs {
        fn drop(&mut self) {
            let _ = nix::mount::umount2(self.0.path(), nix::mount::MntFlags::MNT_DETACH);
        }
    }

    /// The disk fills in the middle of a line: no half line is ever
    /// followed by another line. The cut line is finished once there is
    /// room; a line cut when tracer stops is removed.
    #[test]
    fn a_full_disk_leaves_no_half_line() {
        let disk = SmallTmpfs::mount("64k");
        let filler = disk.path().join("filler");
        fs::write(&filler, vec![0u8; 16 << 10]).unwrap();
        let path = disk.path().join("e.jsonl");
        let mut w = JsonlWriter::create(&path, u64::MAX, 2).unwrap();
        let line = |n: u32| format!("{{\"n\":{n},\"pad\":\"{}\"}}", "x".repeat(1000));
        let mut n = 0;
        while w.write_line(line(n).as_bytes()).is_ok() {
            n += 1;
            assert!(n < 1000, "the filesystem never filled");
        }
        let text = read(&path);
        assert!(
            !text.ends_with('\n'),
            "a line was cut: the 64k disk is full"
        );
        for k in 1..4 {
            assert!(w.write_line(line(n + k).as_bytes()).is_err());
        }
        fs::remove_file(&filler).unwrap();
        for k in 4..8 {
            w.write_line(line(n + k).as_bytes()).unwrap();
        }
        let text = read(&path);
        let numbers: Vec<u64> = text
            .lines()
            .map(|l| {
                let v: serde_json::Value =
                    serde_json::from_str(l).unwrap_or_else(|e| panic!("half a line ({e}): {l}"));
                v["n"].as_u64().unwrap()
            })
            .collect();
        let n = u64::from(n);
        let mut expected: Vec<u64> = (0..=n).collect();
        expected.extend(n + 4..n + 8);
        assert_eq!(
            numbers, expected,
            "the cut line finished, the refused ones left out"
        );

        // Full again, and tracer stops: the cut line is taken back.
        let mut k = 8;
        while w.write_line(line(n as u32 + k).as_bytes()).is_ok() {
            k += 1;
        }
        assert!(!read(&path).ends_with('\n'));
        w.sync().unwrap();
        let text = read(&path);
        assert!(text.ends_with('\n'), "the file ends with a whole line");
        for l in text.lines() {
            serde_json::from_str::<serde_json::Value>(l)
                .unwrap_or_else(|e| panic!("half a line ({e}): {l}"));
        }
    }

    #[test]
    fn unfinished_last_line_is_not_continued() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        fs::write(&path, "{\"cut\":").unwrap();
        let mut w = JsonlWriter::create(&path, 1 << 20, 2).unwrap();
        w.write_line(b"{}").unwrap();
        w.write_line(b"{}").unwrap();
        assert_eq!(read(&path), "{\"cut\":\n{}\n{}\n");
    }

    #[test]
    fn rotation_names_and_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ev.jsonl");
        // 5 bytes a line, 2 lines a file.
        let mut w = JsonlWriter::create(&path, 10, 3).unwrap();
        for i in 0..10 {
            w.write_line(format!("l{i:03}").as_bytes()).unwrap();
        }
        assert_eq!(files(dir.path()), ["ev.jsonl", "ev.jsonl.1", "ev.jsonl.2"]);
        assert_eq!(read(&path), "l008\nl009\n");
        assert_eq!(read(&dir.path().join("ev.jsonl.1")), "l006\nl007\n");
        assert_eq!(read(&dir.path().join("ev.jsonl.2")), "l004\nl005\n");
        assert_eq!(w.rotations(), 4);
        assert_eq!(w.bytes_written(), 50);
        for name in files(dir.path()) {
            assert_eq!(mode(&dir.path().join(name)), 0o600);
        }
    }

    #[test]
    fn bounded_whole_lines_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.jsonl");
        let (max_bytes, max_files) = (100u64, 4u32);
        let mut w = JsonlWriter::create(&path, max_bytes, max_files).unwrap();
        let mut seed = 12345u32;
        let mut longest = 0u64;
        for seq in 0..600u32 {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            // Mostly short lines, now and then one longer than a file.
            let pad = if seq % 97 == 50 {
                150
            } else {
                (seed >> 16) as usize % 40
            };
            let line = format!("{seq}:{}", "x".repeat(pad));
            longest = longest.max(line.len() as u64 + 1);
            w.write_line(line.as_bytes()).unwrap();

            let names = files(dir.path());
            assert!(names.len() <= max_files as usize, "{names:?}");
            let mut total = 0;
            let mut seqs = Vec::new();
            // Oldest first: e.jsonl.3, .2, .1, then e.jsonl.
            for k in (0..max_files).rev() {
                let p = if k == 0 {
                    path.clone()
                } else {
                    w.numbered(u64::from(k))
                };
                let Ok(text) = fs::read_to_string(&p) else {
                    continue;
                };
                let size = text.len() as u64;
                total += size;
                assert!(text.ends_with('\n'), "{p:?}");
                let lines: Vec<&str> = text.lines().collect();
                assert!(
                    size <= max_bytes || lines.len() == 1,
                    "{p:?} is {size} bytes"
                );
                for l in lines {
                    let (n, rest) = l.split_once(':').expect("a whole line");
                    assert!(rest.bytes().all(|b| b == b'x'));
                    seqs.push(n.parse::<u32>().unwrap());
                }
            }
            assert!(
                total <= u64::from(max_files) * max_bytes + longest,
                "{total}"
            );
            assert_eq!(seqs.last(), Some(&seq));
            assert!(seqs.windows(2).all(|p| p[1] == p[0] + 1), "{seqs:?}");
        }
        assert!(w.rotations() > 10);
    }

    #[test]
    fn long_line_gets_a_file_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.jsonl");
        let mut w = JsonlWriter::create(&path, 10, 3).unwrap();
        let long = "y".repeat(50);
        w.write_line(b"short").unwrap();
        w.write_line(long.as_bytes()).unwrap();
        assert_eq!(read(&path), format!("{long}\n"));
        assert_eq!(read(&w.numbered(1)), "short\n");
        w.write_line(b"next").unwrap();
        assert_eq!(read(&path), "next\n");
        assert_eq!(read(&w.numbered(1)), format!("{long}\n"));
        assert_eq!(read(&w.numbered(2)), "short\n");
        // A long line first in an empty file is written without rotating.
        let other = dir.path().join("f.jsonl");
        let mut w = JsonlWriter::create(&other, 10, 3).unwrap();
        w.write_line(long.as_bytes()).unwrap();
        assert_eq!(w.rotations(), 0);
        assert_eq!(read(&other), format!("{long}\n"));
    }

    #[test]
    fn a_single_file_is_recreated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.jsonl");
        // Left by an earlier run that kept more files.
        fs::write(dir.path().join("e.jsonl.1"), "stale\n").unwrap();
        let mut w = JsonlWriter::create(&path, 12, 1).unwrap();
        for i in 0..7 {
            w.write_line(format!("line{i}").as_bytes()).unwrap();
        }
        assert_eq!(files(dir.path()), ["e.jsonl"]);
        assert_eq!(read(&path), "line6\n");
        assert_eq!(mode(&path), 0o600);
        assert_eq!(w.rotations(), 3);
    }

    #[test]
    fn files_beyond_the_limit_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.jsonl");
        for k in 1..=6 {
            fs::write(dir.path().join(format!("e.jsonl.{k}")), format!("{k}\n")).unwrap();
        }
        fs::write(dir.path().join("e.jsonl.9"), "gap\n").unwrap();
        fs::write(dir.path().join("unrelated"), "keep\n").unwrap();
        let mut w = JsonlWriter::create(&path, 3, 3).unwrap();
        w.write_line(b"a").unwrap();
        w.write_line(b"b").unwrap();
        assert_eq!(
            files(dir.path()),
            [
                "e.jsonl",
                "e.jsonl.1",
                "e.jsonl.2",
                "e.jsonl.9",
                "unrelated"
            ],
            "only the run of numbers after the limit is known to be tracer's"
        );
        assert_eq!(read(&path), "b\n");
        assert_eq!(read(&w.numbered(1)), "a\n");
        assert_eq!(read(&w.numbered(2)), "1\n");
    }

    #[test]
    fn live_file_removed_by_hand() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.jsonl");
        let mut w = JsonlWriter::create(&path, 6, 3).unwrap();
        w.write_line(b"one").unwrap();
        fs::remove_file(&path).unwrap();
        w.write_line(b"two").unwrap();
        assert_eq!(files(dir.path()), ["e.jsonl"]);
        assert_eq!(read(&path), "two\n");
        assert_eq!(mode(&path), 0o600);
    }

    fn create_error(path: &Path) -> String {
        let err = JsonlWriter::create(path, 1 << 20, 2)
            .err()
            .expect("should fail");
        let message = err.to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(!message.contains('\n'), "{message}");
        message
    }

    #[test]
    fn missing_directory() {
        let dir = tempfile::tempdir().unwrap();
        let message = create_error(&dir.path().join("nope/events.jsonl"));
        assert!(message.contains("No such file or directory"), "{message}");
    }

    #[test]
    fn directory_path() {
        let dir = tempfile::tempdir().unwrap();
        let message = create_error(dir.path());
        assert!(message.contains("directory"), "{message}");
    }

    #[test]
    fn proc_file() {
        let before = fs::read_to_string("/proc/version").unwrap();
        create_error(Path::new("/proc/version"));
        create_error(Path::new("/proc/tracer-events.jsonl"));
        assert_eq!(fs::read_to_string("/proc/version").unwrap(), before);
    }

    #[test]
    fn fifo_path_fails_without_hanging() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fifo");
        let c_path = CString::new(path.as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        let message = create_error(&path);
        assert!(message.contains("regular file"), "{message}");
    }

    #[test]
    fn symlink_path_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("real.jsonl");
        fs::write(&target, "x\n").unwrap();
        let link = dir.path().join("link.jsonl");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let message = create_error(&link);
        assert!(message.contains("symbolic link"), "{message}");
        let dangling = dir.path().join("dangling.jsonl");
        std::os::unix::fs::symlink(dir.path().join("missing"), &dangling).unwrap();
        create_error(&dangling);
        assert_eq!(read(&target), "x\n");
        assert!(!dir.path().join("missing").exists());
    }

    #[test]
    fn limits_must_be_positive() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.jsonl");
        assert!(JsonlWriter::create(&path, 0, 2).is_err());
        assert!(JsonlWriter::create(&path, 10, 0).is_err());
        assert!(!path.exists(), "nothing created for bad limits");
    }

    #[test]
    fn relative_path_in_current_directory() {
        // Only checks that a bare file name's directory is taken as "."; the
        // file itself is made in a temporary directory by absolute path.
        let dir = tempfile::tempdir().unwrap();
        assert!(check_directory(Path::new("events.jsonl")).is_ok());
        assert!(check_directory(&dir.path().join("events.jsonl")).is_ok());
    }

    #[test]
    fn encoding() {
        let mut buf = Vec::new();
        encode_line(&mut buf, b"{\"a\":\n1}", false);
        assert_eq!(buf, b"{\"a\": 1}\n");
        buf.clear();
        encode_line(&mut buf, b"{}", true);
        assert_eq!(buf, b"\n{}\n");
        buf.clear();
        encode_line(&mut buf, b"", false);
        assert_eq!(buf, b"\n");
    }

    /// A batch is one write(2) of whole lines; rotation still happens
    /// between lines, never inside the batch's file.
    #[test]
    fn batches_rotate_between_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.jsonl");
        let mut w = JsonlWriter::create(&path, 12, 3).unwrap();
        for i in 0..5 {
            w.push_line(format!("l{i:03}").as_bytes()).unwrap();
        }
        w.flush().unwrap();
        assert_eq!(read(&path), "l004\n");
        assert_eq!(read(&w.numbered(1)), "l002\nl003\n");
        assert_eq!(read(&w.numbered(2)), "l000\nl001\n");
        assert_eq!(w.batched_bytes(), 0);
        assert_eq!(w.dropped_lines(), 0);
    }

    #[test]
    fn lines_share_one_write() {
        // Two writers on the same file (as after a restart overlapping the
        // old process) interleave whole lines only.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.jsonl");
        let mut a = JsonlWriter::create(&path, u64::MAX, 2).unwrap();
        let mut b = JsonlWriter::create(&path, u64::MAX, 2).unwrap();
        let line_a = "a".repeat(3000);
        let line_b = "b".repeat(3000);
        let handle = std::thread::spawn(move || {
            for _ in 0..200 {
                b.write_line(line_b.as_bytes()).unwrap();
            }
        });
        for _ in 0..200 {
            a.write_line(line_a.as_bytes()).unwrap();
        }
        handle.join().unwrap();
        let text = read(&path);
        assert_eq!(text.lines().count(), 400);
        for l in text.lines() {
            assert!(
                l.len() == 3000 && (l.bytes().all(|c| c == b'a') || l.bytes().all(|c| c == b'b'))
            );
        }
        assert_eq!(fs::metadata(&path).unwrap().size(), 400 * 3001);
    }

    #[cfg(debug_assertions)]
    #[test]
    #[should_panic(expected = "newline")]
    fn newline_in_line_is_a_bug() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = JsonlWriter::create(&dir.path().join("e.jsonl"), 100, 2).unwrap();
        let _ = w.write_line(b"a\nb");
    }
}
