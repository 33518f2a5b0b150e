//! System set-up done by PID 1 before any container runs.
//!
//! Stage 1 (the kernel's initramfs): the initramfs root cannot be `pivot_root`ed away from, which
//! containers need. With `root=` on the kernel command line the system is on a disk: see
//! [`crate::rootdev`]. Otherwise the initramfs is the system: its tree is copied into a fresh
//! tmpfs, the originals deleted (freeing their memory), the tmpfs moved onto `/` (MS_MOVE),
//! `chroot`ed into, and `/init` executed again with [`STAGE_ENV`] set. Stage 2 mounts the API filesystems (LinuxKit's set), loads the modules of the
//! present devices ([`crate::coldplug`]), sets rlimits, the hostname and loopback, and hands over
//! to [`crate::supervisor`].

use std::collections::HashMap;
use std::ffi::CString;
use std::fs;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use nix::mount::{mount, MsFlags};

/// Set in the environment of the re-executed `/init` once the root is a movable tmpfs.
pub const STAGE_ENV: &str = "MOBY_INIT_STAGE";
/// Where stage 1 builds the new root.
const NEWROOT: &str = "/.moby-newroot";

/// The PID 1 entry: never returns unless everything failed.
pub fn pid1() -> ExitCode {
    crate::supervisor::record_t0();
    if std::env::var_os(STAGE_ENV).is_none() && root_is_initramfs() {
        match crate::rootdev::request() {
            crate::rootdev::Request::Initramfs => initramfs_root(),
            crate::rootdev::Request::Disk(root) => match crate::rootdev::boot(&root) {
                Ok(never) => match never {},
                Err(err) => disk_root_failed(&format!("{err:#}")),
            },
            crate::rootdev::Request::Invalid(why) => disk_root_failed(&why),
        }
    }
    match crate::supervisor::run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("init: {err:#}");
            crate::supervisor::final_power_off(nix::sys::reboot::RebootMode::RB_POWER_OFF)
        }
    }
}

/// The initramfs is the system: moves it into a tmpfs (see [`switch_root`]).
fn initramfs_root() {
    if let Err(err) = switch_root() {
        // Carry on from the initramfs: containers then fail to pivot_root, but the console
        // says why and the machine can still be powered off.
        eprintln!("init: cannot move the root off the initramfs ({err:#}); continuing without");
    }
}

/// `root=` could not be used (the reason says what to do). An initramfs with a system of its own
/// (`/containers`) carries on as if there were no `root=`: the machine still comes up, and the
/// console says why it runs from RAM. A stage-1 initramfs (only `/init` and modules) has nothing
/// to run: it powers off, so that `moby run` (or a cloud's instance state) ends with the reason as
/// the last console lines instead of a machine that looks up but never starts anything.
fn disk_root_failed(why: &str) {
    let _ = mount_api("/dev");
    reopen_console();
    eprintln!("init: cannot boot from the root device: {why}");
    crate::rootdev::unmount_api();
    if Path::new("/containers").is_dir() {
        eprintln!("init: carrying on from the initramfs, which has a system of its own (/containers)");
        initramfs_root();
    } else {
        eprintln!(
            "init: powering off: this initramfs has nothing to run without its root device (no /containers); \
             fix the kernel command line or the disks and boot again"
        );
        crate::supervisor::final_power_off(nix::sys::reboot::RebootMode::RB_POWER_OFF);
    }
}

/// Whether `/` is the kernel's initramfs (ramfs, or tmpfs with `rootfstype=tmpfs`); a root
/// mounted from a disk is used as it is.
fn root_is_initramfs() -> bool {
    use nix::sys::statfs::{statfs, FsType, TMPFS_MAGIC};
    const RAMFS_MAGIC: FsType = FsType(0x8584_58f6);
    statfs("/").is_ok_and(|s| s.filesystem_type() == RAMFS_MAGIC || s.filesystem_type() == TMPFS_MAGIC)
}

/// Stage 1: copy `/` into a tmpfs, delete the originals, move the tmpfs onto `/`, chroot, re-exec.
fn switch_root() -> Result<()> {
    let t = Instant::now();
    let root_dev = fs::metadata("/").context("stat /")?.dev();
    fs::DirBuilder::new().mode(0o755).create(NEWROOT).or_else(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            Ok(())
        } else {
            Err(e)
        }
    })?;
    mount(
        Some("rootfs"),
        NEWROOT,
        Some("tmpfs"),
        MsFlags::empty(),
        Some("mode=755"),
    )
    .with_context(|| format!("mount a tmpfs on {NEWROOT}"))?;
    let mut links = HashMap::new();
    copy_tree(Path::new("/"), Path::new(NEWROOT), root_dev, &mut links).context("copy the initramfs into the tmpfs")?;
    remove_tree(Path::new("/"), root_dev, Path::new(NEWROOT));
    std::env::set_current_dir(NEWROOT)?;
    mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>).context("move the tmpfs onto /")?;
    nix::unistd::chroot(".").context("chroot into the tmpfs")?;
    std::env::set_current_dir("/")?;
    eprintln!("init: root moved to tmpfs in {} ms", t.elapsed().as_millis());
    match exec_stage2()? {}
}

/// Executes `/init` (of the root just switched to) with our arguments and environment, plus
/// [`STAGE_ENV`]; returns only the error.
pub fn exec_stage2() -> Result<std::convert::Infallible> {
    let argv: Vec<CString> = std::env::args().map(|a| CString::new(a).unwrap_or_default()).collect();
    let mut env: Vec<CString> = std::env::vars()
        .map(|(k, v)| CString::new(format!("{k}={v}")).unwrap_or_default())
        .collect();
    env.push(CString::new(format!("{STAGE_ENV}=2"))?);
    let init = CString::new("/init")?;
    let argv = if argv.is_empty() { vec![init.clone()] } else { argv };
    nix::unistd::execve(&init, &argv, &env).context("re-exec /init in the new root")
}

/// Copies `from` into `to` (same filesystem only), deleting each regular file once copied so that
/// memory use does not double. Hard links stay links (`links`: inode -> first copy).
fn copy_tree(from: &Path, to: &Path, dev: u64, links: &mut HashMap<u64, PathBuf>) -> Result<()> {
    for entry in fs::read_dir(from).with_context(|| format!("read {}", from.display()))? {
        let entry = entry?;
        let src = entry.path();
        if src == Path::new(NEWROOT) {
            continue;
        }
        let meta = fs::symlink_metadata(&src)?;
        if meta.dev() != dev {
            continue;
        }
        let dst = to.join(entry.file_name());
        let kind = meta.file_type();
        if kind.is_dir() {
            fs::DirBuilder::new().mode(meta.mode() & 0o7777).create(&dst)?;
            copy_tree(&src, &dst, dev, links)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&src)?, &dst)?;
        } else if kind.is_file() {
            if meta.nlink() > 1 {
                if let Some(first) = links.get(&meta.ino()) {
                    fs::hard_link(first, &dst).with_context(|| format!("link {}", dst.display()))?;
                    let _ = fs::remove_file(&src);
                    continue;
                }
                links.insert(meta.ino(), dst.clone());
            }
            fs::copy(&src, &dst).with_context(|| format!("copy {}", src.display()))?;
            let _ = fs::remove_file(&src);
        } else if kind.is_char_device() || kind.is_block_device() || kind.is_fifo() || kind.is_socket() {
            let sflag = nix::sys::stat::SFlag::from_bits_truncate(meta.mode() & libc::S_IFMT);
            let perm = nix::sys::stat::Mode::from_bits_truncate(meta.mode() & 0o7777);
            nix::sys::stat::mknod(&dst, sflag, perm, meta.rdev())
                .with_context(|| format!("mknod {}", dst.display()))?;
        }
        let _ = std::os::unix::fs::lchown(&dst, Some(meta.uid()), Some(meta.gid()));
        if !kind.is_symlink() {
            let _ = fs::set_permissions(&dst, fs::Permissions::from_mode(meta.mode() & 0o7777));
        }
    }
    Ok(())
}

/// Deletes the tree under `dir` on filesystem `dev` (what [`copy_tree`] copied; the initramfs
/// below a disk root), except `keep`; errors are ignored (the memory is just not freed). Returns
/// the number of files and their bytes deleted.
pub fn remove_tree(dir: &Path, dev: u64, keep: &Path) -> (u64, u64) {
    let Ok(entries) = fs::read_dir(dir) else { return (0, 0) };
    let (mut files, mut bytes) = (0, 0);
    for entry in entries.flatten() {
        let path = entry.path();
        if path == keep {
            continue;
        }
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.dev() != dev {
            continue;
        }
        if meta.is_dir() {
            let (f, b) = remove_tree(&path, dev, keep);
            files += f;
            bytes += b;
            let _ = fs::remove_dir(&path);
        } else if fs::remove_file(&path).is_ok() {
            files += 1;
            bytes += meta.len();
        }
    }
    (files, bytes)
}

fn mnt(source: &str, target: &str, fstype: &str, flags: MsFlags, data: &str) {
    let _ = fs::DirBuilder::new().recursive(true).mode(0o755).create(target);
    let data = (!data.is_empty()).then_some(data);
    if let Err(err) = mount(Some(source), target, Some(fstype), flags, data) {
        eprintln!("init: mount {fstype} on {target} failed: {err}");
    }
}

fn mkdir(path: &str, mode: u32) {
    let _ = fs::DirBuilder::new().recursive(true).mode(mode).create(path);
    let _ = fs::set_permissions(path, fs::Permissions::from_mode(mode));
}

/// Whether `path` is a mount point (its filesystem is not its parent's).
fn is_mount_point(path: &Path) -> bool {
    let parent = path.parent().unwrap_or(Path::new("/"));
    match (fs::metadata(path), fs::metadata(parent)) {
        (Ok(meta), Ok(up)) => meta.dev() != up.dev(),
        _ => false,
    }
}

/// Mounts `/proc`, `/dev` (devtmpfs) or `/sys` with LinuxKit's flags, unless something is mounted
/// there already (moved over from stage 1 with a disk root).
pub fn mount_api(target: &str) -> Result<()> {
    let (nodev, nosuid, noexec, relatime) = (
        MsFlags::MS_NODEV,
        MsFlags::MS_NOSUID,
        MsFlags::MS_NOEXEC,
        MsFlags::MS_RELATIME,
    );
    let (source, fstype, flags, data) = match target {
        "/proc" => ("proc", "proc", nodev | nosuid | noexec | relatime, None),
        "/dev" => ("dev", "devtmpfs", nosuid | noexec | relatime, Some("size=10m,mode=755")),
        "/sys" => ("sysfs", "sysfs", noexec | nosuid | nodev, None),
        _ => anyhow::bail!("{target} is no API filesystem"),
    };
    if is_mount_point(Path::new(target)) {
        return Ok(());
    }
    let _ = fs::DirBuilder::new().recursive(true).mode(0o755).create(target);
    mount(Some(source), target, Some(fstype), flags, data).with_context(|| format!("mount {fstype} on {target} failed"))
}

/// Stage 2 mounts, LinuxKit's `rc.init` set; then stdio on `/dev/console`.
pub fn mount_filesystems() {
    let (nodev, nosuid, noexec, relatime) = (
        MsFlags::MS_NODEV,
        MsFlags::MS_NOSUID,
        MsFlags::MS_NOEXEC,
        MsFlags::MS_RELATIME,
    );
    for target in ["/proc", "/dev"] {
        if let Err(err) = mount_api(target) {
            eprintln!("init: {err:#}");
        }
    }
    reopen_console();
    for (target, link) in [
        ("/proc/self/fd", "/dev/fd"),
        ("/proc/self/fd/0", "/dev/stdin"),
        ("/proc/self/fd/1", "/dev/stdout"),
        ("/proc/self/fd/2", "/dev/stderr"),
        ("/proc/kcore", "/dev/kcore"),
    ] {
        let _ = std::os::unix::fs::symlink(target, link);
    }
    mkdir("/dev/mqueue", 0o1777);
    mkdir("/dev/shm", 0o1777);
    mkdir("/dev/pts", 0o755);
    mnt("mqueue", "/dev/mqueue", "mqueue", noexec | nosuid | nodev, "");
    mnt("shm", "/dev/shm", "tmpfs", noexec | nosuid | nodev, "mode=1777");
    mnt(
        "devpts",
        "/dev/pts",
        "devpts",
        noexec | nosuid,
        "gid=5,mode=0620,ptmxmode=0666",
    );
    if let Err(err) = mount_api("/sys") {
        eprintln!("init: {err:#}");
    }
    mnt(
        "tmpfs",
        "/run",
        "tmpfs",
        nodev | nosuid | noexec | relatime,
        "size=10%,mode=755",
    );
    mnt(
        "tmpfs",
        "/tmp",
        "tmpfs",
        nodev | nosuid | noexec | relatime,
        "size=10%,mode=1777",
    );
    mnt(
        "tmpfs",
        "/var",
        "tmpfs",
        nodev | nosuid | noexec | relatime,
        "size=50%,mode=755",
    );
    for (dir, mode) in [
        ("/var/cache", 0o755),
        ("/var/empty", 0o555),
        ("/var/lib", 0o755),
        ("/var/local", 0o755),
        ("/var/lock", 0o755),
        ("/var/log", 0o755),
        ("/var/opt", 0o755),
        ("/var/spool", 0o755),
        ("/var/tmp", 0o1777),
        ("/run/log", 0o755),
    ] {
        mkdir(dir, mode);
    }
    let _ = std::os::unix::fs::symlink("/run", "/var/run");
    mnt(
        "cgroup2",
        "/sys/fs/cgroup",
        "cgroup2",
        noexec | nosuid | nodev,
        "nsdelegate",
    );
    enable_cgroup_controllers();
    if let Err(err) = mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SHARED,
        None::<&str>,
    ) {
        eprintln!("init: making / shared failed: {err}");
    }
}

/// Re-opens `/dev/console` (now on devtmpfs) as fds 0-2.
pub fn reopen_console() {
    use nix::fcntl::{open, OFlag};
    use nix::sys::stat::Mode;
    let Ok(fd) = open("/dev/console", OFlag::O_RDWR | OFlag::O_NOCTTY, Mode::empty()) else {
        return;
    };
    for target in 0..3 {
        let _ = nix::unistd::dup2(fd, target);
    }
    if fd > 2 {
        let _ = nix::unistd::close(fd);
    }
}

/// Writes `+c` for every available controller into the root `cgroup.subtree_control`, so that
/// container cgroups get memory, cpu, pids, io limits.
fn enable_cgroup_controllers() {
    let Ok(available) = fs::read_to_string("/sys/fs/cgroup/cgroup.controllers") else {
        return;
    };
    for controller in available.split_whitespace() {
        if let Err(err) = fs::write("/sys/fs/cgroup/cgroup.subtree_control", format!("+{controller}")) {
            eprintln!("init: enabling the cgroup controller {controller} failed: {err}");
        }
    }
}

/// LinuxKit's rlimits: many open files, unlimited processes.
pub fn rlimits() {
    use nix::sys::resource::{setrlimit, Resource};
    if let Err(err) = setrlimit(Resource::RLIMIT_NOFILE, 1_048_576, 1_048_576) {
        eprintln!("init: setting RLIMIT_NOFILE failed: {err}");
    }
    if let Err(err) = setrlimit(Resource::RLIMIT_NPROC, libc::RLIM_INFINITY, libc::RLIM_INFINITY) {
        eprintln!("init: setting RLIMIT_NPROC failed: {err}");
    }
}

/// `/etc/hostname`, else `moby-` and eth0's MAC without colons (LinuxKit: `linuxkit-MAC`).
pub fn hostname() {
    let name = fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| {
            let mac = fs::read_to_string("/sys/class/net/eth0/address").ok()?;
            Some(format!("moby-{}", mac.trim().replace(':', "")))
        });
    if let Some(name) = name {
        if let Err(err) = nix::unistd::sethostname(&name) {
            eprintln!("init: setting the hostname {name:?} failed: {err}");
        }
    }
}
