//! The `kernel+initrd` format: `NAME-kernel`, `NAME-initrd.img` and `NAME-cmdline`.
//!
//! `boot/kernel`, `boot/cmdline` and `boot/ucode.cpio` are taken out of the entry stream; every
//! other entry goes, in stream order, into a gzip-compressed newc cpio archive. The initrd file is
//! the microcode archive (uncompressed, when there is one) followed by that gzip stream, which
//! the kernel unpacks one after the other.
//!
//! Unlike LinuxKit, the `boot` directory entry is left out of the initrd as well as everything
//! under `boot/`: once the kernel, cmdline and microcode are split off it would be an empty
//! directory that only exists because of how the image was assembled.
//!
//! Everything streams: the kernel goes straight to its file, entries straight into the
//! cpio/gzip pipeline, and no image content is held in memory. All files are written under
//! temporary names in the output directory and renamed in [`EntrySink::finish`], so a failed build
//! leaves the previous outputs untouched.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::initrd::InitrdWriter;
use super::pgzip::PgzipOptions;
use super::staged::{remove_stale, StagedFile};
use super::OutputError;
use crate::tar::{EntryKind, Header};
use crate::EntrySink;

/// Name of the kernel entry in the assembled stream.
pub const KERNEL_ENTRY: &str = "boot/kernel";
/// Name of the kernel command line entry.
pub const CMDLINE_ENTRY: &str = "boot/cmdline";
/// Name of the CPU microcode archive entry.
pub const UCODE_ENTRY: &str = "boot/ucode.cpio";

/// Where the data of the current entry goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Kernel,
    Cmdline,
    /// Microcode written straight to the start of the initrd file (before any cpio data).
    UcodePrefix,
    /// Microcode kept in a file of its own.
    UcodeSeparate,
    Initrd,
    Skip,
}

/// The initrd file, before and after the compressed archive started.
enum InitrdStage {
    /// No cpio entry yet; the file holds at most the microcode prefix.
    Pending(StagedFile),
    /// The cpio/gzip pipeline is running.
    Streaming(InitrdWriter<StagedFile>),
    /// An error left the pipeline in an unknown state.
    Broken,
}

/// The pieces of a kernel+initrd build, before they are moved into place.
pub(crate) struct BootParts {
    /// `boot/kernel`, if the stream had one.
    pub(crate) kernel: Option<StagedFile>,
    /// `boot/cmdline`, if the stream had one.
    pub(crate) cmdline: Option<StagedFile>,
    /// `boot/ucode.cpio` when it is not already the start of `initrd`.
    pub(crate) ucode: Option<StagedFile>,
    /// The initrd: `initrd_prefix` bytes of microcode, then the gzip-compressed cpio archive.
    pub(crate) initrd: StagedFile,
    /// Length of the microcode at the start of `initrd`.
    pub(crate) initrd_prefix: u64,
}

/// Splits the entry stream into kernel, cmdline, microcode and initrd (shared by the formats
/// that need a kernel and an initrd).
pub(crate) struct BootSplitter {
    dir: PathBuf,
    label: String,
    gzip: PgzipOptions,
    /// Put the microcode at the start of the initrd file when it arrives before the archive.
    ucode_as_prefix: bool,
    kernel: Option<StagedFile>,
    cmdline: Option<StagedFile>,
    ucode: Option<StagedFile>,
    initrd: InitrdStage,
    initrd_prefix: u64,
    route: Route,
    entry: String,
    remaining: u64,
}

impl BootSplitter {
    /// Prepares the split; temporary files go to `dir` and are named after `label`.
    pub(crate) fn new(
        dir: &Path,
        label: &str,
        gzip: PgzipOptions,
        ucode_as_prefix: bool,
    ) -> Result<BootSplitter, OutputError> {
        // Created now so that an unwritable directory fails the build before any work.
        let initrd = StagedFile::create(dir, &format!("{label}-initrd.img"))?;
        Ok(BootSplitter {
            dir: dir.to_path_buf(),
            label: label.to_string(),
            gzip,
            ucode_as_prefix,
            kernel: None,
            cmdline: None,
            ucode: None,
            initrd: InitrdStage::Pending(initrd),
            initrd_prefix: 0,
            route: Route::Skip,
            entry: String::new(),
            remaining: 0,
        })
    }

    /// Starts an entry.
    pub(crate) fn write_header(&mut self, header: &Header) -> io::Result<()> {
        self.check_complete()?;
        self.route = self.route_for(header)?;
        self.entry.clone_from(&header.name);
        self.remaining = header.size;
        if self.route == Route::Initrd {
            self.initrd_writer()?.write_entry(header)?;
        }
        Ok(())
    }

    /// Appends data to the current entry.
    pub(crate) fn write_data(&mut self, data: &[u8]) -> io::Result<()> {
        if data.len() as u64 > self.remaining {
            return Err(OutputError::TooMuchData {
                entry: self.entry.clone(),
            }
            .into());
        }
        self.remaining -= data.len() as u64;
        match self.route {
            Route::Kernel => write_to(&mut self.kernel, data),
            Route::Cmdline => write_to(&mut self.cmdline, data),
            Route::UcodeSeparate => write_to(&mut self.ucode, data),
            Route::UcodePrefix => {
                self.initrd_prefix += data.len() as u64;
                match &mut self.initrd {
                    InitrdStage::Pending(file) => file.write_all(data),
                    _ => Err(OutputError::Broken.into()),
                }
            }
            Route::Initrd => Ok(self.initrd_writer()?.write_data(data)?),
            Route::Skip => Ok(()),
        }
    }

    /// Ends the archive and hands over the pieces.
    pub(crate) fn finish(mut self) -> io::Result<BootParts> {
        self.check_complete()?;
        // An image without any initrd entry still gets a (valid, empty) archive.
        self.initrd_writer()?;
        let initrd = match std::mem::replace(&mut self.initrd, InitrdStage::Broken) {
            InitrdStage::Streaming(writer) => writer.finish()?,
            _ => return Err(OutputError::Broken.into()),
        };
        Ok(BootParts {
            kernel: self.kernel,
            cmdline: self.cmdline,
            ucode: self.ucode,
            initrd,
            initrd_prefix: self.initrd_prefix,
        })
    }

    /// Decides where an entry goes and prepares its destination.
    fn route_for(&mut self, header: &Header) -> io::Result<Route> {
        let route = match header.name.as_str() {
            KERNEL_ENTRY => {
                reset(&mut self.kernel, &self.dir, &format!("{}-kernel", self.label))?;
                Route::Kernel
            }
            CMDLINE_ENTRY => {
                reset(&mut self.cmdline, &self.dir, &format!("{}-cmdline", self.label))?;
                Route::Cmdline
            }
            UCODE_ENTRY => self.route_ucode()?,
            "boot" if header.kind == EntryKind::Directory => Route::Skip,
            name if name.starts_with("boot/") => Route::Skip,
            _ => Route::Initrd,
        };
        Ok(route)
    }

    /// The microcode goes first in the initrd file when no archive data was written yet (the
    /// usual case: the kernel section comes first); otherwise into a file of its own. A later
    /// `boot/ucode.cpio` replaces an earlier one, as it would when the tar is extracted.
    fn route_ucode(&mut self) -> io::Result<Route> {
        if self.ucode_as_prefix {
            if let InitrdStage::Pending(file) = &mut self.initrd {
                file.clear()?;
                self.initrd_prefix = 0;
                return Ok(Route::UcodePrefix);
            }
        }
        reset(&mut self.ucode, &self.dir, &format!("{}-ucode.cpio", self.label))?;
        Ok(Route::UcodeSeparate)
    }

    /// The running cpio/gzip pipeline, started on first use.
    fn initrd_writer(&mut self) -> io::Result<&mut InitrdWriter<StagedFile>> {
        if let InitrdStage::Pending(_) = self.initrd {
            let InitrdStage::Pending(file) =
                std::mem::replace(&mut self.initrd, InitrdStage::Broken)
            else {
                return Err(OutputError::Broken.into());
            };
            self.initrd = InitrdStage::Streaming(InitrdWriter::new(file, self.gzip)?);
        }
        match &mut self.initrd {
            InitrdStage::Streaming(writer) => Ok(writer),
            _ => Err(OutputError::Broken.into()),
        }
    }

    fn check_complete(&self) -> io::Result<()> {
        if self.remaining > 0 {
            return Err(OutputError::MissingData {
                entry: self.entry.clone(),
                missing: self.remaining,
            }
            .into());
        }
        Ok(())
    }
}

/// Creates the staged file on first use, or empties it for a replacing entry.
fn reset(slot: &mut Option<StagedFile>, dir: &Path, label: &str) -> io::Result<()> {
    match slot {
        Some(file) => file.clear(),
        None => {
            *slot = Some(StagedFile::create(dir, label)?);
            Ok(())
        }
    }
}

fn write_to(slot: &mut Option<StagedFile>, data: &[u8]) -> io::Result<()> {
    match slot {
        Some(file) => file.write_all(data),
        None => Err(OutputError::Broken.into()),
    }
}

/// The `kernel+initrd` output sink.
pub struct KernelInitrd {
    dir: PathBuf,
    name: String,
    splitter: Option<BootSplitter>,
}

impl KernelInitrd {
    /// Prepares `DIR/NAME-kernel`, `DIR/NAME-initrd.img` and `DIR/NAME-cmdline`; `dir` must exist.
    pub fn new(dir: &Path, name: &str, gzip: PgzipOptions) -> Result<KernelInitrd, OutputError> {
        Ok(KernelInitrd {
            dir: dir.to_path_buf(),
            name: name.to_string(),
            splitter: Some(BootSplitter::new(dir, name, gzip, true)?),
        })
    }

    fn splitter(&mut self) -> io::Result<&mut BootSplitter> {
        self.splitter
            .as_mut()
            .ok_or_else(|| OutputError::Finished.into())
    }

    fn path(&self, suffix: &str) -> PathBuf {
        self.dir.join(format!("{}-{suffix}", self.name))
    }

    /// Moves the pieces into place: the initrd first, then kernel and cmdline (or removes those
    /// of an earlier build when this one has none, so the directory describes this build).
    fn commit(&self, parts: BootParts) -> Result<(), OutputError> {
        let initrd = match parts.ucode {
            Some(ucode) => self.prepend_late_ucode(ucode, parts.initrd, parts.initrd_prefix)?,
            None => parts.initrd,
        };
        initrd.persist(&self.path("initrd.img"))?;
        persist_non_empty(parts.kernel, &self.path("kernel"))?;
        persist_non_empty(parts.cmdline, &self.path("cmdline"))?;
        tracing::info!(
            dir = %self.dir.display(),
            name = %self.name,
            "wrote kernel+initrd"
        );
        Ok(())
    }

    /// Builds `ucode + archive` when the microcode arrived after the archive had started.
    fn prepend_late_ucode(
        &self,
        mut ucode: StagedFile,
        mut initrd: StagedFile,
        old_prefix: u64,
    ) -> Result<StagedFile, OutputError> {
        let mut combined = StagedFile::create(&self.dir, &format!("{}-initrd.img", self.name))?;
        let path = combined.temp_path().to_path_buf();
        ucode
            .copy_to(0, &mut combined)
            .and_then(|_| initrd.copy_to(old_prefix, &mut combined))
            .map_err(|source| OutputError::Write { path, source })?;
        Ok(combined)
    }
}

/// Moves `file` to `path` if it has content; otherwise makes sure nothing stale is at `path`.
fn persist_non_empty(file: Option<StagedFile>, path: &Path) -> Result<(), OutputError> {
    match file {
        Some(file) if file.len() > 0 => file.persist(path),
        _ => remove_stale(path),
    }
}

impl EntrySink for KernelInitrd {
    fn write_header(&mut self, header: &Header) -> io::Result<()> {
        self.splitter()?.write_header(header)
    }

    fn write_data(&mut self, data: &[u8]) -> io::Result<()> {
        self.splitter()?.write_data(data)
    }

    fn finish(&mut self) -> io::Result<()> {
        let splitter = self.splitter.take().ok_or(OutputError::Finished)?;
        let parts = splitter.finish()?;
        Ok(self.commit(parts)?)
    }
}
