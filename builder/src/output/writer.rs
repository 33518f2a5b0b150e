//! A single-stream output (a tar, an exported cache archive) where the user asked for it:
//! standard output, a FIFO or character device written in place (`/dev/null`, a pipe to another
//! tool), or a regular file staged beside its target and renamed into place.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Stdout, Write};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use super::staged::{placement, Placement, StagedFile};
use super::{OutputError, OutputFile};

/// Where a single-stream output goes; [`OutputWriter::commit`] makes it final. Dropped without
/// `commit`, a staged file is removed and the previous file stays (bytes already written into
/// standard output, a FIFO or a device cannot be taken back).
pub struct OutputWriter(Stream);

enum Stream {
    Staged(StagedFile),
    InPlace { file: BufWriter<File>, path: PathBuf },
    Stdout(BufWriter<Stdout>),
}

impl OutputWriter {
    /// Opens `output`. A FIFO is opened for writing as a shell redirection does, which waits
    /// for its reader.
    pub fn open(output: &OutputFile) -> Result<OutputWriter, OutputError> {
        let stream = match output {
            OutputFile::Stdout => Stream::Stdout(BufWriter::new(io::stdout())),
            OutputFile::Path(path) => match placement(path)? {
                Placement::Replace(_) => Stream::Staged(StagedFile::create_for(path)?),
                Placement::InPlace(_) => Stream::InPlace {
                    file: BufWriter::new(open_in_place(path)?),
                    path: path.clone(),
                },
            },
        };
        Ok(OutputWriter(stream))
    }

    /// Flushes everything and, for a staged file, renames it into place.
    pub fn commit(self) -> Result<(), OutputError> {
        match self.0 {
            Stream::Staged(file) => file.persist(),
            Stream::InPlace { mut file, path } => file.flush().map_err(|source| write_error(&path, source)),
            Stream::Stdout(mut out) => out.flush().map_err(|source| write_error(stdout_path(), source)),
        }
    }

    /// Runs an I/O operation, naming the destination in its error.
    fn try_io<T>(&mut self, operation: impl FnOnce(&mut dyn Write) -> io::Result<T>) -> io::Result<T> {
        let (result, path) = match &mut self.0 {
            // A staged file names its target itself.
            Stream::Staged(file) => return operation(file),
            Stream::InPlace { file, path } => (operation(file), path.as_path()),
            Stream::Stdout(out) => (operation(out), stdout_path()),
        };
        result.map_err(|source| write_error(path, source).into())
    }
}

impl Write for OutputWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.try_io(|out| out.write(data))
    }

    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        self.try_io(|out| out.write_all(data))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.try_io(|out| out.flush())
    }
}

/// Opens an existing FIFO or character device for writing, without creating or truncating, and
/// checks that it still is one.
fn open_in_place(path: &Path) -> Result<File, OutputError> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|source| write_error(path, source))?;
    let file_type = file.metadata().map_err(|source| write_error(path, source))?.file_type();
    if !(file_type.is_fifo() || file_type.is_char_device()) {
        // Replaced between the look and the open: decide again rather than write into it.
        return Err(OutputError::Inspect {
            path: path.to_path_buf(),
            source: io::Error::other("it changed while being opened; try again"),
        });
    }
    Ok(file)
}

fn stdout_path() -> &'static Path {
    Path::new("standard output")
}

/// A write error; a reader that went away means the output is cut short.
fn write_error(path: &Path, source: io::Error) -> OutputError {
    if source.kind() == io::ErrorKind::BrokenPipe {
        OutputError::ReaderGone {
            path: path.to_path_buf(),
        }
    } else {
        OutputError::Write {
            path: path.to_path_buf(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;
    use std::process::Command;
    use tempfile::TempDir;

    fn write_to(path: &Path, data: &[u8]) -> Result<(), OutputError> {
        let mut out = OutputWriter::open(&OutputFile::Path(path.to_path_buf()))?;
        out.write_all(data).unwrap();
        out.commit()
    }

    fn file_type(path: &Path) -> fs::FileType {
        fs::symlink_metadata(path).unwrap().file_type()
    }

    fn names(dir: &Path) -> Vec<String> {
        super::super::testing::dir_names(dir)
    }

    /// A device node like /dev/null (1,3) of our own, in `dir`; `None` when we may not make one
    /// (not root) or not use one (a `nodev` mount).
    fn null_device(dir: &Path) -> Option<PathBuf> {
        let path = dir.join("null");
        let made = Command::new("mknod").arg(&path).args(["c", "1", "3"]).status();
        if !made.is_ok_and(|status| status.success()) || fs::write(&path, b"probe").is_err() {
            eprintln!("skipped: cannot create and use a character device here (needs root)");
            return None;
        }
        Some(path)
    }

    #[test]
    fn a_fifo_gets_the_bytes_and_stays_a_fifo() {
        let dir = TempDir::new().unwrap();
        let fifo = dir.path().join("out.tar");
        assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || fs::read(fifo).unwrap())
        };
        let data = vec![7u8; 300_000];
        write_to(&fifo, &data).unwrap();
        // Checked before waiting for the reader, which would wait forever on a replaced FIFO.
        assert!(file_type(&fifo).is_fifo());
        assert_eq!(reader.join().unwrap(), data);
        assert_eq!(names(dir.path()), ["out.tar"], "no temporary file beside it");
    }

    #[test]
    fn a_character_device_is_written_in_place() {
        let dir = TempDir::new().unwrap();
        let Some(device) = null_device(dir.path()) else {
            return;
        };
        // Directly, and through a symlink as `-o /dev/null` or `-o link-to-dev-null` would.
        let link = dir.path().join("link");
        symlink(&device, &link).unwrap();
        for path in [&device, &link] {
            write_to(path, b"image bytes").unwrap();
            assert!(file_type(&device).is_char_device());
        }
        assert!(file_type(&link).is_symlink());
        assert_eq!(names(dir.path()), ["link", "null"]);
    }

    #[test]
    fn a_symlink_is_followed_and_stays() {
        let dir = TempDir::new().unwrap();
        fs::create_dir(dir.path().join("real")).unwrap();
        let real = dir.path().join("real/img.tar");
        fs::write(&real, b"old").unwrap();
        let link = dir.path().join("img.tar");
        symlink("real/img.tar", &link).unwrap();
        write_to(&link, b"new").unwrap();
        assert!(file_type(&link).is_symlink());
        assert_eq!(fs::read(&real).unwrap(), b"new");
        assert_eq!(names(&dir.path().join("real")), ["img.tar"]);
    }

    #[test]
    fn regular_files_and_new_paths_are_replaced_whole() {
        let dir = TempDir::new().unwrap();
        let path = dir.path().join("img.tar");
        write_to(&path, b"first").unwrap();
        write_to(&path, b"second").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second");
        assert_eq!(names(dir.path()), ["img.tar"]);
    }

    #[test]
    fn what_no_output_may_replace_is_refused_and_kept() {
        let dir = TempDir::new().unwrap();
        let directory = dir.path().join("a-directory");
        fs::create_dir(&directory).unwrap();
        let socket = dir.path().join("a-socket");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let dangling = dir.path().join("dangling");
        symlink("nowhere", &dangling).unwrap();
        let block = dir.path().join("a-block-device");
        let have_block = Command::new("mknod")
            .arg(&block)
            .args(["b", "7", "200"])
            .status()
            .is_ok_and(|status| status.success());

        let err = write_to(&directory, b"x").unwrap_err();
        assert!(matches!(err, OutputError::NotAFile { kind: "directory", .. }), "{err}");
        assert!(err.to_string().contains("a-directory"), "{err}");
        let err = write_to(&socket, b"x").unwrap_err();
        assert!(matches!(err, OutputError::NotAFile { kind: "socket", .. }), "{err}");
        let err = write_to(&dangling, b"x").unwrap_err();
        assert!(matches!(err, OutputError::DanglingSymlink { .. }), "{err}");
        assert!(err.to_string().contains("nowhere"), "{err}");
        if have_block {
            let err = write_to(&block, b"x").unwrap_err();
            assert!(
                matches!(
                    err,
                    OutputError::NotAFile {
                        kind: "block device",
                        ..
                    }
                ),
                "{err}"
            );
            assert!(file_type(&block).is_block_device());
        }
        assert!(file_type(&directory).is_dir());
        assert!(file_type(&socket).is_socket());
        assert!(file_type(&dangling).is_symlink());
        assert!(!dir.path().join("nowhere").exists());
        assert!(
            names(dir.path()).iter().all(|name| !name.starts_with('.')),
            "no temporary files"
        );
    }

    #[test]
    fn a_reader_that_goes_away_is_a_truncated_output() {
        let dir = TempDir::new().unwrap();
        let fifo = dir.path().join("out.tar");
        assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        // A reader that opens the FIFO and closes it at once; writes block until it is gone.
        std::thread::spawn({
            let fifo = fifo.clone();
            move || drop(fs::File::open(fifo).unwrap())
        });
        let mut out = OutputWriter::open(&OutputFile::Path(fifo.clone())).unwrap();
        let err = out
            .write_all(&vec![0u8; 1 << 20])
            .and_then(|()| out.flush())
            .unwrap_err();
        let inner = err.get_ref().and_then(|e| e.downcast_ref::<OutputError>());
        assert!(
            matches!(inner, Some(OutputError::ReaderGone { path }) if *path == fifo),
            "{err}"
        );
    }
}
