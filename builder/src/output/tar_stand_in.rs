//! A stand-in for `crate::tar::TarWriter` (being written elsewhere) so that the tests of this
//! module compile and run on their own: it writes each entry's name and data, enough to check
//! that entries reach the destination. Delete it once the real writer is available.

use std::io::{self, Write};

use crate::tar::Header;
use crate::EntrySink;

/// Writes `name\n` + data per entry and `END\n` at the end.
pub(crate) struct TarWriter<W: Write> {
    inner: W,
}

impl<W: Write> TarWriter<W> {
    pub(crate) fn new(inner: W) -> TarWriter<W> {
        TarWriter { inner }
    }

    pub(crate) fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: Write> EntrySink for TarWriter<W> {
    fn write_header(&mut self, header: &Header) -> io::Result<()> {
        writeln!(self.inner, "{}", header.name)
    }

    fn write_data(&mut self, data: &[u8]) -> io::Result<()> {
        self.inner.write_all(data)
    }

    fn finish(&mut self) -> io::Result<()> {
        self.inner.write_all(b"END\n")?;
        self.inner.flush()
    }
}
