//! Tags on GCE instances. Metadata holds them exactly (one JSON item, with the logical ID, the
//! spec digest and the image), so that an instance is described from the API alone; labels
//! carry them too, made to fit label rules, for people filtering in the console or gcloud, and
//! `created-by=moby` marks the instances moby lists.

use std::collections::BTreeMap;

use crate::instance::Tags;

/// The label every instance moby creates carries, and lists by.
pub const CREATED_BY: (&str, &str) = ("created-by", "moby");
/// Metadata: the tags, as a JSON object.
pub const TAGS_KEY: &str = "moby-tags";
/// Metadata: the logical ID.
pub const LOGICAL_ID_KEY: &str = "moby-logical-id";
/// Metadata: the digest of the spec the image was built from.
pub const SPEC_DIGEST_KEY: &str = "moby-spec-digest";
/// Metadata: the image the instance boots.
pub const IMAGE_KEY: &str = "moby-image";
/// Metadata: the userdata, where LinuxKit's metadata package (and ours) reads it.
pub const USER_DATA_KEY: &str = "user-data";

/// Labels per resource, at most (Compute Engine's limit).
const MAX_LABELS: usize = 64;

/// The labels for `tags`: keys and values lower-cased, characters labels cannot hold replaced by
/// `_`, cut to 63; a key that does not start with a letter gets `t` in front. Two tags that come
/// out as one label key keep the first; past the label limit, tags are in metadata only.
pub fn labels(tags: &Tags) -> BTreeMap<String, String> {
    let mut out = BTreeMap::from([(CREATED_BY.0.to_string(), CREATED_BY.1.to_string())]);
    for (key, value) in tags {
        if out.len() == MAX_LABELS {
            break;
        }
        let mut key = fit(key);
        if !key.starts_with(|c: char| c.is_ascii_lowercase()) {
            key = fit(&format!("t{key}"));
        }
        out.entry(key).or_insert_with(|| fit(value));
    }
    out
}

fn fit(text: &str) -> String {
    text.chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '-' | '_') => c,
            _ => '_',
        })
        .take(63)
        .collect()
}

/// The tags kept in metadata (an item that is missing or damaged is no tags).
pub fn from_metadata(value: Option<&str>) -> Tags {
    value.and_then(|v| serde_json::from_str(v).ok()).unwrap_or_default()
}

/// The metadata value holding `tags`.
pub fn to_metadata(tags: &Tags) -> String {
    serde_json::to_string(tags).unwrap_or_else(|_| "{}".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_become_valid_labels_and_round_trip_through_metadata() {
        let tags: Tags = [
            ("infrakit.group".to_string(), "Workers".to_string()),
            ("infrakit.config.hash".to_string(), "ABC123=".to_string()),
            ("1st".to_string(), "x".repeat(80)),
            ("infrakit_group".to_string(), "other".to_string()),
        ]
        .into();
        let labels = labels(&tags);
        assert_eq!(labels["created-by"], "moby");
        assert_eq!(
            labels["infrakit_group"], "workers",
            "the first of two tags with one label key wins"
        );
        assert_eq!(labels["infrakit_config_hash"], "abc123_");
        assert_eq!(labels["t1st"].len(), 63);
        for (k, v) in &labels {
            assert!(k.len() <= 63 && v.len() <= 63 && k.starts_with(|c: char| c.is_ascii_lowercase()));
        }
        assert_eq!(from_metadata(Some(&to_metadata(&tags))), tags);
        assert_eq!(from_metadata(Some("not json")), Tags::new());
    }
}
