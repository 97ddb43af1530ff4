//! Block device names: the kernel's dev_t (major << 20 | minor, as the BPF
//! programs read `bd_dev`) to "sda", "nvme0n1p2", "loop3", from
//! /sys/dev/block/MAJ:MIN/uevent. Names are cached: devices rarely change.

use std::{collections::HashMap, fs, path::PathBuf, sync::Arc};

/// Major and minor of a kernel-internal dev_t.
pub fn split_dev(dev: u32) -> (u32, u32) {
    (dev >> 20, dev & 0xfffff)
}

/// `DEVNAME=loop3` from the content of a uevent file.
pub fn parse_uevent_devname(uevent: &str) -> Option<&str> {
    uevent
        .lines()
        .find_map(|l| l.strip_prefix("DEVNAME="))
        .map(str::trim)
        .filter(|n| !n.is_empty())
}

pub struct DeviceNames {
    sysfs: PathBuf,
    names: HashMap<u32, Arc<str>>,
}

impl Default for DeviceNames {
    fn default() -> Self {
        Self::new("/sys")
    }
}

impl DeviceNames {
    pub fn new(sysfs: impl Into<PathBuf>) -> Self {
        Self {
            sysfs: sysfs.into(),
            names: HashMap::new(),
        }
    }

    /// The device's name, or "MAJ:MIN" when sysfs does not know it (any
    /// more). A "MAJ:MIN" answer is not cached: a new device may appear.
    pub fn name(&mut self, dev: u32) -> Arc<str> {
        if let Some(name) = self.names.get(&dev) {
            return name.clone();
        }
        let (major, minor) = split_dev(dev);
        let uevent = self.sysfs.join(format!("dev/block/{major}:{minor}/uevent"));
        match fs::read_to_string(uevent)
            .ok()
            .as_deref()
            .and_then(parse_uevent_devname)
        {
            Some(name) => {
                let name: Arc<str> = name.into();
                if self.names.len() > 4096 {
                    self.names.clear();
                }
                self.names.insert(dev, name.clone());
                name
            }
            None => format!("{major}:{minor}").into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_uevent_of_a_loop_device_and_a_partition() {
        let loop_dev = "MAJOR=7\nMINOR=3\nDEVNAME=loop3\nDEVTYPE=disk\nDISKSEQ=12\n";
        assert_eq!(parse_uevent_devname(loop_dev), Some("loop3"));
        let part = "MAJOR=259\nMINOR=2\nDEVNAME=nvme0n1p2\nDEVTYPE=partition\nDISKSEQ=1\nPARTN=2\nPARTUUID=9e3b5a1c-02\n";
        assert_eq!(parse_uevent_devname(part), Some("nvme0n1p2"));
        assert_eq!(parse_uevent_devname("MAJOR=8\nMINOR=0\n"), None);
    }

    #[test]
    fn splits_the_kernel_dev_t() {
        assert_eq!(split_dev((7 << 20) | 3), (7, 3));
        assert_eq!(split_dev((259 << 20) | 1_000_000), (259, 1_000_000));
    }

    #[test]
    fn unknown_devices_read_as_major_minor() {
        let dir = tempfile::tempdir().unwrap();
        let mut names = DeviceNames::new(dir.path());
        assert_eq!(&*names.name((8 << 20) | 1), "8:1");
        fs::create_dir_all(dir.path().join("dev/block/8:1")).unwrap();
        fs::write(
            dir.path().join("dev/block/8:1/uevent"),
            "MAJOR=8\nMINOR=1\nDEVNAME=sda1\nDEVTYPE=partition\n",
        )
        .unwrap();
        assert_eq!(&*names.name((8 << 20) | 1), "sda1");
    }
}
