//! `GET /info/api.json`: the plugin described as InfraKit's `rpc/server` describes a Go plugin
//! (docker/infrakit `pkg/rpc/server/info.go`, types in `pkg/plugin/plugin.go`): the interfaces it
//! implements, and for each the example request and response of every method, with zero values
//! (here `Default`) as params and result, the id being the time of the request in Unix seconds,
//! as a string. Methods are sorted by name, as Go's reflection lists them; the handshake methods
//! are not listed, as in InfraKit.

use serde::Serialize;
use serde_json::value::RawValue;

use super::Interface;

/// A registered method, as the description shows it.
pub(super) struct Method {
    pub(super) name: &'static str,
    pub(super) interface: String,
    pub(super) params: Box<RawValue>,
    pub(super) result: Box<RawValue>,
}

/// Everything `/info/api.json` shows but the time.
pub(crate) struct Description {
    interfaces: Vec<(Interface, Vec<Method>)>,
}

#[derive(Serialize)]
struct Info<'a> {
    #[serde(rename = "Vendor")]
    vendor: Option<()>,
    #[serde(rename = "Implements")]
    implements: Vec<Spec<'a>>,
    #[serde(rename = "Interfaces", skip_serializing_if = "Vec::is_empty")]
    interfaces: Vec<InterfaceDescription<'a>>,
}

/// InfraKit's `spi.InterfaceSpec` as master marshals it (with the `Sub` it added in 2017).
#[derive(Serialize)]
struct Spec<'a> {
    #[serde(rename = "Name")]
    name: &'a str,
    #[serde(rename = "Version")]
    version: &'a str,
    #[serde(rename = "Sub")]
    sub: &'a str,
}

#[derive(Serialize)]
struct InterfaceDescription<'a> {
    #[serde(flatten)]
    spec: Spec<'a>,
    #[serde(rename = "Methods")]
    methods: Vec<MethodDescription<'a>>,
}

#[derive(Serialize)]
struct MethodDescription<'a> {
    #[serde(rename = "Request")]
    request: ExampleRequest<'a>,
    #[serde(rename = "Response")]
    response: ExampleResponse<'a>,
}

#[derive(Serialize)]
struct ExampleRequest<'a> {
    jsonrpc: &'static str,
    method: &'static str,
    params: &'a RawValue,
    id: &'a str,
}

#[derive(Serialize)]
struct ExampleResponse<'a> {
    result: &'a RawValue,
    id: &'a str,
}

impl<'a> Spec<'a> {
    fn of(interface: &'a Interface) -> Self {
        Spec {
            name: &interface.name,
            version: &interface.version,
            sub: "",
        }
    }
}

impl Description {
    /// The description of `interfaces` and of the `methods` registered on them.
    pub(super) fn new(interfaces: &[Interface], mut methods: Vec<Method>) -> Self {
        methods.sort_by_key(|method| method.name);
        let mut interfaces: Vec<(Interface, Vec<Method>)> = interfaces
            .iter()
            .map(|interface| (interface.clone(), Vec::new()))
            .collect();
        for method in methods {
            if let Some((_, own)) = interfaces
                .iter_mut()
                .find(|(interface, _)| interface.name == method.interface)
            {
                own.push(method);
            }
        }
        Description { interfaces }
    }

    /// The JSON document, its example ids being `unix_seconds`.
    pub(crate) fn document(&self, unix_seconds: u64) -> Vec<u8> {
        let id = unix_seconds.to_string();
        let info = Info {
            vendor: None,
            implements: self
                .interfaces
                .iter()
                .map(|(interface, _)| Spec::of(interface))
                .collect(),
            interfaces: self
                .interfaces
                .iter()
                .map(|(interface, methods)| InterfaceDescription {
                    spec: Spec::of(interface),
                    methods: methods
                        .iter()
                        .map(|method| MethodDescription {
                            request: ExampleRequest {
                                jsonrpc: "2.0",
                                method: method.name,
                                params: &method.params,
                                id: &id,
                            },
                            response: ExampleResponse {
                                result: &method.result,
                                id: &id,
                            },
                        })
                        .collect(),
                })
                .collect(),
        };
        // Strings, numbers and values that were JSON already: serializing cannot fail.
        serde_json::to_vec(&info).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use serde_json::value::to_raw_value;

    use super::{Description, Method};
    use crate::rpc::Interface;

    #[test]
    fn the_document_has_infrakits_shape() {
        let method = |name: &'static str, params: serde_json::Value| Method {
            name,
            interface: "Instance".to_owned(),
            params: to_raw_value(&params).unwrap(),
            result: to_raw_value(&json!({})).unwrap(),
        };
        let description = Description::new(
            &[Interface::new("Instance", "0.6.1").with_older_versions(["0.6.0"])],
            vec![
                method("Instance.Validate", json!({"Properties": null})),
                method("Instance.Destroy", json!({"ID": ""})),
            ],
        );
        let document: serde_json::Value = serde_json::from_slice(&description.document(1700000000)).unwrap();
        assert_eq!(
            document,
            json!({
                "Vendor": null,
                "Implements": [{"Name": "Instance", "Version": "0.6.1", "Sub": ""}],
                "Interfaces": [{
                    "Name": "Instance", "Version": "0.6.1", "Sub": "",
                    "Methods": [
                        {"Request": {"jsonrpc": "2.0", "method": "Instance.Destroy", "params": {"ID": ""}, "id": "1700000000"},
                         "Response": {"result": {}, "id": "1700000000"}},
                        {"Request": {"jsonrpc": "2.0", "method": "Instance.Validate", "params": {"Properties": null}, "id": "1700000000"},
                         "Response": {"result": {}, "id": "1700000000"}}
                    ]
                }]
            })
        );
    }
}
