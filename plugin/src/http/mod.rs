//! HTTP on the plugin's socket, answered as InfraKit's Go server answers (gorilla/mux routes in
//! docker/infrakit `pkg/rpc/server/server.go`, gorilla/rpc v2's `server.go`):
//!
//! - `POST /`: JSON-RPC. A missing `Content-Type` is taken as JSON; otherwise its media type
//!   (parameters such as `charset` ignored) must be `application/json`, else 415. Bodies over
//!   [`BODY_LIMIT`] are answered with a JSON-RPC error. The call is handed to jsonrpsee's tower
//!   service; errors are JSON-RPC errors in an HTTP 200, as gorilla answers them.
//! - any other method on `/`: 405, `rpc: POST method required, received GET`;
//! - `/info/api.json`: the plugin's description (`rpc::Description`);
//! - anything else: 404.

mod body;

use std::convert::Infallible;
use std::time::{SystemTime, UNIX_EPOCH};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ALLOW, CONNECTION, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use jsonrpsee::server::middleware::rpc::RpcServiceBuilder;
use jsonrpsee::server::{
    stop_channel, BatchRequestConfig, Methods, ServerBuilder, ServerConfig, ServerHandle, StopHandle, TowerService,
    TowerServiceBuilder,
};
use tower_layer::{Identity, Stack};
use tower_service::Service as _;

use crate::rpc::{self, Call, Description, GoNamesLayer, Service};
use body::{read_limited, ReadBody};

/// The largest request body the plugin takes.
pub(crate) const BODY_LIMIT: usize = 8 << 20;

/// How much more of a body over the limit is read and thrown away so that its connection can
/// serve the next request; past that, the connection is closed after the answer.
const DRAIN_LIMIT: usize = 64 << 20;

/// jsonrpsee's limits are ours or looser: a request is never over its limit once under ours,
/// the answers of a plugin's methods (instance lists) have no limit of their own, and calls
/// running at once are bounded by the connections a local socket gets.
const RPC_RESPONSE_LIMIT: u32 = u32::MAX;
const RPC_CALLS_AT_ONCE: u32 = 4096;

const JSON: &str = "application/json; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";

type RpcMiddleware = Stack<GoNamesLayer, Identity>;

/// jsonrpsee's service for one connection.
pub(crate) type Rpc = TowerService<RpcMiddleware, Identity>;

/// What answers the requests of every connection.
pub(crate) struct Endpoint {
    rpc: TowerServiceBuilder<RpcMiddleware, Identity>,
    methods: Methods,
    stop: StopHandle,
    /// Kept so that jsonrpsee's stop handle never reports a stop: the server stops connections.
    _running: ServerHandle,
    description: Description,
}

impl Endpoint {
    /// The endpoint serving `service`.
    pub(crate) fn new(service: Service) -> Self {
        let (methods, names, description) = service.into_parts();
        let config = ServerConfig::builder()
            .http_only()
            .max_request_body_size(u32::try_from(BODY_LIMIT.saturating_mul(2)).unwrap_or(u32::MAX))
            .max_response_body_size(RPC_RESPONSE_LIMIT)
            .max_connections(RPC_CALLS_AT_ONCE)
            .set_batch_request_config(BatchRequestConfig::Disabled)
            .build();
        let rpc = ServerBuilder::new()
            .set_config(config)
            .set_rpc_middleware(RpcServiceBuilder::new().layer(names))
            .to_service_builder();
        let (stop, running) = stop_channel();
        Endpoint {
            rpc,
            methods,
            stop,
            _running: running,
            description,
        }
    }

    /// jsonrpsee's service for a new connection.
    pub(crate) fn connection(&self) -> Rpc {
        self.rpc.clone().build(self.methods.clone(), self.stop.clone())
    }

    /// The answer to `request`, which came on the connection `rpc` serves.
    pub(crate) async fn respond(
        &self,
        rpc: Rpc,
        request: Request<Incoming>,
    ) -> Result<Response<Full<Bytes>>, Infallible> {
        Ok(match (request.method(), request.uri().path()) {
            (_, "/info/api.json") => reply(StatusCode::OK, JSON, self.description.document(unix_seconds())),
            (&Method::POST, "/") => call(rpc, request).await,
            (method, "/") => {
                let mut response = reply(
                    StatusCode::METHOD_NOT_ALLOWED,
                    TEXT,
                    format!("rpc: POST method required, received {method}"),
                );
                response.headers_mut().insert(ALLOW, HeaderValue::from_static("POST"));
                response
            }
            _ => reply(StatusCode::NOT_FOUND, TEXT, "404 page not found\n"),
        })
    }
}

/// A JSON-RPC call: content type checked, body read, envelope read, then jsonrpsee.
async fn call(rpc: Rpc, request: Request<Incoming>) -> Response<Full<Bytes>> {
    if let Some(content_type) = request.headers().get(CONTENT_TYPE).filter(|value| !is_json(value)) {
        let shown = String::from_utf8_lossy(content_type.as_bytes()).into_owned();
        return reply(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            TEXT,
            format!("rpc: unrecognized Content-Type: {shown}"),
        );
    }
    let body = match read_limited(request.into_body(), BODY_LIMIT, DRAIN_LIMIT).await {
        Ok(ReadBody::Complete(body)) => body,
        Ok(ReadBody::TooLarge { drained: true }) => return rpc_reply(rpc::too_large(BODY_LIMIT).into()),
        Ok(ReadBody::TooLarge { drained: false }) => return closing(rpc_reply(rpc::too_large(BODY_LIMIT).into())),
        Err(err) => {
            let message = format!("cannot read the request body: {err}");
            return closing(reply(StatusCode::BAD_REQUEST, TEXT, message));
        }
    };
    match rpc::read_call(&body) {
        Call::Answer(Some(answer)) => rpc_reply(answer.into()),
        Call::Answer(None) => rpc_reply(Bytes::new()),
        Call::Dispatch { request, notification } => dispatch(rpc, request, notification).await,
    }
}

/// Hands `request` to jsonrpsee and passes its answer on (none for a notification).
async fn dispatch(mut rpc: Rpc, request: Vec<u8>, notification: bool) -> Response<Full<Bytes>> {
    let mut request = Request::new(Full::new(Bytes::from(request)));
    *request.method_mut() = Method::POST;
    request
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let response = match rpc.call(request).await {
        Ok(response) => response,
        Err(err) => return rpc_reply(rpc::internal_error(format!("the call failed: {err}")).into()),
    };
    let (parts, answer) = response.into_parts();
    let answer = match answer.collect().await {
        Ok(answer) => answer.to_bytes(),
        Err(err) => return rpc_reply(rpc::internal_error(format!("the answer was lost: {err}")).into()),
    };
    if parts.status != StatusCode::OK {
        // jsonrpsee's own refusals (too many calls at once) go out as it wrote them.
        return Response::from_parts(parts, Full::new(answer));
    }
    rpc_reply(if notification { Bytes::new() } else { answer })
}

/// `response`, closing its connection after it (the rest of the request was not read).
fn closing(mut response: Response<Full<Bytes>>) -> Response<Full<Bytes>> {
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    response
}

/// gorilla's test: the media type before any `;`, whatever its case, is `application/json`, or
/// empty (gorilla takes its only codec, JSON, then).
fn is_json(content_type: &HeaderValue) -> bool {
    let media_type = content_type
        .as_bytes()
        .split(|byte| *byte == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    media_type.is_empty() || media_type.eq_ignore_ascii_case(b"application/json")
}

/// An answer to a JSON-RPC call, an HTTP 200 with the header gorilla adds (an empty body, for a
/// notification, has no content type: gorilla writes none).
fn rpc_reply(answer: Bytes) -> Response<Full<Bytes>> {
    let empty = answer.is_empty();
    let mut response = reply(StatusCode::OK, JSON, answer);
    if empty {
        response.headers_mut().remove(CONTENT_TYPE);
    }
    response
        .headers_mut()
        .insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    response
}

fn reply(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| since.as_secs())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use hyper::header::HeaderValue;

    use super::is_json;

    #[test]
    fn json_is_recognized_with_parameters_and_in_any_case() {
        let accepted = [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON;charset=UTF-8",
            "",
            "; charset=utf-8",
        ];
        for accepted in accepted {
            assert!(is_json(&HeaderValue::from_static(accepted)), "{accepted}");
        }
        for refused in ["text/plain", "application/json-rpc", "application/jsonx"] {
            assert!(!is_json(&HeaderValue::from_static(refused)), "{refused}");
        }
    }
}
