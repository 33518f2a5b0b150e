//! Tar reading and writing.

use std::io;

/// A consumer of tar entries: a header, then exactly `header.size` bytes of data through
/// [`EntrySink::write_data`] (possibly in several calls), then the next header.
pub trait EntrySink {
    /// Starts a new entry.
    fn write_header(&mut self, header: &Header) -> io::Result<()>;
    /// Appends data to the current entry.
    fn write_data(&mut self, data: &[u8]) -> io::Result<()>;
    /// Ends the stream (writes trailers, flushes, renames temporary files into place).
    fn finish(&mut self) -> io::Result<()>;
}

/// Placeholder until the tar module lands.
#[derive(Debug, Clone, Default)]
pub struct Header;
