//! The kernel section: `boot/kernel`, `boot/cmdline`, optionally `boot/ucode.cpio`, and the contents
//! of the kernel image's modules tar, copied verbatim.

use std::io::Read;

use crate::spec::model::Kernel;
use crate::tar::{copy_data, EntryKind, EntrySink, Header, TarReader, DEFAULT_MTIME};
use crate::Reference;

use super::{write_bytes, BuildError, Images};

/// What the kernel image lacks.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// The kernel binary is not in the image.
    #[error("no file {0:?} in the image (set kernel.binary to the kernel's file name)")]
    MissingKernel(String),
    /// The modules tar is not in the image.
    #[error("no file {0:?} in the image (set kernel.tar to the modules tar's name, or to \"none\")")]
    MissingTar(String),
    /// The microcode archive is not in the image.
    #[error("no file {0:?} in the image (fix or remove kernel.ucode)")]
    MissingUcode(String),
    /// The modules tar is corrupt.
    #[error("reading the modules tar {name:?}: {source}")]
    BadTar {
        /// Name of the tar in the image.
        name: String,
        /// What is wrong.
        source: crate::tar::TarError,
    },
}

/// The file names to take from the kernel image.
struct KernelFiles<'a> {
    binary: &'a str,
    tar: Option<&'a str>,
    ucode: Option<&'a str>,
}

impl<'a> KernelFiles<'a> {
    fn of(kernel: &'a Kernel) -> KernelFiles<'a> {
        KernelFiles {
            binary: if kernel.binary.is_empty() {
                "kernel"
            } else {
                &kernel.binary
            },
            tar: match kernel.tar.as_deref() {
                None => Some("kernel.tar"),
                Some("none") | Some("") => None,
                Some(name) => Some(name),
            },
            ucode: kernel.ucode.as_deref().filter(|u| !u.is_empty()),
        }
    }
}

/// Writes the kernel section for `image`.
pub(super) fn write_kernel(
    kernel: &Kernel,
    image: &Reference,
    images: &dyn Images,
    sink: &mut dyn EntrySink,
) -> Result<(), BuildError> {
    let wanted = KernelFiles::of(kernel);
    let source = image.to_string();
    let (mut found_kernel, mut found_tar, mut found_ucode) = (false, false, false);
    let kernel_error = |source: KernelError| BuildError::Kernel {
        image: image.to_string(),
        source: Box::new(source),
    };

    images.walk(image, &mut |entry, data| {
        let pax_header = |name: &str, kind: EntryKind, mode: u32| {
            let mut h = Header::new(name, kind, mode);
            h.pax = entry.pax.clone();
            h.set_origin(&source, "kernel");
            h
        };
        let name = entry.name.as_str();
        if name == wanted.binary {
            found_kernel = true;
            if !found_ucode {
                sink.write_header(&pax_header("boot", EntryKind::Directory, 0o755))?;
            }
            let mut cmdline = pax_header("boot/cmdline", EntryKind::Regular, 0o644);
            cmdline.size = kernel.cmdline.len() as u64;
            write_bytes(sink, &cmdline, kernel.cmdline.as_bytes())?;
            let mut header = pax_header("boot/kernel", EntryKind::Regular, entry.mode);
            header.size = entry.size;
            sink.write_header(&header)?;
            copy_data(sink, entry.size, data)?;
        } else if Some(name) == wanted.tar {
            found_tar = true;
            copy_modules_tar(&source, data, sink).map_err(|e| match e {
                ModulesTarError::Tar(source) => kernel_error(KernelError::BadTar {
                    name: name.to_string(),
                    source,
                }),
                ModulesTarError::Write(err) => BuildError::Write(err),
            })?;
        } else if Some(name) == wanted.ucode {
            found_ucode = true;
            if !found_kernel {
                sink.write_header(&pax_header("boot", EntryKind::Directory, 0o755))?;
            }
            let mut header = pax_header("boot/ucode.cpio", EntryKind::Regular, entry.mode);
            header.size = entry.size;
            header.mtime = DEFAULT_MTIME;
            sink.write_header(&header)?;
            copy_data(sink, entry.size, data)?;
        }
        Ok(())
    })?;

    if !found_kernel {
        return Err(kernel_error(KernelError::MissingKernel(wanted.binary.to_string())));
    }
    if let (Some(tar), false) = (wanted.tar, found_tar) {
        return Err(kernel_error(KernelError::MissingTar(tar.to_string())));
    }
    if let (Some(ucode), false) = (wanted.ucode, found_ucode) {
        return Err(kernel_error(KernelError::MissingUcode(ucode.to_string())));
    }
    Ok(())
}

/// A failure while copying the modules tar: its own corruption, or the output's.
enum ModulesTarError {
    Tar(crate::tar::TarError),
    Write(std::io::Error),
}

/// Copies the modules tar's entries verbatim (names uncleaned, own modes and times), tagged as kernel.
fn copy_modules_tar(source: &str, data: &mut dyn Read, sink: &mut dyn EntrySink) -> Result<(), ModulesTarError> {
    let mut reader = TarReader::new(data);
    while let Some(mut header) = reader.next_header().map_err(ModulesTarError::Tar)? {
        header.set_origin(source, "kernel");
        sink.write_header(&header).map_err(ModulesTarError::Write)?;
        // A read error is the modules tar's (kept typed by the reader); anything else the output's.
        copy_data(sink, header.size, &mut reader).map_err(|err| {
            reader
                .take_data_error()
                .map_or(ModulesTarError::Write(err), ModulesTarError::Tar)
        })?;
    }
    Ok(())
}
