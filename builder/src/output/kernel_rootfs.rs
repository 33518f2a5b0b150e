//! `kernel+iso` and `kernel+squashfs`: the kernel and its command line as files of their own
//! (`NAME-kernel`, `NAME-cmdline`), and the image's root filesystem as a read-only disk image
//! (`NAME.iso`, ISO 9660 with Rock Ridge; `NAME-squashfs.img`), as LinuxKit writes them.
//!
//! Unlike LinuxKit, a small first-stage initrd comes with them, `NAME-boot-initrd.img`: `/init`
//! and the kernel's modules (`lib/modules`) of the image, nothing else. A kernel with the disk,
//! CD and filesystem drivers as modules (Debian's cloud kernel, ours) cannot mount such a root by
//! itself; our init, run from this initrd with `root=DEV` on the command line, loads them, mounts
//! the disk under a writable overlay and starts the system from it (`docs/formats.md`). `moby
//! run` passes it with `root=`.
//!
//! The root's entries are kept in memory as metadata (a later entry for a path replaces an
//! earlier one, as when the tar is extracted); file contents go, in stream order, into one
//! unnamed scratch file in the output directory, from which the image writer copies them.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use media::content::Content;
use media::iso::Iso;
use media::tree::{DeviceKind, Metadata, Tree, TreeError};

use super::initrd::InitrdWriter;
use super::kernel_initrd::{reset, write_to, EntryCursor, CMDLINE_ENTRY, KERNEL_ENTRY};
use super::pgzip::PgzipOptions;
use super::staged::{remove_stale, with_suffix, StagedFile};
use super::{Format, OutputError};
use crate::tar::{EntryKind, Header, DEFAULT_MTIME};
use crate::EntrySink;

/// The first-stage initrd's file name suffix.
pub(crate) const BOOT_INITRD_SUFFIX: &str = "-boot-initrd.img";
/// The ISO's volume id.
const VOLUME_ID: &str = "MOBY_ROOT";

/// One entry of the root filesystem.
#[derive(Debug, Clone)]
struct Entry {
    kind: EntryKind,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    link: String,
    device: (u32, u32),
    /// Region of the scratch file holding a regular file's bytes.
    data: (u64, u64),
}

/// Where the current entry's data goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Kernel,
    Cmdline,
    /// The root (and the first-stage initrd too, when `true`).
    Root(bool),
    Skip,
}

/// The `kernel+iso` and `kernel+squashfs` sink.
pub(crate) struct KernelRootfs {
    format: Format,
    /// `DIR/NAME`.
    base: PathBuf,
    kernel: Option<StagedFile>,
    cmdline: Option<StagedFile>,
    stage1: Option<InitrdWriter<StagedFile>>,
    data: BufWriter<File>,
    data_len: u64,
    root: BTreeMap<String, Entry>,
    route: Route,
    cursor: EntryCursor,
}

impl KernelRootfs {
    /// Prepares the outputs of `format` (`kernel+iso` or `kernel+squashfs`) for `DIR/NAME`.
    pub(crate) fn new(format: Format, dir: &Path, name: &str, gzip: PgzipOptions) -> Result<KernelRootfs, OutputError> {
        let base = dir.join(name);
        let stage1 = StagedFile::create_for(&with_suffix(&base, BOOT_INITRD_SUFFIX))?;
        let stage1 = InitrdWriter::new(stage1, gzip).map_err(|source| OutputError::Write {
            path: with_suffix(&base, BOOT_INITRD_SUFFIX),
            source,
        })?;
        let data = tempfile::tempfile_in(dir).map_err(|source| OutputError::CreateTemp {
            dir: dir.to_path_buf(),
            source,
        })?;
        Ok(KernelRootfs {
            format,
            base,
            kernel: None,
            cmdline: None,
            stage1: Some(stage1),
            data: BufWriter::with_capacity(1 << 20, data),
            data_len: 0,
            root: BTreeMap::new(),
            route: Route::Skip,
            cursor: EntryCursor::default(),
        })
    }

    fn stage1(&mut self) -> io::Result<&mut InitrdWriter<StagedFile>> {
        self.stage1.as_mut().ok_or_else(|| OutputError::Finished.into())
    }

    /// Writes the root filesystem image of the collected entries.
    fn write_root(&mut self) -> io::Result<()> {
        self.data.flush()?;
        let data = self.data.get_ref();
        let format = self.format;
        let medium = |source: Box<dyn std::error::Error + Send + Sync>| OutputError::Medium { format, source };
        let path = self.root_path();
        let mut out = StagedFile::create_for(&path)?;
        let tree = root_tree(&self.root, data).map_err(|e| medium(e.into()))?;
        match self.format {
            Format::KernelIso => {
                let iso = Iso::new(VOLUME_ID, &tree).map_err(|e| medium(e.into()))?;
                iso.write(out.file()?).map_err(|e| medium(e.into()))?;
            }
            _ => {
                media::squashfs::write(&tree, out.file()?).map_err(|e| medium(e.into()))?;
            }
        }
        out.persist()?;
        Ok(())
    }

    fn root_path(&self) -> PathBuf {
        match self.format {
            Format::KernelIso => with_suffix(&self.base, ".iso"),
            _ => with_suffix(&self.base, "-squashfs.img"),
        }
    }
}

/// Whether an entry of the root also goes into the first-stage initrd: `/init` and the modules.
fn in_stage1(name: &str) -> bool {
    matches!(name, "init" | "lib" | "lib/modules" | "dev") || name.starts_with("lib/modules/")
}

/// The tree of every entry of the root, added in path order (parents first).
fn root_tree<'a>(root: &BTreeMap<String, Entry>, data: &'a File) -> Result<Tree<'a>, TreeError> {
    let mut tree = Tree::new(DEFAULT_MTIME);
    for (path, entry) in root {
        let meta = Metadata {
            mode: entry.mode & 0o7777,
            uid: entry.uid,
            gid: entry.gid,
            mtime: entry.mtime,
        };
        match entry.kind {
            EntryKind::Directory => tree.dir(path, meta)?,
            EntryKind::Symlink => tree.symlink(path, &entry.link, meta)?,
            EntryKind::HardLink => tree.hard_link(path, entry.link.trim_start_matches('/'))?,
            EntryKind::Char | EntryKind::Block => {
                let kind = if entry.kind == EntryKind::Char {
                    DeviceKind::Char
                } else {
                    DeviceKind::Block
                };
                tree.device(path, kind, entry.device.0, entry.device.1, meta)?;
            }
            EntryKind::Fifo => tree.fifo(path, meta)?,
            EntryKind::Regular | EntryKind::Other(_) => {
                let (offset, len) = entry.data;
                tree.file(
                    path,
                    Content::File {
                        file: data,
                        offset,
                        len,
                    },
                    meta,
                )?;
            }
        }
    }
    Ok(tree)
}

impl EntrySink for KernelRootfs {
    fn write_header(&mut self, header: &Header) -> io::Result<()> {
        self.cursor.start(header)?;
        let name = header.name.trim_end_matches('/');
        self.route = match name {
            KERNEL_ENTRY => {
                reset(&mut self.kernel, &with_suffix(&self.base, "-kernel"))?;
                Route::Kernel
            }
            CMDLINE_ENTRY => {
                reset(&mut self.cmdline, &with_suffix(&self.base, "-cmdline"))?;
                Route::Cmdline
            }
            "boot" => Route::Skip,
            _ if name.starts_with("boot/") => Route::Skip,
            _ => {
                let stage1 = in_stage1(name);
                if stage1 {
                    self.stage1()?.write_entry(header)?;
                }
                let entry = Entry {
                    kind: header.kind,
                    mode: header.mode,
                    uid: u32::try_from(header.uid).unwrap_or(u32::MAX),
                    gid: u32::try_from(header.gid).unwrap_or(u32::MAX),
                    mtime: header.mtime,
                    link: header.link_name.clone(),
                    device: (header.dev_major, header.dev_minor),
                    data: (
                        self.data_len,
                        if header.kind == EntryKind::Regular {
                            header.size
                        } else {
                            0
                        },
                    ),
                };
                self.root.insert(name.to_string(), entry);
                Route::Root(stage1)
            }
        };
        Ok(())
    }

    fn write_data(&mut self, data: &[u8]) -> io::Result<()> {
        self.cursor.advance(data.len())?;
        match self.route {
            Route::Kernel => write_to(&mut self.kernel, data),
            Route::Cmdline => write_to(&mut self.cmdline, data),
            Route::Root(stage1) => {
                self.data.write_all(data)?;
                self.data_len += data.len() as u64;
                if stage1 {
                    self.stage1()?.write_data(data)?;
                }
                Ok(())
            }
            Route::Skip => Ok(()),
        }
    }

    fn finish(&mut self) -> io::Result<()> {
        self.cursor.check_complete()?;
        let stage1 = self.stage1.take().ok_or(OutputError::Finished)?;
        let Some(kernel) = self.kernel.take().filter(|kernel| kernel.len() > 0) else {
            return Err(OutputError::NoKernel { format: self.format }.into());
        };
        if !self.root.contains_key("init") {
            return Err(OutputError::NoInit { format: self.format }.into());
        }
        self.write_root()?;
        stage1.finish()?.persist()?;
        kernel.persist()?;
        match self.cmdline.take() {
            Some(cmdline) if cmdline.len() > 0 => cmdline.persist()?,
            _ => remove_stale(&with_suffix(&self.base, "-cmdline"))?,
        }
        tracing::info!(output = %self.base.display(), format = %self.format, "wrote");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{dir_names, feed, file, gunzip_cpio, node};
    use super::*;
    use std::process::Command;

    #[test]
    fn the_root_goes_on_an_iso_and_init_with_the_modules_into_the_boot_initrd() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = KernelRootfs::new(Format::KernelIso, dir.path(), "img", PgzipOptions::default()).unwrap();
        let entries = vec![
            node("boot", EntryKind::Directory, 0o755, ""),
            file(KERNEL_ENTRY, 0o644, b"KERNEL"),
            file(CMDLINE_ENTRY, 0o644, b"console=ttyS0"),
            file("init", 0o755, b"INIT"),
            node("lib", EntryKind::Directory, 0o755, ""),
            node("lib/modules", EntryKind::Directory, 0o755, ""),
            file("lib/modules/virtio_blk.ko", 0o644, b"MODULE"),
            file("etc/motd", 0o644, b"old"),
            node("etc/link", EntryKind::Symlink, 0o777, "motd"),
            // A later entry replaces an earlier one, as tar extraction does.
            file("etc/motd", 0o600, b"welcome"),
        ];
        feed(&mut sink, &entries).unwrap();
        sink.finish().unwrap();
        assert_eq!(
            dir_names(dir.path()),
            ["img-boot-initrd.img", "img-cmdline", "img-kernel", "img.iso"]
        );
        assert_eq!(std::fs::read(dir.path().join("img-kernel")).unwrap(), b"KERNEL");
        let stage1 = gunzip_cpio(&std::fs::read(dir.path().join("img-boot-initrd.img")).unwrap());
        let names: Vec<&str> = stage1.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["init", "lib", "lib/modules", "lib/modules/virtio_blk.ko"]);

        let iso = dir.path().join("img.iso");
        let extract = |path: &str| {
            let out = Command::new("isoinfo")
                .args(["-R", "-i"])
                .arg(&iso)
                .args(["-x", path])
                .output()
                .expect("isoinfo (apt genisoimage)");
            out.stdout
        };
        assert_eq!(extract("/etc/motd"), b"welcome");
        assert_eq!(extract("/init"), b"INIT");
        let listing = Command::new("isoinfo")
            .args(["-R", "-l", "-i"])
            .arg(&iso)
            .output()
            .unwrap();
        let listing = String::from_utf8_lossy(&listing.stdout);
        assert!(listing.contains("link -> motd"), "{listing}");
        assert!(listing.contains("-rw-------"), "the replacing entry's mode: {listing}");
        assert!(!listing.contains("boot"), "boot/ is not part of the root: {listing}");
    }

    #[test]
    fn a_root_without_init_or_kernel_is_refused_and_nothing_is_left() {
        for (entries, problem) in [
            (
                vec![file(KERNEL_ENTRY, 0o644, b"K"), file("etc/x", 0o644, b"x")],
                "has none",
            ),
            (vec![file("init", 0o755, b"I")], "no boot/kernel"),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let mut sink = KernelRootfs::new(Format::KernelIso, dir.path(), "img", PgzipOptions::default()).unwrap();
            feed(&mut sink, &entries).unwrap();
            let err = sink.finish().unwrap_err();
            assert!(err.to_string().contains(problem), "{err}");
            drop(sink);
            assert!(dir_names(dir.path()).is_empty(), "{:?}", dir_names(dir.path()));
        }
    }
}
