//! The guest's whole file system: an initramfs holding tracer, the scenario
//! binary, the workload helper, the host programs the scenarios run (with
//! their shared libraries), busybox for the init script, each guest kernel's
//! modules, and the init itself.
//!
//! Host files keep their host paths in the guest: the scenario binary has
//! tracer's absolute path compiled in, and the programs find their libraries
//! where the host's dynamic loader would.

use std::{
    collections::BTreeMap,
    fs,
    io::BufWriter,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _, Result};

use super::{cpio::Archive, modules::KernelModules};

/// Programs the scenarios run, by the name they call, with the Debian package
/// that ships the real one. The real ones, not busybox applets: the tests
/// depend on their exact behaviour (procps `pkill -F`, dash as `/bin/sh`
/// renamed to another comm, util-linux `unshare --propagation`).
const PROGRAMS: &[(&str, &str)] = &[
    ("sh", "dash"),
    ("bash", "bash"),
    ("pkill", "procps"),
    ("unshare", "util-linux"),
    ("mountpoint", "util-linux"),
    ("umount", "mount"),
    ("true", "coreutils"),
    ("sleep", "coreutils"),
    ("head", "coreutils"),
    // The DNS scenarios' labs: namespaces, links and addresses; the
    // Service's rules; conntrack's counters and table; glibc's resolver.
    ("ip", "iproute2"),
    ("xtables-nft-multi", "iptables"),
    ("conntrack", "conntrack"),
    ("getent", "libc-bin"),
    ("dd", "coreutils"),
    ("losetup", "util-linux"),
    ("fsfreeze", "util-linux"),
    ("mount", "mount"),
    ("mkfs.ext4", "e2fsprogs"),
    ("tmux", "tmux"),
];

/// What tmux needs besides its libraries (`tracer top` itself needs none of
/// it): terminal descriptions, and a UTF-8 locale (it refuses to start
/// without one and falls back to C.UTF-8, whose character table this is).
const TMUX_FILES: &[&str] = &[
    "/lib/terminfo/x/xterm",
    "/lib/terminfo/t/tmux",
    "/lib/terminfo/t/tmux-256color",
    "/lib/terminfo/s/screen",
    "/usr/lib/locale/C.utf8/LC_CTYPE",
];

/// iptables as the scenarios call it: Debian's default backend, nf_tables
/// (`xtables-nft-multi`, which acts on the name it is called by).
const XTABLES_NAMES: &[&str] = &[
    "iptables",
    "iptables-restore",
    "ip6tables",
    "ip6tables-restore",
];

/// The iptables extensions (`-m statistic`, `-j DNAT`, ...), which
/// `xtables-nft-multi` loads with dlopen: `ldd` cannot see them. All of them
/// (2 MiB), so a new rule never meets a missing one.
const XTABLES_EXTENSIONS: &str = "/usr/lib/x86_64-linux-gnu/xtables";

/// Where the guest finds its kernel's modules: `<dir>/<release>/`, with
/// `load-order` naming them, dependencies first. Not under `/lib`, which is
/// a link to `usr/lib` on merged-/usr hosts.
const GUEST_MODULES: &str = "usr/lib/modules";

/// Where programs are looked up on the host: the system's directories, not
/// the caller's PATH, which may put other builds first.
const SYSTEM_DIRS: &[&str] = &["/usr/sbin", "/usr/bin", "/sbin", "/bin"];

/// The static busybox (Debian's `busybox-static`) that runs the init script.
pub const BUSYBOX: &str = "/bin/busybox";

/// Printed by the init on the scenario output port with the scenario binary's
/// exit status; its absence means the guest died before the end.
pub const EXIT_MARKER: &str = "TRACER-VM-EXIT status=";

pub struct Contents<'a> {
    pub tracer: &'a Path,
    pub scenarios: &'a Path,
    pub helper: &'a Path,
    /// What the guest runs, one after the other: each a program in the image
    /// and its arguments.
    pub runs: &'a [Vec<String>],
    /// Programs of the host the runs need besides tracer and the scenario
    /// binary (`cargo xtask bench` itself, for `bench --kernel`).
    pub extra: &'a [&'a Path],
    /// The modules of every kernel the image boots.
    pub modules: &'a [KernelModules],
}

/// Writes the initramfs to `out` and returns its size in bytes.
pub fn build(contents: &Contents, out: &Path) -> Result<u64> {
    let mut tree = Tree::default();
    tree.skeleton()?;
    let mut elves = vec![
        contents.tracer.to_path_buf(),
        contents.scenarios.to_path_buf(),
        contents.helper.to_path_buf(),
    ];
    elves.extend(contents.extra.iter().map(|p| p.to_path_buf()));
    for (name, package) in PROGRAMS {
        elves.push(find_program(name, package)?);
    }
    let busybox = Path::new(BUSYBOX);
    if !busybox.is_file() {
        bail!("{BUSYBOX} is missing: install Debian's busybox-static (`cargo xtask setup` does)");
    }
    elves.push(busybox.to_path_buf());
    for elf in &elves {
        tree.host_file(elf)?;
        for library in shared_libraries(&[elf])? {
            tree.host_file(&library)?;
        }
    }
    tree.xtables()?;
    for kernel in contents.modules {
        tree.kernel_modules(kernel)?;
    }
    for file in TMUX_FILES.iter().map(Path::new).filter(|p| p.is_file()) {
        tree.host_file(file)?;
    }
    tree.data("init", 0o755, init_script(contents).into_bytes())?;
    tree.write(out)
        .with_context(|| format!("could not write the initramfs {}", out.display()))?;
    Ok(fs::metadata(out)?.len())
}

/// The program `name` in the system's directories.
fn find_program(name: &str, package: &str) -> Result<PathBuf> {
    SYSTEM_DIRS
        .iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|path| path.is_file())
        .with_context(|| {
            format!(
                "`{name}` is not in {}: install Debian's {package} (`cargo xtask setup` does)",
                SYSTEM_DIRS.join(", ")
            )
        })
}

/// The guest's init, run by busybox: mounts what a node has, runs the
/// scenarios with their output on the second serial port (ttyS1, kept apart
/// from the kernel's messages on ttyS0 so that it parses cleanly), prints the
/// exit marker and powers off.
fn init_script(contents: &Contents) -> String {
    let runs: String = contents
        .runs
        .iter()
        .map(|command| {
            let words: Vec<String> = command.iter().map(|a| shell_quote(a)).collect();
            format!("run {}\n", words.join(" "))
        })
        .collect();
    let helper = shell_quote(&contents.helper.to_string_lossy());
    let tracer = shell_quote(&contents.tracer.to_string_lossy());
    let modules_dir = format!("/{GUEST_MODULES}");
    format!(
        r#"#!{BUSYBOX} sh
# tracer's VM test guest (written by `cargo xtask vm-test`).
bb={BUSYBOX}
fail() {{
    echo "tracer-vm: $*"
    echo "{EXIT_MARKER}255" > /dev/ttyS1
    $bb poweroff -f
    # If poweroff failed: init's exit panics the kernel, which ends qemu.
    exit 1
}}
$bb mount -t proc proc /proc || fail "mounting /proc failed"
$bb mount -t sysfs sysfs /sys || fail "mounting /sys failed"
$bb mount -t devtmpfs devtmpfs /dev || fail "mounting /dev failed"
$bb mkdir -p /dev/pts && $bb mount -t devpts devpts /dev/pts || echo "tracer-vm: could not mount /dev/pts"
# A workspace under /tmp put tracer there: then /tmp stays the initramfs's
# own directory (in RAM all the same) rather than hide it.
if [ -z "$($bb ls -A /tmp)" ]; then
    $bb mount -t tmpfs -o mode=1777 tmpfs /tmp || fail "mounting /tmp failed"
fi
# Pure cgroup v2, as on current nodes, with every controller the kernel has
# enabled for the children; the scenarios need memory and io.
$bb mount -t cgroup2 cgroup2 /sys/fs/cgroup || fail "mounting cgroup2 failed"
for controller in $($bb cat /sys/fs/cgroup/cgroup.controllers); do
    echo "+$controller" > /sys/fs/cgroup/cgroup.subtree_control ||
        echo "tracer-vm: could not enable the $controller controller"
done
enabled=" $($bb cat /sys/fs/cgroup/cgroup.subtree_control) "
for needed in memory io; do
    case "$enabled" in
    *" $needed "*) ;;
    *) fail "cgroup2 controller $needed is not enabled (enabled:$enabled)" ;;
    esac
done
# The modules the DNS scenarios need (netfilter, veth): with no modprobe in
# the guest the kernel cannot load them on demand, so all are loaded now,
# dependencies first. One that fails is reported, not fatal: the scenarios
# that need it fail, the others run.
modules={modules_dir}/$($bb uname -r)
if [ -f "$modules/load-order" ]; then
    loaded=0
    for module in $($bb cat "$modules/load-order"); do
        if $bb insmod "$modules/$module"; then
            loaded=$((loaded + 1))
        else
            echo "tracer-vm: could not load the kernel module $module"
        fi
    done
    echo "tracer-vm: loaded $loaded kernel modules from $modules"
else
    echo "tracer-vm: no kernel modules for $($bb uname -r) in the initramfs"
fi
$bb hostname tracer-vm
$bb ip link set lo up || echo "tracer-vm: could not bring up lo"
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TMPDIR=/tmp
export TRACER_SCENARIO_HELPER={helper}
# The scenarios that exhaust the machine or need pure cgroup v2 run only here.
export TRACER_DISPOSABLE_GUEST=1
echo "tracer-vm: kernel $($bb uname -r), cgroup2 controllers:$enabled, $($bb nproc) CPUs"
# Which hook each family uses on this kernel, and why a fallback: on the
# console, for the per-kernel record.
{tracer} doctor 2>&1 | while read -r line; do echo "tracer-vm: doctor: $line"; done
cd /tmp
status=0
run() {{
    echo "tracer-vm: running $*"
    "$@" > /dev/ttyS1 2>&1
    last=$?
    echo "tracer-vm: exit status $last"
    [ "$last" = 0 ] || status=$last
}}
{runs}echo "{EXIT_MARKER}$status" > /dev/ttyS1
$bb sync
$bb poweroff -f
# Only reached if poweroff failed.
echo o > /proc/sysrq-trigger
"#
    )
}

fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// The absolute paths of the shared libraries the `elves` load (the dynamic
/// loader included), as one `ldd` lists them; none for a static binary.
fn shared_libraries(elves: &[&Path]) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .args(elves)
        .output()
        .context("could not start `ldd`")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let shown = || {
        let names: Vec<String> = elves.iter().map(|e| e.display().to_string()).collect();
        format!("`ldd {}`", names.join(" "))
    };
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        if !text.contains("not a dynamic executable") && !err.contains("not a dynamic executable") {
            bail!("{} failed: {}", shown(), err.trim());
        }
    }
    // Lines are `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)`,
    // `/lib64/ld-linux-x86-64.so.2 (0x...)` or `linux-vdso.so.1 (0x...)`;
    // with several files, each one's list follows a line `/path/to/it:`.
    let mut libraries = Vec::new();
    for line in text.lines().filter(|line| !line.ends_with(':')) {
        if line.contains("not found") {
            bail!("{}: {}", shown(), line.trim());
        }
        libraries.extend(
            line.split_whitespace()
                .filter(|word| word.starts_with('/'))
                .map(PathBuf::from),
        );
    }
    libraries.sort();
    libraries.dedup();
    Ok(libraries)
}

/// Where the host file at `path` goes in the archive: its directory with
/// symbolic links resolved, its own name kept, relative to `/`.
fn guest_path(path: &Path) -> Result<String> {
    let parent = path
        .parent()
        .with_context(|| format!("{} has no directory", path.display()))?;
    let parent = fs::canonicalize(parent)
        .with_context(|| format!("could not resolve {}", parent.display()))?;
    let name = path
        .file_name()
        .with_context(|| format!("{} has no file name", path.display()))?;
    let guest = parent.join(name);
    Ok(guest.to_string_lossy().trim_start_matches('/').to_owned())
}

enum Entry {
    Dir,
    /// A host file, copied when the archive is written.
    HostFile(PathBuf),
    Data(u32, Vec<u8>),
    Symlink(String),
    CharDevice(u32, u32),
}

/// The archive's entries by path. Sorted paths put every directory before
/// what it holds, as the kernel's unpacker needs.
#[derive(Default)]
struct Tree {
    entries: BTreeMap<String, Entry>,
}

impl Tree {
    fn skeleton(&mut self) -> Result<()> {
        for dir in [
            "proc",
            "sys",
            "dev",
            "tmp",
            "run",
            "root",
            "etc",
            // `ip netns add` and the DNS scenarios' per-namespace resolv.conf.
            "run/netns",
            "etc/netns",
            "var/log/pods",
            "var/log/containers",
        ] {
            self.insert(dir, Entry::Dir)?;
        }
        // The kernel opens /dev/console for init's stdin, stdout and stderr
        // before init could mount devtmpfs.
        self.insert("dev/console", Entry::CharDevice(5, 1))?;
        // Mirror the host's merged-/usr links (`/bin -> usr/bin`, ...), so
        // that paths through them, like `/bin/sh` in the scenarios or
        // `/lib64/ld-linux-x86-64.so.2` in every program, resolve as there.
        for link in ["bin", "sbin", "lib", "lib64", "lib32", "libx32"] {
            let host = Path::new("/").join(link);
            if let Ok(target) = fs::read_link(&host) {
                let target = target.to_string_lossy().into_owned();
                // Relative to `/` either way.
                self.insert(target.trim_start_matches('/'), Entry::Dir)?;
                self.insert(link, Entry::Symlink(target))?;
            }
        }
        self.data(
            "etc/passwd",
            0o644,
            b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
                .to_vec(),
        )?;
        self.data(
            "etc/group",
            0o644,
            b"root:x:0:\nnogroup:x:65534:\n".to_vec(),
        )?;
        // glibc's resolver, as on a node: names from /etc/hosts, then DNS.
        // `ip netns exec` bind-mounts a namespace's resolv.conf over
        // /etc/resolv.conf, which must therefore exist.
        self.data("etc/nsswitch.conf", 0o644, b"hosts: files dns\n".to_vec())?;
        self.data(
            "etc/hosts",
            0o644,
            b"127.0.0.1 localhost\n::1 localhost\n".to_vec(),
        )?;
        self.data("etc/resolv.conf", 0o644, Vec::new())
    }

    /// iptables' names as links to `xtables-nft-multi` (already added as a
    /// program), and its extensions, links among them kept as links.
    fn xtables(&mut self) -> Result<()> {
        let multi = self.host_file(&find_program("xtables-nft-multi", "iptables")?)?;
        let dir = Path::new(&multi)
            .parent()
            .context("xtables-nft-multi has no directory")?
            .to_string_lossy()
            .into_owned();
        for name in XTABLES_NAMES {
            self.insert(
                &format!("{dir}/{name}"),
                Entry::Symlink("xtables-nft-multi".to_owned()),
            )?;
        }
        let extensions = Path::new(XTABLES_EXTENSIONS);
        let entries = fs::read_dir(extensions).with_context(|| {
            format!(
                "could not list {XTABLES_EXTENSIONS}: install Debian's iptables (`cargo xtask setup` does)"
            )
        })?;
        let mut files = Vec::new();
        for entry in entries {
            let path = entry?.path();
            match fs::read_link(&path) {
                Ok(target) => {
                    let guest = guest_path(&path)?;
                    self.insert(
                        &guest,
                        Entry::Symlink(target.to_string_lossy().into_owned()),
                    )?;
                }
                Err(_) => {
                    self.host_file(&path)?;
                    files.push(path);
                }
            }
        }
        // Some need more than iptables itself does (statistic: libm).
        let files: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
        for library in shared_libraries(&files)? {
            self.host_file(&library)?;
        }
        Ok(())
    }

    /// One kernel's modules under `GUEST_MODULES/<release>/`, uncompressed,
    /// with the order the init loads them in.
    fn kernel_modules(&mut self, kernel: &KernelModules) -> Result<()> {
        let dir = format!("{GUEST_MODULES}/{}", kernel.release);
        let mut order = String::new();
        for module in &kernel.order {
            let file = format!("{}.ko", module.name);
            self.data(&format!("{dir}/{file}"), 0o644, module.object.clone())?;
            order += &file;
            order.push('\n');
        }
        self.data(&format!("{dir}/load-order"), 0o644, order.into_bytes())
    }

    fn data(&mut self, path: &str, perm: u32, bytes: Vec<u8>) -> Result<()> {
        self.insert(path, Entry::Data(perm, bytes))
    }

    /// Adds the host file at `path` under the same path, with symbolic links
    /// in its directory resolved (so `/lib/x86_64-linux-gnu/libc.so.6` lands
    /// in `usr/lib/...` behind the guest's own `lib` link) but its own name
    /// kept: `/usr/bin/sh` is dash's content under the name `sh`.
    /// Returns the path in the guest.
    fn host_file(&mut self, path: &Path) -> Result<String> {
        let guest = guest_path(path)?;
        if !self.entries.contains_key(&guest) {
            self.insert(&guest, Entry::HostFile(path.to_path_buf()))?;
        }
        Ok(guest)
    }

    fn insert(&mut self, path: &str, entry: Entry) -> Result<()> {
        for dir in Path::new(path).ancestors().skip(1) {
            if dir.as_os_str().is_empty() {
                break;
            }
            let dir = dir.to_string_lossy();
            match self.entries.get(dir.as_ref()) {
                None => {
                    self.entries.insert(dir.into_owned(), Entry::Dir);
                }
                Some(Entry::Dir) => {}
                Some(_) => {
                    bail!("initramfs: {path} would be inside {dir}, which is not a directory")
                }
            }
        }
        match (self.entries.get(path), &entry) {
            (None, _) | (Some(Entry::Dir), Entry::Dir) => {}
            (Some(_), _) => bail!("initramfs: {path} added twice"),
        }
        self.entries.insert(path.to_owned(), entry);
        Ok(())
    }

    fn write(&self, out: &Path) -> Result<()> {
        let file = fs::File::create(out).context("could not create it")?;
        let mut archive = Archive::new(BufWriter::with_capacity(1 << 20, file));
        for (path, entry) in &self.entries {
            match entry {
                // /tmp is everyone's, as on any machine.
                Entry::Dir if path == "tmp" => archive.dir(path, 0o1777)?,
                Entry::Dir => archive.dir(path, 0o755)?,
                Entry::HostFile(source) => {
                    let file = fs::File::open(source)
                        .with_context(|| format!("could not read {}", source.display()))?;
                    let meta = file.metadata()?;
                    archive.file(path, meta.permissions().mode() & 0o7777, meta.len(), file)?;
                }
                Entry::Data(perm, bytes) => {
                    archive.file(path, *perm, bytes.len() as u64, &bytes[..])?
                }
                Entry::Symlink(target) => archive.symlink(path, target)?,
                Entry::CharDevice(major, minor) => {
                    archive.char_device(path, 0o600, *major, *minor)?
                }
            }
        }
        archive.finish()?;
        Ok(())
    }
}
