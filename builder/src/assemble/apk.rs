//! The union of the apk package databases of several init images.
//!
//! Init images are unpacked over each other, so only the last `lib/apk/db/installed` would survive;
//! LinuxKit appends one merged database after the last init image instead, and so do we.

use std::io;

use crate::tar::{EntryKind, EntrySink, Header};

use super::write_bytes;

/// Path of the apk database in an image.
const APK_DB: &str = "lib/apk/db/installed";

/// A sink wrapper that records every apk database written through it.
pub(super) struct ApkMerger<'a> {
    inner: &'a mut dyn EntrySink,
    databases: Vec<Vec<u8>>,
    capturing: bool,
}

impl<'a> ApkMerger<'a> {
    pub fn new(inner: &'a mut dyn EntrySink) -> ApkMerger<'a> {
        ApkMerger {
            inner,
            databases: Vec::new(),
            capturing: false,
        }
    }

    /// Writes the merged database when more than one init image had one: every database followed by
    /// two newlines, mode 0644, mtime 0, as LinuxKit writes it.
    pub fn write_merged_db(self) -> io::Result<()> {
        if self.databases.len() < 2 {
            return Ok(());
        }
        let mut merged = Vec::new();
        for db in &self.databases {
            merged.extend_from_slice(db);
            merged.extend_from_slice(b"\n\n");
        }
        let mut header = Header::new(APK_DB, EntryKind::Regular, 0o644).with_origin("LINUXKIT.apkinit", "init");
        header.mtime = 0;
        header.size = merged.len() as u64;
        write_bytes(self.inner, &header, &merged)
    }
}

impl EntrySink for ApkMerger<'_> {
    fn write_header(&mut self, header: &Header) -> io::Result<()> {
        self.capturing = header.name == APK_DB;
        if self.capturing {
            self.databases.push(Vec::new());
        }
        self.inner.write_header(header)
    }

    fn write_data(&mut self, data: &[u8]) -> io::Result<()> {
        if self.capturing {
            if let Some(db) = self.databases.last_mut() {
                db.extend_from_slice(data);
            }
        }
        self.inner.write_data(data)
    }

    fn finish(&mut self) -> io::Result<()> {
        self.inner.finish()
    }
}
