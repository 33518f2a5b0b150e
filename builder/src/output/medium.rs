//! The ISO and disk formats: the image split as for `kernel+initrd` (kernel, initrd with the
//! microcode in front, command line), then put on a boot medium with its bootloader.
//!
//! Every medium carries the kernel and the whole initrd, and boots them with the bootloader of
//! its firmware: isolinux (ISO, BIOS), syslinux on FAT (disk, BIOS), or a unified kernel image
//! as `EFI/BOOT/BOOTX64.EFI` on a FAT filesystem (UEFI: the ESP of a GPT disk, or the El Torito
//! EFI image of an ISO). The running system never needs the medium again, so any kernel boots
//! from any medium, with or without built-in drivers (see `docs/formats.md`).
//!
//! Identifiers that must be unique but reproducible (disk signatures, GUIDs, volume serials) come
//! from [`Seed`], a hash of the format and the boot files.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::bootloader::Bootloader;
use super::kernel_initrd::{initrd_with_ucode, BootParts, BootSplitter};
use super::pgzip::PgzipOptions;
use super::staged::StagedFile;
use super::{disk_medium, iso_medium, Format, OutputError};
use crate::tar::Header;
use crate::EntrySink;

/// One GiB.
pub(crate) const GIB: u64 = 1 << 30;
/// One MiB.
pub(crate) const MIB: u64 = 1 << 20;

/// The firmware a medium boots with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Firmware {
    /// PC BIOS (SeaBIOS under qemu): isolinux or syslinux.
    Bios,
    /// UEFI (OVMF under qemu): a unified kernel image.
    Efi,
}

/// What a format writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Medium {
    /// An ISO 9660 image.
    Iso(Firmware),
    /// A partitioned disk image.
    Disk(DiskLayout),
}

/// A disk format: the firmware it boots with, the container, the size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DiskLayout {
    /// MBR + syslinux, or GPT + unified kernel image.
    pub(crate) boot: Firmware,
    /// The file format around the raw disk.
    pub(crate) container: Container,
    /// The disk's size when `--size` is not given.
    pub(crate) default_size: DiskSize,
}

/// The file format of a disk image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Container {
    /// The raw disk, sparse.
    Raw,
    /// qcow2.
    Qcow2,
    /// A fixed VHD (the raw disk and a footer).
    FixedVhd,
    /// A dynamic VHD.
    DynamicVhd,
    /// A streamOptimized VMDK.
    Vmdk,
    /// `disk.raw` in a GNU sparse tar, gzip-compressed.
    GcpTar,
}

/// How big a disk is when `--size` is not given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DiskSize {
    /// Just big enough for its content (LinuxKit's raw-bios, raw-efi, qcow2-efi).
    Fit,
    /// `--size`, whose default is [`DEFAULT_SIZE_FLAG`] (LinuxKit's aws and qcow2-bios).
    SizeFlag,
    /// This many bytes (LinuxKit's fixed sizes: 1 GiB for vhd, vmdk and gcp, 25 GiB for
    /// dynamic-vhd).
    Fixed(u64),
}

/// LinuxKit's default `--size`: 1024M.
pub const DEFAULT_SIZE_FLAG: u64 = 1024 * MIB;

/// The pieces a medium carries.
pub(crate) struct BootFiles {
    /// The kernel (a bzImage).
    pub(crate) kernel: StagedFile,
    /// The initrd: the microcode archive, if any, then the compressed image.
    pub(crate) initrd: StagedFile,
    /// The kernel command line.
    pub(crate) cmdline: String,
    /// Names the image in errors: the format.
    pub(crate) format: Format,
}

/// Where a medium goes and what it is made with.
pub(crate) struct MediumTarget<'a> {
    /// The format being written.
    pub(crate) format: Format,
    /// The output file, staged.
    pub(crate) out: &'a mut StagedFile,
    /// Directory for scratch files (the output's directory: same file system, no `/tmp` limits).
    pub(crate) scratch: &'a Path,
    /// The bootloader binaries.
    pub(crate) bootloader: &'a Bootloader,
    /// Reproducible identifiers.
    pub(crate) seed: &'a Seed,
    /// `--size`, if given.
    pub(crate) size: Option<u64>,
    /// gzip settings (for `gcp`).
    pub(crate) gzip: PgzipOptions,
}

/// The sink of an ISO or disk format.
pub(crate) struct MediumSink {
    format: Format,
    medium: Medium,
    target: PathBuf,
    splitter: Option<BootSplitter>,
    bootloader: Arc<Bootloader>,
    size: Option<u64>,
    gzip: PgzipOptions,
}

impl MediumSink {
    /// The sink writing `format` (an ISO or disk format) to `target`, whose directory exists.
    pub(crate) fn new(
        format: Format,
        target: PathBuf,
        bootloader: Arc<Bootloader>,
        size: Option<u64>,
        gzip: PgzipOptions,
    ) -> Result<MediumSink, OutputError> {
        let medium = format.medium().ok_or(OutputError::Broken)?;
        Ok(MediumSink {
            format,
            medium,
            splitter: Some(BootSplitter::new(&target, gzip, true)?),
            target,
            bootloader,
            size,
            gzip,
        })
    }

    fn splitter(&mut self) -> io::Result<&mut BootSplitter> {
        self.splitter.as_mut().ok_or_else(|| OutputError::Finished.into())
    }

    fn write_medium(&self, parts: BootParts) -> io::Result<()> {
        let mut boot = self.boot_files(parts)?;
        let seed = Seed::of(&mut boot)?;
        let mut out = StagedFile::create_for(&self.target)?;
        let scratch = self.target.parent().unwrap_or(Path::new("."));
        let target = MediumTarget {
            format: self.format,
            out: &mut out,
            scratch,
            bootloader: &self.bootloader,
            seed: &seed,
            size: self.size,
            gzip: self.gzip,
        };
        match self.medium {
            Medium::Iso(firmware) => iso_medium::write(&mut boot, firmware, target)?,
            Medium::Disk(layout) => disk_medium::write(&mut boot, layout, target)?,
        }
        out.persist()?;
        tracing::info!(output = %self.target.display(), format = %self.format, "wrote");
        Ok(())
    }

    /// Checks that the image has what a bootable medium needs, and gathers it.
    fn boot_files(&self, parts: BootParts) -> io::Result<BootFiles> {
        let BootParts {
            kernel,
            cmdline,
            ucode,
            initrd,
            initrd_prefix,
        } = parts;
        let initrd = initrd_with_ucode(&self.target, ucode, initrd, initrd_prefix)?;
        let Some(mut kernel) = kernel.filter(|kernel| kernel.len() > 0) else {
            return Err(OutputError::NoKernel { format: self.format }.into());
        };
        let cmdline = match cmdline {
            Some(mut file) => {
                let mut bytes = Vec::new();
                file.for_each_chunk(0, |chunk| {
                    bytes.extend_from_slice(chunk);
                    Ok(())
                })?;
                String::from_utf8(bytes).map_err(|_| {
                    io::Error::from(OutputError::BadCmdline {
                        format: self.format,
                        reason: "it is not UTF-8 text",
                    })
                })?
            }
            None => String::new(),
        };
        let cmdline = cmdline.trim().to_string();
        if cmdline.contains('\n') {
            return Err(OutputError::BadCmdline {
                format: self.format,
                reason: "it has more than one line, which bootloader configurations cannot hold",
            }
            .into());
        }
        check_kernel(&mut kernel, self.format, self.medium)?;
        Ok(BootFiles {
            kernel,
            initrd,
            cmdline,
            format: self.format,
        })
    }
}

/// syslinux's and isolinux's configuration: boot `/kernel` with `/initrd.img` and the command
/// line, at once (LinuxKit's).
pub(crate) fn syslinux_config(cmdline: &str) -> String {
    format!("DEFAULT linux\nLABEL linux\n    KERNEL /kernel\n    INITRD /initrd.img\n    APPEND {cmdline}\n")
}

/// Checks that the kernel is an x86 bzImage, with an EFI stub for the EFI formats: what the
/// bootloaders can start. Anything else would make a medium that does not boot.
fn check_kernel(kernel: &mut StagedFile, format: Format, medium: Medium) -> io::Result<()> {
    let mut head = [0u8; 0x400];
    let file = kernel.file()?;
    let n = read_prefix(file, &mut head).map_err(OutputError::ReadBack)?;
    let head = &head[..n];
    let is_bzimage = head.get(0x202..0x206) == Some(b"HdrS");
    let firmware = match medium {
        Medium::Iso(firmware) => firmware,
        Medium::Disk(layout) => layout.boot,
    };
    let problem = if !is_bzimage {
        Some("not an x86 bzImage (no \"HdrS\" setup header at 0x202)")
    } else if firmware == Firmware::Efi && !has_pe_header(head) {
        Some("a bzImage without an EFI stub (no PE header), which UEFI cannot start: build the kernel with CONFIG_EFI_STUB")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(OutputError::UnbootableKernel { format, problem }.into()),
        None => Ok(()),
    }
}

/// Whether an MS-DOS stub points at a PE signature.
fn has_pe_header(head: &[u8]) -> bool {
    if head.get(..2) != Some(b"MZ") {
        return false;
    }
    let Some(offset) = head.get(0x3c..0x40) else {
        return false;
    };
    let offset = u32::from_le_bytes([offset[0], offset[1], offset[2], offset[3]]) as usize;
    head.get(offset..offset + 4) == Some(b"PE\0\0")
}

/// Reads up to `buf.len()` bytes from the start of `file`.
fn read_prefix(file: &File, buf: &mut [u8]) -> io::Result<usize> {
    use std::os::unix::fs::FileExt;
    let mut done = 0;
    while done < buf.len() {
        let n = file.read_at(&mut buf[done..], done as u64)?;
        if n == 0 {
            break;
        }
        done += n;
    }
    Ok(done)
}

impl EntrySink for MediumSink {
    fn write_header(&mut self, header: &Header) -> io::Result<()> {
        self.splitter()?.write_header(header)
    }

    fn write_data(&mut self, data: &[u8]) -> io::Result<()> {
        self.splitter()?.write_data(data)
    }

    fn finish(&mut self) -> io::Result<()> {
        let splitter = self.splitter.take().ok_or(OutputError::Finished)?;
        let parts = splitter.finish()?;
        self.write_medium(parts)
    }
}

/// Reproducible identifiers of one medium: SHA-256 of the format's name, the kernel, the initrd
/// and the command line; each identifier hashes the seed with its own label.
pub(crate) struct Seed([u8; 32]);

impl Seed {
    fn of(boot: &mut BootFiles) -> io::Result<Seed> {
        let mut hash = Sha256::new();
        hash.update(boot.format.name().as_bytes());
        for file in [&mut boot.kernel, &mut boot.initrd] {
            hash.update(file.len().to_le_bytes());
            file.for_each_chunk(0, |chunk| {
                hash.update(chunk);
                Ok(())
            })?;
        }
        hash.update(boot.cmdline.as_bytes());
        Ok(Seed(hash.finalize().into()))
    }

    /// 16 bytes for `label`.
    pub(crate) fn bytes16(&self, label: &str) -> [u8; 16] {
        let mut hash = Sha256::new();
        hash.update(self.0);
        hash.update(label.as_bytes());
        let digest: [u8; 32] = hash.finalize().into();
        let mut out = [0u8; 16];
        out.copy_from_slice(&digest[..16]);
        out
    }

    /// A 32-bit number for `label` (volume serials, disk signatures), never 0.
    pub(crate) fn u32(&self, label: &str) -> u32 {
        let bytes = self.bytes16(label);
        u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pe_headers_are_found_through_the_dos_stub() {
        let mut head = vec![0u8; 0x400];
        head[..2].copy_from_slice(b"MZ");
        head[0x3c..0x40].copy_from_slice(&0x80u32.to_le_bytes());
        assert!(!has_pe_header(&head));
        head[0x80..0x84].copy_from_slice(b"PE\0\0");
        assert!(has_pe_header(&head));
        head[0x3c..0x40].copy_from_slice(&0x3fffu32.to_le_bytes());
        assert!(!has_pe_header(&head), "an offset past the data");
    }

    /// A staged kernel of these bytes.
    fn kernel(dir: &Path, bytes: &[u8]) -> StagedFile {
        use std::io::Write;
        let mut file = StagedFile::create_for(&dir.join("k")).unwrap();
        file.write_all(bytes).unwrap();
        file
    }

    #[test]
    fn kernels_are_checked_against_the_bootloader() {
        let dir = tempfile::tempdir().unwrap();
        let bios = Format::RawBios.medium().unwrap();
        let efi = Format::IsoEfi.medium().unwrap();
        let mut bzimage = vec![0u8; 0x400];
        bzimage[0x202..0x206].copy_from_slice(b"HdrS");

        let err = check_kernel(&mut kernel(dir.path(), b"ELF..."), Format::RawBios, bios).unwrap_err();
        assert_eq!(
            err.to_string(),
            "format raw-bios cannot boot the image's kernel (boot/kernel of the spec's kernel image): it is not an x86 \
             bzImage (no \"HdrS\" setup header at 0x202)"
        );
        check_kernel(&mut kernel(dir.path(), &bzimage), Format::RawBios, bios).unwrap();
        let err = check_kernel(&mut kernel(dir.path(), &bzimage), Format::IsoEfi, efi).unwrap_err();
        assert!(err.to_string().contains("without an EFI stub"), "{err}");

        bzimage[..2].copy_from_slice(b"MZ");
        bzimage[0x3c..0x40].copy_from_slice(&0x80u32.to_le_bytes());
        bzimage[0x80..0x84].copy_from_slice(b"PE\0\0");
        check_kernel(&mut kernel(dir.path(), &bzimage), Format::IsoEfi, efi).unwrap();
    }

    #[test]
    fn seeds_give_different_ids_per_label() {
        let seed = Seed([7; 32]);
        assert_ne!(seed.u32("a"), seed.u32("b"));
        assert_eq!(seed.bytes16("a"), Seed([7; 32]).bytes16("a"));
        assert_ne!(seed.bytes16("a"), Seed([8; 32]).bytes16("a"));
    }
}
