//! Method names as InfraKit clients may send them: found whatever their case
//! (`handshake.hello` is `Handshake.Hello`), and, when there is no such method, gorilla/rpc's
//! answers (gorilla/rpc v2's `map.go`): a server error (-32000) saying
//! `rpc: service/method request ill-formed: "X"`, `rpc: can't find service "X.Y"` or
//! `rpc: can't find method "X.Y"`. A jsonrpsee RPC middleware, so that jsonrpsee's own dispatch
//! sees only the registered spelling.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;

use jsonrpsee::server::middleware::rpc::{Batch, MethodResponse, Notification, Request, RpcServiceT};
use tower_layer::Layer;

use super::{error_object, SERVER_ERROR};

/// The registered methods by lower-case name, and the services (the part before the dot) they
/// belong to.
#[derive(Debug, Default)]
pub(super) struct MethodTable {
    methods: HashMap<String, &'static str>,
    services: HashSet<String>,
}

impl MethodTable {
    /// Adds `method`, refusing one whose name differs from a registered one only by case.
    pub(super) fn insert(&mut self, method: &'static str) -> Result<(), String> {
        let key = method.to_lowercase();
        if let Some(existing) = self.methods.get(&key) {
            return Err(format!(
                "method {method} is registered twice (as {existing}; names are case-insensitive)"
            ));
        }
        if let Some((service, _)) = key.split_once('.') {
            self.services.insert(service.to_owned());
        }
        self.methods.insert(key, method);
        Ok(())
    }

    /// The registered spelling of `requested`, or gorilla's message for a method it cannot find.
    fn resolve(&self, requested: &str) -> Result<&'static str, String> {
        let key = requested.to_lowercase();
        let Some((service, _)) = key.split_once('.').filter(|(_, method)| !method.contains('.')) else {
            return Err(format!("rpc: service/method request ill-formed: {requested:?}"));
        };
        if let Some(registered) = self.methods.get(&key) {
            return Ok(registered);
        }
        if self.services.contains(service) {
            Err(format!("rpc: can't find method {requested:?}"))
        } else {
            Err(format!("rpc: can't find service {requested:?}"))
        }
    }
}

/// The layer that puts [`GoNames`] in front of jsonrpsee's method dispatch.
#[derive(Clone, Debug)]
pub(crate) struct GoNamesLayer {
    table: Arc<MethodTable>,
}

impl GoNamesLayer {
    pub(super) fn new(table: MethodTable) -> Self {
        GoNamesLayer { table: Arc::new(table) }
    }
}

impl<S> Layer<S> for GoNamesLayer {
    type Service = GoNames<S>;

    fn layer(&self, inner: S) -> GoNames<S> {
        GoNames {
            inner,
            table: Arc::clone(&self.table),
        }
    }
}

/// RPC middleware: renames each call to the registered spelling of its method, or answers
/// gorilla's error for a method that does not exist.
#[derive(Clone, Debug)]
pub(crate) struct GoNames<S> {
    inner: S,
    table: Arc<MethodTable>,
}

impl<S> RpcServiceT for GoNames<S>
where
    S: RpcServiceT<MethodResponse = MethodResponse> + Clone + Send + Sync + 'static,
{
    type MethodResponse = MethodResponse;
    type NotificationResponse = S::NotificationResponse;
    type BatchResponse = S::BatchResponse;

    fn call<'a>(&self, mut request: Request<'a>) -> impl Future<Output = Self::MethodResponse> + Send + 'a {
        let inner = self.inner.clone();
        let resolved = self.table.resolve(&request.method);
        async move {
            match resolved {
                Ok(method) => {
                    request.method = Cow::Borrowed(method);
                    inner.call(request).await
                }
                Err(message) => MethodResponse::error(request.id, error_object(SERVER_ERROR, message)),
            }
        }
    }

    // The envelope refuses batches (gorilla has none) and turns notifications into calls whose
    // answer is dropped: neither reaches here, and both keep jsonrpsee's handling.
    fn batch<'a>(&self, requests: Batch<'a>) -> impl Future<Output = Self::BatchResponse> + Send + 'a {
        self.inner.batch(requests)
    }

    fn notification<'a>(
        &self,
        notification: Notification<'a>,
    ) -> impl Future<Output = Self::NotificationResponse> + Send + 'a {
        self.inner.notification(notification)
    }
}

#[cfg(test)]
mod tests {
    use super::MethodTable;

    fn table() -> MethodTable {
        let mut table = MethodTable::default();
        table.insert("Handshake.Hello").unwrap();
        table.insert("Instance.DescribeInstances").unwrap();
        table
    }

    #[test]
    fn methods_are_found_whatever_their_case() {
        let table = table();
        assert_eq!(table.resolve("handshake.hello"), Ok("Handshake.Hello"));
        assert_eq!(
            table.resolve("INSTANCE.describeinstances"),
            Ok("Instance.DescribeInstances")
        );
    }

    #[test]
    fn unknown_methods_get_gorillas_messages() {
        let table = table();
        assert_eq!(
            table.resolve("Instance.Nope"),
            Err(r#"rpc: can't find method "Instance.Nope""#.to_owned())
        );
        assert_eq!(
            table.resolve("Group.Commit"),
            Err(r#"rpc: can't find service "Group.Commit""#.to_owned())
        );
        assert_eq!(
            table.resolve("Hello"),
            Err(r#"rpc: service/method request ill-formed: "Hello""#.to_owned())
        );
        assert_eq!(
            table.resolve("a.b.c"),
            Err(r#"rpc: service/method request ill-formed: "a.b.c""#.to_owned())
        );
        assert_eq!(
            table.resolve(""),
            Err(r#"rpc: service/method request ill-formed: """#.to_owned())
        );
    }

    #[test]
    fn a_name_registered_twice_in_any_case_is_refused() {
        let mut table = table();
        let err = table.insert("handshake.HELLO").unwrap_err();
        assert!(err.contains("registered twice (as Handshake.Hello"), "{err}");
    }
}
