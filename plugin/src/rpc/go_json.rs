//! JSON decoded into Rust types the way Go's `encoding/json` decodes into structs, which is what
//! InfraKit's Go clients expect of a plugin:
//!
//! - an object key names a struct field case-insensitively (`"properties"` fills `Properties`),
//!   an exact match winning over a case-insensitive one, the last of several keys naming the same
//!   field winning;
//! - a struct member whose value is `null` is treated as absent (Go leaves the field at its zero
//!   value): together with `#[serde(default)]` on the struct, every field is optional and nullable;
//! - an array never fills a struct (serde would fill it by position);
//! - a failure names where it happened (`Spec.Tags["infrakit.group"]: invalid type ...`).
//!
//! Map keys stay as sent (Go matches them exactly too). Enums are decoded as serde_json does,
//! without folding inside them.

use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;

use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Visitor};
use serde_json::{Map, Value};

/// A value that could not be decoded, and where in it.
#[derive(Debug)]
pub(crate) struct DecodeError {
    /// Where the failure happened: `Spec.Tags`, `Disks[1].Size`; empty for the value itself.
    path: String,
    source: serde_json::Error,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.source)
        } else {
            write!(f, "{}: {}", self.path, self.source)
        }
    }
}

impl DecodeError {
    /// The message for a value that is the member `parent` of something larger: the path joined
    /// to it (`Properties.GCP.Zone: invalid type ...`).
    pub(crate) fn under(&self, parent: &str) -> String {
        if self.path.is_empty() {
            format!("{parent}: {}", self.source)
        } else {
            format!("{parent}.{}: {}", self.path, self.source)
        }
    }
}

/// Decodes `value` into a `T` with Go's rules (see the module documentation).
pub(crate) fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, DecodeError> {
    let place = Place {
        path: String::new(),
        failed_at: Rc::new(RefCell::new(None)),
    };
    let failed_at = Rc::clone(&place.failed_at);
    T::deserialize(GoValue { value, place }).map_err(|source| DecodeError {
        path: failed_at.take().unwrap_or_default(),
        source,
    })
}

/// A value being decoded and where it is.
struct GoValue {
    value: Value,
    place: Place,
}

/// Where a value is: its path, and the slot (shared by the whole decoding) where the first, so
/// deepest, failure records its path.
struct Place {
    path: String,
    failed_at: Rc<RefCell<Option<String>>>,
}

impl Place {
    /// A member or element of the value at this place, at `path`.
    fn child(&self, value: Value, path: String) -> GoValue {
        GoValue {
            value,
            place: Place {
                path,
                failed_at: Rc::clone(&self.failed_at),
            },
        }
    }

    /// Records this place as where `result` failed, unless a deeper place already did.
    fn noted<T>(&self, result: Result<T, serde_json::Error>) -> Result<T, serde_json::Error> {
        if result.is_err() {
            let mut slot = self.failed_at.borrow_mut();
            if slot.is_none() {
                *slot = Some(self.path.clone());
            }
        }
        result
    }
}

/// How the members of an object are named in paths: struct fields after a dot, map keys quoted.
#[derive(Clone, Copy)]
enum Naming {
    Fields,
    Keys,
}

fn member_path(parent: &str, key: &str, naming: Naming) -> String {
    match naming {
        Naming::Fields if parent.is_empty() => key.to_owned(),
        Naming::Fields => format!("{parent}.{key}"),
        Naming::Keys => format!("{parent}[{key:?}]"),
    }
}

/// Go's field matching: the keys of `map` renamed to the struct field they fill (exact match
/// first, then case-insensitive), null members dropped, the last key for a field winning.
fn fold_fields(map: Map<String, Value>, fields: &'static [&'static str]) -> Vec<(String, Value)> {
    let mut members: Vec<(String, Value)> = Vec::with_capacity(map.len());
    for (key, value) in map {
        if value.is_null() {
            continue;
        }
        let name = fields
            .iter()
            .find(|field| **field == key)
            .or_else(|| fields.iter().find(|field| same_ignoring_case(field, &key)))
            .map_or(key, |field| (*field).to_owned());
        match members.iter_mut().find(|(existing, _)| *existing == name) {
            Some(member) => member.1 = value,
            None => members.push((name, value)),
        }
    }
    members
}

fn same_ignoring_case(a: &str, b: &str) -> bool {
    a.chars()
        .flat_map(char::to_lowercase)
        .eq(b.chars().flat_map(char::to_lowercase))
}

impl<'de> de::Deserializer<'de> for GoValue {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        let GoValue { value, place } = self;
        let result = match value {
            Value::Array(items) => visitor.visit_seq(Elements {
                items: items.into_iter(),
                index: 0,
                parent: &place,
            }),
            Value::Object(map) => visitor.visit_map(Members {
                members: map.into_iter().collect::<Vec<_>>().into_iter(),
                naming: Naming::Keys,
                pending: None,
                parent: &place,
            }),
            other => other.deserialize_any(visitor),
        };
        place.noted(result)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        let GoValue { value, place } = self;
        let result = match value {
            Value::Object(map) => visitor.visit_map(Members {
                members: fold_fields(map, fields).into_iter(),
                naming: Naming::Fields,
                pending: None,
                parent: &place,
            }),
            Value::Array(_) => Err(de::Error::invalid_type(de::Unexpected::Seq, &visitor)),
            other => other.deserialize_any(visitor),
        };
        place.noted(result)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        let GoValue { value, place } = self;
        place.noted(value.deserialize_enum(name, variants, visitor))
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf unit
        unit_struct seq tuple tuple_struct map identifier
    }
}

/// The members of an object, handed out as map entries whose values decode with Go's rules.
struct Members<'p> {
    members: std::vec::IntoIter<(String, Value)>,
    naming: Naming,
    pending: Option<(String, Value)>,
    parent: &'p Place,
}

impl<'de> de::MapAccess<'de> for Members<'_> {
    type Error = serde_json::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Self::Error> {
        let Some((key, value)) = self.members.next() else {
            return Ok(None);
        };
        let decoded = seed.deserialize(key.as_str().into_deserializer()).map(Some);
        self.pending = Some((key, value));
        decoded
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Self::Error> {
        let Some((key, value)) = self.pending.take() else {
            return Err(de::Error::custom("a map value was asked for before its key"));
        };
        let path = member_path(&self.parent.path, &key, self.naming);
        seed.deserialize(self.parent.child(value, path))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.members.len())
    }
}

/// The elements of an array, decoded with Go's rules.
struct Elements<'p> {
    items: std::vec::IntoIter<Value>,
    index: usize,
    parent: &'p Place,
}

impl<'de> de::SeqAccess<'de> for Elements<'_> {
    type Error = serde_json::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, Self::Error> {
        let Some(item) = self.items.next() else {
            return Ok(None);
        };
        let path = format!("{}[{}]", self.parent.path, self.index);
        self.index += 1;
        seed.deserialize(self.parent.child(item, path)).map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;
    use serde_json::json;

    use super::from_value;

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(default)]
    struct Spec {
        #[serde(rename = "ID")]
        id: Option<String>,
        #[serde(rename = "Tags")]
        tags: BTreeMap<String, String>,
        #[serde(rename = "Disks")]
        disks: Vec<Disk>,
        #[serde(rename = "Count")]
        count: u32,
    }

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(default)]
    struct Disk {
        #[serde(rename = "Size")]
        size: u64,
    }

    #[test]
    fn field_names_match_case_insensitively_at_every_depth() {
        let spec: Spec = from_value(json!({"id": "a", "TAGS": {"Group": "g"}, "disks": [{"size": 3}]})).unwrap();
        assert_eq!(spec.id.as_deref(), Some("a"));
        assert_eq!(
            spec.tags.get("Group").map(String::as_str),
            Some("g"),
            "map keys stay as sent"
        );
        assert_eq!(spec.disks, vec![Disk { size: 3 }]);
    }

    #[test]
    fn an_exact_match_wins_and_the_last_key_for_a_field_wins() {
        let spec: Spec = from_value(json!({"Count": 1, "count": 2})).unwrap();
        // serde_json's map sorts keys: "Count" then "count"; both fill Count, the last one wins.
        assert_eq!(spec.count, 2);
    }

    #[test]
    fn null_members_leave_fields_at_their_defaults() {
        let spec: Spec = from_value(json!({"ID": null, "Tags": null, "Disks": null, "Count": null})).unwrap();
        assert_eq!(spec, Spec::default());
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let spec: Spec = from_value(json!({"Count": 4, "Flavor": {"x": 1}})).unwrap();
        assert_eq!(spec.count, 4);
    }

    #[test]
    fn an_array_never_fills_a_struct() {
        let err = from_value::<Disk>(json!([7])).unwrap_err();
        assert!(err.to_string().contains("invalid type: sequence"), "{err}");
    }

    #[test]
    fn failures_name_the_field_where_they_happened() {
        let err = from_value::<Spec>(json!({"Disks": [{}, {"Size": "big"}]})).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("Disks[1].Size: invalid type: string \"big\""),
            "{err}"
        );
        let err = from_value::<Spec>(json!({"tags": {"infrakit.group": 5}})).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("Tags[\"infrakit.group\"]: invalid type: integer `5`"),
            "{err}"
        );
        let err = from_value::<Spec>(json!("x")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid type: string \"x\", expected struct Spec"),
            "{err}"
        );
    }

    #[test]
    fn opaque_values_keep_everything() {
        let value: serde_json::Value = from_value(json!({"a": [1, null, {"B": "c"}]})).unwrap();
        assert_eq!(value, json!({"a": [1, null, {"B": "c"}]}));
    }
}
