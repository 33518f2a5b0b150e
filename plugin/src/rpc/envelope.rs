//! The request object as gorilla/rpc's json2 codec reads it with Go's decoder, checked before
//! jsonrpsee sees it:
//!
//! - member names are case-insensitive (`"Method"` is `method`), unknown members are ignored, the
//!   last of repeated members wins;
//! - a body that is not JSON, or not one object (gorilla has no batches), is a parse error
//!   (-32700) answered with a null id, as gorilla does since it answers parse errors at all;
//! - `jsonrpc` must be `"2.0"`, else gorilla's invalid request (-32600) `jsonrpc must be 2.0`;
//! - a missing or null `id` makes a notification: the method runs, its answer is dropped (an
//!   empty HTTP 200), errors included, as gorilla writes nothing for a request without an id;
//! - an `id` is echoed as sent; it must be a string or an integer from 0 to 2^64-1 (jsonrpsee's
//!   ids; InfraKit's Go client sends a random integer below 2^63), else invalid request;
//! - `method` must be a string (a missing one is the empty name, which gorilla calls ill-formed).
//!
//! What passes is handed to jsonrpsee as a plain JSON-RPC 2.0 request with its canonical names.

use std::fmt;

use jsonrpsee::types::{ErrorObjectOwned, Id, Response, ResponsePayload};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{error_object, INTERNAL_ERROR};

/// JSON-RPC's parse error.
const PARSE_ERROR: i32 = -32700;
/// JSON-RPC's invalid request.
const INVALID_REQUEST: i32 = -32600;

/// What to do with a request body.
#[derive(Debug)]
pub(crate) enum Call {
    /// Hand `request` (a JSON-RPC 2.0 request) to jsonrpsee; for a notification, drop its answer.
    Dispatch { request: Vec<u8>, notification: bool },
    /// Answer this JSON (an error) without dispatching; nothing for a notification.
    Answer(Option<Vec<u8>>),
}

/// Reads a request body.
pub(crate) fn read_call(body: &[u8]) -> Call {
    let envelope: Envelope = match serde_json::from_slice(body) {
        Ok(envelope) => envelope,
        Err(err) if err.is_data() => {
            return answer_error(
                Id::Null,
                PARSE_ERROR,
                format!("the request is not a JSON-RPC request object: {err}"),
            )
        }
        Err(err) => return answer_error(Id::Null, PARSE_ERROR, format!("the request is not valid JSON: {err}")),
    };
    let id = match envelope.id.as_deref().map(RawValue::get) {
        None | Some("null") => None,
        Some(raw) => match serde_json::from_str::<Id<'_>>(raw) {
            Ok(id) => Some(id),
            Err(_) => {
                return answer_error(
                    Id::Null,
                    INVALID_REQUEST,
                    format!("id {raw} is neither a string nor an integer from 0 to 18446744073709551615"),
                )
            }
        },
    };
    let notification = id.is_none();
    let respond = |code: i32, message: String| match &id {
        Some(id) => answer_error(id.clone(), code, message),
        None => Call::Answer(None),
    };
    if envelope.jsonrpc.as_deref().map(RawValue::get) != Some(r#""2.0""#) {
        return respond(INVALID_REQUEST, "jsonrpc must be 2.0".to_owned());
    }
    let method: String = match envelope.method.as_deref() {
        None => String::new(),
        Some(raw) => match serde_json::from_str(raw.get()) {
            Ok(method) => method,
            Err(_) => return respond(INVALID_REQUEST, format!("method {} is not a string", raw.get())),
        },
    };
    let params = envelope.params.as_deref().filter(|params| params.get() != "null");
    let request = Request {
        jsonrpc: "2.0",
        method: &method,
        params,
        id: id.clone().unwrap_or(Id::Number(0)),
    };
    match serde_json::to_vec(&request) {
        Ok(request) => Call::Dispatch { request, notification },
        Err(err) => respond(INVALID_REQUEST, format!("the request cannot be passed on: {err}")),
    }
}

/// A JSON-RPC response carrying an error, as jsonrpsee writes them.
fn error_response(id: Id<'_>, error: ErrorObjectOwned) -> Vec<u8> {
    let response = Response::new(ResponsePayload::<()>::error(error), id);
    serde_json::to_vec(&response).unwrap_or_else(|_| {
        br#"{"jsonrpc":"2.0","error":{"code":-32603,"message":"internal error","data":null},"id":null}"#.to_vec()
    })
}

/// The answer to a request whose body is over `limit` bytes (and whose id is not read).
pub(crate) fn too_large(limit: usize) -> Vec<u8> {
    let message = format!("the request body is larger than the plugin's limit of {limit} bytes");
    error_response(Id::Null, error_object(INVALID_REQUEST, message))
}

/// The answer when the call failed inside the server.
pub(crate) fn internal_error(message: String) -> Vec<u8> {
    error_response(Id::Null, error_object(INTERNAL_ERROR, message))
}

fn answer_error(id: Id<'_>, code: i32, message: String) -> Call {
    Call::Answer(Some(error_response(id, error_object(code, message))))
}

/// The request as passed on to jsonrpsee (a notification gets id 0: it is a call whose answer
/// nobody reads).
#[derive(Serialize)]
struct Request<'a> {
    jsonrpc: &'static str,
    method: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    params: Option<&'a RawValue>,
    id: Id<'a>,
}

/// The members of a request object, each as sent.
#[derive(Default)]
struct Envelope {
    jsonrpc: Option<Box<RawValue>>,
    method: Option<Box<RawValue>>,
    params: Option<Box<RawValue>>,
    id: Option<Box<RawValue>>,
}

impl<'de> Deserialize<'de> for Envelope {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(EnvelopeVisitor)
    }
}

struct EnvelopeVisitor;

impl<'de> Visitor<'de> for EnvelopeVisitor {
    type Value = Envelope;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Envelope, A::Error> {
        let mut envelope = Envelope::default();
        while let Some(key) = map.next_key::<String>()? {
            let member = match key.to_ascii_lowercase().as_str() {
                "jsonrpc" => &mut envelope.jsonrpc,
                "method" => &mut envelope.method,
                "params" => &mut envelope.params,
                "id" => &mut envelope.id,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            *member = Some(map.next_value()?);
        }
        Ok(envelope)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<Envelope, A::Error> {
        Err(de::Error::custom("a batch (an array), which gorilla/rpc does not take"))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::{read_call, Call};

    /// The request jsonrpsee would get, and whether it is a notification.
    fn dispatched(body: &str) -> (Value, bool) {
        match read_call(body.as_bytes()) {
            Call::Dispatch { request, notification } => (serde_json::from_slice(&request).unwrap(), notification),
            other => panic!("{body} was answered: {other:?}"),
        }
    }

    fn answered(body: &str) -> Option<Value> {
        match read_call(body.as_bytes()) {
            Call::Answer(answer) => answer.map(|answer| serde_json::from_slice(&answer).unwrap()),
            other => panic!("{body} was dispatched: {other:?}"),
        }
    }

    #[test]
    fn member_names_are_case_insensitive_and_unknown_ones_ignored() {
        let (request, notification) =
            dispatched(r#"{"JSONRPC":"2.0","Method":"Handshake.Hello","Params":{"a":1},"ID":7,"extra":[1]}"#);
        assert_eq!(
            request,
            json!({"jsonrpc": "2.0", "method": "Handshake.Hello", "params": {"a": 1}, "id": 7})
        );
        assert!(!notification);
    }

    #[test]
    fn big_and_string_ids_pass_unchanged() {
        let (request, _) = dispatched(r#"{"jsonrpc":"2.0","method":"M.m","id":18446744073709551615}"#);
        assert_eq!(request["id"], json!(18446744073709551615u64));
        let (request, _) = dispatched(r#"{"jsonrpc":"2.0","method":"M.m","id":"x-1"}"#);
        assert_eq!(request["id"], json!("x-1"));
    }

    #[test]
    fn null_params_are_no_params() {
        let (request, _) = dispatched(r#"{"jsonrpc":"2.0","method":"M.m","params":null,"id":1}"#);
        assert_eq!(request, json!({"jsonrpc": "2.0", "method": "M.m", "id": 1}));
    }

    #[test]
    fn a_request_without_id_is_a_notification_run_with_a_stand_in_id() {
        for body in [
            r#"{"jsonrpc":"2.0","method":"M.m"}"#,
            r#"{"jsonrpc":"2.0","method":"M.m","id":null}"#,
        ] {
            let (request, notification) = dispatched(body);
            assert!(notification, "{body}");
            assert_eq!(request["id"], json!(0));
        }
    }

    #[test]
    fn parse_errors_are_answered_with_a_null_id() {
        for body in [
            "{",
            "",
            "[]",
            r#"[{"jsonrpc":"2.0","method":"M.m","id":1}]"#,
            "5",
            r#"{"id":1} x"#,
        ] {
            let answer = answered(body).unwrap();
            assert_eq!(answer["error"]["code"], json!(-32700), "{body}");
            assert_eq!(answer["error"]["data"], Value::Null, "{body}");
            assert_eq!(answer["id"], Value::Null, "{body}");
        }
    }

    #[test]
    fn a_wrong_version_is_gorillas_invalid_request_and_silent_for_notifications() {
        let answer = answered(r#"{"jsonrpc":"1.0","method":"M.m","id":3}"#).unwrap();
        assert_eq!(
            answer,
            json!({"jsonrpc": "2.0", "error": {"code": -32600, "message": "jsonrpc must be 2.0", "data": null}, "id": 3})
        );
        assert_eq!(answered(r#"{"method":"M.m"}"#), None);
    }

    #[test]
    fn ids_jsonrpsee_cannot_carry_are_refused() {
        for id in ["-1", "1.5", "{}", "true"] {
            let answer = answered(&format!(r#"{{"jsonrpc":"2.0","method":"M.m","id":{id}}}"#)).unwrap();
            assert_eq!(answer["error"]["code"], json!(-32600), "{id}");
            assert_eq!(answer["id"], Value::Null, "{id}");
        }
    }

    #[test]
    fn a_method_that_is_not_a_string_is_refused_and_a_missing_one_is_empty() {
        let answer = answered(r#"{"jsonrpc":"2.0","method":5,"id":1}"#).unwrap();
        assert_eq!(answer["error"]["code"], json!(-32600));
        let (request, _) = dispatched(r#"{"jsonrpc":"2.0","id":1}"#);
        assert_eq!(request["method"], json!(""));
    }
}
