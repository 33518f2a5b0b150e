//! Helpers shared by the output tests.

use std::io::{self, Read};
use std::path::Path;
use std::sync::{Arc, Mutex};

use super::cpio::tests::{parse_newc, ParsedEntry};
use crate::tar::{EntryKind, Header};
use crate::EntrySink;

/// What a [`RecordingSink`] saw.
#[derive(Debug, Default)]
pub(crate) struct Recording {
    pub entries: Vec<(Header, Vec<u8>)>,
    pub finished: bool,
}

/// A sink that records entries; clones share the recording.
#[derive(Debug, Clone, Default)]
pub(crate) struct RecordingSink {
    pub recording: Arc<Mutex<Recording>>,
    /// Fail every call once this many headers were seen.
    pub fail_after: Option<usize>,
}

impl RecordingSink {
    pub(crate) fn entries(&self) -> Vec<(Header, Vec<u8>)> {
        self.recording.lock().unwrap().entries.clone()
    }

    pub(crate) fn finished(&self) -> bool {
        self.recording.lock().unwrap().finished
    }

    fn check(&self) -> io::Result<()> {
        let seen = self.recording.lock().unwrap().entries.len();
        match self.fail_after {
            Some(limit) if seen >= limit => Err(io::Error::other("recording sink failure")),
            _ => Ok(()),
        }
    }
}

impl EntrySink for RecordingSink {
    fn write_header(&mut self, header: &Header) -> io::Result<()> {
        self.check()?;
        let mut recording = self.recording.lock().unwrap();
        recording.entries.push((header.clone(), Vec::new()));
        Ok(())
    }

    fn write_data(&mut self, data: &[u8]) -> io::Result<()> {
        let mut recording = self.recording.lock().unwrap();
        let last = recording.entries.last_mut().expect("data before header");
        last.1.extend_from_slice(data);
        Ok(())
    }

    fn finish(&mut self) -> io::Result<()> {
        self.check()?;
        self.recording.lock().unwrap().finished = true;
        Ok(())
    }
}

/// A header for a regular file holding `data`.
pub(crate) fn file(name: &str, mode: u32, data: &[u8]) -> (Header, Vec<u8>) {
    let mut header = Header::new(name, EntryKind::Regular, mode);
    header.size = data.len() as u64;
    (header, data.to_vec())
}

/// A header without data.
pub(crate) fn node(name: &str, kind: EntryKind, mode: u32, link: &str) -> (Header, Vec<u8>) {
    let mut header = Header::new(name, kind, mode);
    header.link_name = link.to_string();
    (header, Vec::new())
}

/// A small image: a kernel, `boot/cmdline` holding `cmdline` if given, and a file.
pub(crate) fn image_entries(cmdline: Option<&str>) -> Vec<(Header, Vec<u8>)> {
    let mut entries = vec![
        node("boot", EntryKind::Directory, 0o755, ""),
        file("boot/kernel", 0o644, b"KERNEL-BYTES"),
    ];
    entries.extend(cmdline.map(|cmdline| file("boot/cmdline", 0o644, cmdline.as_bytes())));
    entries.push(file("init", 0o755, b"#!/bin/init"));
    entries.push(file("etc/motd", 0o644, b"welcome"));
    entries
}

/// Writes the entries, data in pieces of 5 bytes to exercise partial writes.
pub(crate) fn feed(sink: &mut dyn EntrySink, entries: &[(Header, Vec<u8>)]) -> io::Result<()> {
    for (header, data) in entries {
        sink.write_header(header)?;
        for piece in data.chunks(5) {
            sink.write_data(piece)?;
        }
    }
    Ok(())
}

/// Decompresses a gzip stream and parses the cpio archive in it.
pub(crate) fn gunzip_cpio(gz: &[u8]) -> Vec<ParsedEntry> {
    let mut cpio = Vec::new();
    flate2::read::GzDecoder::new(gz).read_to_end(&mut cpio).unwrap();
    parse_newc(&cpio)
}

/// Sorted names of the files in `dir`.
pub(crate) fn dir_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}
