//! Several outputs from one build: every entry goes to every sink.

use std::io;

use crate::tar::Header;
use crate::EntrySink;

/// Forwards every call to each of its sinks, in order; the first error stops the build.
pub struct Tee {
    sinks: Vec<Box<dyn EntrySink + Send>>,
}

impl Tee {
    /// Fans out to `sinks`.
    pub fn new(sinks: Vec<Box<dyn EntrySink + Send>>) -> Tee {
        Tee { sinks }
    }
}

impl EntrySink for Tee {
    fn write_header(&mut self, header: &Header) -> io::Result<()> {
        self.sinks
            .iter_mut()
            .try_for_each(|sink| sink.write_header(header))
    }

    fn write_data(&mut self, data: &[u8]) -> io::Result<()> {
        self.sinks
            .iter_mut()
            .try_for_each(|sink| sink.write_data(data))
    }

    fn finish(&mut self) -> io::Result<()> {
        self.sinks.iter_mut().try_for_each(|sink| sink.finish())
    }
}
