//! Output files written under a temporary name in the output directory and renamed into place
//! only when the build succeeded: a failed or interrupted build leaves no half-written output and
//! keeps the previous build's files.
//!
//! Only a regular file (or nothing) is ever replaced. A symlink is followed: the file it points to
//! is staged beside and replaced, and the link stays. FIFOs and character devices are written in
//! place by single-stream outputs ([`super::OutputWriter`]); anything else is refused.
//!
//! A temporary file is named `.<file name>.moby-<pid>.<random>` and locked while it lives. A
//! signal handler removes them with [`remove_partial_outputs`]; those of a process killed
//! outright are removed by the next process that stages the same output, once their pid is gone
//! and their lock free.

use std::fs::{self, FileType, Permissions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use tempfile::NamedTempFile;

use super::OutputError;

/// Buffer size for output files: entries arrive in small pieces (headers, small files).
const BUFFER_SIZE: usize = 256 * 1024;

/// Marks our temporary files: `.<file name>.moby-<pid>.<6 random characters>`.
const TEMP_MARKER: &str = "moby-";
/// Length of the random part of a temporary file's name.
const RANDOM_LEN: usize = 6;

/// The temporary files of this process, for [`remove_partial_outputs`]. Files are created and
/// registered under this lock, so that none escapes a signal handler that takes it.
static LIVE_TEMPS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// A file being written under a temporary name next to its final path; deleted when dropped
/// unless [`StagedFile::persist`] moved it into place. I/O errors name the final path.
pub(crate) struct StagedFile {
    file: BufWriter<NamedTempFile>,
    target: PathBuf,
    len: u64,
    _live: LiveTemp,
}

/// A registered temporary file; unregistered when dropped.
struct LiveTemp(PathBuf);

impl Drop for LiveTemp {
    fn drop(&mut self) {
        live_temps().retain(|path| *path != self.0);
    }
}

fn live_temps() -> MutexGuard<'static, Vec<PathBuf>> {
    // A panic elsewhere while the list was held leaves it usable.
    LIVE_TEMPS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Removes the temporary files of every output this process is writing, and keeps any more from
/// being created until the process ends: for a handler of SIGINT or SIGTERM that then exits.
/// Finished outputs, and those of earlier builds, are not touched.
pub fn remove_partial_outputs() {
    let mut live = live_temps();
    for path in live.drain(..) {
        let _ = fs::remove_file(path);
    }
    // Held until the process exits: a build that carries on meanwhile blocks on its next file.
    std::mem::forget(live);
}

impl StagedFile {
    /// Stages `target` (for a symlink: the file it points to): creates
    /// `.<file name>.moby-<pid>.<random>` in its directory, mode 0644 minus the umask (as
    /// LinuxKit's outputs). Refuses a target that is neither a regular file nor absent.
    pub(crate) fn create_for(target: &Path) -> Result<StagedFile, OutputError> {
        match placement(target)? {
            Placement::Replace(real) => StagedFile::create_beside(&real),
            Placement::InPlace(kind) => Err(OutputError::NotAFile {
                path: target.to_path_buf(),
                kind,
            }),
        }
    }

    fn create_beside(target: &Path) -> Result<StagedFile, OutputError> {
        let dir = match target.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        let label = target
            .file_name()
            .map_or_else(|| "output".into(), |name| name.to_string_lossy());
        let prefix = format!(".{label}.{TEMP_MARKER}");
        sweep_stale_temps(dir, &prefix);
        let our_prefix = format!("{prefix}{}.", std::process::id());
        let mut builder = tempfile::Builder::new();
        builder.prefix(&our_prefix).rand_bytes(RANDOM_LEN);
        set_output_mode(&mut builder);
        let mut live = live_temps();
        let temp = builder.tempfile_in(dir).map_err(|source| OutputError::CreateTemp {
            dir: dir.to_path_buf(),
            source,
        })?;
        // Held while the file exists, so that a sweep from another pid namespace, where our pid
        // means nothing, sees it in use. Where locks are not supported, the pid alone guards it.
        let _ = temp.as_file().try_lock();
        live.push(temp.path().to_path_buf());
        Ok(StagedFile {
            _live: LiveTemp(temp.path().to_path_buf()),
            file: BufWriter::with_capacity(BUFFER_SIZE, temp),
            target: target.to_path_buf(),
            len: 0,
        })
    }

    /// Bytes written so far.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// The path the file is moved to by [`StagedFile::persist`].
    pub(crate) fn target(&self) -> &Path {
        &self.target
    }

    /// The file, with everything written so far flushed to it: for positioned reads and
    /// writes (its cursor is not used by them). Bytes written through it are not counted in
    /// [`StagedFile::len`].
    pub(crate) fn file(&mut self) -> io::Result<&std::fs::File> {
        self.try_io(|file| file.flush())?;
        Ok(self.file.get_ref().as_file())
    }

    /// Drops everything written so far (a later entry replaces an earlier one).
    pub(crate) fn clear(&mut self) -> io::Result<()> {
        self.try_io(|file| {
            file.flush()?;
            let file = file.get_mut().as_file_mut();
            file.set_len(0)?;
            file.seek(SeekFrom::Start(0))?;
            Ok(())
        })?;
        self.len = 0;
        Ok(())
    }

    /// Copies the content from `offset` on into `out`.
    pub(crate) fn copy_to(&mut self, offset: u64, out: &mut dyn Write) -> io::Result<()> {
        self.for_each_chunk(offset, |chunk| out.write_all(chunk))
    }

    /// Reads the content back from `offset` on, in chunks; errors of `consume` pass unchanged.
    pub(crate) fn for_each_chunk(
        &mut self,
        offset: u64,
        mut consume: impl FnMut(&[u8]) -> io::Result<()>,
    ) -> io::Result<()> {
        const CHUNK: usize = 256 * 1024;
        let mut left = self.len.saturating_sub(offset);
        self.try_io(|file| {
            file.flush()?;
            file.get_mut().as_file_mut().seek(SeekFrom::Start(offset))?;
            Ok(())
        })?;
        let mut buffer = vec![0u8; CHUNK];
        while left > 0 {
            let want = buffer.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            self.try_io(|file| file.get_mut().as_file_mut().read_exact(&mut buffer[..want]))?;
            consume(&buffer[..want])?;
            left -= want as u64;
        }
        Ok(())
    }

    /// Flushes the data and renames the file to its target, replacing what was there (when that
    /// is still a regular file).
    pub(crate) fn persist(self) -> Result<(), OutputError> {
        // Registered until the rename is done or, on an error, the file is gone (dropped first).
        let StagedFile {
            _live, file, target, ..
        } = self;
        // Something else may have appeared at the target while the build ran.
        if let Some(kind) = fs::symlink_metadata(&target)
            .ok()
            .and_then(|meta| non_regular_kind(meta.file_type()))
        {
            return Err(OutputError::NotAFile { path: target, kind });
        }
        let write_error = |source| OutputError::Write {
            path: target.clone(),
            source,
        };
        let temp = file.into_inner().map_err(|err| write_error(err.into_error()))?;
        // Make the data durable before the rename makes it visible under the final name.
        temp.as_file().sync_all().map_err(write_error)?;
        let temp_path = temp.path().to_path_buf();
        temp.persist(&target).map_err(|err| OutputError::Persist {
            temp: temp_path,
            path: target.clone(),
            source: err.error,
        })?;
        Ok(())
    }

    /// Runs an I/O operation, naming the target in its error.
    fn try_io<T>(&mut self, operation: impl FnOnce(&mut BufWriter<NamedTempFile>) -> io::Result<T>) -> io::Result<T> {
        operation(&mut self.file).map_err(|source| {
            OutputError::Write {
                path: self.target.clone(),
                source,
            }
            .into()
        })
    }
}

impl Write for StagedFile {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let written = self.try_io(|file| file.write(data))?;
        self.len += written as u64;
        Ok(written)
    }

    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        self.try_io(|file| file.write_all(data))?;
        self.len += data.len() as u64;
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.try_io(|file| file.flush())
    }
}

/// Removes the temporary files in `dir` named `<prefix><pid>.<random>` whose process is gone and
/// which nobody has locked: what a build killed with SIGKILL (or a crash) left behind.
fn sweep_stale_temps(dir: &Path, prefix: &str) {
    let Ok(entries) = fs::read_dir(dir) else {
        // Creating the temporary file will say what is wrong with the directory.
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|name| temp_owner(name, prefix)) else {
            continue;
        };
        if !entry.file_type().is_ok_and(|t| t.is_file()) || may_be_running(pid) {
            continue;
        }
        let path = entry.path();
        let Ok(file) = fs::File::open(&path) else {
            continue;
        };
        if file.try_lock().is_err() {
            continue;
        }
        match fs::remove_file(&path) {
            Ok(()) => tracing::info!(path = %path.display(), pid, "removed a partial output of an interrupted build"),
            Err(err) => {
                tracing::warn!(path = %path.display(), "cannot remove a partial output of an interrupted build: {err}")
            }
        }
    }
}

/// The pid in the name of one of our temporary files that starts with `prefix`.
fn temp_owner(name: &str, prefix: &str) -> Option<u32> {
    let (pid, random) = name.strip_prefix(prefix)?.split_once('.')?;
    let digits = !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit());
    let random_ok = random.len() == RANDOM_LEN && random.bytes().all(|b| b.is_ascii_alphanumeric());
    if !(digits && random_ok) {
        return None;
    }
    pid.parse().ok()
}

/// Whether process `pid` may be running: `/proc` has it, or there is no `/proc` to ask.
fn may_be_running(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists() || !Path::new("/proc/self").exists()
}

/// How an output path is written.
pub(crate) enum Placement {
    /// Staged and renamed over this path: the output path itself or, when that is a symlink, the
    /// file it points to (so that the link stays).
    Replace(PathBuf),
    /// A FIFO or character device (named by the kind): written in place, never replaced.
    InPlace(&'static str),
}

/// Decides how `path` is written; refuses directories, sockets, block devices and dangling
/// symlinks, which no output may replace.
pub(crate) fn placement(path: &Path) -> Result<Placement, OutputError> {
    let inspect_error = |source| OutputError::Inspect {
        path: path.to_path_buf(),
        source,
    };
    let meta = match fs::metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            return match fs::read_link(path) {
                Ok(points_to) => Err(OutputError::DanglingSymlink {
                    path: path.to_path_buf(),
                    points_to,
                }),
                Err(_) => Ok(Placement::Replace(path.to_path_buf())),
            };
        }
        Err(source) => return Err(inspect_error(source)),
    };
    let file_type = meta.file_type();
    if file_type.is_fifo() || file_type.is_char_device() {
        return Ok(Placement::InPlace(
            non_regular_kind(file_type).unwrap_or("special file"),
        ));
    }
    if let Some(kind) = non_regular_kind(file_type) {
        return Err(OutputError::NotAFile {
            path: path.to_path_buf(),
            kind,
        });
    }
    let is_symlink = fs::symlink_metadata(path).map_err(inspect_error)?.is_symlink();
    Ok(Placement::Replace(if is_symlink {
        fs::canonicalize(path).map_err(inspect_error)?
    } else {
        path.to_path_buf()
    }))
}

/// What a file that is not regular is, for messages; `None` for a regular file.
fn non_regular_kind(file_type: FileType) -> Option<&'static str> {
    let kinds = [
        (file_type.is_file(), None),
        (file_type.is_dir(), Some("directory")),
        (file_type.is_symlink(), Some("symbolic link")),
        (file_type.is_fifo(), Some("FIFO")),
        (file_type.is_char_device(), Some("character device")),
        (file_type.is_block_device(), Some("block device")),
        (file_type.is_socket(), Some("socket")),
    ];
    kinds
        .into_iter()
        .find_map(|(is, kind)| is.then_some(kind))
        .unwrap_or(Some("special file"))
}

/// `base` with `suffix` appended to its last component (`out/img` + `-kernel`).
pub(crate) fn with_suffix(base: &Path, suffix: &str) -> PathBuf {
    let mut path = base.as_os_str().to_owned();
    path.push(suffix);
    PathBuf::from(path)
}

/// Removes a file an earlier build left at `path`, so that the output set matches this build.
pub(crate) fn remove_stale(path: &Path) -> Result<(), OutputError> {
    match std::fs::remove_file(path) {
        Ok(()) => {
            tracing::info!(path = %path.display(), "removed output of an earlier build");
            Ok(())
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(OutputError::RemoveStale {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Mode 0644 (the umask still applies), as LinuxKit writes its outputs; temp files default to 0600.
fn set_output_mode(builder: &mut tempfile::Builder<'_, '_>) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(Permissions::from_mode(0o644));
    }
    #[cfg(not(unix))]
    let _ = builder;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tempfile::TempDir;

    #[test]
    fn persist_moves_the_content_into_place() {
        let dir = TempDir::new().unwrap();
        let target = dir.path().join("out.bin");
        let mut staged = StagedFile::create_for(&target).unwrap();
        staged.write_all(b"old").unwrap();
        staged.clear().unwrap();
        staged.write_all(b"new content").unwrap();
        assert_eq!(staged.len(), 11);
        let mut copy = Vec::new();
        staged.copy_to(4, &mut copy).unwrap();
        assert_eq!(copy, b"content");
        assert!(!target.exists());
        staged.persist().unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"new content");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn write_errors_name_the_target() {
        let dir = TempDir::new().unwrap();
        let target = dir.path().join("out.bin");
        let mut staged = StagedFile::create_for(&target).unwrap();
        staged.write_all(b"x").unwrap();
        // A directory is never replaced.
        std::fs::create_dir(&target).unwrap();
        let err = staged.persist().unwrap_err();
        assert!(matches!(err, OutputError::NotAFile { ref path, .. } if *path == target));
    }

    #[test]
    fn special_files_are_never_replaced() {
        let dir = TempDir::new().unwrap();
        let target = dir.path().join("img-initrd.img");
        let mkfifo = || {
            assert!(std::process::Command::new("mkfifo")
                .arg(&target)
                .status()
                .unwrap()
                .success())
        };
        // Multi-file formats stage everything, so a FIFO is refused before any work...
        mkfifo();
        let err = StagedFile::create_for(&target).err().unwrap();
        assert!(matches!(err, OutputError::NotAFile { kind: "FIFO", .. }), "{err}");
        // ... and one that appears while the build runs is not renamed over either.
        std::fs::remove_file(&target).unwrap();
        let mut staged = StagedFile::create_for(&target).unwrap();
        staged.write_all(b"x").unwrap();
        mkfifo();
        let err = staged.persist().unwrap_err();
        assert!(matches!(err, OutputError::NotAFile { kind: "FIFO", .. }), "{err}");
        assert!(std::fs::symlink_metadata(&target).unwrap().file_type().is_fifo());
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file left"
        );
    }

    #[test]
    fn a_dead_pid_temporary_still_locked_elsewhere_is_kept() {
        let dir = TempDir::new().unwrap();
        let target = dir.path().join("img.tar");
        // pid_max is never a process id here, but a process in another pid namespace holds it.
        let pid_max = std::fs::read_to_string("/proc/sys/kernel/pid_max").unwrap();
        let stale = dir.path().join(format!(".img.tar.moby-{}.AbC123", pid_max.trim()));
        std::fs::write(&stale, b"partial").unwrap();
        let holder = std::fs::File::open(&stale).unwrap();
        holder.lock().unwrap();
        drop(StagedFile::create_for(&target).unwrap());
        assert!(stale.exists(), "locked: in use");
        drop(holder);
        drop(StagedFile::create_for(&target).unwrap());
        assert!(!stale.exists(), "unlocked and its pid gone: swept");
    }

    #[test]
    fn only_names_of_our_temporaries_have_an_owner() {
        let prefix = ".img.tar.moby-";
        assert_eq!(temp_owner(".img.tar.moby-42.AbC123", prefix), Some(42));
        for name in [
            ".img.tar.moby-42.AbC12",
            ".img.tar.moby-42.AbC1234",
            ".img.tar.moby-+42.AbC123",
            ".img.tar.moby-.AbC123",
            ".img.tar.moby-42.AbC12-",
            ".img.tar.moby-4x2.AbC123",
            ".img.tar.AbC123",
            ".img.tar.moby-99999999999.AbC123",
        ] {
            assert_eq!(temp_owner(name, prefix), None, "{name}");
        }
    }

    #[test]
    fn suffix_is_appended_to_the_last_component() {
        assert_eq!(with_suffix(Path::new("a/b"), "-kernel"), Path::new("a/b-kernel"));
    }
}
