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
use super::staged::{remove_stale, with_suffix, StagedFile};
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
    Streaming(Box<InitrdWriter<StagedFile>>),
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
    /// Output path prefix: pieces are staged next to `{base}-kernel` and so on.
    base: PathBuf,
    gzip: PgzipOptions,
    /// Put the microcode at the start of the initrd file when it arrives before the archive.
    ucode_as_prefix: bool,
    kernel: Option<StagedFile>,
    cmdline: Option<StagedFile>,
    ucode: Option<StagedFile>,
    initrd: InitrdStage,
    initrd_prefix: u64,
    route: Route,
    cursor: EntryCursor,
}

impl BootSplitter {
    /// Prepares the split; temporary files are staged next to `{base}-initrd.img` and so on.
    pub(crate) fn new(base: &Path, gzip: PgzipOptions, ucode_as_prefix: bool) -> Result<BootSplitter, OutputError> {
        // Created now so that an unwritable directory fails the build before any work.
        let initrd = StagedFile::create_for(&with_suffix(base, "-initrd.img"))?;
        Ok(BootSplitter {
            base: base.to_path_buf(),
            gzip,
            ucode_as_prefix,
            kernel: None,
            cmdline: None,
            ucode: None,
            initrd: InitrdStage::Pending(initrd),
            initrd_prefix: 0,
            route: Route::Skip,
            cursor: EntryCursor::default(),
        })
    }

    /// Starts an entry.
    pub(crate) fn write_header(&mut self, header: &Header) -> io::Result<()> {
        self.cursor.start(header)?;
        self.route = self.route_for(header)?;
        if self.route == Route::Initrd {
            self.initrd_writer()?.write_entry(header)?;
        }
        Ok(())
    }

    /// Appends data to the current entry.
    pub(crate) fn write_data(&mut self, data: &[u8]) -> io::Result<()> {
        self.cursor.advance(data.len())?;
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
        self.cursor.check_complete()?;
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
                reset(&mut self.kernel, &with_suffix(&self.base, "-kernel"))?;
                Route::Kernel
            }
            CMDLINE_ENTRY => {
                reset(&mut self.cmdline, &with_suffix(&self.base, "-cmdline"))?;
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
        reset(&mut self.ucode, &with_suffix(&self.base, "-ucode.cpio"))?;
        Ok(Route::UcodeSeparate)
    }

    /// The running cpio/gzip pipeline, started on first use.
    fn initrd_writer(&mut self) -> io::Result<&mut InitrdWriter<StagedFile>> {
        if let InitrdStage::Pending(_) = self.initrd {
            let InitrdStage::Pending(file) = std::mem::replace(&mut self.initrd, InitrdStage::Broken) else {
                return Err(OutputError::Broken.into());
            };
            self.initrd = InitrdStage::Streaming(Box::new(InitrdWriter::new(file, self.gzip)?));
        }
        match &mut self.initrd {
            InitrdStage::Streaming(writer) => Ok(writer),
            _ => Err(OutputError::Broken.into()),
        }
    }
}

/// Creates the staged file on first use, or empties it for a replacing entry.
pub(crate) fn reset(slot: &mut Option<StagedFile>, path: &Path) -> io::Result<()> {
    match slot {
        Some(file) => file.clear(),
        None => {
            *slot = Some(StagedFile::create_for(path)?);
            Ok(())
        }
    }
}

/// Appends to the staged file of the current entry.
pub(crate) fn write_to(slot: &mut Option<StagedFile>, data: &[u8]) -> io::Result<()> {
    match slot {
        Some(file) => file.write_all(data),
        None => Err(OutputError::Broken.into()),
    }
}

/// The entry whose data is arriving, and how much of it is still due: catches data beyond an
/// entry's size and entries cut short (shared by the sinks that route entries themselves).
#[derive(Debug, Default)]
pub(crate) struct EntryCursor {
    entry: String,
    remaining: u64,
}

impl EntryCursor {
    /// Starts `header`'s entry, once the previous one is complete.
    pub(crate) fn start(&mut self, header: &Header) -> io::Result<()> {
        self.check_complete()?;
        self.entry.clone_from(&header.name);
        self.remaining = header.size;
        Ok(())
    }

    /// Accounts for `len` more bytes of the current entry.
    pub(crate) fn advance(&mut self, len: usize) -> io::Result<()> {
        if len as u64 > self.remaining {
            return Err(OutputError::TooMuchData {
                entry: self.entry.clone(),
            }
            .into());
        }
        self.remaining -= len as u64;
        Ok(())
    }

    /// Fails when the current entry's data is not complete.
    pub(crate) fn check_complete(&self) -> io::Result<()> {
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

/// The `kernel+initrd` output sink.
pub struct KernelInitrd {
    /// `DIR/NAME`: outputs are `{base}-kernel` and so on.
    base: PathBuf,
    splitter: Option<BootSplitter>,
}

impl KernelInitrd {
    /// Prepares `DIR/NAME-kernel`, `DIR/NAME-initrd.img` and `DIR/NAME-cmdline`; `dir` must exist.
    pub fn new(dir: &Path, name: &str, gzip: PgzipOptions) -> Result<KernelInitrd, OutputError> {
        let base = dir.join(name);
        Ok(KernelInitrd {
            splitter: Some(BootSplitter::new(&base, gzip, true)?),
            base,
        })
    }

    fn splitter(&mut self) -> io::Result<&mut BootSplitter> {
        self.splitter.as_mut().ok_or_else(|| OutputError::Finished.into())
    }

    fn path(&self, suffix: &str) -> PathBuf {
        with_suffix(&self.base, suffix)
    }

    /// Moves the pieces into place: the initrd first, then kernel and cmdline (or removes those
    /// of an earlier build when this one has none, so the directory describes this build).
    fn commit(&self, parts: BootParts) -> io::Result<()> {
        let initrd = initrd_with_ucode(
            &self.path("-initrd.img"),
            parts.ucode,
            parts.initrd,
            parts.initrd_prefix,
        )?;
        initrd.persist()?;
        persist_non_empty(parts.kernel, &self.path("-kernel"))?;
        persist_non_empty(parts.cmdline, &self.path("-cmdline"))?;
        tracing::info!(
            output = %self.base.display(),
            "wrote kernel+initrd"
        );
        Ok(())
    }
}

/// The initrd with the microcode in front: `initrd` itself when the microcode is already its
/// prefix (or there is none), else `ucode + archive` staged for `path` (the microcode arrived
/// after the archive had started).
pub(crate) fn initrd_with_ucode(
    path: &Path,
    ucode: Option<StagedFile>,
    mut initrd: StagedFile,
    old_prefix: u64,
) -> io::Result<StagedFile> {
    let Some(mut ucode) = ucode else {
        return Ok(initrd);
    };
    let mut combined = StagedFile::create_for(path)?;
    ucode.copy_to(0, &mut combined)?;
    initrd.copy_to(old_prefix, &mut combined)?;
    Ok(combined)
}

/// Moves `file` to `path` if it has content; otherwise makes sure nothing stale is at `path`.
fn persist_non_empty(file: Option<StagedFile>, path: &Path) -> Result<(), OutputError> {
    match file {
        Some(file) if file.len() > 0 => file.persist(),
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
        self.commit(parts)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{dir_names, feed, file, gunzip_cpio, node};
    use super::*;
    use tempfile::TempDir;

    const UCODE: &[u8] = b"070701-fake-microcode-archive";

    /// A stream shaped like LinuxKit's: kernel section first, then kernel tar and image files.
    fn stream() -> Vec<(Header, Vec<u8>)> {
        let mut device = node("dev/console", EntryKind::Char, 0o600, "");
        (device.0.dev_major, device.0.dev_minor) = (5, 1);
        vec![
            node("boot", EntryKind::Directory, 0o755, ""),
            file(CMDLINE_ENTRY, 0o644, b"console=ttyS0"),
            file(KERNEL_ENTRY, 0o644, b"FAKE-KERNEL bzImage"),
            file(UCODE_ENTRY, 0o644, UCODE),
            node("lib/", EntryKind::Directory, 0o755, ""),
            file("lib/modules/dummy.ko", 0o644, b"module"),
            file("init", 0o755, b"#!/bin/sh\nexec /sbin/init\n"),
            node("bin", EntryKind::Directory, 0o755, ""),
            file("bin/hello", 0o755, b"hello world"),
            node("bin/hello-hard", EntryKind::HardLink, 0o755, "bin/hello"),
            node("etc/mtab", EntryKind::Symlink, 0o755, "/proc/mounts"),
            file("boot/System.map", 0o644, b"ignored"),
            device,
        ]
    }

    fn build(dir: &Path, entries: &[(Header, Vec<u8>)], gzip: PgzipOptions) -> io::Result<()> {
        let mut sink = KernelInitrd::new(dir, "img", gzip).map_err(io::Error::from)?;
        feed(&mut sink, entries)?;
        sink.finish()
    }

    fn read(dir: &TempDir, name: &str) -> Vec<u8> {
        std::fs::read(dir.path().join(name)).unwrap()
    }

    fn listing(gz: &[u8]) -> Vec<(String, u32, String)> {
        gunzip_cpio(gz)
            .into_iter()
            .map(|e| (e.name, e.mode, String::from_utf8_lossy(&e.data).into_owned()))
            .collect()
    }

    fn expected_listing() -> Vec<(String, u32, String)> {
        [
            ("lib/", 0o040755, ""),
            ("lib/modules/dummy.ko", 0o100644, "module"),
            ("init", 0o100755, "#!/bin/sh\nexec /sbin/init\n"),
            ("bin", 0o040755, ""),
            ("bin/hello", 0o100755, "hello world"),
            ("bin/hello-hard", 0o120755, "hello"),
            ("etc/mtab", 0o120755, "/proc/mounts"),
            ("dev/console", 0o020600, ""),
        ]
        .iter()
        .map(|(name, mode, data)| (name.to_string(), *mode, data.to_string()))
        .collect()
    }

    fn umask() -> u32 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("Umask:")).unwrap();
        u32::from_str_radix(line["Umask:".len()..].trim(), 8).unwrap()
    }

    #[test]
    fn writes_kernel_cmdline_and_ucode_prefixed_initrd() {
        let dir = TempDir::new().unwrap();
        build(dir.path(), &stream(), PgzipOptions::default()).unwrap();

        assert_eq!(dir_names(dir.path()), ["img-cmdline", "img-initrd.img", "img-kernel"]);
        assert_eq!(read(&dir, "img-kernel"), b"FAKE-KERNEL bzImage");
        assert_eq!(read(&dir, "img-cmdline"), b"console=ttyS0");
        let initrd = read(&dir, "img-initrd.img");
        assert_eq!(&initrd[..UCODE.len()], UCODE);
        assert_eq!(listing(&initrd[UCODE.len()..]), expected_listing());

        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("img-kernel"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644 & !umask());
    }

    #[test]
    fn cpio_entries_keep_owner_and_mtime_and_use_gocpio_numbering() {
        let dir = TempDir::new().unwrap();
        let mut owned = file("home/user/notes.txt", 0o640, b"notes");
        owned.0.uid = 1000;
        owned.0.gid = 1000;
        owned.0.mtime = 1_700_000_000;
        build(dir.path(), &[owned], PgzipOptions::default()).unwrap();
        let entries = gunzip_cpio(&read(&dir, "img-initrd.img"));
        assert_eq!(entries.len(), 1);
        let entry = &entries[0];
        assert_eq!((entry.uid, entry.gid, entry.mtime), (1000, 1000, 1_700_000_000));
        assert_eq!((entry.inode, entry.nlink, entry.dev), (721, 1, (3, 1)));
    }

    #[test]
    fn output_is_the_same_for_any_thread_count() {
        let big: Vec<u8> = (0..800_000u32).flat_map(|i| (i / 7).to_le_bytes()).collect();
        let mut entries = stream();
        entries.push(file("big.bin", 0o644, &big));
        let outputs: Vec<Vec<u8>> = [1, 2, 4]
            .into_iter()
            .map(|threads| {
                let dir = TempDir::new().unwrap();
                let gzip = PgzipOptions {
                    threads,
                    ..PgzipOptions::default()
                };
                build(dir.path(), &entries, gzip).unwrap();
                read(&dir, "img-initrd.img")
            })
            .collect();
        assert_eq!(outputs[0], outputs[1]);
        assert_eq!(outputs[0], outputs[2]);
        let entries = gunzip_cpio(&outputs[0][UCODE.len()..]);
        assert_eq!(entries.last().unwrap().data, big);
    }

    #[test]
    fn ucode_arriving_after_the_archive_started_is_still_the_prefix() {
        let dir = TempDir::new().unwrap();
        let mut entries = stream();
        let ucode = entries.remove(3);
        entries.push(ucode);
        build(dir.path(), &entries, PgzipOptions::default()).unwrap();
        let initrd = read(&dir, "img-initrd.img");
        assert_eq!(&initrd[..UCODE.len()], UCODE);
        assert_eq!(listing(&initrd[UCODE.len()..]), expected_listing());
        assert_eq!(dir_names(dir.path()).len(), 3, "no temporary file left behind");
    }

    #[test]
    fn a_later_ucode_or_kernel_replaces_an_earlier_one() {
        let dir = TempDir::new().unwrap();
        let mut entries = stream();
        entries.insert(4, file(UCODE_ENTRY, 0o644, b"NEW"));
        entries.push(file(KERNEL_ENTRY, 0o644, b"K2"));
        // And a third microcode after the archive started, replacing the inline one.
        entries.push(file(UCODE_ENTRY, 0o644, b"NEWEST"));
        build(dir.path(), &entries, PgzipOptions::default()).unwrap();
        assert_eq!(read(&dir, "img-kernel"), b"K2");
        let initrd = read(&dir, "img-initrd.img");
        assert_eq!(&initrd[..6], b"NEWEST");
        assert_eq!(listing(&initrd[6..]), expected_listing());
    }

    #[test]
    fn no_ucode_means_a_plain_gzip_initrd() {
        let dir = TempDir::new().unwrap();
        let entries: Vec<_> = stream().into_iter().filter(|(h, _)| h.name != UCODE_ENTRY).collect();
        build(dir.path(), &entries, PgzipOptions::default()).unwrap();
        let initrd = read(&dir, "img-initrd.img");
        assert_eq!(initrd[..2], [0x1f, 0x8b]);
        assert_eq!(listing(&initrd), expected_listing());
    }

    #[test]
    fn empty_cmdline_and_missing_kernel_remove_stale_files() {
        let dir = TempDir::new().unwrap();
        std::fs::write(dir.path().join("img-cmdline"), "old").unwrap();
        std::fs::write(dir.path().join("img-kernel"), "old").unwrap();
        let entries = vec![file(CMDLINE_ENTRY, 0o644, b""), file("etc/motd", 0o644, b"hi")];
        build(dir.path(), &entries, PgzipOptions::default()).unwrap();
        assert_eq!(dir_names(dir.path()), ["img-initrd.img"]);
    }

    #[test]
    fn empty_stream_gives_an_empty_archive() {
        let dir = TempDir::new().unwrap();
        build(dir.path(), &[], PgzipOptions::default()).unwrap();
        assert_eq!(dir_names(dir.path()), ["img-initrd.img"]);
        assert!(gunzip_cpio(&read(&dir, "img-initrd.img")).is_empty());
    }

    #[test]
    fn dropping_without_finish_keeps_old_outputs_and_leaves_nothing() {
        let dir = TempDir::new().unwrap();
        for name in ["img-kernel", "img-initrd.img", "img-cmdline"] {
            std::fs::write(dir.path().join(name), "old").unwrap();
        }
        let mut sink = KernelInitrd::new(dir.path(), "img", PgzipOptions::default()).unwrap();
        feed(&mut sink, &stream()).unwrap();
        drop(sink);
        assert_eq!(dir_names(dir.path()), ["img-cmdline", "img-initrd.img", "img-kernel"]);
        for name in ["img-kernel", "img-initrd.img", "img-cmdline"] {
            assert_eq!(read(&dir, name), b"old");
        }
    }

    #[test]
    fn entry_data_must_match_the_header_size() {
        let dir = TempDir::new().unwrap();
        let mut sink = KernelInitrd::new(dir.path(), "img", PgzipOptions::default()).unwrap();
        let (header, _) = file("etc/motd", 0o644, b"hello");
        sink.write_header(&header).unwrap();
        sink.write_data(b"hel").unwrap();
        let err = sink.write_header(&header).unwrap_err();
        assert_eq!(err.to_string(), "entry etc/motd: 2 bytes of data missing");
        let err = sink.write_data(b"lo!").unwrap_err();
        assert_eq!(err.to_string(), "entry etc/motd: more data than the size in its header");
        drop(sink);

        let (kernel, _) = file(KERNEL_ENTRY, 0o644, b"k");
        let mut sink = KernelInitrd::new(dir.path(), "img", PgzipOptions::default()).unwrap();
        sink.write_header(&kernel).unwrap();
        assert!(sink.finish().is_err());
        drop(sink);
        assert!(dir_names(dir.path()).is_empty());
    }

    #[test]
    fn unsupported_entries_fail_the_build() {
        let dir = TempDir::new().unwrap();
        let entries = vec![node("x", EntryKind::Other(b'V'), 0o644, "")];
        let err = build(dir.path(), &entries, PgzipOptions::default()).unwrap_err();
        assert!(err.to_string().contains("entry x: tar type 'V'"), "{err}");
        assert!(dir_names(dir.path()).is_empty());
    }

    #[test]
    fn finish_twice_is_an_error() {
        let dir = TempDir::new().unwrap();
        let mut sink = KernelInitrd::new(dir.path(), "img", PgzipOptions::default()).unwrap();
        sink.finish().unwrap();
        let err = sink.finish().unwrap_err();
        assert!(err.to_string().contains("already finished"));
        assert!(sink
            .write_header(&Header::new("a", EntryKind::Directory, 0o755))
            .is_err());
    }

    #[test]
    fn a_name_with_a_directory_writes_into_that_directory() {
        let dir = TempDir::new().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let mut sink = KernelInitrd::new(dir.path(), "sub/img", PgzipOptions::default()).unwrap();
        feed(&mut sink, &stream()).unwrap();
        sink.finish().unwrap();
        assert_eq!(dir_names(dir.path()), ["sub"]);
        assert_eq!(
            dir_names(&dir.path().join("sub")),
            ["img-cmdline", "img-initrd.img", "img-kernel"]
        );
    }

    #[test]
    fn missing_directory_is_reported() {
        let dir = TempDir::new().unwrap();
        let missing = dir.path().join("nope");
        let err = KernelInitrd::new(&missing, "img", PgzipOptions::default())
            .err()
            .unwrap();
        assert!(matches!(err, OutputError::CreateTemp { .. }));
        assert!(err.to_string().contains("nope"));
    }
}
