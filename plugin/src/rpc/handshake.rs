//! The handshake every InfraKit plugin answers, so that a client learns which interfaces (and
//! versions) it implements. Shapes as InfraKit's Go types marshal them (docker/infrakit):
//!
//! - `Handshake.Hello` (master, `pkg/rpc/handshake.go`): `{"Objects":{"Instance/0.6.1":[{"Name":
//!   ".","ProxyFor":""}]}}`, one key per interface encoded `Name/Version` (the current version),
//!   listing the one unnamed object (`.`) the plugin serves;
//! - `Handshake.Implements` (Feb.–Nov. 2017) and `Plugin.Implements` (before, `pkg/rpc/plugin`):
//!   `{"APIs":[{"Name":"Instance","Version":"0.5.0"},...]}`, every version answered;
//! - `Handshake.Types` (Feb.–Nov. 2017): `{"Types":{"Instance/0.5.0":["."],...}}`.
//!
//! Go marshals maps with sorted keys; `BTreeMap` does the same.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::value::{to_raw_value, RawValue};

use super::Interface;

/// The (empty) request of every handshake method: whatever params a client sends are ignored.
#[derive(Debug, Default, Deserialize)]
pub(super) struct Request {}

/// The name of the one object a plugin serves: itself, not a typed sub-plugin.
const SELF: &str = ".";

#[derive(Serialize)]
struct Hello<'a> {
    #[serde(rename = "Objects")]
    objects: BTreeMap<String, [Object<'a>; 1]>,
}

#[derive(Serialize)]
struct Object<'a> {
    #[serde(rename = "Name")]
    name: &'a str,
    #[serde(rename = "ProxyFor")]
    proxy_for: &'a str,
}

#[derive(Serialize)]
struct Implements<'a> {
    #[serde(rename = "APIs")]
    apis: Vec<Spec<'a>>,
}

#[derive(Serialize)]
struct Spec<'a> {
    #[serde(rename = "Name")]
    name: &'a str,
    #[serde(rename = "Version")]
    version: &'a str,
}

#[derive(Serialize)]
struct Types {
    #[serde(rename = "Types")]
    types: BTreeMap<String, [&'static str; 1]>,
}

/// Every handshake method with its (constant) answer for a plugin implementing `interfaces`.
pub(super) fn answers(interfaces: &[Interface]) -> Vec<(&'static str, Box<RawValue>)> {
    let hello = Hello {
        objects: interfaces
            .iter()
            .map(|interface| {
                (
                    encode(&interface.name, &interface.version),
                    [Object {
                        name: SELF,
                        proxy_for: "",
                    }],
                )
            })
            .collect(),
    };
    let apis = Implements {
        apis: interfaces
            .iter()
            .flat_map(|interface| {
                interface.versions().map(|version| Spec {
                    name: &interface.name,
                    version,
                })
            })
            .collect(),
    };
    let types = Types {
        types: interfaces
            .iter()
            .flat_map(|interface| {
                interface
                    .versions()
                    .map(|version| (encode(&interface.name, version), [SELF]))
            })
            .collect(),
    };
    let apis = json(&apis);
    vec![
        ("Handshake.Hello", json(&hello)),
        ("Handshake.Implements", apis.clone()),
        ("Handshake.Types", json(&types)),
        ("Plugin.Implements", apis),
    ]
}

/// InfraKit's `InterfaceSpec.Encode()`: `Name/Version`.
fn encode(name: &str, version: &str) -> String {
    format!("{name}/{version}")
}

/// JSON of a value made of strings and maps with string keys, which always serializes.
fn json(value: &impl Serialize) -> Box<RawValue> {
    to_raw_value(value).unwrap_or_else(|_| RawValue::NULL.to_owned())
}

#[cfg(test)]
mod tests {
    use super::answers;
    use crate::rpc::Interface;

    #[test]
    fn answers_match_infrakits_go_types_byte_for_byte() {
        let instance = Interface::new("Instance", "0.6.1").with_older_versions(["0.5.0", "0.6.0"]);
        let answers: Vec<(&str, String)> = answers(&[instance])
            .into_iter()
            .map(|(method, value)| (method, value.get().to_owned()))
            .collect();
        let apis = r#"{"APIs":[{"Name":"Instance","Version":"0.5.0"},{"Name":"Instance","Version":"0.6.0"},{"Name":"Instance","Version":"0.6.1"}]}"#;
        assert_eq!(
            answers,
            [
                (
                    "Handshake.Hello",
                    r#"{"Objects":{"Instance/0.6.1":[{"Name":".","ProxyFor":""}]}}"#.to_owned()
                ),
                ("Handshake.Implements", apis.to_owned()),
                (
                    "Handshake.Types",
                    r#"{"Types":{"Instance/0.5.0":["."],"Instance/0.6.0":["."],"Instance/0.6.1":["."]}}"#.to_owned()
                ),
                ("Plugin.Implements", apis.to_owned()),
            ]
        );
    }

    #[test]
    fn every_interface_is_announced() {
        let answers = answers(&[Interface::new("Instance", "0.6.1"), Interface::new("Metadata", "0.1.0")]);
        assert_eq!(
            answers[0].1.get(),
            r#"{"Objects":{"Instance/0.6.1":[{"Name":".","ProxyFor":""}],"Metadata/0.1.0":[{"Name":".","ProxyFor":""}]}}"#
        );
    }
}
