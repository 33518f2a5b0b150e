//! [`Outputs`]: which formats a build writes and where, under LinuxKit's names.

use std::path::PathBuf;

use super::{check_name, sink_for, stream_sink, Format, OutputError, OutputFile, PgzipOptions, Tee};
use crate::EntrySink;

/// The formats a build writes and where: each format's files in a directory under LinuxKit's
/// names (`NAME.tar`, `NAME-kernel`, `NAME-initrd.img`, `NAME-cmdline`, ...), or one single-stream
/// format into a file or standard output. Made by [`Outputs::in_dir`] or [`Outputs::stream`],
/// which check everything that can be checked before a build starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outputs {
    /// Each format once, in the order asked for.
    formats: Vec<Format>,
    place: Place,
    gzip: PgzipOptions,
}

/// Where the files go.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Place {
    /// `DIR/NAME...`.
    Dir { dir: PathBuf, name: String },
    /// The one format's stream.
    Stream(OutputFile),
}

impl Outputs {
    /// Every format in `formats` (each once, in order; at least one) into `dir`, named after
    /// `name`: one file name, not starting with `.`. `dir` is created when the build starts.
    pub fn in_dir(dir: impl Into<PathBuf>, name: &str, formats: &[Format]) -> Result<Outputs, crate::Error> {
        check_name(name)?;
        let mut unique = Vec::with_capacity(formats.len());
        for format in formats {
            if !unique.contains(format) {
                unique.push(*format);
            }
        }
        if unique.is_empty() {
            return Err(OutputError::NoFormat {
                supported: Format::supported_list(),
            }
            .into());
        }
        Ok(Outputs {
            formats: unique,
            place: Place::Dir {
                dir: dir.into(),
                name: name.to_string(),
            },
            gzip: PgzipOptions::default(),
        })
    }

    /// One single-stream format (`tar`, `docker`) into `to`.
    pub fn stream(format: Format, to: OutputFile) -> Result<Outputs, crate::Error> {
        if !format.is_streamable() {
            return Err(OutputError::NotStreamable { format }.into());
        }
        Ok(Outputs {
            formats: vec![format],
            place: Place::Stream(to),
            gzip: PgzipOptions::default(),
        })
    }

    /// Compresses initrds with gzip level `level` (0, stored, to 9, smallest) instead of the
    /// default, which favours speed.
    pub fn with_compression_level(mut self, level: u32) -> Outputs {
        self.gzip.level = level;
        self
    }

    /// The sink writing every output: the directory is created, each file staged under a
    /// temporary name until the sink finishes.
    pub(crate) fn open(&self) -> Result<Box<dyn EntrySink + Send>, OutputError> {
        let mut sinks = Vec::with_capacity(self.formats.len());
        for format in &self.formats {
            let sink = match &self.place {
                Place::Stream(to) => stream_sink(*format, to),
                Place::Dir { dir, name } => {
                    std::fs::create_dir_all(dir).map_err(|source| OutputError::CreateDir {
                        dir: dir.clone(),
                        source,
                    })?;
                    sink_for(*format, dir, name, self.gzip)
                }
            };
            sinks.push(sink.map_err(|source| OutputError::Prepare {
                format: *format,
                source: Box::new(source),
            })?);
        }
        match <[_; 1]>::try_from(sinks) {
            Ok([sink]) => Ok(sink),
            Err(sinks) => Ok(Box::new(Tee::new(sinks))),
        }
    }

    /// The files a finished build wrote (none for standard output). A format's files that the
    /// image has no content for (`NAME-cmdline` without a command line) are not written, and
    /// those of an earlier build are removed: what is there is this build's.
    pub(crate) fn written(&self) -> Vec<PathBuf> {
        match &self.place {
            Place::Stream(OutputFile::Stdout) => Vec::new(),
            Place::Stream(OutputFile::Path(path)) => vec![path.clone()],
            Place::Dir { dir, name } => self
                .formats
                .iter()
                .flat_map(|format| format.default_files(dir, name))
                .filter(|path| path.exists())
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{dir_names, feed, image_entries};
    use super::*;
    use tempfile::TempDir;

    /// Writes an image without a command line through `outputs`; returns what it says was written.
    fn write(outputs: &Outputs) -> Vec<PathBuf> {
        let mut sink = outputs.open().unwrap();
        feed(sink.as_mut(), &image_entries(None)).unwrap();
        sink.finish().unwrap();
        outputs.written()
    }

    #[test]
    fn several_formats_go_into_one_directory_under_linuxkit_names() {
        let parent = TempDir::new().unwrap();
        let dir = parent.path().join("new/out");
        let formats = [Format::Tar, Format::KernelInitrd, Format::Tar, Format::Docker];
        let outputs = Outputs::in_dir(&dir, "img", &formats).unwrap();
        let written = write(&outputs);
        // No command line in the image: no NAME-cmdline.
        let expected = ["img.tar", "img-kernel", "img-initrd.img", "img.docker"].map(|name| dir.join(name));
        assert_eq!(written, expected);
        assert_eq!(
            dir_names(&dir),
            ["img-initrd.img", "img-kernel", "img.docker", "img.tar"]
        );
    }

    #[test]
    fn a_stream_holds_one_streamable_format() {
        let dir = TempDir::new().unwrap();
        let target = dir.path().join("custom.tar");
        let outputs = Outputs::stream(Format::Tar, OutputFile::Path(target.clone())).unwrap();
        assert_eq!(write(&outputs), [target]);
        assert_eq!(dir_names(dir.path()), ["custom.tar"]);
        let err = Outputs::stream(Format::KernelInitrd, OutputFile::Stdout).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("output format kernel+initrd writes its files"),
            "{err}"
        );
    }

    #[test]
    fn names_and_formats_are_checked_before_anything_is_written() {
        let parent = TempDir::new().unwrap();
        let dir = parent.path().join("out");
        for name in ["../../escape", "a/b", "", ".", "..", ".hidden"] {
            let err = Outputs::in_dir(&dir, name, &[Format::Tar]).unwrap_err();
            assert!(err.to_string().starts_with("invalid output name"), "{name:?}: {err}");
        }
        let err = Outputs::in_dir(&dir, "img", &[]).unwrap_err();
        assert!(err.to_string().starts_with("no output format given"), "{err}");
        assert!(dir_names(parent.path()).is_empty());
    }

    #[test]
    fn an_output_directory_that_cannot_be_made_is_named() {
        let parent = TempDir::new().unwrap();
        std::fs::write(parent.path().join("file"), b"").unwrap();
        let dir = parent.path().join("file/out");
        let outputs = Outputs::in_dir(&dir, "img", &[Format::Tar]).unwrap();
        let err = outputs.open().err().unwrap().to_string();
        assert!(
            err.starts_with(&format!("cannot create output directory {}: ", dir.display())),
            "{err}"
        );
    }
}
