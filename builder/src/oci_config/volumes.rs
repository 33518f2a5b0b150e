//! Named volumes as seen by container binds and mounts.

use std::collections::HashMap;

use crate::spec::model::Moby;

/// Where every volume lives in the image.
const VOLUMES_DIR: &str = "/containers/volumes";

/// The volumes a spec declares: name -> read-only. A bind or mount whose source does not start
/// with `/` names one of them and is rewritten to its merged directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Volumes {
    readonly: HashMap<String, bool>,
}

impl Volumes {
    /// The volumes of a spec (a name declared twice keeps its later declaration).
    pub fn from_moby(moby: &Moby) -> Volumes {
        Volumes {
            readonly: moby.volumes.iter().map(|v| (v.name.clone(), v.readonly)).collect(),
        }
    }

    /// Whether the volume is read-only, or `None` when no volume has this name.
    pub fn readonly(&self, name: &str) -> Option<bool> {
        self.readonly.get(name).copied()
    }

    /// The path a container binds to use a volume: `/containers/volumes/<name>/merged`.
    pub fn merged_dir(name: &str) -> String {
        format!("{VOLUMES_DIR}/{name}/merged")
    }

    /// The declared names, sorted, for error messages.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.readonly.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }
}

/// Whether mount options make a mount read-only: the first of `ro`/`rw` decides, none means
/// read-write (the rule LinuxKit applies to mounts of read-only volumes).
pub(crate) fn options_are_readonly<'a>(options: impl IntoIterator<Item = &'a str>) -> bool {
    options
        .into_iter()
        .find(|o| *o == "ro" || *o == "rw")
        .is_some_and(|o| o == "ro")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::model::Volume;

    #[test]
    fn knows_declared_volumes() {
        let moby = Moby {
            volumes: vec![
                Volume {
                    name: "data".into(),
                    ..Volume::default()
                },
                Volume {
                    name: "ro".into(),
                    readonly: true,
                    ..Volume::default()
                },
            ],
            ..Moby::default()
        };
        let volumes = Volumes::from_moby(&moby);
        assert_eq!(volumes.readonly("data"), Some(false));
        assert_eq!(volumes.readonly("ro"), Some(true));
        assert_eq!(volumes.readonly("other"), None);
        assert_eq!(volumes.names(), ["data", "ro"]);
        assert_eq!(Volumes::merged_dir("data"), "/containers/volumes/data/merged");
    }

    #[test]
    fn first_of_ro_rw_decides() {
        assert!(options_are_readonly(["rbind", "ro"]));
        assert!(options_are_readonly(["ro", "rw"]));
        assert!(!options_are_readonly(["rw", "ro"]));
        assert!(!options_are_readonly(["rbind"]));
        assert!(!options_are_readonly([]));
    }
}
