//! A unified kernel image (UKI): systemd's EFI stub (`linuxx64.efi.stub`) with the OS release,
//! the kernel command line, the initrd and the kernel appended as PE sections `.osrel`,
//! `.cmdline`, `.initrd` and `.linux`. Firmware starts it as any EFI program (e.g. as
//! `EFI/BOOT/BOOTX64.EFI` on an ESP); the stub hands the kernel its initrd and command line.
//!
//! The layout is systemd's `ukify`'s (systemd 252 documents `objcopy --add-section`
//! `--change-section-vma` with non-overlapping addresses; ukify, from 253 on, computes them):
//! - the new section headers follow the stub's in its header area (SizeOfHeaders, rounded up to
//!   FileAlignment); a stub without room for them is an error;
//! - each section's data starts at the next FileAlignment boundary after the file so far (the
//!   whole stub first), zero-padded to FileAlignment; its address is the next SectionAlignment
//!   boundary after the previous section's end; its virtual size is the exact content length;
//! - characteristics: readable, initialized data (`.linux`: readable, code);
//! - `.linux` last, so the kernel has room after it to decompress; empty `.osrel`, `.cmdline` or
//!   `.initrd` are left out;
//! - NumberOfSections, SizeOfImage (end of the last section, aligned), SizeOfInitializedData
//!   (plus every new section's size) updated; CheckSum 0 (firmware does not check it).
//!
//! The initrd and kernel are streamed from [`Content`] in chunks, never held in memory.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;

use crate::content::Content;
use crate::le::{le16, le32, put16, put32};

/// Size of a PE section header.
const SECTION_HEADER: usize = 40;
const IMAGE_SCN_CNT_CODE: u32 = 0x20;
const IMAGE_SCN_CNT_INITIALIZED_DATA: u32 = 0x40;
const IMAGE_SCN_MEM_READ: u32 = 0x4000_0000;
/// Index of the certificate table (Authenticode signatures) among the data directories.
const SECURITY_DIRECTORY: usize = 4;

/// What goes into the sections of a unified kernel image.
#[derive(Debug, Clone, Copy)]
pub struct UkiSections<'a> {
    /// `.osrel`: an os-release file (`NAME=...`), shown by boot menus; left out when empty.
    pub os_release: &'a [u8],
    /// `.cmdline`: the kernel command line; left out when empty.
    pub cmdline: &'a [u8],
    /// `.initrd`: the initial ramdisk (a cpio, possibly compressed); left out when empty.
    pub initrd: Content<'a>,
    /// `.linux`: the kernel (an x86 bzImage with EFI handover support, e.g. Debian's vmlinuz).
    pub linux: Content<'a>,
}

/// What went wrong building a unified kernel image.
#[derive(Debug, thiserror::Error)]
pub enum UkiError {
    /// The stub is not a PE image this writer understands.
    #[error("EFI stub: {0}; use efi/linuxx64.efi.stub of the moby/bootloader image")]
    Stub(String),
    /// The stub's header area has no room for the new section headers.
    #[error(
        "EFI stub: its headers have room for {available} more bytes, {needed} are needed for {sections} section headers; \
         use a stub with a larger SizeOfHeaders (systemd's linuxx64.efi.stub has room)"
    )]
    NoRoom {
        /// Bytes needed (40 per section).
        needed: usize,
        /// Free bytes after the stub's section table.
        available: usize,
        /// How many sections were to be added.
        sections: usize,
    },
    /// A section or the whole image does not fit PE's 32-bit sizes and addresses.
    #[error("unified kernel image: {0} (PE sizes and addresses are 32-bit: at most 4 GiB in all)")]
    TooLarge(String),
    /// No kernel was given.
    #[error("unified kernel image: the kernel (.linux) is empty")]
    NoKernel,
}

/// A unified kernel image, laid out: its length is known before it is written.
#[derive(Debug)]
pub struct Uki<'a> {
    /// The stub with its headers patched, zero-padded to FileAlignment.
    head: Vec<u8>,
    sections: Vec<Section<'a>>,
    len: u64,
}

/// One appended section.
#[derive(Debug)]
struct Section<'a> {
    content: Content<'a>,
    /// Content plus zero padding to FileAlignment.
    raw_size: u64,
}

/// The parts of the stub's headers that are read or patched.
struct Headers {
    coff: usize,
    optional: usize,
    table: usize,
    count: usize,
}

impl<'a> Uki<'a> {
    /// Lays out `stub` (systemd-stub, a PE32+ EFI application) with `sections` appended.
    pub fn new(stub: &[u8], sections: UkiSections<'a>) -> Result<Uki<'a>, UkiError> {
        if sections.linux.is_empty() {
            return Err(UkiError::NoKernel);
        }
        let bad = |what: &str| UkiError::Stub(what.to_string());
        let h = parse(stub).map_err(UkiError::Stub)?;
        let opt = h.optional;
        let file_alignment = u64::from(le32(stub, opt + 36));
        let section_alignment = u64::from(le32(stub, opt + 32));
        if !file_alignment.is_power_of_two() || !section_alignment.is_power_of_two() {
            return Err(UkiError::Stub(format!(
                "FileAlignment {file_alignment:#x} / SectionAlignment {section_alignment:#x} are not powers of two"
            )));
        }
        let size_of_headers = round_up(u64::from(le32(stub, opt + 60)), file_alignment);

        // The stub's sections: their raw data aligned, the header room they leave, where they end.
        let mut end_va = 0u64;
        let mut first_raw = u64::MAX;
        for i in 0..h.count {
            let s = h.table + i * SECTION_HEADER;
            let name = &stub[s..s + 8];
            if [".osrel", ".cmdline", ".initrd", ".linux"]
                .iter()
                .any(|n| name.starts_with(n.as_bytes()) && name[n.len()..].iter().all(|&b| b == 0))
            {
                return Err(UkiError::Stub(format!(
                    "it already has a {} section: it is a unified kernel image, not the bare stub",
                    String::from_utf8_lossy(name).trim_end_matches('\0')
                )));
            }
            let (virtual_size, va) = (u64::from(le32(stub, s + 8)), u64::from(le32(stub, s + 12)));
            let (raw_size, raw) = (u64::from(le32(stub, s + 16)), u64::from(le32(stub, s + 20)));
            if raw_size > 0 {
                if raw % file_alignment != 0 || raw_size % file_alignment != 0 || raw + raw_size > stub.len() as u64 {
                    return Err(UkiError::Stub(format!(
                        "section {i}'s data ({raw_size:#x} bytes at {raw:#x}) is not aligned to FileAlignment {file_alignment:#x} or not in the file"
                    )));
                }
                first_raw = first_raw.min(raw);
            }
            // As the firmware maps it: VirtualSize bytes (SizeOfRawData when that is 0).
            let mapped = if virtual_size == 0 { raw_size } else { virtual_size };
            end_va = end_va.max(va + mapped);
        }
        let table_end = (h.table + h.count * SECTION_HEADER) as u64;
        let room_end = size_of_headers.min(first_raw).min(stub.len() as u64);

        let named: [(&[u8; 8], Content<'a>, u32); 4] = [
            (
                b".osrel\0\0",
                Content::Bytes(sections.os_release),
                IMAGE_SCN_CNT_INITIALIZED_DATA,
            ),
            (
                b".cmdline",
                Content::Bytes(sections.cmdline),
                IMAGE_SCN_CNT_INITIALIZED_DATA,
            ),
            (b".initrd\0", sections.initrd, IMAGE_SCN_CNT_INITIALIZED_DATA),
            (b".linux\0\0", sections.linux, IMAGE_SCN_CNT_CODE),
        ];
        let added: Vec<_> = named
            .into_iter()
            .filter(|(_, content, _)| !content.is_empty())
            .collect();
        let needed = added.len() * SECTION_HEADER;
        let available = room_end.saturating_sub(table_end) as usize;
        if needed > available {
            return Err(UkiError::NoRoom {
                needed,
                available,
                sections: added.len(),
            });
        }
        let free = &stub[table_end as usize..table_end as usize + needed];
        if free.iter().any(|&b| b != 0) {
            return Err(bad("the bytes after its section table are in use"));
        }

        let mut head = stub.to_vec();
        head.resize(round_up(stub.len() as u64, file_alignment) as usize, 0);
        let u32_of = |value: u64, what: &str| {
            u32::try_from(value).map_err(|_| UkiError::TooLarge(format!("{what} would be {value:#x}")))
        };
        let mut position = head.len() as u64;
        let mut va = end_va;
        let mut initialized = u64::from(le32(stub, opt + 8));
        let mut out = Vec::new();
        for (i, (name, content, kind)) in added.into_iter().enumerate() {
            let len = content.len();
            let raw_size = round_up(len, file_alignment);
            va = round_up(va, section_alignment);
            let header = table_end as usize + i * SECTION_HEADER;
            let label = String::from_utf8_lossy(name).trim_end_matches('\0').to_string();
            head[header..header + 8].copy_from_slice(name);
            put32(&mut head, header + 8, u32_of(len, &format!("the size of {label}"))?);
            put32(&mut head, header + 12, u32_of(va, &format!("the address of {label}"))?);
            put32(
                &mut head,
                header + 16,
                u32_of(raw_size, &format!("the padded size of {label}"))?,
            );
            put32(
                &mut head,
                header + 20,
                u32_of(position, &format!("the file offset of {label}"))?,
            );
            put32(&mut head, header + 36, kind | IMAGE_SCN_MEM_READ);
            initialized += len;
            position += raw_size;
            va += len;
            out.push(Section { content, raw_size });
        }
        let count = u16::try_from(h.count + out.len()).map_err(|_| bad("too many sections"))?;
        put16(&mut head, h.coff + 2, count);
        put32(&mut head, opt + 8, u32_of(initialized, "SizeOfInitializedData")?);
        put32(
            &mut head,
            opt + 56,
            u32_of(round_up(va, section_alignment), "SizeOfImage")?,
        );
        put32(&mut head, opt + 60, u32_of(size_of_headers, "SizeOfHeaders")?);
        put32(&mut head, opt + 64, 0);
        Ok(Uki {
            head,
            sections: out,
            len: position,
        })
    }

    /// Length of the image in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Always false: an image has at least the stub and a kernel.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Writes the image to `out`, streaming the initrd and kernel.
    pub fn write_to(&self, out: &mut dyn Write) -> io::Result<()> {
        out.write_all(&self.head)?;
        let zeros = vec![
            0u8;
            self.sections
                .iter()
                .map(|s| s.raw_size - s.content.len())
                .max()
                .unwrap_or(0) as usize
        ];
        for section in &self.sections {
            section.content.copy_to(out)?;
            out.write_all(&zeros[..(section.raw_size - section.content.len()) as usize])?;
        }
        Ok(())
    }

    /// Writes the image into `file` at byte `offset` with positioned writes (e.g. straight into
    /// the extent a FAT writer reserved for `EFI/BOOT/BOOTX64.EFI`).
    pub fn write_at(&self, file: &File, offset: u64) -> io::Result<()> {
        let mut out = PositionedWriter { file, at: offset };
        self.write_to(&mut out)?;
        debug_assert_eq!(out.at - offset, self.len);
        Ok(())
    }
}

/// `Write` over positioned writes into a file.
struct PositionedWriter<'f> {
    file: &'f File,
    at: u64,
}

impl Write for PositionedWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write_all_at(buf, self.at)?;
        self.at += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Finds the PE headers of `stub` and checks what the writer relies on.
fn parse(stub: &[u8]) -> Result<Headers, String> {
    if stub.len() < 64 || &stub[..2] != b"MZ" {
        return Err("not a PE image (no MZ header)".into());
    }
    let pe = le32(stub, 0x3c) as usize;
    if pe.checked_add(24).is_none_or(|end| end > stub.len()) || &stub[pe..pe + 4] != b"PE\0\0" {
        return Err("not a PE image (no PE signature where the MZ header points)".into());
    }
    let coff = pe + 4;
    let count = usize::from(le16(stub, coff + 2));
    let optional = coff + 20;
    let optional_size = usize::from(le16(stub, coff + 16));
    let table = optional + optional_size;
    if table + count * SECTION_HEADER > stub.len() {
        return Err("truncated PE headers".into());
    }
    // PE32+ and PE32 differ after BaseOfCode: where the data directories start.
    let directories = match le16(stub, optional) {
        0x20b => 112,
        0x10b => 96,
        magic => return Err(format!("unknown optional header magic {magic:#x}")),
    };
    if optional_size < directories {
        return Err(format!("an optional header of {optional_size} bytes is too short"));
    }
    let directory_count = le32(stub, optional + directories - 4) as usize;
    if directory_count > SECURITY_DIRECTORY {
        let security = optional + directories + SECURITY_DIRECTORY * 8;
        if security + 8 > table {
            return Err("truncated data directories".into());
        }
        if le32(stub, security) != 0 || le32(stub, security + 4) != 0 {
            return Err("it is signed (a certificate table): appending sections would break the signature".into());
        }
    }
    Ok(Headers {
        coff,
        optional,
        table,
        count,
    })
}

fn round_up(value: u64, alignment: u64) -> u64 {
    value.div_ceil(alignment) * alignment
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// A small PE32+ EFI application laid out like systemd-stub: `.text` and `.data`,
    /// FileAlignment 0x200, the given SectionAlignment and SizeOfHeaders.
    fn fake_stub(section_alignment: u32, size_of_headers: u32) -> Vec<u8> {
        let mut pe = vec![0u8; 0x800];
        pe[..2].copy_from_slice(b"MZ");
        put32(&mut pe, 0x3c, 0x80);
        pe[0x80..0x84].copy_from_slice(b"PE\0\0");
        let coff = 0x84;
        put16(&mut pe, coff, 0x8664);
        put16(&mut pe, coff + 2, 2);
        put16(&mut pe, coff + 16, 240);
        put16(&mut pe, coff + 18, 0x206);
        let opt = coff + 20;
        put16(&mut pe, opt, 0x20b);
        put32(&mut pe, opt + 4, 0x200); // SizeOfCode
        put32(&mut pe, opt + 8, 0x200); // SizeOfInitializedData
        put32(&mut pe, opt + 16, section_alignment); // AddressOfEntryPoint
        put32(&mut pe, opt + 32, section_alignment);
        put32(&mut pe, opt + 36, 0x200);
        put32(&mut pe, opt + 56, 3 * section_alignment);
        put32(&mut pe, opt + 60, size_of_headers);
        put32(&mut pe, opt + 64, 0x1234); // CheckSum
        put16(&mut pe, opt + 68, 10); // EFI application
        put32(&mut pe, opt + 108, 16);
        let table = opt + 240;
        for (i, (name, flags)) in [(b".text\0\0\0", 0x6000_0020u32), (b".data\0\0\0", 0xc000_0040)]
            .iter()
            .enumerate()
        {
            let s = table + i * SECTION_HEADER;
            pe[s..s + 8].copy_from_slice(*name);
            put32(&mut pe, s + 8, 0x10 + i as u32 * 0x10);
            put32(&mut pe, s + 12, (i as u32 + 1) * section_alignment);
            put32(&mut pe, s + 16, 0x200);
            put32(&mut pe, s + 20, 0x400 + i as u32 * 0x200);
            put32(&mut pe, s + 36, *flags);
            pe[0x400 + i * 0x200..0x410 + i * 0x200].fill(0xc3);
        }
        pe
    }

    fn image(uki: &Uki) -> Vec<u8> {
        let mut out = Vec::new();
        uki.write_to(&mut out).unwrap();
        assert_eq!(out.len() as u64, uki.len());
        out
    }

    /// `objdump -h`'s (name, size, vma, file offset) of every section.
    fn objdump_sections(bytes: &[u8]) -> Vec<(String, u64, u64, u64)> {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), bytes).unwrap();
        let out = Command::new("objdump")
            .arg("-h")
            .arg(file.path())
            .output()
            .expect("objdump (binutils) runs");
        assert!(
            out.status.success(),
            "objdump -h: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains("file format pei-x86-64"), "{text}");
        text.lines()
            .filter_map(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                (f.len() == 7 && f[0].parse::<u32>().is_ok()).then(|| {
                    let hex = |s: &str| u64::from_str_radix(s, 16).unwrap();
                    (f[1].to_string(), hex(f[2]), hex(f[3]), hex(f[5]))
                })
            })
            .collect()
    }

    #[test]
    fn appends_sections_where_ukify_puts_them() {
        let stub = fake_stub(0x1000, 0x400);
        let initrd: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
        let kernel = vec![0x4du8; 7000];
        let uki = Uki::new(
            &stub,
            UkiSections {
                os_release: b"NAME=\"moby\"\n",
                cmdline: b"console=ttyS0",
                initrd: Content::Bytes(&initrd),
                linux: Content::Bytes(&kernel),
            },
        )
        .unwrap();
        let out = image(&uki);
        assert_eq!(
            objdump_sections(&out),
            vec![
                (".text".into(), 0x10, 0x1000, 0x400),
                (".data".into(), 0x20, 0x2000, 0x600),
                (".osrel".into(), 12, 0x3000, 0x800),
                (".cmdline".into(), 13, 0x4000, 0xa00),
                (".initrd".into(), 5000, 0x5000, 0xc00),
                (".linux".into(), 7000, 0x7000, 0xc00 + 0x1400),
            ]
        );
        assert_eq!(&out[0x800..0x80c], b"NAME=\"moby\"\n");
        assert_eq!(&out[0xa00..0xa0d], b"console=ttyS0");
        assert_eq!(&out[0xc00..0xc00 + 5000], &initrd[..]);
        assert_eq!(&out[0x2000..0x2000 + 7000], &kernel[..]);
        assert_eq!(out.len(), 0x2000 + 0x1c00, "the last section padded to FileAlignment");
        assert!(out[0x2000 + 7000..].iter().all(|&b| b == 0));
        assert_eq!(
            &out[..0x800],
            {
                let mut head = stub.clone();
                head[..0x400].copy_from_slice(&out[..0x400]);
                head
            },
            "the stub's sections stay as they are"
        );

        let opt = 0x84 + 20;
        let table = opt + 240;
        assert_eq!(le16(&out, 0x84 + 2), 6, "NumberOfSections");
        assert_eq!(le32(&out, opt + 56), 0x9000, "SizeOfImage: end of .linux, aligned");
        assert_eq!(
            le32(&out, opt + 8),
            0x200 + 12 + 13 + 5000 + 7000,
            "SizeOfInitializedData"
        );
        assert_eq!(le32(&out, opt + 64), 0, "CheckSum");
        let flags = |i: usize| le32(&out, table + i * SECTION_HEADER + 36);
        assert_eq!(flags(2), IMAGE_SCN_MEM_READ | IMAGE_SCN_CNT_INITIALIZED_DATA);
        assert_eq!(flags(4), IMAGE_SCN_MEM_READ | IMAGE_SCN_CNT_INITIALIZED_DATA);
        assert_eq!(flags(5), IMAGE_SCN_MEM_READ | IMAGE_SCN_CNT_CODE);

        // The same input gives the same bytes.
        assert!(image(&uki) == out);
    }

    #[test]
    fn streams_from_files_and_into_files() {
        let stub = fake_stub(0x200, 0x400);
        let mut initrd = tempfile::tempfile().unwrap();
        let initrd_bytes: Vec<u8> = (0..3_000_001u32).map(|i| (i % 253) as u8).collect();
        initrd.write_all(&initrd_bytes).unwrap();
        let mut kernel = tempfile::tempfile().unwrap();
        kernel.write_all(&vec![0x90u8; 2_500_000]).unwrap();
        let from_files = UkiSections {
            os_release: b"",
            cmdline: b"quiet",
            initrd: Content::file(&initrd).unwrap(),
            linux: Content::File {
                file: &kernel,
                offset: 100,
                len: 2_000_000,
            },
        };
        let uki = Uki::new(&stub, from_files).unwrap();
        let streamed = image(&uki);
        // No .osrel: an empty section is left out.
        let names: Vec<String> = objdump_sections(&streamed).into_iter().map(|s| s.0).collect();
        assert_eq!(names, [".text", ".data", ".cmdline", ".initrd", ".linux"]);

        let kernel_bytes = vec![0x90u8; 2_000_000];
        let in_memory = Uki::new(
            &stub,
            UkiSections {
                initrd: Content::Bytes(&initrd_bytes),
                linux: Content::Bytes(&kernel_bytes),
                ..from_files
            },
        )
        .unwrap();
        assert!(image(&in_memory) == streamed);

        let target = tempfile::tempfile().unwrap();
        uki.write_at(&target, 4096).unwrap();
        let mut back = vec![0u8; streamed.len()];
        target.read_exact_at(&mut back, 4096).unwrap();
        assert!(back == streamed);
        assert_eq!(target.metadata().unwrap().len(), 4096 + uki.len());
    }

    #[test]
    fn refuses_stubs_it_cannot_extend() {
        let kernel = [1u8; 10];
        let sections = UkiSections {
            os_release: b"NAME=x\n",
            cmdline: b"x",
            initrd: Content::Bytes(b"initrd"),
            linux: Content::Bytes(&kernel),
        };
        // The section table ends at 0x1d8: room for one more header in 0x200 bytes of headers.
        let mut tight = fake_stub(0x1000, 0x200);
        let opt = 0x84 + 20;
        let table = opt + 240;
        // Move the sections' data so that the first starts at 0x200 (the end of the headers).
        put32(&mut tight, table + 20, 0x200);
        let err = Uki::new(&tight, sections).unwrap_err();
        assert!(
            matches!(
                err,
                UkiError::NoRoom {
                    needed: 160,
                    available: 40,
                    sections: 4
                }
            ),
            "{err}"
        );
        assert!(
            err.to_string().contains("160 are needed for 4 section headers"),
            "{err}"
        );

        let mut signed = fake_stub(0x1000, 0x400);
        put32(&mut signed, opt + 112 + 4 * 8, 0x800);
        put32(&mut signed, opt + 112 + 4 * 8 + 4, 0x100);
        assert!(Uki::new(&signed, sections).unwrap_err().to_string().contains("signed"));

        assert!(matches!(
            Uki::new(
                b"not a PE at all, just some bytes long enough to have a header....",
                sections
            ),
            Err(UkiError::Stub(_))
        ));

        let stub = fake_stub(0x1000, 0x400);
        let uki = image(&Uki::new(&stub, sections).unwrap());
        assert!(Uki::new(&uki, sections)
            .unwrap_err()
            .to_string()
            .contains("already has a .osrel section"));

        let no_kernel = UkiSections {
            linux: Content::Bytes(b""),
            ..sections
        };
        assert!(matches!(Uki::new(&stub, no_kernel), Err(UkiError::NoKernel)));

        let mut unaligned = fake_stub(0x1000, 0x400);
        put32(&mut unaligned, table + SECTION_HEADER + 20, 0x610);
        assert!(Uki::new(&unaligned, sections)
            .unwrap_err()
            .to_string()
            .contains("not aligned"));
    }
}
