//! The `docker` format: the plain tar stream with a `Dockerfile` appended, so that
//! `docker build -` (or `docker import`) turns the tar into an image running `/bin/rc.init`.

use std::io;

use crate::tar::{EntryKind, Header};
use crate::EntrySink;

/// The Dockerfile LinuxKit appends, byte for byte.
pub const DOCKERFILE: &str = "\nFROM scratch\n\nCOPY . ./\n\nENTRYPOINT [\"/bin/rc.init\"]\n";

/// Forwards the stream to a tar sink and appends the `Dockerfile` entry before it finishes.
pub struct Docker<S: EntrySink> {
    tar: S,
}

impl<S: EntrySink> Docker<S> {
    /// Wraps the tar sink that writes the output.
    pub fn new(tar: S) -> Docker<S> {
        Docker { tar }
    }
}

impl<S: EntrySink> EntrySink for Docker<S> {
    fn write_header(&mut self, header: &Header) -> io::Result<()> {
        self.tar.write_header(header)
    }

    fn write_data(&mut self, data: &[u8]) -> io::Result<()> {
        self.tar.write_data(data)
    }

    fn finish(&mut self) -> io::Result<()> {
        // Same header as LinuxKit's: 0644, root, the generated-entry mtime, no PAX records.
        let mut header = Header::new("Dockerfile", EntryKind::Regular, 0o644);
        header.size = DOCKERFILE.len() as u64;
        self.tar.write_header(&header)?;
        self.tar.write_data(DOCKERFILE.as_bytes())?;
        self.tar.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{feed, file, node, RecordingSink};
    use super::*;
    use crate::tar::DEFAULT_MTIME;

    #[test]
    fn appends_the_dockerfile_after_the_stream() {
        let tar = RecordingSink::default();
        let mut sink = Docker::new(tar.clone());
        let entries = vec![
            node("bin", EntryKind::Directory, 0o755, ""),
            file("bin/rc.init", 0o755, b"#!/bin/sh\n"),
        ];
        feed(&mut sink, &entries).unwrap();
        sink.finish().unwrap();
        assert!(tar.finished());

        let recorded = tar.entries();
        assert_eq!(recorded[..2], entries[..]);
        let (header, data) = &recorded[2];
        assert_eq!(header.name, "Dockerfile");
        assert_eq!((header.mode, header.uid, header.gid), (0o644, 0, 0));
        assert_eq!(header.mtime, DEFAULT_MTIME);
        assert!(header.pax.is_empty());
        assert_eq!(header.size, 54);
        assert_eq!(data, b"\nFROM scratch\n\nCOPY . ./\n\nENTRYPOINT [\"/bin/rc.init\"]\n");
    }
}
