//! [`Spec`]: a spec that loading checked, with the host directories its relative paths lead to.

use std::ops::Deref;
use std::path::PathBuf;

use super::metadata::{metadata, MetadataFormat};
use super::model::Moby;

/// Where the host paths a spec names lead: `files[].source` and `@pkg:` directories.
///
/// The library never looks at the process's working directory or `HOME` for them: a caller
/// that wants LinuxKit's behaviour (paths relative to where the command runs, `~/` in the
/// user's home) passes those.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPaths {
    /// Relative `source:` paths, and the directories of the spec files that `@pkg:` templates are
    /// relative to, are joined to this directory.
    pub base_dir: PathBuf,
    /// `~/` at the start of a `source:` stands for this directory; without one, `~` is an
    /// ordinary directory name under `base_dir`.
    pub home_dir: Option<PathBuf>,
}

impl HostPaths {
    /// The host file a `files[].source` names.
    pub(crate) fn source_path(&self, source: &str) -> PathBuf {
        match (source.strip_prefix("~/"), &self.home_dir) {
            (Some(rest), Some(home)) => home.join(rest),
            _ => self.base_dir.join(source),
        }
    }
}

/// A spec read from its files and checked by [`super::load()`], the only way to make one: what
/// reaches a build has passed every check of the loader. It reads as the merged [`Moby`]
/// model it holds (through `Deref`).
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    moby: Moby,
    paths: HostPaths,
}

impl Spec {
    /// Wraps a model the loader checked.
    pub(super) fn checked(moby: Moby, paths: HostPaths) -> Spec {
        Spec { moby, paths }
    }

    /// A spec from a model made by hand, for tests of what consumes specs.
    #[cfg(test)]
    pub(crate) fn unchecked_for_tests(moby: Moby, paths: HostPaths) -> Spec {
        Spec { moby, paths }
    }

    /// Where the spec's host paths lead.
    pub fn paths(&self) -> &HostPaths {
        &self.paths
    }

    /// The merged spec written back as LinuxKit writes `files[].metadata` (and `--dry-run` shows
    /// it).
    pub fn metadata(&self, format: MetadataFormat) -> Vec<u8> {
        metadata(&self.moby, format)
    }
}

impl Deref for Spec {
    type Target = Moby;

    fn deref(&self) -> &Moby {
        &self.moby
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn sources_lead_under_the_base_or_the_home_directory() {
        let paths = HostPaths {
            base_dir: PathBuf::from("/work"),
            home_dir: Some(PathBuf::from("/home/me")),
        };
        assert_eq!(paths.source_path("etc/motd"), Path::new("/work/etc/motd"));
        assert_eq!(paths.source_path("/etc/motd"), Path::new("/etc/motd"));
        assert_eq!(paths.source_path("~/key.pub"), Path::new("/home/me/key.pub"));
        let homeless = HostPaths {
            home_dir: None,
            ..paths
        };
        assert_eq!(homeless.source_path("~/key.pub"), Path::new("/work/~/key.pub"));
    }
}
