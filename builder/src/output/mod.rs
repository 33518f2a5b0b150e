//! Output formats: sinks that consume the assembled entry stream.
//!
//! Each format is an [`EntrySink`]; [`Outputs`] says which formats a build writes and where, and
//! builds their sinks, fed from one build through a `Tee` when there are several. File outputs
//! are written under temporary names and renamed into place in [`EntrySink::finish`], so a build
//! that fails (or a sink dropped without `finish`) leaves no partial files and keeps the previous
//! build's outputs.
//!
//! | format | files |
//! |---|---|
//! | `tar` | `NAME.tar` or the given output file / standard output |
//! | `docker` | like `tar`, plus a `Dockerfile` entry at the end (`NAME.docker` by default) |
//! | `kernel+initrd` | `NAME-kernel`, `NAME-initrd.img`, `NAME-cmdline` (`kernel_initrd.rs`) |
//! | `tar-kernel-initrd` | `NAME-initrd.tar` holding those pieces (`tar_kernel_initrd.rs`) |

mod bootloader;
pub mod cpio;
mod destination;
mod disk_medium;
mod docker;
mod efi;
mod initrd;
mod iso_medium;
mod kernel_initrd;
mod kernel_rootfs;
mod medium;
mod pgzip;
mod staged;
mod tar_kernel_initrd;
mod tar_output;
mod tee;
mod writer;

#[cfg(test)]
pub(crate) mod testing;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;

pub(crate) use bootloader::Bootloader;
pub use bootloader::BOOTLOADER_IMAGE;
pub use destination::Outputs;
use docker::Docker;
use kernel_initrd::KernelInitrd;
use medium::{Container, DiskLayout, DiskSize, Firmware, Medium, GIB};
pub use pgzip::{PgzipOptions, PgzipWriter};
use tar_kernel_initrd::TarKernelInitrd;
use tee::Tee;
pub(crate) use writer::OutputWriter;

use crate::EntrySink;
pub use staged::remove_partial_outputs;
use staged::StagedFile;
use tar_output::{Commit, TarOutput};

use crate::tar::TarWriter;

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
    /// No output format was asked for.
    #[error("no output format given; supported formats: {supported}")]
    NoFormat {
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
    /// An output name that is not one plain file name.
    #[error("invalid output name {name:?}: {reason}; a name is one file name, without '/' and not starting with '.'")]
    InvalidName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The output directory could not be created.
    #[error("cannot create output directory {}: {source}", dir.display())]
    CreateDir {
        /// The output directory.
        dir: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The sink of one format could not be made.
    #[error("preparing the {format} output: {source}")]
    Prepare {
        /// The format.
        format: Format,
        /// Why.
        source: Box<OutputError>,
    },
    /// A temporary output file could not be created.
    #[error("cannot create a temporary file in {}: {source}; check that the directory exists and is writable", dir.display())]
    CreateTemp {
        /// The output directory.
        dir: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// Something at an output path that no output may replace.
    #[error("cannot write the output {}: it is a {kind}, and outputs replace only regular files (single-stream outputs also write into FIFOs and character devices); remove it or choose another path", path.display())]
    NotAFile {
        /// The output path.
        path: PathBuf,
        /// What is there: directory, socket, block device, ...
        kind: &'static str,
    },
    /// An output path is a symlink to nothing.
    #[error("cannot write the output {}: it is a symbolic link to {}, which does not exist; create that file or remove the link", path.display(), points_to.display())]
    DanglingSymlink {
        /// The output path.
        path: PathBuf,
        /// The link's target.
        points_to: PathBuf,
    },
    /// What is at an output path could not be found out.
    #[error("cannot inspect the output path {}: {source}", path.display())]
    Inspect {
        /// The output path.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The reader of a pipe went away before the output was complete.
    #[error("the reader of {} closed it before the output was complete: the output is truncated", path.display())]
    ReaderGone {
        /// `standard output` or the FIFO.
        path: PathBuf,
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
    /// Two formats of one build would write the same file.
    #[error(
        "formats {first} and {second} both write {}; build them separately (under another name or in another directory)",
        file.display()
    )]
    SameFile {
        /// The format asked for first.
        first: Format,
        /// The other.
        second: Format,
        /// The file both write.
        file: PathBuf,
    },
    /// An ISO or disk format for a platform its bootloaders do not start.
    #[error("format {format} boots x86 machines only (isolinux, syslinux, x86 EFI stub), not {arch}; build {arch} images as kernel+initrd, tar or docker")]
    Arch {
        /// The format.
        format: Format,
        /// The build's architecture.
        arch: String,
    },
    /// `--size` is not a size.
    #[error("invalid disk size {value:?}: {reason}; give a number of MiB, or a number with a unit: 512M, 2G, 1T")]
    BadSize {
        /// The text given.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A bootable format of an image without a kernel.
    #[error("format {format} boots a kernel, but the image has none (no boot/kernel): add a kernel section to the spec, or use tar or docker")]
    NoKernel {
        /// The format.
        format: Format,
    },
    /// A format whose root is a disk, for an image without our init to mount it.
    #[error("format {format} starts the root filesystem with the image's /init (moby's init, which mounts it), but the image has none: add moby's init to the spec's init section")]
    NoInit {
        /// The format.
        format: Format,
    },
    /// The kernel cannot be started by the format's bootloader.
    #[error(
        "format {format} cannot boot the image's kernel (boot/kernel of the spec's kernel image): it is {problem}"
    )]
    UnbootableKernel {
        /// The format.
        format: Format,
        /// What the kernel lacks.
        problem: &'static str,
    },
    /// The kernel command line cannot go into a bootloader configuration.
    #[error("format {format} cannot carry the kernel command line (the spec's kernel.cmdline): {reason}")]
    BadCmdline {
        /// The format.
        format: Format,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The disk size cannot hold the content.
    #[error(
        "format {format}: the disk of {} MiB is too small for the kernel, the initrd and the bootloader, which need {} MiB; make the disk {}M or more",
        size / (1 << 20), needed.div_ceil(1 << 20), needed.div_ceil(1 << 20)
    )]
    TooSmall {
        /// The format.
        format: Format,
        /// The disk size.
        size: u64,
        /// The smallest disk that holds the content.
        needed: u64,
    },
    /// The bootloader image could not be read.
    #[error("the ISO and disk formats need the bootloader image {image} (built from the package pkg/bootloader of moby's repository, or pulled): {source}")]
    Bootloader {
        /// The pinned image.
        image: &'static str,
        /// Why it could not be read.
        source: Box<crate::Error>,
    },
    /// The bootloader image lacks a file.
    #[error("the image has no {file}")]
    BootloaderFile {
        /// The missing file.
        file: &'static str,
    },
    /// A staged piece (kernel, initrd) could not be read back.
    #[error("cannot read back a staged part of the image: {0}")]
    ReadBack(io::Error),
    /// Writing the medium failed.
    #[error("writing the {format} medium: {source}")]
    Medium {
        /// The format.
        format: Format,
        /// The writer's error.
        source: Box<dyn std::error::Error + Send + Sync>,
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
            | OutputError::CreateDir { source, .. }
            | OutputError::Write { source, .. }
            | OutputError::Persist { source, .. }
            | OutputError::Inspect { source, .. }
            | OutputError::RemoveStale { source, .. } => source.kind(),
            OutputError::ReaderGone { .. } => io::ErrorKind::BrokenPipe,
            OutputError::ReadBack(source) => source.kind(),
            OutputError::UnknownFormat { .. }
            | OutputError::UnsupportedFormat { .. }
            | OutputError::NoFormat { .. }
            | OutputError::InvalidName { .. }
            | OutputError::NotStreamable { .. }
            | OutputError::SameFile { .. }
            | OutputError::Arch { .. }
            | OutputError::BadSize { .. } => io::ErrorKind::InvalidInput,
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
    /// `iso-bios`: an isohybrid ISO booting with isolinux (BIOS).
    IsoBios,
    /// `iso-efi`: an ISO booting a unified kernel image (UEFI).
    IsoEfi,
    /// `iso-efi-initrd`: like `iso-efi` (LinuxKit's variant with kernel and initrd as files).
    IsoEfiInitrd,
    /// `raw-bios`: an MBR disk image with a FAT partition booting with syslinux (BIOS).
    RawBios,
    /// `raw-efi`: a GPT disk image whose EFI system partition holds a unified kernel image.
    RawEfi,
    /// `aws`: a raw BIOS disk image of `--size`.
    Aws,
    /// `gcp`: a BIOS disk image as `disk.raw` in a sparse tar, gzip-compressed (GCE's format).
    Gcp,
    /// `qcow2-bios`: a BIOS disk image of `--size` as qcow2.
    Qcow2Bios,
    /// `qcow2-efi`: the `raw-efi` disk as qcow2.
    Qcow2Efi,
    /// `vhd`: a BIOS disk image as a fixed VHD (Azure, Hyper-V).
    Vhd,
    /// `dynamic-vhd`: a BIOS disk image as a dynamic VHD.
    DynamicVhd,
    /// `vmdk`: a BIOS disk image as a streamOptimized VMDK (VMware).
    Vmdk,
    /// `kernel+iso`: kernel, cmdline, the root filesystem as an ISO, and a first-stage initrd.
    KernelIso,
    /// `kernel+squashfs`: kernel, cmdline, the root filesystem as squashfs, and a first-stage
    /// initrd.
    KernelSquashfs,
}

impl Format {
    /// Every format we can write.
    pub const SUPPORTED: [Format; 18] = [
        Format::Tar,
        Format::KernelInitrd,
        Format::TarKernelInitrd,
        Format::Docker,
        Format::IsoBios,
        Format::IsoEfi,
        Format::IsoEfiInitrd,
        Format::RawBios,
        Format::RawEfi,
        Format::Aws,
        Format::Gcp,
        Format::Qcow2Bios,
        Format::Qcow2Efi,
        Format::Vhd,
        Format::DynamicVhd,
        Format::Vmdk,
        Format::KernelIso,
        Format::KernelSquashfs,
    ];

    /// LinuxKit's name for the format.
    pub fn name(self) -> &'static str {
        match self {
            Format::Tar => "tar",
            Format::KernelInitrd => "kernel+initrd",
            Format::TarKernelInitrd => "tar-kernel-initrd",
            Format::Docker => "docker",
            Format::IsoBios => "iso-bios",
            Format::IsoEfi => "iso-efi",
            Format::IsoEfiInitrd => "iso-efi-initrd",
            Format::RawBios => "raw-bios",
            Format::RawEfi => "raw-efi",
            Format::Aws => "aws",
            Format::Gcp => "gcp",
            Format::Qcow2Bios => "qcow2-bios",
            Format::Qcow2Efi => "qcow2-efi",
            Format::Vhd => "vhd",
            Format::DynamicVhd => "dynamic-vhd",
            Format::Vmdk => "vmdk",
            Format::KernelIso => "kernel+iso",
            Format::KernelSquashfs => "kernel+squashfs",
        }
    }

    /// Whether the format is a single stream that can go to any file or to standard output.
    pub fn is_streamable(self) -> bool {
        matches!(self, Format::Tar | Format::Docker)
    }

    /// The boot medium the format writes, for the ISO and disk formats.
    pub(crate) fn medium(self) -> Option<Medium> {
        let disk = |boot, container, default_size| {
            Some(Medium::Disk(DiskLayout {
                boot,
                container,
                default_size,
            }))
        };
        match self {
            Format::Tar
            | Format::KernelInitrd
            | Format::TarKernelInitrd
            | Format::Docker
            | Format::KernelIso
            | Format::KernelSquashfs => None,
            Format::IsoBios => Some(Medium::Iso(Firmware::Bios)),
            Format::IsoEfi | Format::IsoEfiInitrd => Some(Medium::Iso(Firmware::Efi)),
            Format::RawBios => disk(Firmware::Bios, Container::Raw, DiskSize::Fit),
            Format::RawEfi => disk(Firmware::Efi, Container::Raw, DiskSize::Fit),
            Format::Aws => disk(Firmware::Bios, Container::Raw, DiskSize::SizeFlag),
            Format::Gcp => disk(Firmware::Bios, Container::GcpTar, DiskSize::Fixed(GIB)),
            Format::Qcow2Bios => disk(Firmware::Bios, Container::Qcow2, DiskSize::SizeFlag),
            Format::Qcow2Efi => disk(Firmware::Efi, Container::Qcow2, DiskSize::Fit),
            Format::Vhd => disk(Firmware::Bios, Container::FixedVhd, DiskSize::Fixed(GIB)),
            Format::DynamicVhd => disk(Firmware::Bios, Container::DynamicVhd, DiskSize::Fixed(25 * GIB)),
            Format::Vmdk => disk(Firmware::Bios, Container::Vmdk, DiskSize::Fixed(GIB)),
        }
    }

    /// The files the format writes into `dir` for `name`. `NAME-kernel` and `NAME-cmdline` are
    /// only written when the image has a kernel and a command line.
    pub(crate) fn default_files(self, dir: &Path, name: &str) -> Vec<PathBuf> {
        let file = |suffix: &str| vec![dir.join(format!("{name}{suffix}"))];
        match self {
            Format::Tar | Format::Docker => file(&format!(".{}", self.name())),
            Format::KernelInitrd => ["kernel", "initrd.img", "cmdline"]
                .iter()
                .map(|suffix| dir.join(format!("{name}-{suffix}")))
                .collect(),
            Format::TarKernelInitrd => file("-initrd.tar"),
            Format::IsoBios => file(".iso"),
            Format::IsoEfi => file("-efi.iso"),
            Format::IsoEfiInitrd => file("-efi-initrd.iso"),
            Format::RawBios => file("-bios.img"),
            Format::RawEfi => file("-efi.img"),
            Format::Aws => file(".raw"),
            Format::Gcp => file(".img.tar.gz"),
            Format::Qcow2Bios => file(".qcow2"),
            Format::Qcow2Efi => file("-efi.qcow2"),
            Format::Vhd | Format::DynamicVhd => file(".vhd"),
            Format::Vmdk => file(".vmdk"),
            Format::KernelIso | Format::KernelSquashfs => {
                let root = if self == Format::KernelIso {
                    ".iso"
                } else {
                    "-squashfs.img"
                };
                ["-kernel", "-cmdline", root, kernel_rootfs::BOOT_INITRD_SUFFIX]
                    .iter()
                    .map(|suffix| dir.join(format!("{name}{suffix}")))
                    .collect()
            }
        }
    }

    /// What `moby run` boots of the outputs in `dir` named `name`: the path prefix of
    /// `kernel+initrd`, the file of an ISO or disk format; `None` for the formats that do not
    /// boot (`tar`, `docker`, `tar-kernel-initrd`).
    pub fn boot_path(self, dir: &Path, name: &str) -> Option<PathBuf> {
        match self {
            Format::KernelInitrd | Format::KernelIso | Format::KernelSquashfs => Some(dir.join(name)),
            _ if self.medium().is_some() => self.default_files(dir, name).into_iter().next(),
            _ => None,
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

/// LinuxKit formats we do not write yet.
const NOT_YET_SUPPORTED: [&str; 2] = ["kernel+erofs", "rpi3"];

impl FromStr for Format {
    type Err = crate::Error;

    /// The format LinuxKit names `name`; the error lists the supported ones.
    fn from_str(name: &str) -> Result<Format, crate::Error> {
        if let Some(format) = Format::SUPPORTED.into_iter().find(|f| f.name() == name) {
            return Ok(format);
        }
        let supported = Format::supported_list();
        let error = if NOT_YET_SUPPORTED.contains(&name) {
            OutputError::UnsupportedFormat {
                name: name.to_string(),
                supported,
            }
        } else {
            OutputError::UnknownFormat {
                name: name.to_string(),
                supported,
            }
        };
        Err(error.into())
    }
}

/// Where a single-stream format (`tar`, `docker`) or a cache export goes. A regular file is
/// replaced only once the output is complete; a FIFO or character device is written in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputFile {
    /// Standard output (`-o -`).
    Stdout,
    /// This file; its directory must exist.
    Path(PathBuf),
}

/// What the sinks of one build share.
#[derive(Default)]
struct SinkOptions {
    gzip: PgzipOptions,
    /// The bootloaders, when a format needs them.
    bootloader: Option<std::sync::Arc<bootloader::Bootloader>>,
    /// `--size`.
    disk_size: Option<u64>,
}

/// The sink writing `format` for the image `name` into `dir` (which must exist) under LinuxKit's
/// names; `name` must pass [`check_name`].
fn sink_for(
    format: Format,
    dir: &Path,
    name: &str,
    options: &SinkOptions,
) -> Result<Box<dyn EntrySink + Send>, OutputError> {
    check_name(name)?;
    let gzip = options.gzip;
    if format.medium().is_some() {
        let bootloader = options.bootloader.clone().ok_or(OutputError::Broken)?;
        let [target] = <[PathBuf; 1]>::try_from(format.default_files(dir, name)).map_err(|_| OutputError::Broken)?;
        return Ok(Box::new(medium::MediumSink::new(
            format,
            target,
            bootloader,
            options.disk_size,
            gzip,
        )?));
    }
    let sink: Box<dyn EntrySink + Send> = match format {
        Format::Tar | Format::Docker => {
            let default = OutputFile::Path(dir.join(format!("{name}.{}", format.name())));
            stream_sink(format, &default)?
        }
        Format::KernelInitrd => Box::new(KernelInitrd::new(dir, name, gzip)?),
        Format::TarKernelInitrd => {
            let path = dir.join(format!("{name}-initrd.tar"));
            let tar = TarOutput::new(StagedFile::create_for(&path)?);
            Box::new(TarKernelInitrd::new(dir, name, gzip, tar)?)
        }
        Format::KernelIso | Format::KernelSquashfs => {
            Box::new(kernel_rootfs::KernelRootfs::new(format, dir, name, gzip)?)
        }
        _ => return Err(OutputError::Broken),
    };
    Ok(sink)
}

/// Checks that `name` names outputs inside their directory, visibly: one file name, not empty,
/// not starting with `.` (the outputs would be hidden, beside their own temporary files).
fn check_name(name: &str) -> Result<(), OutputError> {
    let reason = if name.is_empty() {
        "it is empty"
    } else if name.contains('/') {
        "it contains '/', which would put the outputs outside their directory"
    } else if name.starts_with('.') {
        "it starts with '.', which would hide the outputs"
    } else {
        return Ok(());
    };
    Err(OutputError::InvalidName {
        name: name.to_string(),
        reason,
    })
}

/// The sink of a single-stream format into `output`.
fn stream_sink(format: Format, output: &OutputFile) -> Result<Box<dyn EntrySink + Send>, OutputError> {
    if !format.is_streamable() {
        return Err(OutputError::NotStreamable { format });
    }
    Ok(stream_format(format, OutputWriter::open(output)?))
}

/// The tar-based sink for a streamable format over `destination`.
fn stream_format<W: Commit + Send + 'static>(format: Format, destination: W) -> Box<dyn EntrySink + Send> {
    let tar = TarOutput::new(destination);
    match format {
        Format::Docker => Box::new(Docker::new(tar)),
        _ => Box::new(tar),
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{dir_names, feed, image_entries};
    use super::*;
    use tempfile::TempDir;

    /// The formats that need no bootloader (those with one are tested in `medium`).
    fn plain_formats() -> impl Iterator<Item = Format> {
        Format::SUPPORTED.into_iter().filter(|format| format.medium().is_none())
    }

    fn build(format: Format, dir: &Path) {
        let mut sink = sink_for(format, dir, "img", &SinkOptions::default()).unwrap();
        feed(sink.as_mut(), &image_entries(Some("console=ttyS0"))).unwrap();
        assert!(
            dir_names(dir).iter().all(|name| name.starts_with('.')),
            "nothing final before finish"
        );
        sink.finish().unwrap();
    }

    #[test]
    fn format_names_round_trip() {
        for format in Format::SUPPORTED {
            assert_eq!(format.to_string().parse::<Format>().unwrap(), format);
        }
        assert_eq!("kernel+initrd".parse::<Format>().unwrap(), Format::KernelInitrd);
        assert!(Format::Docker.is_streamable() && Format::Tar.is_streamable());
        assert!(!Format::KernelInitrd.is_streamable());
    }

    #[test]
    fn linuxkit_formats_we_lack_say_so() {
        let err = "rpi3".parse::<Format>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "output format rpi3 is not supported yet; supported formats: tar, kernel+initrd, \
             tar-kernel-initrd, docker, iso-bios, iso-efi, iso-efi-initrd, raw-bios, raw-efi, aws, gcp, \
             qcow2-bios, qcow2-efi, vhd, dynamic-vhd, vmdk, kernel+iso, kernel+squashfs"
        );
        let err = "kernel+erofs".parse::<Format>().unwrap_err();
        assert!(err.to_string().contains("is not supported yet"), "{err}");
        let err = "zip".parse::<Format>().unwrap_err();
        assert!(err
            .to_string()
            .starts_with("unknown output format \"zip\"; supported formats: tar"));
    }

    #[test]
    fn boot_paths_are_what_moby_run_takes() {
        let dir = Path::new("out");
        assert_eq!(Format::KernelInitrd.boot_path(dir, "x"), Some(dir.join("x")));
        assert_eq!(Format::RawEfi.boot_path(dir, "x"), Some(dir.join("x-efi.img")));
        assert_eq!(Format::Gcp.boot_path(dir, "x"), Some(dir.join("x.img.tar.gz")));
        assert_eq!(Format::Tar.boot_path(dir, "x"), None);
        assert_eq!(Format::TarKernelInitrd.boot_path(dir, "x"), None);
    }

    #[test]
    fn default_files_follow_linuxkit_names() {
        let dir = Path::new("out");
        assert_eq!(Format::Tar.default_files(dir, "x"), [dir.join("x.tar")]);
        assert_eq!(Format::Docker.default_files(dir, "x"), [dir.join("x.docker")]);
        assert_eq!(
            Format::TarKernelInitrd.default_files(dir, "x"),
            [dir.join("x-initrd.tar")]
        );
        assert_eq!(
            Format::KernelInitrd.default_files(dir, "x"),
            [dir.join("x-kernel"), dir.join("x-initrd.img"), dir.join("x-cmdline")]
        );
    }

    #[test]
    fn each_format_writes_its_default_files() {
        for format in plain_formats() {
            let dir = TempDir::new().unwrap();
            build(format, dir.path());
            let expected: Vec<String> = format
                .default_files(dir.path(), "img")
                .iter()
                .map(|path| path.file_name().unwrap().to_string_lossy().into_owned())
                .collect();
            let mut expected = expected;
            expected.sort();
            assert_eq!(dir_names(dir.path()), expected, "{format}");
        }
    }

    #[test]
    fn tar_and_docker_carry_the_entries() {
        let dir = TempDir::new().unwrap();
        build(Format::Docker, dir.path());
        let docker = std::fs::read(dir.path().join("img.docker")).unwrap();
        let contains = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
        assert!(contains(&docker, b"KERNEL-BYTES"));
        assert!(contains(&docker, docker::DOCKERFILE.as_bytes()));

        let tar_dir = TempDir::new().unwrap();
        build(Format::TarKernelInitrd, tar_dir.path());
        let tarball = std::fs::read(tar_dir.path().join("img-initrd.tar")).unwrap();
        assert!(contains(&tarball, b"initrd.img"));
        assert!(contains(&tarball, b"console=ttyS0"));
    }

    #[test]
    fn only_single_stream_formats_stream() {
        let err = stream_sink(Format::KernelInitrd, &OutputFile::Stdout).err().unwrap();
        assert!(matches!(
            err,
            OutputError::NotStreamable {
                format: Format::KernelInitrd
            }
        ));
    }

    #[test]
    fn names_stay_inside_the_directory_and_visible() {
        let parent = TempDir::new().unwrap();
        let dir = parent.path().join("out");
        std::fs::create_dir(&dir).unwrap();
        for name in ["../../escape", "a/b", "", ".", "..", ".hidden"] {
            for format in Format::SUPPORTED {
                let err = sink_for(format, &dir, name, &SinkOptions::default()).err().unwrap();
                assert!(
                    matches!(err, OutputError::InvalidName { .. }),
                    "{name:?} {format}: {err}"
                );
            }
        }
        assert!(dir_names(&dir).is_empty() && dir_names(parent.path()) == ["out"]);
        check_name("web-1.2_x").unwrap();
    }

    #[test]
    fn dropped_sinks_leave_nothing_behind() {
        for format in plain_formats() {
            let dir = TempDir::new().unwrap();
            let mut sink = sink_for(format, dir.path(), "img", &SinkOptions::default()).unwrap();
            feed(sink.as_mut(), &image_entries(Some("console=ttyS0"))).unwrap();
            drop(sink);
            assert!(dir_names(dir.path()).is_empty(), "{format}");
        }
    }

    #[test]
    fn errors_travel_inside_io_errors() {
        let err: io::Error = OutputError::MissingData {
            entry: "a".into(),
            missing: 3,
        }
        .into();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let inner = err.get_ref().unwrap().downcast_ref::<OutputError>();
        assert!(matches!(inner, Some(OutputError::MissingData { missing: 3, .. })));
    }
}
