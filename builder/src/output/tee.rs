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
        self.sinks.iter_mut().try_for_each(|sink| sink.write_header(header))
    }

    fn write_data(&mut self, data: &[u8]) -> io::Result<()> {
        self.sinks.iter_mut().try_for_each(|sink| sink.write_data(data))
    }

    fn finish(&mut self) -> io::Result<()> {
        self.sinks.iter_mut().try_for_each(|sink| sink.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{feed, file, RecordingSink};
    use super::*;

    #[test]
    fn every_sink_sees_every_call() {
        let (a, b) = (RecordingSink::default(), RecordingSink::default());
        let mut tee = Tee::new(vec![Box::new(a.clone()), Box::new(b.clone())]);
        let entries = vec![file("a", 0o644, b"hello"), file("b", 0o600, b"")];
        feed(&mut tee, &entries).unwrap();
        tee.finish().unwrap();
        for sink in [a, b] {
            assert_eq!(sink.entries(), entries);
            assert!(sink.finished());
        }
    }

    #[test]
    fn the_first_error_stops_the_stream() {
        let failing = RecordingSink {
            fail_after: Some(1),
            ..RecordingSink::default()
        };
        let after = RecordingSink::default();
        let mut tee = Tee::new(vec![Box::new(failing), Box::new(after.clone())]);
        let entries = vec![file("a", 0o644, b"x"), file("b", 0o644, b"y")];
        let err = feed(&mut tee, &entries).unwrap_err();
        assert_eq!(err.to_string(), "recording sink failure");
        assert_eq!(after.entries().len(), 1, "the failing sink came first");
        assert!(tee.finish().is_err());
        assert!(!after.finished());
    }
}
