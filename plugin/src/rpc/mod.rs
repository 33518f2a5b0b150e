//! The JSON-RPC layer: methods registered by name on a [`Service`], answered with gorilla/rpc's
//! json2 semantics (what InfraKit's Go plugins speak), dispatched by `jsonrpsee`.
//!
//! - `envelope`: the request object as Go's decoder reads it, and the errors answered before any
//!   method is looked up;
//! - `names`: jsonrpsee RPC middleware that finds methods case-insensitively and answers gorilla's
//!   errors for unknown ones;
//! - `params`, `go_json`: a call's params decoded as gorilla and Go's `encoding/json` do;
//! - `handshake`: `Handshake.Hello`, `Handshake.Implements`, `Handshake.Types`, `Plugin.Implements`;
//! - `info`: the `/info/api.json` description.

mod envelope;
mod go_json;
pub(crate) use go_json::from_value as decode;
mod handshake;
mod info;
mod names;
mod params;

use std::fmt;
use std::future::Future;

use jsonrpsee::server::{Methods, RpcModule};
use jsonrpsee::types::{ErrorObject, ErrorObjectOwned};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::value::{to_raw_value, RawValue};
use serde_json::Value;

pub(crate) use envelope::{internal_error, read_call, too_large, Call};
pub(crate) use info::Description;
pub(crate) use names::GoNamesLayer;

/// gorilla/rpc json2's `E_SERVER`: the code of every error a method returns.
const SERVER_ERROR: i32 = -32000;
/// JSON-RPC's internal error, for a handler that panicked or a result that is not JSON.
const INTERNAL_ERROR: i32 = -32603;

/// An error object as gorilla writes it: `code`, `message` and `data`, which is `null` unless the
/// error carries some.
fn error_object(code: i32, message: impl Into<String>) -> ErrorObjectOwned {
    ErrorObject::owned(code, message, Some(Value::Null))
}

/// An InfraKit interface that a plugin implements, such as `Instance` version `0.6.1`.
#[derive(Clone, Debug)]
pub struct Interface {
    name: String,
    version: String,
    older_versions: Vec<String>,
}

impl Interface {
    /// The interface `name` at `version`: the one `Handshake.Hello` announces, as InfraKit's
    /// current clients require.
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Self {
        Interface {
            name: name.into(),
            version: version.into(),
            older_versions: Vec::new(),
        }
    }

    /// Older versions of the interface that the plugin also answers, for clients from before
    /// `Handshake.Hello`: `Handshake.Implements`, `Plugin.Implements` and `Handshake.Types` list
    /// them, oldest first, before the current version.
    pub fn with_older_versions<V: Into<String>>(mut self, versions: impl IntoIterator<Item = V>) -> Self {
        self.older_versions = versions.into_iter().map(Into::into).collect();
        self
    }

    /// Every version answered, oldest first, the current one last.
    fn versions(&self) -> impl Iterator<Item = &str> {
        self.older_versions
            .iter()
            .map(String::as_str)
            .chain([self.version.as_str()])
    }
}

/// The error a method answers: gorilla's server error (code -32000, `data` null) with this
/// message, as InfraKit's Go plugins answer every error their methods return.
#[derive(Clone, Debug)]
pub struct MethodError {
    message: String,
}

impl MethodError {
    /// An error whose message says what went wrong, naming the field, instance or file concerned.
    pub fn new(message: impl Into<String>) -> Self {
        MethodError {
            message: message.into(),
        }
    }
}

impl fmt::Display for MethodError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<MethodError> for ErrorObjectOwned {
    fn from(err: MethodError) -> Self {
        error_object(SERVER_ERROR, err.message)
    }
}

/// A method or interface that could not be registered: a mistake in the plugin's code.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RegisterError(String);

/// The methods a plugin serves, by interface, with the handshake methods every InfraKit plugin
/// answers.
pub struct Service {
    interfaces: Vec<Interface>,
    module: RpcModule<()>,
    names: names::MethodTable,
    described: Vec<info::Method>,
}

impl Service {
    /// A service implementing `interfaces` (the handshake announces them), answering the
    /// handshake methods and nothing else until methods are registered.
    pub fn new(interfaces: impl IntoIterator<Item = Interface>) -> Result<Self, RegisterError> {
        let interfaces: Vec<Interface> = interfaces.into_iter().collect();
        for (index, interface) in interfaces.iter().enumerate() {
            let part = |part: &str| !part.is_empty() && !part.contains(['.', '/']);
            if !part(&interface.name)
                || !interface
                    .versions()
                    .all(|version| !version.is_empty() && !version.contains('/'))
            {
                return Err(RegisterError(format!(
                    "interface {:?} at versions {:?}: a name needs no '.' nor '/', a version no '/', neither may be empty",
                    interface.name,
                    interface.versions().collect::<Vec<_>>()
                )));
            }
            if interfaces[..index]
                .iter()
                .any(|earlier| earlier.name.eq_ignore_ascii_case(&interface.name))
            {
                return Err(RegisterError(format!("interface {} is declared twice", interface.name)));
            }
        }
        let mut service = Service {
            interfaces,
            module: RpcModule::new(()),
            names: names::MethodTable::default(),
            described: Vec::new(),
        };
        for (method, answer) in handshake::answers(&service.interfaces) {
            service.add(method, move |_: handshake::Request| {
                let answer = answer.clone();
                async move { Ok::<_, MethodError>(answer) }
            })?;
        }
        Ok(service)
    }

    /// Registers `handler` as `method`, named `Interface.Method` after one of the service's
    /// interfaces (`Instance.Provision`); calls find it whatever the case of the name they send.
    ///
    /// The handler receives the params decoded as gorilla and Go do: an object, or an array whose
    /// first element is the argument; missing or null params, and null or missing members of a
    /// struct, are `P::default()`'s (give param structs `#[serde(default)]`); member names match
    /// case-insensitively. Params that do not decode are answered with an error naming the field,
    /// without calling the handler. Its `Ok` value is the call's result (InfraKit's Go clients
    /// refuse a `null` result: answer an object); its `Err` is answered as gorilla's server error.
    /// Each call runs in its own task: a panic is answered as an internal error, and a call runs
    /// to its end even when its client goes away.
    ///
    /// `/info/api.json` shows `P::default()` and `R::default()` as the method's example request
    /// and response, as InfraKit shows Go's zero values.
    pub fn register<P, R, F, Fut>(&mut self, method: &'static str, handler: F) -> Result<(), RegisterError>
    where
        P: DeserializeOwned + Serialize + Default + Send + 'static,
        R: Serialize + Default + Send + 'static,
        F: Fn(P) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<R, MethodError>> + Send + 'static,
    {
        let interface = match method.split_once('.') {
            Some((interface, name)) if !interface.is_empty() && !name.is_empty() && !name.contains('.') => interface,
            _ => return Err(RegisterError(format!("method name {method:?} is not Interface.Method"))),
        };
        if !self.interfaces.iter().any(|declared| declared.name == interface) {
            let declared: Vec<&str> = self.interfaces.iter().map(|declared| declared.name.as_str()).collect();
            return Err(RegisterError(format!(
                "method {method} belongs to no interface of the service (it implements: {})",
                declared.join(", ")
            )));
        }
        let example = |value: Result<Box<RawValue>, serde_json::Error>| {
            value.map_err(|err| {
                RegisterError(format!(
                    "{method}: its default cannot be shown in /info/api.json: {err}"
                ))
            })
        };
        let params = example(to_raw_value(&P::default()))?;
        let result = example(to_raw_value(&R::default()))?;
        self.add(method, handler)?;
        self.described.push(info::Method {
            name: method,
            interface: interface.to_owned(),
            params,
            result,
        });
        Ok(())
    }

    /// Registers `handler` as `method` with jsonrpsee and in the case-insensitive method table.
    fn add<P, R, F, Fut>(&mut self, method: &'static str, handler: F) -> Result<(), RegisterError>
    where
        P: DeserializeOwned + Default + Send + 'static,
        R: Serialize + Send + 'static,
        F: Fn(P) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<R, MethodError>> + Send + 'static,
    {
        self.names.insert(method).map_err(RegisterError)?;
        self.module
            .register_async_method(method, move |params, _, _| {
                let handler = handler.clone();
                async move { call(method, params.as_str(), handler).await }
            })
            .map_err(|err| RegisterError(format!("{method}: {err}")))?;
        Ok(())
    }

    /// What the server needs: the methods for jsonrpsee, the middleware that finds them, and the
    /// description for `/info/api.json`.
    pub(crate) fn into_parts(self) -> (Methods, GoNamesLayer, Description) {
        let description = Description::new(&self.interfaces, self.described);
        (self.module.into(), GoNamesLayer::new(self.names), description)
    }
}

/// One call: params decoded, the handler run in its own task, its result written as JSON.
async fn call<P, R, F, Fut>(
    method: &'static str,
    params: Option<&str>,
    handler: F,
) -> Result<Box<RawValue>, ErrorObjectOwned>
where
    P: DeserializeOwned + Default + Send + 'static,
    R: Serialize + Send + 'static,
    F: Fn(P) -> Fut,
    Fut: Future<Output = Result<R, MethodError>> + Send + 'static,
{
    let args: P = params::decode(method, params)?;
    match tokio::spawn(handler(args)).await {
        Ok(Ok(result)) => to_raw_value(&result).map_err(|err| {
            error_object(
                INTERNAL_ERROR,
                format!("{method} answered a result that cannot be written as JSON: {err}"),
            )
        }),
        Ok(Err(err)) => Err(err.into()),
        Err(_) => Err(error_object(
            INTERNAL_ERROR,
            format!("{method} failed: its handler panicked"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::{Interface, MethodError, Service};

    #[derive(Default, serde::Deserialize, serde::Serialize)]
    struct Empty {}

    async fn nothing(_: Empty) -> Result<Empty, MethodError> {
        Ok(Empty {})
    }

    fn refusal(method: &'static str) -> String {
        let mut service = Service::new([Interface::new("Instance", "0.6.1")]).unwrap();
        service.register("Instance.Provision", nothing).unwrap();
        service.register(method, nothing).unwrap_err().to_string()
    }

    #[test]
    fn methods_are_registered_once_on_a_declared_interface() {
        assert_eq!(
            refusal("Provision"),
            r#"method name "Provision" is not Interface.Method"#
        );
        assert_eq!(
            refusal("Instance.a.b"),
            r#"method name "Instance.a.b" is not Interface.Method"#
        );
        assert_eq!(
            refusal("Group.Commit"),
            "method Group.Commit belongs to no interface of the service (it implements: Instance)"
        );
        assert_eq!(
            refusal("Instance.provision"),
            "method Instance.provision is registered twice (as Instance.Provision; names are case-insensitive)"
        );
    }

    #[test]
    fn handshake_methods_cannot_be_replaced() {
        let mut service = Service::new([Interface::new("Handshake", "1")]).unwrap();
        let err = service.register("Handshake.Hello", nothing).unwrap_err();
        assert!(err.to_string().contains("registered twice"), "{err}");
    }

    #[test]
    fn interfaces_are_declared_once_with_usable_names() {
        let err = Service::new([Interface::new("Instance", "1"), Interface::new("instance", "2")])
            .err()
            .unwrap();
        assert_eq!(err.to_string(), "interface instance is declared twice");
        for interface in [
            Interface::new("In.stance", "1"),
            Interface::new("Instance", ""),
            Interface::new("I", "1").with_older_versions(["a/b"]),
        ] {
            assert!(Service::new([interface]).is_err());
        }
    }
}
