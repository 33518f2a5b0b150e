//! The `tar` format's destination handling: a [`TarWriter`] over a staged file (renamed into
//! place when the build succeeds) or over an [`OutputWriter`].

use std::io::{self, Write};

use super::staged::StagedFile;
use super::{OutputError, OutputWriter, TarWriter};
use crate::tar::Header;
use crate::EntrySink;

/// A destination that must be completed once the tar is fully written.
pub(crate) trait Commit: Write {
    /// Makes the written bytes final (flush, rename into place).
    fn commit(self) -> Result<(), OutputError>;
}

impl Commit for StagedFile {
    fn commit(self) -> Result<(), OutputError> {
        self.persist()
    }
}

impl Commit for OutputWriter {
    fn commit(self) -> Result<(), OutputError> {
        OutputWriter::commit(self)
    }
}

/// A tar writer whose destination is committed in [`EntrySink::finish`].
pub(crate) struct TarOutput<W: Commit> {
    tar: Option<TarWriter<W>>,
}

impl<W: Commit> TarOutput<W> {
    /// Writes a tar stream to `destination`.
    pub(crate) fn new(destination: W) -> TarOutput<W> {
        TarOutput {
            tar: Some(TarWriter::new(destination)),
        }
    }

    fn tar(&mut self) -> io::Result<&mut TarWriter<W>> {
        self.tar.as_mut().ok_or_else(|| OutputError::Finished.into())
    }
}

impl<W: Commit> EntrySink for TarOutput<W> {
    fn write_header(&mut self, header: &Header) -> io::Result<()> {
        self.tar()?.write_header(header)
    }

    fn write_data(&mut self, data: &[u8]) -> io::Result<()> {
        self.tar()?.write_data(data)
    }

    fn finish(&mut self) -> io::Result<()> {
        let mut tar = self.tar.take().ok_or(OutputError::Finished)?;
        tar.finish()?;
        Ok(tar.into_inner().commit()?)
    }
}
