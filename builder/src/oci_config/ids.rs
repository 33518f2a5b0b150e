//! Container names as user and group ids.

use std::collections::HashMap;

use crate::spec::model::{IdRef, Moby};

/// The first id given to a container name.
const FIRST_CONTAINER_ID: u32 = 100;

/// Maps container names to the ids that `uid`, `gid` and `additionalGids` (and `files` owners) may
/// use in their place: 100, 101, ... over `onboot`, then `onshutdown`, then `services`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdMap {
    ids: HashMap<String, u32>,
}

impl IdMap {
    /// Numbers every container of the spec. A name used twice keeps the later number, as LinuxKit
    /// fills a map in that order.
    pub fn from_moby(moby: &Moby) -> IdMap {
        let names = moby
            .onboot
            .iter()
            .chain(&moby.onshutdown)
            .chain(&moby.services)
            .map(|image| image.name.as_str());
        IdMap::from_names(names)
    }

    /// Numbers the given container names in order, from 100.
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> IdMap {
        let ids = names
            .into_iter()
            .zip(FIRST_CONTAINER_ID..)
            .map(|(name, id)| (name.to_string(), id))
            .collect();
        IdMap { ids }
    }

    /// The id of a container name.
    pub fn get(&self, name: &str) -> Option<u32> {
        self.ids.get(name).copied()
    }

    /// Resolves an id reference: a number, `root` or `""` (0), or a container name. The message
    /// of the error says what was wrong, without saying where the value came from.
    pub fn resolve(&self, id: &IdRef) -> Result<u32, String> {
        match id {
            IdRef::Num(n) => {
                u32::try_from(*n).map_err(|_| format!("id {n} is out of range: ids go from 0 to {}", u32::MAX))
            }
            IdRef::Name(name) if name.is_empty() || name == "root" => Ok(0),
            IdRef::Name(name) => self.get(name).ok_or_else(|| {
                format!(
                    "no container is named {name:?}: an id is a number, \"root\" or the name of \
                     an onboot, onshutdown or services container"
                )
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::model::Image;

    fn image(name: &str) -> Image {
        Image {
            name: name.into(),
            image: "x".into(),
            ..Image::default()
        }
    }

    #[test]
    fn numbers_sections_in_order() {
        let moby = Moby {
            onboot: vec![image("a"), image("b")],
            onshutdown: vec![image("c")],
            services: vec![image("d")],
            ..Moby::default()
        };
        let ids = IdMap::from_moby(&moby);
        assert_eq!(
            ["a", "b", "c", "d"].map(|n| ids.get(n)),
            [Some(100), Some(101), Some(102), Some(103)]
        );
        assert_eq!(ids.get("e"), None);
    }

    #[test]
    fn later_duplicate_wins() {
        let ids = IdMap::from_names(["x", "y", "x"]);
        assert_eq!(ids.get("x"), Some(102));
    }

    #[test]
    fn resolves_numbers_root_and_names() {
        let ids = IdMap::from_names(["svc"]);
        assert_eq!(ids.resolve(&IdRef::Num(1000)), Ok(1000));
        assert_eq!(ids.resolve(&IdRef::Name("root".into())), Ok(0));
        assert_eq!(ids.resolve(&IdRef::Name(String::new())), Ok(0));
        assert_eq!(ids.resolve(&IdRef::Name("svc".into())), Ok(100));
        assert!(ids
            .resolve(&IdRef::Name("nobody".into()))
            .unwrap_err()
            .contains("\"nobody\""));
        assert!(ids.resolve(&IdRef::Num(-1)).is_err());
        assert!(ids.resolve(&IdRef::Num(1 << 32)).is_err());
    }
}
