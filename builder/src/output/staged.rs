//! Output files written under a temporary name in the output directory and renamed into place
//! only when the build succeeded: a failed or interrupted build leaves no half-written output and
//! keeps the previous build's files.

use std::fs::{File, Permissions};
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use super::OutputError;

/// Buffer size for output files: entries arrive in small pieces (headers, small files).
const BUFFER_SIZE: usize = 256 * 1024;

/// A file being written under a temporary name next to its final path; deleted when dropped
/// unless [`StagedFile::persist`] moved it into place.
pub(crate) struct StagedFile {
    file: BufWriter<NamedTempFile>,
    len: u64,
}

impl StagedFile {
    /// Stages `path`: creates `.<file name>.<random>` in the directory of `path`, mode 0644 minus
    /// the umask (as LinuxKit's outputs).
    pub(crate) fn create_for(path: &Path) -> Result<StagedFile, OutputError> {
        let dir = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        let label = path
            .file_name()
            .map_or_else(|| "output".into(), |name| name.to_string_lossy());
        let prefix = format!(".{label}.");
        let mut builder = tempfile::Builder::new();
        builder.prefix(&prefix);
        set_output_mode(&mut builder);
        let temp = builder
            .tempfile_in(dir)
            .map_err(|source| OutputError::CreateTemp {
                dir: dir.to_path_buf(),
                source,
            })?;
        Ok(StagedFile {
            file: BufWriter::with_capacity(BUFFER_SIZE, temp),
            len: 0,
        })
    }

    /// Bytes written so far.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// The temporary path, for error messages.
    pub(crate) fn temp_path(&self) -> &Path {
        self.file.get_ref().path()
    }

    /// Drops everything written so far (a later entry replaces an earlier one).
    pub(crate) fn clear(&mut self) -> io::Result<()> {
        self.file.flush()?;
        let file = self.file.get_mut().as_file_mut();
        file.set_len(0)?;
        file.seek(SeekFrom::Start(0))?;
        self.len = 0;
        Ok(())
    }

    /// Flushes and returns the file positioned at `offset`, for reading the content back.
    pub(crate) fn reader_at(&mut self, offset: u64) -> io::Result<&mut File> {
        self.file.flush()?;
        let file = self.file.get_mut().as_file_mut();
        file.seek(SeekFrom::Start(offset))?;
        Ok(file)
    }

    /// Copies the content from `offset` on into `out`.
    pub(crate) fn copy_to(&mut self, offset: u64, out: &mut dyn Write) -> io::Result<u64> {
        let mut reader = self.reader_at(offset)?;
        io::copy(&mut reader, out)
    }

    /// Flushes the data and renames the file to `path`, replacing what was there.
    pub(crate) fn persist(self, path: &Path) -> Result<(), OutputError> {
        let temp_path = self.temp_path().to_path_buf();
        let write_error = |source| OutputError::Write {
            path: temp_path.clone(),
            source,
        };
        let temp = self
            .file
            .into_inner()
            .map_err(|err| write_error(err.into_error()))?;
        // Make the data durable before the rename makes it visible under the final name.
        temp.as_file().sync_all().map_err(write_error)?;
        temp.persist(path).map_err(|err| OutputError::Persist {
            temp: temp_path.clone(),
            path: path.to_path_buf(),
            source: err.error,
        })?;
        Ok(())
    }
}

impl Write for StagedFile {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let written = self.file.write(data)?;
        self.len += written as u64;
        Ok(written)
    }

    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        self.file.write_all(data)?;
        self.len += data.len() as u64;
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// A staged file together with where it goes.
pub(crate) struct StagedOutput {
    pub(crate) file: StagedFile,
    pub(crate) path: PathBuf,
}

impl StagedOutput {
    /// Stages `path` in its own directory.
    pub(crate) fn create(path: &Path) -> Result<StagedOutput, OutputError> {
        Ok(StagedOutput {
            file: StagedFile::create_for(path)?,
            path: path.to_path_buf(),
        })
    }

    /// Moves the file into place.
    pub(crate) fn persist(self) -> Result<(), OutputError> {
        self.file.persist(&self.path)
    }
}

impl Write for StagedOutput {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.file.write(data)
    }

    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        self.file.write_all(data)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
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
