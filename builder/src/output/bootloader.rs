//! The bootloader binaries of the ISO and disk formats, read from one pinned image built from
//! Debian's packages by `moby pkg build pkg/bootloader`, never from the host: an output is
//! the same on every machine, and changes only when the pin does.

use std::collections::BTreeMap;
use std::io::{self, Read};

use crate::image::{self, ImageError, Platform, PullOptions, Store};
use crate::layer::{self, LayerSource};
use crate::{Error, Reference};

/// The bootloader image: `pkg/bootloader` at the tag `moby pkg show-tag pkg/bootloader` gives
/// (a test checks that they agree; change both together).
pub const BOOTLOADER_IMAGE: &str = "moby/bootloader:ead5ac27e8a1b80bd279b31b02ad5ee75e7c100c";

/// Files larger than this are not bootloaders: a damaged or foreign image.
const MAX_FILE: u64 = 8 << 20;

/// The files of the bootloader image (pkg/bootloader/README.md): isolinux and syslinux are
/// different builds, each with its own `ldlinux.c32`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Bootloader {
    /// isolinux, the El Torito BIOS boot image (loaded by the firmware from the ISO).
    pub(crate) isolinux_bin: Vec<u8>,
    /// isolinux's core module, loaded from isolinux.bin's directory.
    pub(crate) isolinux_ldlinux_c32: Vec<u8>,
    /// The MBR that makes an ISO boot from a disk (isohybrid).
    pub(crate) isohdpfx_bin: Vec<u8>,
    /// The MBR boot code that starts the active partition's boot sector.
    pub(crate) mbr_bin: Vec<u8>,
    /// syslinux's FAT boot sector.
    pub(crate) ldlinux_bss: Vec<u8>,
    /// syslinux's loader on FAT, installed by `media::syslinux`.
    pub(crate) ldlinux_sys: Vec<u8>,
    /// syslinux's core module, beside ldlinux.sys.
    pub(crate) syslinux_ldlinux_c32: Vec<u8>,
    /// systemd's EFI stub, the start of every unified kernel image.
    pub(crate) efi_stub: Vec<u8>,
}

/// Path of each file in the image, in the order of the fields.
const FILES: [&str; 8] = [
    "isolinux/isolinux.bin",
    "isolinux/ldlinux.c32",
    "isolinux/isohdpfx.bin",
    "syslinux/mbr.bin",
    "syslinux/ldlinux.bss",
    "syslinux/ldlinux.sys",
    "syslinux/ldlinux.c32",
    "efi/linuxx64.efi.stub",
];

impl Bootloader {
    /// Reads the bootloader image from `store`, pulling it first when it is missing (the
    /// bootloaders are x86 ones, whatever platform the build is for).
    pub(crate) fn load(store: &Store, pull: &PullOptions) -> Result<Bootloader, super::OutputError> {
        Bootloader::read(store, pull).map_err(|source| super::OutputError::Bootloader {
            image: BOOTLOADER_IMAGE,
            source: Box::new(source),
        })
    }

    fn read(store: &Store, pull: &PullOptions) -> Result<Bootloader, Error> {
        let reference = Reference::parse(BOOTLOADER_IMAGE)?;
        let mut pull = pull.clone();
        pull.platform = Platform::linux("amd64");
        let resolved = image::ensure_images(store, std::slice::from_ref(&reference), &pull)?;
        let Some(resolved) = resolved.into_iter().next() else {
            return Err(ImageError::NotInCache {
                image: BOOTLOADER_IMAGE.to_string(),
                dir: store.dir().to_path_buf(),
            }
            .into());
        };
        let mut layers = Vec::with_capacity(resolved.layers.len());
        for descriptor in &resolved.layers {
            let blob = store.open_verified(&resolved.name, descriptor)?;
            layers.push(LayerSource::new(
                &descriptor.digest,
                &descriptor.media_type,
                io::BufReader::new(blob),
            ));
        }
        let mut found: BTreeMap<&'static str, Vec<u8>> = BTreeMap::new();
        layer::flatten(layers, BOOTLOADER_IMAGE, |header, data| -> io::Result<()> {
            let name = header.name.trim_start_matches("./").trim_start_matches('/');
            let Some(wanted) = FILES.iter().find(|file| **file == name) else {
                return Ok(());
            };
            if header.size > MAX_FILE {
                return Err(io::Error::other(format!(
                    "{name} is {} bytes, more than any bootloader file ({MAX_FILE} at most)",
                    header.size
                )));
            }
            let mut bytes = Vec::with_capacity(header.size as usize);
            data.take(MAX_FILE).read_to_end(&mut bytes)?;
            found.insert(wanted, bytes);
            Ok(())
        })
        .map_err(crate::assemble::BuildError::from)?;
        let mut take = |name: &'static str| {
            found
                .remove(name)
                .ok_or_else(|| Error::from(super::OutputError::BootloaderFile { file: name }))
        };
        Ok(Bootloader {
            isolinux_bin: take(FILES[0])?,
            isolinux_ldlinux_c32: take(FILES[1])?,
            isohdpfx_bin: take(FILES[2])?,
            mbr_bin: take(FILES[3])?,
            ldlinux_bss: take(FILES[4])?,
            ldlinux_sys: take(FILES[5])?,
            syslinux_ldlinux_c32: take(FILES[6])?,
            efi_stub: take(FILES[7])?,
        })
    }
}
