//! The crate's one error: what every entry point at the crate root returns. Each module keeps its
//! own error type, wrapped here with its message unchanged.

use crate::assemble::BuildError;
use crate::image::{DamagedBlob, ImageError};
use crate::output::OutputError;
use crate::pkg::PkgError;
use crate::reference::ReferenceError;
use crate::spec::{ReadError, SpecErrors};

/// Why an operation of the builder failed. The message names the file, field, image or blob
/// concerned; [`Error::damaged_blob`] and [`Error::is_package_lock`] tell apart the cases a
/// caller can fix in its own words.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct Error(Box<Kind>);

/// The module errors, each with its message.
#[derive(Debug, thiserror::Error)]
enum Kind {
    /// A spec file could not be read.
    #[error(transparent)]
    ReadSpec(ReadError),
    /// A spec is invalid: every problem, with its file, line and column.
    #[error("invalid spec:\n{0}")]
    Spec(SpecErrors),
    /// Building the image failed.
    #[error(transparent)]
    Build(BuildError),
    /// The image cache, a pull or a push failed.
    #[error(transparent)]
    Image(ImageError),
    /// A package could not be read, locked or built.
    #[error(transparent)]
    Package(PkgError),
    /// An output could not be prepared or written.
    #[error(transparent)]
    Output(OutputError),
    /// A string is not an image reference.
    #[error(transparent)]
    Reference(ReferenceError),
    /// The canonical form of a spec could not be written (a bug: the model always serialises).
    #[error("cannot compute the digest of the spec: {0}")]
    Digest(serde_json::Error),
}

impl Error {
    /// The canonical form of a spec could not be written.
    pub(crate) fn digest(error: serde_json::Error) -> Error {
        Error(Box::new(Kind::Digest(error)))
    }

    /// The damaged blob of the image cache behind this error, if that is its cause: the image
    /// comes back whole once it is removed from the cache or pulled again.
    pub fn damaged_blob(&self) -> Option<&DamagedBlob> {
        match &*self.0 {
            Kind::Build(BuildError::Image(image)) => DamagedBlob::find(&**image),
            Kind::Image(image) => DamagedBlob::find(image),
            _ => DamagedBlob::find(self),
        }
    }

    /// Whether a package's `debs.lock` is missing, unreadable or does not match its `build.yml`:
    /// writing the lock again ([`crate::update_lock`]) pins what the package needs.
    pub fn is_package_lock(&self) -> bool {
        matches!(&*self.0, Kind::Package(PkgError::Lock { .. }))
    }

    /// The build error inside, if the error is one.
    #[cfg(test)]
    pub(crate) fn build_error(&self) -> Option<&BuildError> {
        match &*self.0 {
            Kind::Build(build) => Some(build),
            _ => None,
        }
    }
}

/// `From` for each module error.
macro_rules! from_module_errors {
    ($($variant:ident($error:ty)),* $(,)?) => {
        $(
            impl From<$error> for Error {
                fn from(error: $error) -> Error {
                    Error(Box::new(Kind::$variant(error)))
                }
            }
        )*
    };
}

from_module_errors!(
    ReadSpec(ReadError),
    Spec(SpecErrors),
    Build(BuildError),
    Image(ImageError),
    Package(PkgError),
    Output(OutputError),
    Reference(ReferenceError),
);

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn damage() -> DamagedBlob {
        DamagedBlob {
            image: "example.org/x:1".into(),
            digest: "sha256:00".into(),
            problem: crate::image::BlobDamage::Size { expected: 2, actual: 1 },
            path: PathBuf::from("/cache/blobs/sha256/00"),
            removed: true,
        }
    }

    #[test]
    fn messages_are_the_module_errors_own() {
        let image = ImageError::CorruptBlob(damage());
        let text = image.to_string();
        assert_eq!(Error::from(image).to_string(), text);
        let reference = ReferenceError::Empty;
        assert_eq!(Error::from(reference).to_string(), "empty image reference");
    }

    #[test]
    fn a_damaged_blob_is_found_wherever_it_travels() {
        let direct = Error::from(ImageError::CorruptBlob(damage()));
        assert_eq!(direct.damaged_blob(), Some(&damage()));
        let in_build = Error::from(BuildError::from(ImageError::CorruptBlob(damage())));
        assert_eq!(in_build.damaged_blob(), Some(&damage()));
        let in_write = Error::from(BuildError::Write(std::io::Error::other(damage())));
        assert_eq!(in_write.damaged_blob(), Some(&damage()));
        assert_eq!(Error::from(ReferenceError::Empty).damaged_blob(), None);
    }

    #[test]
    fn a_lock_problem_is_told_apart() {
        let lock = PkgError::Lock {
            file: PathBuf::from("pkg/debs.lock"),
            line: 0,
            problem: "missing".into(),
        };
        assert!(Error::from(lock).is_package_lock());
        assert!(!Error::from(ReferenceError::Empty).is_package_lock());
    }
}
