//! The plugin on the wire: raw HTTP/1.1 over its unix socket, as InfraKit's Go client speaks it
//! (gorilla/rpc json2 requests, net/http headers, kept-alive connections).

// Test helpers outside #[test] functions fail loudly too (clippy.toml covers only the tests).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;

use plugin::{Server, Service, SocketError, SocketOptions};
use serde_json::{json, Value};
use support::{request, Connection, Plugin};

/// The body InfraKit's Go client (master) sends first, observed on the wire.
const HELLO: &str = r#"{"jsonrpc":"2.0","method":"Handshake.Hello","params":{},"id":1453726709403019789}"#;

/// The result every InfraKit client of master requires, byte for byte.
const HELLO_RESULT: &str = r#"{"Objects":{"Instance/0.6.1":[{"Name":".","ProxyFor":""}]}}"#;

const APIS: &str = r#"{"APIs":[{"Name":"Instance","Version":"0.5.0"},{"Name":"Instance","Version":"0.6.0"},{"Name":"Instance","Version":"0.6.1"}]}"#;

/// The error object of an answer, checking that it is a JSON-RPC error answer in an HTTP 200.
fn error_of(response: &support::HttpResponse) -> Value {
    assert_eq!(response.status, 200, "{}", response.text());
    let answer = response.json();
    assert_eq!(answer["jsonrpc"], "2.0");
    assert!(answer.get("result").is_none(), "{answer}");
    answer["error"].clone()
}

fn result_of(response: &support::HttpResponse) -> Value {
    assert_eq!(response.status, 200, "{}", response.text());
    let answer = response.json();
    assert!(answer.get("error").is_none(), "{answer}");
    answer["result"].clone()
}

#[test]
fn hello_answers_infrakits_go_client_exactly() {
    let plugin = Plugin::start();
    let response = plugin.connect().call(HELLO);
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/json; charset=utf-8"));
    let answer = response.text();
    assert!(answer.contains(&format!(r#""result":{HELLO_RESULT}"#)), "{answer}");
    assert!(
        answer.contains(r#""id":1453726709403019789"#),
        "the id is echoed digit for digit: {answer}"
    );
    assert_eq!(
        response.json(),
        json!({"jsonrpc": "2.0", "result": serde_json::from_str::<Value>(HELLO_RESULT).unwrap(), "id": 1453726709403019789u64})
    );
}

#[test]
fn older_clients_get_their_handshakes() {
    let plugin = Plugin::start();
    let mut connection = plugin.connect();
    for method in ["Handshake.Implements", "Plugin.Implements"] {
        let response = connection.call(&request(method, "{}", 7));
        assert!(
            response.text().contains(&format!(r#""result":{APIS}"#)),
            "{method}: {}",
            response.text()
        );
    }
    let response = connection.call(&request("Handshake.Types", "{}", 8));
    assert_eq!(
        result_of(&response),
        json!({"Types": {"Instance/0.5.0": ["."], "Instance/0.6.0": ["."], "Instance/0.6.1": ["."]}})
    );
}

#[test]
fn method_and_member_names_are_case_insensitive() {
    let plugin = Plugin::start();
    let mut connection = plugin.connect();
    let response = connection.call(&request("handshake.hello", "{}", 1));
    assert!(response.text().contains(HELLO_RESULT), "{}", response.text());
    let response = connection.call(&request("HANDSHAKE.IMPLEMENTS", "{}", 2));
    assert!(response.text().contains(APIS), "{}", response.text());
    let response =
        connection.call(r#"{"JSONRPC":"2.0","Method":"instance.echo","Params":{"text":"a","COUNT":2},"Id":3}"#);
    assert_eq!(
        response.json(),
        json!({"jsonrpc": "2.0", "result": {"Text": "a", "Count": 2}, "id": 3})
    );
}

#[test]
fn params_may_be_an_object_a_one_element_array_null_or_missing() {
    let plugin = Plugin::start();
    let mut connection = plugin.connect();
    let echoed = |connection: &mut Connection, body: &str| result_of(&connection.call(body));
    let text = json!({"Text": "t", "Count": 1});
    let empty = json!({"Text": "", "Count": 0});
    assert_eq!(
        echoed(
            &mut connection,
            &request("Instance.Echo", r#"{"Text":"t","Count":1}"#, 1)
        ),
        text
    );
    assert_eq!(
        echoed(
            &mut connection,
            &request("Instance.Echo", r#"[{"Text":"t","Count":1}]"#, 2)
        ),
        text
    );
    assert_eq!(echoed(&mut connection, &request("Instance.Echo", "null", 3)), empty);
    assert_eq!(echoed(&mut connection, &request("Instance.Echo", "[]", 4)), empty);
    assert_eq!(
        echoed(&mut connection, r#"{"jsonrpc":"2.0","method":"Instance.Echo","id":5}"#),
        empty
    );
    assert_eq!(
        echoed(
            &mut connection,
            &request("Instance.Echo", r#"{"Text":null,"Count":null}"#, 6)
        ),
        empty
    );
}

#[test]
fn wrong_param_types_are_errors_that_name_the_field() {
    let plugin = Plugin::start();
    let response = plugin
        .connect()
        .call(&request("Instance.Echo", r#"{"Text":"t","Count":"two"}"#, 9));
    let error = error_of(&response);
    assert_eq!(error["code"], -32600, "gorilla's code for params it cannot decode");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.starts_with("invalid params for Instance.Echo: Count: invalid type: string \"two\""),
        "{message}"
    );
    assert_eq!(error["data"], json!({"Text": "t", "Count": "two"}));
    assert_eq!(response.json()["id"], 9);
}

#[test]
fn content_types_with_parameters_and_none_at_all_are_json() {
    let plugin = Plugin::start();
    let mut connection = plugin.connect();
    for content_type in [Some("application/json; charset=utf-8"), Some("Application/JSON"), None] {
        let response = connection.post(HELLO.as_bytes(), content_type);
        assert!(
            response.text().contains(HELLO_RESULT),
            "{content_type:?}: {}",
            response.text()
        );
    }
    let response = connection.post(HELLO.as_bytes(), Some("text/plain"));
    assert_eq!(response.status, 415);
    assert_eq!(response.text(), "rpc: unrecognized Content-Type: text/plain");
    assert!(
        connection.call(HELLO).text().contains(HELLO_RESULT),
        "the connection lives on"
    );
}

#[test]
fn ids_are_echoed_exactly() {
    let plugin = Plugin::start();
    let mut connection = plugin.connect();
    let response = connection.call(&request("Handshake.Hello", "{}", i64::MAX as u64));
    assert!(
        response.text().contains(r#""id":9223372036854775807"#),
        "{}",
        response.text()
    );
    let response = connection.call(r#"{"jsonrpc":"2.0","method":"Handshake.Hello","params":{},"id":"abc-1"}"#);
    assert_eq!(response.json()["id"], "abc-1");
    let response = connection.call(&request("Instance.Nope", "{}", i64::MAX as u64));
    assert!(
        response.text().contains(r#""id":9223372036854775807"#),
        "errors echo it too: {}",
        response.text()
    );
}

#[test]
fn unknown_methods_get_gorillas_server_errors() {
    let plugin = Plugin::start();
    let mut connection = plugin.connect();
    let cases = [
        ("Instance.Nope", r#"rpc: can't find method "Instance.Nope""#),
        ("Group.CommitGroup", r#"rpc: can't find service "Group.CommitGroup""#),
        ("Hello", r#"rpc: service/method request ill-formed: "Hello""#),
    ];
    for (id, (method, message)) in cases.into_iter().enumerate() {
        let response = connection.call(&request(method, "{}", id as u64));
        assert_eq!(
            response.json(),
            json!({"jsonrpc": "2.0", "error": {"code": -32000, "message": message, "data": null}, "id": id})
        );
    }
}

#[test]
fn method_errors_are_server_errors_and_panics_internal_ones() {
    let plugin = Plugin::start();
    let mut connection = plugin.connect();
    let response = connection.call(&request("Instance.Fail", r#"{"Text":"i-1"}"#, 4));
    assert_eq!(
        response.json(),
        json!({"jsonrpc": "2.0", "error": {"code": -32000, "message": "instance i-1 not found", "data": null}, "id": 4})
    );
    let error = error_of(&connection.call(&request("Instance.Panic", "{}", 5)));
    assert_eq!(error["code"], -32603);
    assert_eq!(error["message"], "Instance.Panic failed: its handler panicked");
    assert!(
        connection.call(HELLO).text().contains(HELLO_RESULT),
        "the connection lives on"
    );
}

#[test]
fn malformed_json_is_a_parse_error_and_the_connection_lives_on() {
    let plugin = Plugin::start();
    let mut connection = plugin.connect();
    for body in [
        r#"{"jsonrpc":"2.0","method":"#,
        "not json",
        r#"[{"jsonrpc":"2.0","method":"Handshake.Hello","id":1}]"#,
    ] {
        let response = connection.call(body);
        let error = error_of(&response);
        assert_eq!(error["code"], -32700, "{body}");
        assert_eq!(error["data"], Value::Null, "{body}");
        assert_eq!(response.json()["id"], Value::Null, "{body}");
    }
    let error = error_of(&connection.call(r#"{"jsonrpc":"1.0","method":"Handshake.Hello","id":2}"#));
    assert_eq!(
        error,
        json!({"code": -32600, "message": "jsonrpc must be 2.0", "data": null})
    );
    assert!(connection.call(HELLO).text().contains(HELLO_RESULT));
}

#[test]
fn a_body_over_the_limit_is_an_error_and_the_connection_lives_on() {
    let plugin = Plugin::start();
    let mut connection = plugin.connect();
    let text = "x".repeat(8 << 20);
    let body = request("Instance.Echo", &format!(r#"{{"Text":"{text}"}}"#), 1);
    let response = connection.call(&body);
    let error = error_of(&response);
    assert_eq!(error["code"], -32600);
    assert_eq!(
        error["message"],
        "the request body is larger than the plugin's limit of 8388608 bytes"
    );
    assert_eq!(response.header("connection"), None);
    assert!(
        connection.call(HELLO).text().contains(HELLO_RESULT),
        "the connection lives on"
    );

    let text = "x".repeat(7 << 20);
    let response = connection.call(&request("Instance.Echo", &format!(r#"{{"Text":"{text}"}}"#), 2));
    assert_eq!(
        result_of(&response)["Text"].as_str().map(str::len),
        Some(7 << 20),
        "a body within the limit is served"
    );
}

#[test]
fn notifications_run_and_get_an_empty_answer() {
    let plugin = Plugin::start();
    let mut connection = plugin.connect();
    let response = connection.call(r#"{"jsonrpc":"2.0","method":"Instance.Record","params":{"Text":"no id"}}"#);
    assert_eq!((response.status, response.body.len()), (200, 0));
    let response =
        connection.call(r#"{"jsonrpc":"2.0","method":"Instance.Record","params":{"Text":"null id"},"id":null}"#);
    assert_eq!((response.status, response.body.len()), (200, 0));
    let response = connection.call(r#"{"jsonrpc":"2.0","method":"Instance.Nope"}"#);
    assert_eq!(
        (response.status, response.body.len()),
        (200, 0),
        "gorilla writes no error for a notification"
    );
    assert_eq!(*plugin.recorded.lock().unwrap(), ["no id", "null id"]);
}

#[test]
fn only_post_calls_and_the_description_is_at_info_api_json() {
    let plugin = Plugin::start();
    let mut connection = plugin.connect();
    let response = connection.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(response.status, 405);
    assert_eq!(response.text(), "rpc: POST method required, received GET");
    assert_eq!(response.header("allow"), Some("POST"));

    let response = connection.send(b"GET /info/api.json HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(response.status, 200);
    let info = response.json();
    assert_eq!(info["Vendor"], Value::Null);
    assert_eq!(
        info["Implements"],
        json!([{"Name": "Instance", "Version": "0.6.1", "Sub": ""}])
    );
    let methods: Vec<&str> = info["Interfaces"][0]["Methods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|method| method["Request"]["method"].as_str().unwrap())
        .collect();
    assert_eq!(
        methods,
        ["Instance.Echo", "Instance.Fail", "Instance.Panic", "Instance.Record"]
    );
    let echo = &info["Interfaces"][0]["Methods"][0];
    assert_eq!(echo["Request"]["params"], json!({"Text": "", "Count": 0}));
    assert_eq!(echo["Response"]["result"], json!({"Text": "", "Count": 0}));
    assert_eq!(echo["Request"]["id"], echo["Response"]["id"]);

    let response = connection.send(b"GET /nothing HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(response.status, 404);
}

#[test]
fn one_connection_carries_many_requests() {
    let plugin = Plugin::start();
    let mut connection = plugin.connect();
    for id in 0..5u64 {
        let response = connection.call(&request("Instance.Echo", &format!(r#"{{"Count":{id}}}"#), id));
        assert_eq!(result_of(&response)["Count"], id);
        assert_eq!(response.header("connection"), None, "kept alive");
    }
    // Two requests written at once (HTTP/1.1 pipelining) are answered in order.
    let (first, second) = (
        request("Instance.Echo", r#"{"Count":1}"#, 1),
        request("Instance.Echo", r#"{"Count":2}"#, 2),
    );
    let mut both = Vec::new();
    for body in [&first, &second] {
        both.extend_from_slice(
            format!(
                "POST / HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
    }
    assert_eq!(result_of(&connection.send(&both))["Count"], 1);
    assert_eq!(result_of(&connection.read_response())["Count"], 2);
}

#[test]
fn the_socket_is_private_and_the_pid_file_beside_it() {
    let plugin = Plugin::start();
    let mode = std::fs::metadata(&plugin.socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(plugin.socket, plugin.dir.path().join("instance-moby"));
    let pid = std::fs::read_to_string(plugin.dir.path().join("instance-moby.pid")).unwrap();
    assert_eq!(pid, std::process::id().to_string());

    let dir = tempfile::tempdir().unwrap();
    let options = SocketOptions::new(dir.path().join("plugins")).name("other").mode(0o660);
    let other = Plugin::start_in(dir, options).unwrap();
    assert_eq!(
        other.socket,
        other.dir.path().join("plugins/other"),
        "the directory is created"
    );
    assert_eq!(
        std::fs::metadata(&other.socket).unwrap().permissions().mode() & 0o777,
        0o660
    );
}

#[test]
fn stopping_removes_the_socket_and_the_pid_file() {
    let mut plugin = Plugin::start();
    let pid_file = plugin.dir.path().join("instance-moby.pid");
    assert!(plugin.socket.exists() && pid_file.exists());
    plugin.stop();
    assert!(!plugin.socket.exists(), "socket left behind");
    assert!(!pid_file.exists(), "pid file left behind");

    let dir = tempfile::tempdir().unwrap();
    let server = Server::bind(&SocketOptions::new(dir.path()), support::service(Default::default())).unwrap();
    assert!(dir.path().join("instance-moby").exists());
    drop(server);
    assert!(!dir.path().join("instance-moby").exists() && !dir.path().join("instance-moby.pid").exists());
}

#[test]
fn a_stale_socket_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    drop(UnixListener::bind(dir.path().join("instance-moby")).unwrap());
    std::fs::write(dir.path().join("instance-moby.pid"), "999999999").unwrap();
    let options = SocketOptions::new(dir.path());
    let plugin = Plugin::start_in(dir, options).unwrap();
    assert!(plugin.connect().call(HELLO).text().contains(HELLO_RESULT));
    let pid = std::fs::read_to_string(plugin.dir.path().join("instance-moby.pid")).unwrap();
    assert_eq!(pid, std::process::id().to_string());
}

#[test]
fn a_live_socket_is_refused_naming_it_and_its_pid() {
    let plugin = Plugin::start();
    let err = Server::bind(&plugin.options, Service::new([support::instance()]).unwrap())
        .err()
        .unwrap();
    let SocketError::InUse { socket, pid, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(socket, &plugin.socket);
    assert_eq!(*pid, Some(std::process::id()));
    let message = err.to_string();
    assert!(message.contains(&plugin.socket.display().to_string()), "{message}");
    assert!(message.contains(&format!("pid {}", std::process::id())), "{message}");
    assert!(
        plugin.connect().call(HELLO).text().contains(HELLO_RESULT),
        "the live plugin is untouched"
    );
    assert!(plugin.dir.path().join("instance-moby.pid").exists());
}

#[test]
fn a_file_in_the_sockets_place_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("instance-moby"), "").unwrap();
    let err = Server::bind(
        &SocketOptions::new(dir.path()),
        Service::new([support::instance()]).unwrap(),
    )
    .err()
    .unwrap();
    assert!(matches!(err, SocketError::NotASocket(_)), "{err}");
    assert!(
        err.to_string()
            .ends_with("exists and is not a socket: remove it or give this plugin another name"),
        "{err}"
    );
}

#[test]
fn many_connections_at_once_lose_nothing() {
    let plugin = Plugin::start();
    let clients: Vec<_> = (0..16u64)
        .map(|client| {
            let mut connection = plugin.connect();
            std::thread::spawn(move || {
                for call in 0..25u64 {
                    let count = client * 100 + call;
                    let response =
                        connection.call(&request("Instance.Echo", &format!(r#"{{"Count":{count}}}"#), count));
                    assert_eq!(
                        response.json(),
                        json!({"jsonrpc": "2.0", "result": {"Text": "", "Count": count}, "id": count})
                    );
                }
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
}
