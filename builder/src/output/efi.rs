//! What UEFI boots: a unified kernel image (systemd's EFI stub with the kernel, the initrd and
//! the command line as PE sections) as `EFI/BOOT/BOOTX64.EFI`, the file UEFI firmware starts
//! from a removable medium without any boot entry.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use media::content::Content;
use media::uki::{Uki, UkiSections};

use super::bootloader::Bootloader;
use super::medium::BootFiles;
use super::OutputError;

/// Where UEFI looks for the boot program of an x86-64 removable medium.
pub(crate) const BOOT_FILE: &str = "EFI/BOOT/BOOTX64.EFI";

/// The `.osrel` section: what boot menus show.
const OS_RELEASE: &[u8] = b"NAME=\"moby\"\nID=moby\nPRETTY_NAME=\"moby (LinuxKit-compatible image)\"\n";

/// Writes the unified kernel image of `boot` into a new unnamed file in `scratch`.
pub(crate) fn unified_kernel_image(boot: &mut BootFiles, bootloader: &Bootloader, scratch: &Path) -> io::Result<File> {
    let format = boot.format;
    let initrd = Content::file(boot.initrd.file()?)?;
    let linux = Content::file(boot.kernel.file()?)?;
    let sections = UkiSections {
        os_release: OS_RELEASE,
        cmdline: boot.cmdline.as_bytes(),
        initrd,
        linux,
    };
    let uki = Uki::new(&bootloader.efi_stub, sections).map_err(|source| OutputError::Medium {
        format,
        source: source.into(),
    })?;
    let file = tempfile::tempfile_in(scratch)?;
    let mut out = BufWriter::with_capacity(1 << 20, &file);
    uki.write_to(&mut out)?;
    out.flush()?;
    drop(out);
    Ok(file)
}
