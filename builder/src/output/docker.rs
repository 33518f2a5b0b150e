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
