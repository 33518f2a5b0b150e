//! The filesystem label of a block device, for the two filesystems a userdata disk uses:
//! ISO 9660 (the volume identifier of the primary volume descriptor) and FAT (the boot sector's
//! volume label).

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// What is read from the start of a device: through the ISO 9660 primary volume descriptor.
const PROBE_BYTES: usize = 16 * 2048 + 2048;

/// The label of the filesystem on `device`, trimmed, or `None` if it has no ISO 9660 or FAT label.
pub fn read_label(device: &Path) -> io::Result<Option<String>> {
    let mut head = Vec::with_capacity(PROBE_BYTES);
    File::open(device)?.take(PROBE_BYTES as u64).read_to_end(&mut head)?;
    Ok(label_of(&head))
}

/// The label found in the first bytes of a filesystem.
pub fn label_of(head: &[u8]) -> Option<String> {
    iso9660_label(head).or_else(|| fat_label(head))
}

fn iso9660_label(head: &[u8]) -> Option<String> {
    let pvd = head.get(16 * 2048..17 * 2048)?;
    if pvd[0] != 1 || &pvd[1..6] != b"CD001" {
        return None;
    }
    text(&pvd[40..72])
}

fn fat_label(head: &[u8]) -> Option<String> {
    let boot = head.get(..512)?;
    if boot[510..512] != [0x55, 0xaa] {
        return None;
    }
    // FAT32 has no 16-bit sectors-per-FAT count; its extended BPB starts later.
    let fat32 = u16::from_le_bytes([boot[22], boot[23]]) == 0;
    let (signature, label, fs_type) = if fat32 { (66, 71, 82) } else { (38, 43, 54) };
    if !matches!(boot[signature], 0x28 | 0x29) || !boot[fs_type..fs_type + 8].starts_with(b"FAT") {
        return None;
    }
    if boot[signature] == 0x28 {
        return None; // The short extended BPB has no label.
    }
    text(&boot[label..label + 11]).filter(|l| l != "NO NAME")
}

fn text(bytes: &[u8]) -> Option<String> {
    let s = String::from_utf8_lossy(bytes);
    let s = s.trim_matches(|c: char| c == ' ' || c == '\0');
    (!s.is_empty()).then(|| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fat(fat32: bool, label: &[u8; 11]) -> Vec<u8> {
        let mut b = vec![0u8; 512];
        b[510] = 0x55;
        b[511] = 0xaa;
        if fat32 {
            b[66] = 0x29;
            b[71..82].copy_from_slice(label);
            b[82..90].copy_from_slice(b"FAT32   ");
        } else {
            b[22] = 9;
            b[38] = 0x29;
            b[43..54].copy_from_slice(label);
            b[54..62].copy_from_slice(b"FAT12   ");
        }
        b
    }

    #[test]
    fn fat_labels() {
        assert_eq!(label_of(&fat(false, b"CIDATA     ")).as_deref(), Some("CIDATA"));
        assert_eq!(label_of(&fat(true, b"cidata     ")).as_deref(), Some("cidata"));
        assert_eq!(label_of(&fat(true, b"NO NAME    ")), None);
        let mut not_fat = fat(false, b"CIDATA     ");
        not_fat[54..57].copy_from_slice(b"EXT");
        assert_eq!(label_of(&not_fat), None);
    }

    #[test]
    fn iso_label_and_nothing() {
        let mut iso = vec![0u8; PROBE_BYTES];
        iso[32768] = 1;
        iso[32769..32774].copy_from_slice(b"CD001");
        iso[32768 + 40..32768 + 72].copy_from_slice(b"config-2                        ");
        assert_eq!(label_of(&iso).as_deref(), Some("config-2"));
        assert_eq!(label_of(&vec![0u8; PROBE_BYTES]), None);
        assert_eq!(label_of(b"short"), None);
    }
}
