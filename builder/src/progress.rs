//! Progress of the long operations (pulls and builds), told to whoever wants to show it.
//!
//! The library only reports; deciding whether and how to show progress (a terminal, a log, a
//! plugin's status) is the caller's, which passes a [`Progress`] in
//! [`crate::image::PullOptions::progress`] or [`crate::BuildOptions::progress`].

use std::fmt::Debug;
use std::sync::Arc;

/// Receives progress as it happens. The calls come from the threads doing the work, between
/// their reads and writes: an implementation returns quickly and cannot fail the work. Every
/// method does nothing unless implemented.
pub trait Progress: Send + Sync + Debug {
    /// The pull of `image` starts downloading `bytes`: the blobs the cache lacks, each blob that
    /// several images of one pull share counted for only one of them. Not called for an image
    /// whose blobs are all cached.
    fn pull_started(&self, _image: &str, _bytes: u64) {}
    /// `bytes` more of a blob of `image` arrived.
    fn pull_bytes(&self, _image: &str, _bytes: u64) {}
    /// The downloads of `image` ended, whether all of them succeeded or not.
    fn pull_finished(&self, _image: &str) {}
    /// The build now writes the filesystem of `image` into the outputs.
    fn build_image(&self, _image: &str) {}
    /// `bytes` more of the image's file contents went to the outputs (before any compression).
    fn build_bytes(&self, _bytes: u64) {}
}

/// Progress nobody is shown.
#[derive(Debug)]
struct Silent;

impl Progress for Silent {}

/// The configured progress, or one that ignores everything.
pub(crate) fn or_silent(progress: &Option<Arc<dyn Progress>>) -> &dyn Progress {
    match progress {
        Some(progress) => progress.as_ref(),
        None => &Silent,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::Mutex;

    /// One call to a [`Progress`].
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(crate) enum Seen {
        Started(String, u64),
        Bytes(String, u64),
        Finished(String),
        Image(String),
        Written(u64),
    }

    /// Remembers every call, in order.
    #[derive(Debug, Default)]
    pub(crate) struct Recorder(Mutex<Vec<Seen>>);

    impl Recorder {
        pub(crate) fn seen(&self) -> Vec<Seen> {
            self.0.lock().unwrap().clone()
        }

        /// The images whose pull started, with the bytes announced, in order.
        pub(crate) fn started(&self) -> Vec<(String, u64)> {
            let seen = self.seen();
            seen.iter()
                .filter_map(|s| match s {
                    Seen::Started(image, bytes) => Some((image.clone(), *bytes)),
                    _ => None,
                })
                .collect()
        }

        /// The bytes told to have arrived for `image`.
        pub(crate) fn arrived(&self, image: &str) -> u64 {
            let seen = self.seen();
            seen.iter()
                .map(|s| match s {
                    Seen::Bytes(i, bytes) if i == image => *bytes,
                    _ => 0,
                })
                .sum()
        }

        /// The images whose pull finished, in order.
        pub(crate) fn finished(&self) -> Vec<String> {
            let seen = self.seen();
            seen.iter()
                .filter_map(|s| match s {
                    Seen::Finished(image) => Some(image.clone()),
                    _ => None,
                })
                .collect()
        }

        fn push(&self, seen: Seen) {
            self.0.lock().unwrap().push(seen);
        }
    }

    impl Progress for Recorder {
        fn pull_started(&self, image: &str, bytes: u64) {
            self.push(Seen::Started(image.into(), bytes));
        }
        fn pull_bytes(&self, image: &str, bytes: u64) {
            self.push(Seen::Bytes(image.into(), bytes));
        }
        fn pull_finished(&self, image: &str) {
            self.push(Seen::Finished(image.into()));
        }
        fn build_image(&self, image: &str) {
            self.push(Seen::Image(image.into()));
        }
        fn build_bytes(&self, bytes: u64) {
            self.push(Seen::Written(bytes));
        }
    }
}
