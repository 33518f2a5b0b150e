//! [`Outputs`]: which formats a build writes and where, under LinuxKit's names.

use std::path::PathBuf;
use std::sync::Arc;

use super::bootloader::Bootloader;
use super::medium::MIB;
use super::{check_name, sink_for, stream_sink, Format, OutputError, OutputFile, PgzipOptions, SinkOptions, Tee};
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
    /// `--size` of the disk formats, in bytes.
    disk_size: Option<u64>,
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
        let dir = dir.into();
        check_distinct_files(&unique, &dir, name)?;
        Ok(Outputs {
            formats: unique,
            place: Place::Dir {
                dir,
                name: name.to_string(),
            },
            gzip: PgzipOptions::default(),
            disk_size: None,
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
            disk_size: None,
        })
    }

    /// The size of the disk formats' disks, LinuxKit's `--size`: a number of MiB, or a number
    /// with a unit `K`, `M`, `G` or `T` (powers of 1024; `1024M`, `2G`). LinuxKit's default,
    /// 1024M, applies to `aws` and `qcow2-bios`; the other disk formats keep their own size
    /// (just big enough for `raw-*` and `qcow2-efi`, 1 GiB for `vhd`, `vmdk` and `gcp`, 25 GiB for
    /// `dynamic-vhd`) unless a size is given.
    pub fn with_disk_size(mut self, size: &str) -> Result<Outputs, crate::Error> {
        self.disk_size = Some(parse_disk_size(size)?);
        Ok(self)
    }

    /// Whether any format needs the bootloader image.
    pub(crate) fn needs_bootloader(&self) -> bool {
        self.formats.iter().any(|format| format.medium().is_some())
    }

    /// Checks that every format can boot `arch` (the build's platform architecture).
    pub(crate) fn check_arch(&self, arch: &str) -> Result<(), OutputError> {
        match self.formats.iter().find(|format| format.medium().is_some()) {
            Some(format) if arch != "amd64" => Err(OutputError::Arch {
                format: *format,
                arch: arch.to_string(),
            }),
            _ => Ok(()),
        }
    }

    /// Compresses initrds with gzip level `level` (0, stored, to 9, smallest) instead of the
    /// default, which favours speed.
    pub fn with_compression_level(mut self, level: u32) -> Outputs {
        self.gzip.level = level;
        self
    }

    /// The sink writing every output: the directory is created, each file staged under a
    /// temporary name until the sink finishes.
    pub(crate) fn open(&self, bootloader: Option<Arc<Bootloader>>) -> Result<Box<dyn EntrySink + Send>, OutputError> {
        let options = SinkOptions {
            gzip: self.gzip,
            bootloader,
            disk_size: self.disk_size,
        };
        let mut sinks = Vec::with_capacity(self.formats.len());
        for format in &self.formats {
            let sink = match &self.place {
                Place::Stream(to) => stream_sink(*format, to),
                Place::Dir { dir, name } => {
                    std::fs::create_dir_all(dir).map_err(|source| OutputError::CreateDir {
                        dir: dir.clone(),
                        source,
                    })?;
                    sink_for(*format, dir, name, &options)
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
            Place::Dir { dir, name } => {
                let mut seen = std::collections::HashSet::new();
                self.formats
                    .iter()
                    .flat_map(|format| format.default_files(dir, name))
                    // NAME-kernel and NAME-cmdline are written by several formats.
                    .filter(|path| path.exists() && seen.insert(path.clone()))
                    .collect()
            }
        }
    }
}

/// Refuses formats that would write the same file (`vhd` and `dynamic-vhd` are both
/// `NAME.vhd`), but for those that write the same bytes: `NAME-kernel`, `NAME-cmdline` and the
/// first-stage initrd.
fn check_distinct_files(formats: &[Format], dir: &std::path::Path, name: &str) -> Result<(), OutputError> {
    let shared =
        ["-kernel", "-cmdline", super::kernel_rootfs::BOOT_INITRD_SUFFIX].map(|s| dir.join(format!("{name}{s}")));
    for (i, first) in formats.iter().enumerate() {
        for second in &formats[i + 1..] {
            let theirs = second.default_files(dir, name);
            let mut same = first
                .default_files(dir, name)
                .into_iter()
                .filter(|f| theirs.contains(f));
            if let Some(file) = same.find(|f| !shared.contains(f)) {
                return Err(OutputError::SameFile {
                    first: *first,
                    second: *second,
                    file,
                });
            }
        }
    }
    Ok(())
}

/// Parses `--size`: MiB, or a number with `K`, `M`, `G` or `T` (optionally followed by `B` or
/// `iB`), as LinuxKit does.
fn parse_disk_size(text: &str) -> Result<u64, OutputError> {
    let bad = |reason| OutputError::BadSize {
        value: text.to_string(),
        reason,
    };
    let trimmed = text.trim();
    let digits = trimmed.find(|c: char| !c.is_ascii_digit()).unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(digits);
    let number: u64 = number.parse().map_err(|_| bad("it does not start with a number"))?;
    let unit = unit.trim().to_ascii_uppercase();
    let unit = unit.trim_end_matches("IB").trim_end_matches('B');
    let scale: u64 = match unit {
        "" | "M" => MIB,
        "K" => 1 << 10,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => return Err(bad("the unit is not one of K, M, G, T")),
    };
    let bytes = number.checked_mul(scale).ok_or(bad("it is too large"))?;
    if bytes < MIB {
        return Err(bad("a disk needs at least 1 MiB"));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{dir_names, feed, image_entries};
    use super::*;
    use tempfile::TempDir;

    /// Writes an image without a command line through `outputs`; returns what it says was written.
    fn write(outputs: &Outputs) -> Vec<PathBuf> {
        let mut sink = outputs.open(None).unwrap();
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
        let err = outputs.open(None).err().unwrap().to_string();
        assert!(
            err.starts_with(&format!("cannot create output directory {}: ", dir.display())),
            "{err}"
        );
    }

    #[test]
    fn disk_sizes_read_like_linuxkit() {
        assert_eq!(parse_disk_size("1024M").unwrap(), 1 << 30);
        assert_eq!(parse_disk_size("1024").unwrap(), 1 << 30);
        assert_eq!(parse_disk_size("2G").unwrap(), 2 << 30);
        assert_eq!(parse_disk_size("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_disk_size("4096k").unwrap(), 4 << 20);
        for bad in ["", "G", "1X", "-1G", "0", "99999999999999T"] {
            let err = parse_disk_size(bad).unwrap_err().to_string();
            assert!(err.starts_with("invalid disk size"), "{bad}: {err}");
        }
    }

    #[test]
    fn formats_writing_the_same_file_are_refused() {
        let dir = TempDir::new().unwrap();
        let err = Outputs::in_dir(dir.path(), "img", &[Format::Vhd, Format::DynamicVhd]).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "formats vhd and dynamic-vhd both write {}; build them separately (under another name or in another directory)",
                dir.path().join("img.vhd").display()
            )
        );
        let err = Outputs::in_dir(dir.path(), "img", &[Format::IsoBios, Format::KernelIso]).unwrap_err();
        assert!(err.to_string().contains("img.iso"), "{err}");
        // kernel+initrd, kernel+iso and kernel+squashfs share NAME-kernel and NAME-cmdline.
        let every: Vec<Format> = Format::SUPPORTED
            .into_iter()
            .filter(|f| *f != Format::DynamicVhd && *f != Format::KernelIso)
            .collect();
        Outputs::in_dir(dir.path(), "img", &every).unwrap();
    }

    #[test]
    fn media_are_for_x86_only() {
        let outputs = Outputs::in_dir("out", "img", &[Format::KernelInitrd, Format::RawEfi]).unwrap();
        assert!(outputs.needs_bootloader());
        outputs.check_arch("amd64").unwrap();
        let err = outputs.check_arch("arm64").unwrap_err().to_string();
        assert!(err.starts_with("format raw-efi boots x86 machines only"), "{err}");
        let plain = Outputs::in_dir("out", "img", &[Format::KernelInitrd, Format::Tar]).unwrap();
        assert!(!plain.needs_bootloader());
        plain.check_arch("arm64").unwrap();
    }
}
