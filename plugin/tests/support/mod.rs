//! A plugin served from a thread of its own, and a client that speaks raw HTTP/1.1 over the unix
//! socket, byte for byte as InfraKit's Go client (net/http's transport) does.

// Shared by the test crates; each uses part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use builder::{BuildOptions, HostPaths, Platform};
use plugin::instance::{self, Images, InstancePlugin, Store};
use plugin::{Interface, MethodError, Server, Service, SocketError, SocketOptions};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

/// How long a test waits for an answer before failing (not a timing assertion).
const PATIENCE: Duration = Duration::from_secs(30);

/// The params and result of the test's own method `Instance.Echo`.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Echo {
    #[serde(rename = "Text")]
    pub text: String,
    #[serde(rename = "Count")]
    pub count: u32,
}

/// The instance interface as the plugin announces it.
pub fn instance() -> Interface {
    Interface::new("Instance", "0.6.1").with_older_versions(["0.5.0", "0.6.0"])
}

/// A service with the test's own methods, registered as the instance plugin registers its own:
/// `Instance.Echo` answers its params, `Instance.Record` remembers its text in `recorded`,
/// `Instance.Fail` fails, `Instance.Panic` panics.
pub fn service(recorded: Arc<Mutex<Vec<String>>>) -> Service {
    let mut service = Service::new([instance()]).unwrap();
    service
        .register("Instance.Echo", |echo: Echo| async move { Ok(echo) })
        .unwrap();
    service
        .register("Instance.Record", move |echo: Echo| {
            let recorded = Arc::clone(&recorded);
            async move {
                recorded.lock().unwrap().push(echo.text);
                Ok(Echo::default())
            }
        })
        .unwrap();
    service
        .register("Instance.Fail", |echo: Echo| async move {
            Err::<Echo, _>(MethodError::new(format!("instance {} not found", echo.text)))
        })
        .unwrap();
    service
        .register::<Echo, Echo, _, _>(
            "Instance.Panic",
            |_| async move { panic!("a handler panicked on purpose") },
        )
        .unwrap();
    service
}

/// A plugin serving [`service`] on a thread of its own, stopped (and its thread joined) on drop.
pub struct Plugin {
    pub dir: tempfile::TempDir,
    pub options: SocketOptions,
    pub socket: PathBuf,
    pub recorded: Arc<Mutex<Vec<String>>>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Plugin {
    /// A plugin named `instance-moby` in a new plugin directory.
    pub fn start() -> Plugin {
        let dir = tempfile::tempdir().unwrap();
        let options = SocketOptions::new(dir.path());
        Plugin::start_in(dir, options).unwrap()
    }

    /// A plugin listening as `options` say (in `dir`, kept as long as the plugin).
    pub fn start_in(dir: tempfile::TempDir, options: SocketOptions) -> Result<Plugin, SocketError> {
        let recorded = Arc::new(Mutex::new(Vec::new()));
        Plugin::serve(dir, options, service(Arc::clone(&recorded)), recorded)
    }

    /// A plugin serving `service` as `options` say.
    pub fn serve(
        dir: tempfile::TempDir,
        options: SocketOptions,
        service: Service,
        recorded: Arc<Mutex<Vec<String>>>,
    ) -> Result<Plugin, SocketError> {
        let server = Server::bind(&options, service)?;
        let socket = server.socket_path().to_owned();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime
                .block_on(server.serve(async {
                    let _ = stopped.await;
                }))
                .unwrap();
        });
        Ok(Plugin {
            dir,
            options,
            socket,
            recorded,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// A new connection to the plugin.
    pub fn connect(&self) -> Connection {
        Connection::open(&self.socket)
    }

    /// Stops the plugin and waits until it has.
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

impl Drop for Plugin {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An HTTP response as read off the socket.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The value of header `name` (case-insensitive), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(header, _)| header.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap()
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|err| panic!("{err}: {:?}", self.text()))
    }
}

/// One connection to the plugin, kept open across requests.
pub struct Connection {
    writer: UnixStream,
    reader: BufReader<UnixStream>,
}

impl Connection {
    pub fn open(socket: &Path) -> Connection {
        let writer = UnixStream::connect(socket).unwrap();
        writer.set_read_timeout(Some(PATIENCE)).unwrap();
        let reader = BufReader::new(writer.try_clone().unwrap());
        Connection { writer, reader }
    }

    /// Sends `body` as InfraKit's Go client sends a call: its request line and headers, in
    /// net/http's order, with `content_type` (none when `None`).
    pub fn post(&mut self, body: &[u8], content_type: Option<&str>) -> HttpResponse {
        let mut request = format!(
            "POST / HTTP/1.1\r\nHost: h\r\nUser-Agent: Go-http-client/1.1\r\nContent-Length: {}\r\n",
            body.len()
        );
        if let Some(content_type) = content_type {
            request.push_str(&format!("Content-Type: {content_type}\r\n"));
        }
        request.push_str("Accept-Encoding: gzip\r\n\r\n");
        let mut bytes = request.into_bytes();
        bytes.extend_from_slice(body);
        self.send(&bytes)
    }

    /// Calls `method` with `params` (InfraKit's Go client's 63-bit id) and returns the whole
    /// JSON-RPC reply, which must come in an HTTP 200 as gorilla's do.
    pub fn rpc(&mut self, method: &str, params: serde_json::Value) -> serde_json::Value {
        let body =
            serde_json::json!({"jsonrpc": "2.0", "method": method, "params": params, "id": 1453726709403019789u64});
        let reply = self.call(&body.to_string());
        assert_eq!(reply.status, 200, "{}", reply.text());
        reply.json()
    }

    /// [`Connection::rpc`] for a call that must succeed: its result.
    pub fn ok(&mut self, method: &str, params: serde_json::Value) -> serde_json::Value {
        let reply = self.rpc(method, params);
        assert!(
            reply.get("error").is_none_or(serde_json::Value::is_null),
            "{method}: {reply}"
        );
        reply["result"].clone()
    }

    /// A JSON-RPC call as the Go client makes it.
    pub fn call(&mut self, body: &str) -> HttpResponse {
        self.post(body.as_bytes(), Some("application/json"))
    }

    /// Sends `request` as it is and reads the response.
    pub fn send(&mut self, request: &[u8]) -> HttpResponse {
        self.writer.write_all(request).unwrap();
        self.read_response()
    }

    /// Reads one response: status line, headers, and a body of `Content-Length` bytes.
    pub fn read_response(&mut self) -> HttpResponse {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        let mut parts = line.trim_end().splitn(3, ' ');
        assert_eq!(parts.next(), Some("HTTP/1.1"), "status line {line:?}");
        let status: u16 = parts.next().unwrap().parse().unwrap();
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).unwrap();
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').unwrap();
            headers.push((name.to_owned(), value.trim().to_owned()));
        }
        let mut response = HttpResponse {
            status,
            headers,
            body: Vec::new(),
        };
        let length: usize = response
            .header("content-length")
            .expect("a Content-Length")
            .parse()
            .unwrap();
        response.body.resize(length, 0);
        self.reader.read_exact(&mut response.body).unwrap();
        response
    }
}

/// The JSON-RPC request InfraKit's Go client writes (gorilla json2's `clientRequest`).
pub fn request(method: &str, params: &str, id: u64) -> String {
    format!(r#"{{"jsonrpc":"2.0","method":"{method}","params":{params},"id":{id}}}"#)
}

/// The instance plugin on a socket in a new plugin directory, its state in `dir/state`.
pub fn instance_plugin(dir: &Path) -> Plugin {
    let state = dir.join("state");
    let options = BuildOptions {
        cache_dir: dir.join("cache"),
        always_pull: false,
        mirrors: Vec::new(),
        platform: Platform::host(),
        docker_config: None,
        progress: None,
    };
    let paths = HostPaths {
        base_dir: dir.to_path_buf(),
        home_dir: None,
    };
    let plugin = Arc::new(InstancePlugin::new(
        Store::open(state.join("instances")).unwrap(),
        Images::new(state.join("images"), options, paths),
        vmm::StateRoot::new(state.join("vm")),
        dir.to_path_buf(),
        Duration::from_secs(5),
    ));
    let mut service = Service::new([instance::interface()]).unwrap();
    instance::register(&mut service, plugin).unwrap();
    let sockets = tempfile::tempdir().unwrap();
    let options = SocketOptions::new(sockets.path());
    Plugin::serve(sockets, options, service, Arc::new(Mutex::new(Vec::new()))).unwrap()
}

/// A spec whose images come from a registry that refuses connections: every build fails fast,
/// offline, with the builder's message.
pub const UNREACHABLE: &str =
    "kernel:\n  image: 127.0.0.1:1/none/kernel:1\n  cmdline: console=ttyS0\ninit:\n  - 127.0.0.1:1/none/init:1\n";
