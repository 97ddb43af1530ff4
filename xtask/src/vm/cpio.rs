//! A writer for the `newc` cpio format, the one the kernel unpacks as an
//! initramfs (the kernel's `Documentation/driver-api/early-userspace/buffer-format.rst`).
//!
//! Written here rather than staged on disk for the `cpio` tool, so that every
//! entry is owned by root and `/dev/console` can be a device node without the
//! builder being root.

use std::io::{self, Read, Write};

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;

pub struct Archive<W: Write> {
    out: W,
    next_ino: u32,
    offset: u64,
}

impl<W: Write> Archive<W> {
    pub fn new(out: W) -> Self {
        Self {
            out,
            next_ino: 1,
            offset: 0,
        }
    }

    /// `path` is relative to the archive's root, with no leading `/`.
    pub fn dir(&mut self, path: &str, perm: u32) -> io::Result<()> {
        self.header(path, S_IFDIR | perm, 2, 0, (0, 0))
    }

    /// A regular file of `len` bytes read from `data`.
    pub fn file(&mut self, path: &str, perm: u32, len: u64, data: impl Read) -> io::Result<()> {
        let len32 = u32::try_from(len)
            .map_err(|_| io::Error::other(format!("{path}: too big for cpio ({len} bytes)")))?;
        self.header(path, S_IFREG | perm, 1, len32, (0, 0))?;
        let copied = io::copy(&mut data.take(len), &mut self.out)?;
        if copied != len {
            return Err(io::Error::other(format!(
                "{path}: changed while archiving ({copied} of {len} bytes)"
            )));
        }
        self.offset += len;
        self.pad()
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> io::Result<()> {
        // The link's target is its data; its length fits: it is a path.
        self.header(path, S_IFLNK | 0o777, 1, target.len() as u32, (0, 0))?;
        self.write(target.as_bytes())?;
        self.pad()
    }

    pub fn char_device(&mut self, path: &str, perm: u32, major: u32, minor: u32) -> io::Result<()> {
        self.header(path, S_IFCHR | perm, 1, 0, (major, minor))
    }

    /// Writes the trailer and returns the writer, flushed.
    pub fn finish(mut self) -> io::Result<W> {
        // The trailer has inode 0, as GNU cpio writes it.
        self.next_ino = 0;
        self.header("TRAILER!!!", 0, 1, 0, (0, 0))?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn header(
        &mut self,
        name: &str,
        mode: u32,
        nlink: u32,
        size: u32,
        (rdev_major, rdev_minor): (u32, u32),
    ) -> io::Result<()> {
        let ino = self.next_ino;
        self.next_ino = self.next_ino.wrapping_add(1);
        // Fields, in order: ino mode uid gid nlink mtime filesize devmajor
        // devminor rdevmajor rdevminor namesize check. mtime 0 keeps the
        // archive reproducible; namesize counts the terminating NUL.
        let fields = [
            ino,
            mode,
            0,
            0,
            nlink,
            0,
            size,
            0,
            0,
            rdev_major,
            rdev_minor,
            name.len() as u32 + 1,
            0,
        ];
        let mut header = String::with_capacity(110);
        header.push_str("070701");
        for field in fields {
            header.push_str(&format!("{field:08x}"));
        }
        self.write(header.as_bytes())?;
        self.write(name.as_bytes())?;
        self.write(&[0])?;
        self.pad()
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.offset += bytes.len() as u64;
        Ok(())
    }

    /// Headers and file data each start on a 4-byte boundary.
    fn pad(&mut self) -> io::Result<()> {
        let padding = (4 - self.offset % 4) % 4;
        self.write(&[0; 3][..padding as usize])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_aligned_and_end_with_the_trailer() {
        let mut archive = Archive::new(Vec::new());
        archive.dir("etc", 0o755).unwrap();
        archive.file("etc/a", 0o644, 3, &b"abc"[..]).unwrap();
        archive.symlink("bin", "usr/bin").unwrap();
        archive.char_device("dev/console", 0o600, 5, 1).unwrap();
        let bytes = archive.finish().unwrap();
        assert_eq!(bytes.len() % 4, 0);
        // Header (110) + "etc\0" (4) = 114, padded to 116.
        assert_eq!(&bytes[..6], b"070701");
        assert_eq!(&bytes[110..114], b"etc\0");
        let file = 116;
        assert_eq!(&bytes[file..file + 6], b"070701");
        // mode field of the file: regular, 0644.
        assert_eq!(&bytes[file + 14..file + 22], b"000081a4");
        // filesize field.
        assert_eq!(&bytes[file + 54..file + 62], b"00000003");
        // Header + "etc/a\0" = 116, already aligned, then the data.
        assert_eq!(&bytes[file + 116..file + 119], b"abc");
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("bin\0"));
        assert!(text.contains("usr/bin"));
        assert!(text.trim_end_matches('\0').ends_with("TRAILER!!!"));
    }
}
