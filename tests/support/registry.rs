//! A real registry for tests: Debian's `docker-registry` (distribution v2) on a free loopback
//! port with a temporary config and storage directory, optional htpasswd basic auth, a tiny
//! HTTP/1.1 client to push test images into it, and a bandwidth-throttling TCP proxy.
//!
//! Needs `/usr/bin/docker-registry` (package `docker-registry`) and, for auth, `htpasswd`
//! (package `apache2-utils`); `MOBY_TEST_REGISTRY` may name another registry binary.

#![allow(dead_code)]

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// OCI media types used by the pushed test images.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Uncompressed OCI layer (the store treats layer bytes as opaque).
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
/// Docker manifest list.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker gzip layer.
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// `sha256:<hex>` of `bytes`.
pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// Deterministic, incompressible test content.
pub fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        // xorshift64*
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Standard base64 (for basic auth headers and Docker config files).
pub fn base64(bytes: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A blob as pushed: media type, digest, size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    /// Media type for descriptors.
    pub media_type: String,
    /// `sha256:<hex>`.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
}

impl Blob {
    fn json(&self) -> String {
        format!(
            r#"{{"mediaType":"{}","digest":"{}","size":{}}}"#,
            self.media_type, self.digest, self.size
        )
    }
}

/// An image manifest pushed to the registry.
#[derive(Debug, Clone)]
pub struct PushedImage {
    /// The manifest blob.
    pub manifest: Blob,
    /// The config blob.
    pub config: Blob,
    /// The layer blobs.
    pub layers: Vec<Blob>,
}

/// A running `docker-registry`, killed when dropped.
pub struct Registry {
    child: Option<Child>,
    dir: tempfile::TempDir,
    port: u16,
    credentials: Option<(String, String)>,
}

impl Registry {
    /// Starts an open registry.
    pub fn start() -> Registry {
        Registry::launch(None)
    }

    /// Starts a registry that requires HTTP basic auth with these credentials.
    pub fn start_with_auth(user: &str, password: &str) -> Registry {
        Registry::launch(Some((user.to_string(), password.to_string())))
    }

    fn launch(credentials: Option<(String, String)>) -> Registry {
        let dir = tempfile::tempdir().expect("temporary directory for the registry");
        let mut registry = Registry {
            child: None,
            port: free_port(),
            dir,
            credentials,
        };
        if let Some((user, password)) = &registry.credentials {
            let output = Command::new("htpasswd")
                .args(["-Bbn", user, password])
                .output()
                .expect("htpasswd (apache2-utils) must be installed for registry auth tests");
            assert!(output.status.success(), "htpasswd failed: {output:?}");
            std::fs::write(registry.dir.path().join("htpasswd"), output.stdout).unwrap();
        }
        registry.write_config();
        registry.restart();
        registry
    }

    fn write_config(&self) {
        let auth = if self.credentials.is_some() {
            format!(
                "auth:\n  htpasswd:\n    realm: moby-test\n    path: {}\n",
                self.dir.path().join("htpasswd").display()
            )
        } else {
            String::new()
        };
        let config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{}\n  secret: moby-test-secret\n{auth}",
            self.storage().display(),
            self.port
        );
        std::fs::write(self.dir.path().join("config.yml"), config).unwrap();
    }

    /// (Re)starts the process on the same port and storage and waits until it answers.
    pub fn restart(&mut self) {
        self.kill();
        let binary = std::env::var("MOBY_TEST_REGISTRY").unwrap_or_else(|_| "/usr/bin/docker-registry".into());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let child = Command::new(&binary)
            .arg("serve")
            .arg(self.dir.path().join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {binary} ({e}); install it with `apt-get install docker-registry`")
            });
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(response) = self.request("GET", "/v2/", &[], b"") {
                if response.status == 200 || response.status == 401 {
                    return;
                }
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("docker-registry exited with {status}: {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not start: {}",
                self.log()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the process (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The storage root directory.
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The file in which the registry keeps a blob's content.
    pub fn blob_data_path(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.storage()
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("registry.log")
    }

    /// What the registry printed: errors and its access log (one line per request).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// How many `GET`s of blob `digest` the access log shows (in any repository).
    pub fn blob_gets(&self, digest: &str) -> usize {
        let needle = format!("/blobs/{digest} ");
        self.log()
            .lines()
            .filter(|l| l.contains("\"GET ") && l.contains(&needle))
            .count()
    }

    /// A Docker `config.json` in a new temporary directory holding `user:password` for it.
    pub fn docker_config(&self, user: &str, password: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let auth = base64(format!("{user}:{password}").as_bytes());
        std::fs::write(
            &path,
            format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, self.host()),
        )
        .unwrap();
        (dir, path)
    }

    // ----- pushing -----

    /// Uploads a blob (monolithic POST + PUT) and returns its descriptor.
    pub fn push_blob(&self, repository: &str, media_type: &str, bytes: &[u8]) -> Blob {
        let blob = Blob {
            media_type: media_type.to_string(),
            digest: digest(bytes),
            size: bytes.len() as u64,
        };
        let start = self
            .request("POST", &format!("/v2/{repository}/blobs/uploads/"), &[], b"")
            .expect("start upload");
        assert_eq!(start.status, 202, "upload start: {start:?}");
        let location = start.header("location").expect("upload location").to_string();
        let path = location
            .strip_prefix(&format!("http://{}", self.host()))
            .unwrap_or(&location)
            .to_string();
        let separator = if path.contains('?') { '&' } else { '?' };
        let put = self
            .request(
                "PUT",
                &format!("{path}{separator}digest={}", blob.digest),
                &[("Content-Type", "application/octet-stream")],
                bytes,
            )
            .expect("upload blob");
        assert_eq!(put.status, 201, "blob upload: {put:?}");
        blob
    }

    /// Uploads a manifest or index under `reference` (a tag or digest).
    pub fn push_manifest(&self, repository: &str, reference: &str, media_type: &str, bytes: &[u8]) -> Blob {
        let response = self
            .request(
                "PUT",
                &format!("/v2/{repository}/manifests/{reference}"),
                &[("Content-Type", media_type)],
                bytes,
            )
            .expect("upload manifest");
        assert_eq!(response.status, 201, "manifest upload: {response:?}");
        Blob {
            media_type: media_type.to_string(),
            digest: digest(bytes),
            size: bytes.len() as u64,
        }
    }

    /// Pushes an OCI image for `architecture` with the given layers, tagged `tag` unless `None`.
    pub fn push_image(
        &self,
        repository: &str,
        tag: Option<&str>,
        architecture: &str,
        layers: &[Vec<u8>],
    ) -> PushedImage {
        self.push_image_typed(repository, tag, architecture, layers, false)
    }

    /// [`Registry::push_image`] with Docker v2 schema 2 media types when `docker` is set.
    pub fn push_image_typed(
        &self,
        repository: &str,
        tag: Option<&str>,
        architecture: &str,
        layers: &[Vec<u8>],
        docker: bool,
    ) -> PushedImage {
        let (manifest_type, config_type, layer_type) = if docker {
            (DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER)
        } else {
            (OCI_MANIFEST, OCI_CONFIG, OCI_LAYER)
        };
        let layer_blobs: Vec<Blob> = layers
            .iter()
            .map(|layer| self.push_blob(repository, layer_type, layer))
            .collect();
        let diff_ids: Vec<String> = layer_blobs.iter().map(|l| format!("\"{}\"", l.digest)).collect();
        let config = format!(
            r#"{{"architecture":"{architecture}","os":"linux","config":{{"Entrypoint":["/bin/{repo}"],"Cmd":["--arch","{architecture}"],"Env":["PATH=/bin"],"WorkingDir":"/work","Labels":{{"test":"{repo}"}}}},"rootfs":{{"type":"layers","diff_ids":[{}]}}}}"#,
            diff_ids.join(","),
            repo = repository.replace('/', "-"),
        );
        let config = self.push_blob(repository, config_type, config.as_bytes());
        let layer_json: Vec<String> = layer_blobs.iter().map(Blob::json).collect();
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{manifest_type}","config":{},"layers":[{}]}}"#,
            config.json(),
            layer_json.join(",")
        );
        let digest = digest(manifest.as_bytes());
        let manifest_blob = self.push_manifest(repository, tag.unwrap_or(&digest), manifest_type, manifest.as_bytes());
        PushedImage {
            manifest: manifest_blob,
            config,
            layers: layer_blobs,
        }
    }

    /// Pushes an index (OCI, or a Docker manifest list) over `(image, architecture)` pairs.
    pub fn push_index(&self, repository: &str, tag: &str, images: &[(&PushedImage, &str)], docker: bool) -> Blob {
        let entries: Vec<String> = images
            .iter()
            .map(|(image, architecture)| {
                format!(
                    r#"{{"mediaType":"{}","digest":"{}","size":{},"platform":{{"architecture":"{architecture}","os":"linux"}}}}"#,
                    image.manifest.media_type, image.manifest.digest, image.manifest.size
                )
            })
            .collect();
        let media_type = if docker { DOCKER_LIST } else { OCI_INDEX };
        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"{media_type}","manifests":[{}]}}"#,
            entries.join(",")
        );
        self.push_manifest(repository, tag, media_type, index.as_bytes())
    }

    /// One HTTP/1.1 request to the registry (with its credentials, if any).
    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> io::Result<Response> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.host(),
            body.len()
        );
        if let Some((user, password)) = &self.credentials {
            head.push_str(&format!(
                "Authorization: Basic {}\r\n",
                base64(format!("{user}:{password}").as_bytes())
            ));
        }
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes())?;
        stream.write_all(body)?;
        read_response(stream)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A parsed HTTP response (the body is read to the end of the connection, as sent).
#[derive(Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Raw body bytes.
    pub body: Vec<u8>,
}

impl Response {
    /// The first header of that (lower-case) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

fn read_response(stream: TcpStream) -> io::Result<Response> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("bad status line {line:?}")))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            break;
        }
        if let Some((name, value)) = trimmed.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    let mut body = Vec::new();
    reader.read_to_end(&mut body)?;
    Ok(Response { status, headers, body })
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A loopback TCP proxy that forwards to `127.0.0.1:<upstream>` and limits the download
/// direction to a given rate, so that a transfer can be interrupted at a chosen moment.
/// When the upstream connection ends, the client connection is shut down too.
pub struct Throttle {
    port: u16,
    stop: Arc<AtomicBool>,
    acceptor: Option<thread::JoinHandle<()>>,
}

impl Throttle {
    /// Starts the proxy; `bytes_per_second` applies to each connection's responses.
    pub fn start(upstream: u16, bytes_per_second: usize) -> Throttle {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy port");
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let acceptor = thread::spawn(move || {
            for client in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                thread::spawn(move || forward(client, upstream, bytes_per_second));
            }
        });
        Throttle {
            port,
            stop,
            acceptor: Some(acceptor),
        }
    }

    /// `127.0.0.1:<port>` of the proxy.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Throttle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept so that the thread sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn forward(client: TcpStream, upstream: u16, bytes_per_second: usize) {
    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let (Ok(mut client_read), Ok(mut server_write)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    thread::spawn(move || {
        let _ = io::copy(&mut client_read, &mut server_write);
        let _ = server_write.shutdown(Shutdown::Write);
    });
    let chunk = (bytes_per_second / 20).max(1);
    let mut buffer = vec![0; chunk];
    let (mut server_read, mut client_write) = (server, client);
    loop {
        match server_read.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if client_write.write_all(&buffer[..n]).is_err() {
                    break;
                }
                thread::sleep(Duration::from_millis(50));
            }
        }
    }
    let _ = client_write.shutdown(Shutdown::Both);
}

/// Waits until `condition` holds, panicking with `what` after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(5));
    }
}

/// The total size of the regular files directly in `dir` (0 if it does not exist).
pub fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}
