//! Output formats: sinks that consume the assembled entry stream.
//!
//! Each format is an [`EntrySink`]; [`sink_for`] builds the one for a [`Format`], and [`Tee`]
//! feeds one build into several. File outputs are written under temporary names and renamed into
//! place in [`EntrySink::finish`], so a build that fails (or a sink dropped without `finish`)
//! leaves no partial files and keeps the previous build's outputs.
//!
//! | format | files |
//! |---|---|
//! | `tar` | `NAME.tar` or the given output file / standard output |
//! | `docker` | like `tar`, plus a `Dockerfile` entry at the end (`NAME.docker` by default) |
//! | `kernel+initrd` | `NAME-kernel`, `NAME-initrd.img`, `NAME-cmdline` ([`kernel_initrd`]) |
//! | `tar-kernel-initrd` | `NAME-initrd.tar` holding those pieces ([`tar_kernel_initrd`]) |

pub mod cpio;
pub mod docker;
pub mod initrd;
pub mod kernel_initrd;
pub mod pgzip;
mod staged;
pub mod tar_kernel_initrd;
mod tar_output;
pub mod tee;

#[cfg(test)]
mod tar_stand_in;

use std::fmt;
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};
use std::str::FromStr;

pub use docker::Docker;
pub use kernel_initrd::KernelInitrd;
pub use pgzip::{PgzipOptions, PgzipWriter};
pub use tar_kernel_initrd::TarKernelInitrd;
pub use tee::Tee;

use crate::EntrySink;
use staged::StagedOutput;
use tar_output::{Commit, TarOutput};

// The real Go-compatible writer; tests use a stand-in until it exists (see tar_stand_in.rs).
#[cfg(not(test))]
use crate::tar::writer::TarWriter;
#[cfg(test)]
use tar_stand_in::TarWriter;

/// Errors of the output sinks. Inside [`EntrySink`] calls they travel as the payload of an
/// [`io::Error`] (see [`io::Error::get_ref`]).
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The format name is not one LinuxKit knows.
    #[error("unknown output format {name:?}; supported formats: {supported}")]
    UnknownFormat {
        /// The name given.
        name: String,
        /// Comma-separated list of the formats we support.
        supported: String,
    },
    /// A LinuxKit format that is not implemented yet.
    #[error("output format {name} is not supported yet; supported formats: {supported}")]
    UnsupportedFormat {
        /// The name given.
        name: String,
        /// Comma-separated list of the formats we support.
        supported: String,
    },
    /// An output file (or standard output) was given for a format that writes several files.
    #[error(
        "output format {format} writes its files into the output directory and cannot be \
         streamed to a single output file; leave out the output file or use tar or docker"
    )]
    NotStreamable {
        /// The format.
        format: Format,
    },
    /// A temporary output file could not be created.
    #[error("cannot create a temporary file in {}: {source}; check that the directory exists and is writable", dir.display())]
    CreateTemp {
        /// The output directory.
        dir: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// Writing an output file failed.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file being written.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A finished output could not be renamed into place.
    #[error("cannot move {} into place as {}: {source}", temp.display(), path.display())]
    Persist {
        /// The temporary file.
        temp: PathBuf,
        /// The final path.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// An output of an earlier build that this build does not produce could not be removed.
    #[error("cannot remove {}, left by an earlier build: {source}", path.display())]
    RemoveStale {
        /// The stale file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// An entry received more data than its header's size.
    #[error("entry {entry}: more data than the size in its header")]
    TooMuchData {
        /// Entry name.
        entry: String,
    },
    /// A new entry (or the end) came before the previous entry's data was complete.
    #[error("entry {entry}: {missing} bytes of data missing")]
    MissingData {
        /// Entry name.
        entry: String,
        /// Bytes still expected.
        missing: u64,
    },
    /// The sink was used after `finish`.
    #[error("output already finished; no more entries can be written")]
    Finished,
    /// The sink was used after an earlier error left it in an unknown state.
    #[error("output unusable after an earlier error; start the build again")]
    Broken,
}

impl From<OutputError> for io::Error {
    fn from(err: OutputError) -> io::Error {
        let kind = match &err {
            OutputError::CreateTemp { source, .. }
            | OutputError::Write { source, .. }
            | OutputError::Persist { source, .. }
            | OutputError::RemoveStale { source, .. } => source.kind(),
            OutputError::UnknownFormat { .. }
            | OutputError::UnsupportedFormat { .. }
            | OutputError::NotStreamable { .. } => io::ErrorKind::InvalidInput,
            _ => io::ErrorKind::InvalidData,
        };
        io::Error::new(kind, err)
    }
}

/// An output format, named as in LinuxKit's `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// `tar`: the assembled entries as one tar file.
    Tar,
    /// `kernel+initrd`: kernel, gzip-compressed cpio initrd, and cmdline files.
    KernelInitrd,
    /// `tar-kernel-initrd`: kernel, initrd, cmdline and microcode in one tar.
    TarKernelInitrd,
    /// `docker`: the tar with a Dockerfile added, for `docker build`/`import`.
    Docker,
}

impl Format {
    /// Every format we can write.
    pub const SUPPORTED: [Format; 4] = [
        Format::Tar,
        Format::KernelInitrd,
        Format::TarKernelInitrd,
        Format::Docker,
    ];

    /// LinuxKit's name for the format.
    pub fn name(self) -> &'static str {
        match self {
            Format::Tar => "tar",
            Format::KernelInitrd => "kernel+initrd",
            Format::TarKernelInitrd => "tar-kernel-initrd",
            Format::Docker => "docker",
        }
    }

    /// Whether the format is a single stream that can go to any file or to standard output.
    pub fn is_streamable(self) -> bool {
        matches!(self, Format::Tar | Format::Docker)
    }

    /// The files the format writes into `dir` for `name` (for a streamable format: its default
    /// file when no output file is given). `NAME-cmdline` is only written for a non-empty cmdline.
    pub fn default_files(self, dir: &Path, name: &str) -> Vec<PathBuf> {
        match self {
            Format::Tar | Format::Docker => vec![dir.join(format!("{name}.{}", self.name()))],
            Format::KernelInitrd => ["kernel", "initrd.img", "cmdline"]
                .iter()
                .map(|suffix| dir.join(format!("{name}-{suffix}")))
                .collect(),
            Format::TarKernelInitrd => vec![dir.join(format!("{name}-initrd.tar"))],
        }
    }

    fn supported_list() -> String {
        Format::SUPPORTED.map(Format::name).join(", ")
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// LinuxKit formats we do not write yet (they need disk image, ISO or cloud tooling).
const NOT_YET_SUPPORTED: [&str; 18] = [
    "iso-bios",
    "iso-efi",
    "iso-efi-initrd",
    "raw-bios",
    "raw-efi",
    "kernel+squashfs",
    "kernel+erofs",
    "kernel+iso",
    "aws",
    "gcp",
    "qcow2-efi",
    "qcow2-bios",
    "vhd",
    "dynamic-vhd",
    "vmdk",
    "rpi3",
    "raw",
    "qcow2",
];

impl FromStr for Format {
    type Err = OutputError;

    fn from_str(name: &str) -> Result<Format, OutputError> {
        if let Some(format) = Format::SUPPORTED.into_iter().find(|f| f.name() == name) {
            return Ok(format);
        }
        let supported = Format::supported_list();
        if NOT_YET_SUPPORTED.contains(&name) {
            Err(OutputError::UnsupportedFormat {
                name: name.to_string(),
                supported,
            })
        } else {
            Err(OutputError::UnknownFormat {
                name: name.to_string(),
                supported,
            })
        }
    }
}

/// Where a streamable format (`tar`, `docker`) goes instead of its default file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputFile {
    /// Standard output (`-o -`).
    Stdout,
    /// This file; its directory must exist.
    Path(PathBuf),
}

/// Settings shared by the sinks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SinkOptions {
    /// For `tar` and `docker` only: write here instead of `DIR/NAME.<format>`.
    pub output_file: Option<OutputFile>,
    /// Compression of initrds.
    pub gzip: PgzipOptions,
}

/// The sink writing `format` for the image `name` into `dir` (which must exist).
pub fn sink_for(
    format: Format,
    dir: &Path,
    name: &str,
    options: &SinkOptions,
) -> Result<Box<dyn EntrySink + Send>, OutputError> {
    if options.output_file.is_some() && !format.is_streamable() {
        return Err(OutputError::NotStreamable { format });
    }
    let sink: Box<dyn EntrySink + Send> = match format {
        Format::Tar | Format::Docker => stream_sink(format, dir, name, options)?,
        Format::KernelInitrd => Box::new(KernelInitrd::new(dir, name, options.gzip)?),
        Format::TarKernelInitrd => {
            let path = dir.join(format!("{name}-initrd.tar"));
            let tar = TarOutput::new(StagedOutput::create(&path)?);
            Box::new(TarKernelInitrd::new(dir, name, options.gzip, tar)?)
        }
    };
    Ok(sink)
}

/// A tar stream to the output file, standard output, or `DIR/NAME.<format>`.
fn stream_sink(
    format: Format,
    dir: &Path,
    name: &str,
    options: &SinkOptions,
) -> Result<Box<dyn EntrySink + Send>, OutputError> {
    Ok(match &options.output_file {
        Some(OutputFile::Stdout) => stream_format(format, BufWriter::new(io::stdout())),
        Some(OutputFile::Path(path)) => stream_format(format, StagedOutput::create(path)?),
        None => {
            let path = dir.join(format!("{name}.{}", format.name()));
            stream_format(format, StagedOutput::create(&path)?)
        }
    })
}

/// The tar-based sink for a streamable format over `destination`.
fn stream_format<W: Commit + Send + 'static>(
    format: Format,
    destination: W,
) -> Box<dyn EntrySink + Send> {
    let tar = TarOutput::new(destination);
    match format {
        Format::Docker => Box::new(Docker::new(tar)),
        _ => Box::new(tar),
    }
}
