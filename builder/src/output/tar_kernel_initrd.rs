//! The `tar-kernel-initrd` format: `NAME-initrd.tar` holding `kernel`, `initrd.img`, `cmdline`
//! and `ucode.cpio`, as LinuxKit's `outputKernelInitrdTarball` writes it.
//!
//! The split is the one of `kernel+initrd` (see [`super::kernel_initrd`]), except that the
//! microcode stays a separate member instead of prefixing `initrd.img`. Members are 0644, owned by
//! root, with LinuxKit's fixed mtime, in that order, and empty ones are left out (`initrd.img` is
//! never empty). Their sizes are only known at the end, so the pieces are staged in temporary
//! files and copied into the tar in [`EntrySink::finish`].

use std::io;
use std::path::Path;

use super::kernel_initrd::BootSplitter;
use super::pgzip::PgzipOptions;
use super::staged::StagedFile;
use super::OutputError;
use crate::tar::{EntryKind, Header};
use crate::EntrySink;

/// The `tar-kernel-initrd` sink: splits the stream, then writes the pieces into the tar sink `S`.
pub struct TarKernelInitrd<S: EntrySink> {
    splitter: Option<BootSplitter>,
    tar: S,
}

impl<S: EntrySink> TarKernelInitrd<S> {
    /// Splits into temporary files in `dir` (named after `NAME-initrd.tar`, the only file this
    /// format writes) and writes the tarball into `tar`, which must be an empty tar writer.
    pub fn new(dir: &Path, name: &str, gzip: PgzipOptions, tar: S) -> Result<TarKernelInitrd<S>, OutputError> {
        let pieces = dir.join(format!("{name}-initrd.tar"));
        Ok(TarKernelInitrd {
            splitter: Some(BootSplitter::new(&pieces, gzip, false)?),
            tar,
        })
    }

    fn splitter(&mut self) -> io::Result<&mut BootSplitter> {
        self.splitter.as_mut().ok_or_else(|| OutputError::Finished.into())
    }

    /// Appends one staged piece as a tar member, unless it is empty.
    fn append(&mut self, member: &str, file: Option<StagedFile>) -> io::Result<()> {
        let Some(mut file) = file else {
            return Ok(());
        };
        if file.len() == 0 {
            return Ok(());
        }
        let mut header = Header::new(member, EntryKind::Regular, 0o644);
        header.size = file.len();
        self.tar.write_header(&header)?;
        let tar = &mut self.tar;
        file.for_each_chunk(0, |chunk| tar.write_data(chunk))?;
        Ok(())
    }
}

impl<S: EntrySink> EntrySink for TarKernelInitrd<S> {
    fn write_header(&mut self, header: &Header) -> io::Result<()> {
        self.splitter()?.write_header(header)
    }

    fn write_data(&mut self, data: &[u8]) -> io::Result<()> {
        self.splitter()?.write_data(data)
    }

    fn finish(&mut self) -> io::Result<()> {
        let splitter = self.splitter.take().ok_or(OutputError::Finished)?;
        let parts = splitter.finish()?;
        self.append("kernel", parts.kernel)?;
        self.append("initrd.img", Some(parts.initrd))?;
        self.append("cmdline", parts.cmdline)?;
        self.append("ucode.cpio", parts.ucode)?;
        self.tar.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::super::kernel_initrd::{CMDLINE_ENTRY, KERNEL_ENTRY, UCODE_ENTRY};
    use super::super::testing::{dir_names, feed, file, gunzip_cpio, node, RecordingSink};
    use super::*;
    use crate::tar::DEFAULT_MTIME;
    use tempfile::TempDir;

    fn stream(cmdline: &[u8]) -> Vec<(Header, Vec<u8>)> {
        vec![
            node("boot", EntryKind::Directory, 0o755, ""),
            file(CMDLINE_ENTRY, 0o644, cmdline),
            file(KERNEL_ENTRY, 0o600, b"KERNEL"),
            file(UCODE_ENTRY, 0o644, b"UCODE"),
            file("init", 0o755, b"#!/bin/sh\n"),
            node("etc", EntryKind::Directory, 0o755, ""),
        ]
    }

    #[test]
    fn members_follow_linuxkit_order_and_headers() {
        let dir = TempDir::new().unwrap();
        let tar = RecordingSink::default();
        let mut sink = TarKernelInitrd::new(dir.path(), "img", PgzipOptions::default(), tar.clone()).unwrap();
        feed(&mut sink, &stream(b"console=ttyS0")).unwrap();
        assert!(!tar.finished());
        sink.finish().unwrap();

        assert!(tar.finished());
        let entries = tar.entries();
        let names: Vec<&str> = entries.iter().map(|(h, _)| h.name.as_str()).collect();
        assert_eq!(names, ["kernel", "initrd.img", "cmdline", "ucode.cpio"]);
        for (header, data) in &entries {
            assert_eq!(header.kind, EntryKind::Regular);
            assert_eq!((header.mode, header.uid, header.gid), (0o644, 0, 0));
            assert_eq!(header.mtime, DEFAULT_MTIME);
            assert!(header.pax.is_empty());
            assert_eq!(header.size, data.len() as u64);
        }
        assert_eq!(entries[0].1, b"KERNEL");
        assert_eq!(entries[2].1, b"console=ttyS0");
        assert_eq!(entries[3].1, b"UCODE");
        // The initrd is the bare archive; the microcode is its own member.
        let cpio = gunzip_cpio(&entries[1].1);
        let names: Vec<&str> = cpio.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["init", "etc"]);
        assert!(dir_names(dir.path()).is_empty(), "temporary files removed");
    }

    #[test]
    fn empty_pieces_are_left_out() {
        let dir = TempDir::new().unwrap();
        let tar = RecordingSink::default();
        let mut sink = TarKernelInitrd::new(dir.path(), "img", PgzipOptions::default(), tar.clone()).unwrap();
        let entries: Vec<_> = stream(b"")
            .into_iter()
            .filter(|(h, _)| h.name != UCODE_ENTRY && h.name != KERNEL_ENTRY)
            .collect();
        feed(&mut sink, &entries).unwrap();
        sink.finish().unwrap();
        let names: Vec<String> = tar.entries().into_iter().map(|(h, _)| h.name).collect();
        assert_eq!(names, ["initrd.img"]);
    }

    #[test]
    fn tar_errors_are_passed_on() {
        let dir = TempDir::new().unwrap();
        let tar = RecordingSink {
            fail_after: Some(1),
            ..RecordingSink::default()
        };
        let mut sink = TarKernelInitrd::new(dir.path(), "img", PgzipOptions::default(), tar).unwrap();
        feed(&mut sink, &stream(b"x")).unwrap();
        let err = sink.finish().unwrap_err();
        assert_eq!(err.to_string(), "recording sink failure");
        drop(sink);
        assert!(dir_names(dir.path()).is_empty());
    }
}
