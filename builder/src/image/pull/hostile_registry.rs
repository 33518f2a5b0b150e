//! Pulls from a registry of our own on loopback that misbehaves: endless bodies, silence, a byte
//! at a time. Each must end in a clear error, with bounded memory, within the stall timeout.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::image::layout::tests::reference;
use crate::image::media_type;
use crate::progress::tests::{Recorder, Seen};

/// One request as the server saw it.
struct Request {
    path: String,
    authorization: Option<String>,
}

/// How the server answers a request; it writes the whole response itself.
type Handler = dyn Fn(&Request, &mut TcpStream, &AtomicU64) + Send + Sync;

/// An HTTP/1.1 server on 127.0.0.1 speaking just enough of the registry API for a pull, one
/// thread per connection. `sent` counts the body bytes that endless answers managed to write.
struct Server {
    port: u16,
    sent: Arc<AtomicU64>,
}

impl Server {
    fn start(handler: impl Fn(&Request, &mut TcpStream, &AtomicU64) + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let sent = Arc::new(AtomicU64::new(0));
        let handler: Arc<Handler> = Arc::new(handler);
        let counter = Arc::clone(&sent);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let handler = Arc::clone(&handler);
                let counter = Arc::clone(&counter);
                std::thread::spawn(move || {
                    if let Some(request) = read_request(&mut stream) {
                        handler(&request, &mut stream, &counter);
                    }
                });
            }
        });
        Server { port, sent }
    }

    fn image(&self) -> Reference {
        reference(&format!("127.0.0.1:{}/test/img:v1", self.port))
    }

    fn pull(&self) -> Result<Vec<ResolvedImage>, ImageError> {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        let options = PullOptions {
            platform: Platform::linux("amd64"),
            stall_timeout: Some(Duration::from_secs(1)),
            ..PullOptions::default()
        };
        ensure_images(&store, &[self.image()], &options)
    }
}

fn read_request(stream: &mut TcpStream) -> Option<Request> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let path = line.split_whitespace().nth(1)?.to_string();
    let mut authorization = None;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("authorization") {
                authorization = Some(value.trim().to_string());
            }
        }
    }
    Some(Request { path, authorization })
}

fn respond(stream: &mut TcpStream, status: &str, headers: &[(&str, &str)], body: &[u8]) {
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(body));
}

/// A 200 with a chunked body of JSON whitespace that never ends (until the client hangs up).
fn endless(stream: &mut TcpStream, content_type: &str, sent: &AtomicU64) {
    let head = format!("HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n\r\n");
    if stream.write_all(head.as_bytes()).is_err() {
        return;
    }
    let chunk = [b' '; 64 << 10];
    let framed = [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
    while stream.write_all(&framed).is_ok() {
        sent.fetch_add(chunk.len() as u64, Ordering::Relaxed);
    }
}

/// Keeps the connection open without sending anything until the client hangs up.
fn silence(stream: &mut TcpStream) {
    let _ = stream.read(&mut [0u8; 1]);
}

/// A manifest with a config of `config` and no layers.
fn manifest(config: &[u8]) -> Vec<u8> {
    crate::image::manifest_json(
        &Descriptor {
            media_type: media_type::OCI_CONFIG.to_string(),
            digest: sha256_digest(config),
            size: config.len() as u64,
        },
        &[],
    )
}

const CONFIG: &[u8] = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;

/// Answers `/v2/` and the manifest and config of a one-config image like a registry would.
fn well_behaved(request: &Request, stream: &mut TcpStream) {
    if request.path.ends_with("/manifests/v1") {
        respond(
            stream,
            "200 OK",
            &[("Content-Type", media_type::OCI_MANIFEST)],
            &manifest(CONFIG),
        );
    } else if request.path.ends_with(&sha256_digest(CONFIG)) {
        respond(stream, "200 OK", &[], CONFIG);
    } else {
        respond(stream, "404 Not Found", &[], b"");
    }
}

#[test]
fn an_endless_manifest_is_refused_at_the_limit() {
    let server = Server::start(|request, stream, sent| {
        if request.path.contains("/manifests/") {
            endless(stream, media_type::OCI_MANIFEST, sent);
        } else {
            respond(stream, "200 OK", &[], b"{}");
        }
    });
    let err = server.pull().unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(
            err,
            ImageError::TooLarge {
                what: "manifest",
                limit: MAX_JSON_BLOB,
                ..
            }
        ),
        "{text}"
    );
    assert!(text.contains(&server.image().to_string()), "{text}");
    // The client stopped reading at the limit: what the server got out is the limit plus what
    // the sockets buffer, far from the gigabytes an unbounded read takes in.
    assert!(server.sent.load(Ordering::Relaxed) < 4 * MAX_JSON_BLOB, "{text}");
}

#[test]
fn a_registry_that_never_answers_stalls() {
    let server = Server::start(|_, stream, _| silence(stream));
    let err = server.pull().unwrap_err();
    let text = err.to_string();
    let ImageError::Stalled {
        what, object, registry, ..
    } = &err
    else {
        panic!("expected a stall, got {text}");
    };
    assert_eq!((*what, object.as_str()), ("manifest", "v1"));
    assert_eq!(registry, &format!("http://127.0.0.1:{}", server.port));
    assert!(text.contains(&server.image().to_string()), "{text}");
}

#[test]
fn a_blob_trickling_a_byte_at_a_time_stalls() {
    let server = Server::start(|request, stream, _| {
        if request.path.ends_with(&sha256_digest(CONFIG)) {
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", CONFIG.len());
            let _ = stream.write_all(head.as_bytes());
            for byte in CONFIG {
                if stream.write_all(&[*byte]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        } else {
            well_behaved(request, stream);
        }
    });
    let err = server.pull().unwrap_err();
    let text = err.to_string();
    let ImageError::Stalled { what, object, .. } = &err else {
        panic!("expected a stall, got {text}");
    };
    assert_eq!((*what, object.as_str()), ("blob", sha256_digest(CONFIG).as_str()));
    assert!(
        text.contains(&server.image().to_string()) && text.contains("MOBY_PULL_STALL_TIMEOUT"),
        "{text}"
    );
}

/// A registry that wants a bearer token from its own `/token` realm, answered by `token`.
fn token_registry(token: impl Fn(&mut TcpStream, &AtomicU64) + Send + Sync + 'static) -> Server {
    let port = Arc::new(AtomicU64::new(0));
    let realm_port = Arc::clone(&port);
    let server = Server::start(move |request, stream, sent| {
        if request.path.starts_with("/token?") {
            assert!(
                request.path.contains("scope=repository%3Atest%2Fimg%3Apull"),
                "{}",
                request.path
            );
            token(stream, sent);
        } else if request.authorization.as_deref() == Some("Bearer t0ken") {
            well_behaved(request, stream);
        } else {
            let realm = realm_port.load(Ordering::Relaxed);
            let challenge = format!(r#"Bearer realm="http://127.0.0.1:{realm}/token",service="fake""#);
            respond(stream, "401 Unauthorized", &[("WWW-Authenticate", &challenge)], b"");
        }
    });
    port.store(u64::from(server.port), Ordering::Relaxed);
    server
}

#[test]
fn bearer_tokens_are_fetched_from_the_realm() {
    let server = token_registry(|stream, _| respond(stream, "200 OK", &[], br#"{"token":"t0ken"}"#));
    let pulled = server.pull().unwrap();
    assert_eq!(pulled[0].config_descriptor.digest, sha256_digest(CONFIG));
}

#[test]
fn an_endless_token_response_is_refused() {
    let server = token_registry(|stream, sent| endless(stream, "application/json", sent));
    let err = server.pull().unwrap_err();
    assert!(
        matches!(
            err,
            ImageError::TooLarge {
                what: "token response",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn an_oversized_config_is_not_downloaded() {
    let server = Server::start(|request, stream, _| {
        let config = Descriptor {
            media_type: media_type::OCI_CONFIG.to_string(),
            digest: sha256_digest(b"huge"),
            size: 1 << 40,
        };
        if request.path.ends_with("/manifests/v1") {
            let body = crate::image::manifest_json(&config, &[]);
            respond(stream, "200 OK", &[("Content-Type", media_type::OCI_MANIFEST)], &body);
        } else {
            respond(stream, "500 Internal Server Error", &[], b"");
        }
    });
    let err = server.pull().unwrap_err();
    assert!(matches!(err, ImageError::TooLarge { what: "config", .. }), "{err}");
}

/// A config for layers of these contents (treated as uncompressed).
fn config_for(layers: &[&[u8]]) -> Vec<u8> {
    let diff_ids: Vec<String> = layers.iter().map(|l| sha256_digest(l)).collect();
    serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap()
}

/// A well-behaved registry holding `test/NAME:v1` for each `(NAME, layers)`, with the config
/// [`config_for`] its layers.
fn holding(images: &[(&str, &[&[u8]])]) -> Server {
    let blob = |media_type: &str, bytes: &[u8]| Descriptor {
        media_type: media_type.to_string(),
        digest: sha256_digest(bytes),
        size: bytes.len() as u64,
    };
    let mut files: HashMap<String, Vec<u8>> = HashMap::new();
    for (name, layers) in images {
        let config = config_for(layers);
        let descriptors: Vec<Descriptor> = layers
            .iter()
            .map(|l| blob("application/vnd.oci.image.layer.v1.tar", l))
            .collect();
        let manifest = crate::image::manifest_json(&blob(media_type::OCI_CONFIG, &config), &descriptors);
        files.insert(format!("/v2/test/{name}/manifests/v1"), manifest);
        for bytes in layers.iter().copied().chain([config.as_slice()]) {
            files.insert(
                format!("/v2/test/{name}/blobs/{}", sha256_digest(bytes)),
                bytes.to_vec(),
            );
        }
    }
    Server::start(move |request, stream, _| match files.get(&request.path) {
        Some(body) if request.path.contains("/manifests/") => {
            respond(stream, "200 OK", &[("Content-Type", media_type::OCI_MANIFEST)], body)
        }
        Some(body) => respond(stream, "200 OK", &[], body),
        None => respond(stream, "404 Not Found", &[], b""),
    })
}

/// Pulls `refs` into `store`, recording the progress told.
fn pull_recorded(store: &Store, refs: &[Reference]) -> (Result<Vec<ResolvedImage>, ImageError>, Arc<Recorder>) {
    let recorder = Arc::new(Recorder::default());
    let options = PullOptions {
        platform: Platform::linux("amd64"),
        stall_timeout: Some(Duration::from_secs(1)),
        progress: Some(recorder.clone()),
        ..PullOptions::default()
    };
    (ensure_images(store, refs, &options), recorder)
}

#[test]
fn progress_counts_each_downloaded_byte_once_and_ends_every_image() {
    // Incompressible, and big enough to arrive in several pieces.
    let shared: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let (a_layer, b_layer) = (vec![1u8; 3000], vec![2u8; 5000]);
    let a_layers: [&[u8]; 2] = [&shared, &a_layer];
    let b_layers: [&[u8]; 2] = [&shared, &b_layer];
    let server = holding(&[("a", &a_layers), ("b", &b_layers)]);
    let refs = [
        reference(&format!("127.0.0.1:{}/test/a:v1", server.port)),
        reference(&format!("127.0.0.1:{}/test/b:v1", server.port)),
    ];
    let (a, b) = (refs[0].to_string(), refs[1].to_string());
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let (pulled, recorder) = pull_recorded(&store, &refs);
    pulled.unwrap();

    // The shared layer counts for the first image that needs it, and for it only.
    let a_bytes = (config_for(&a_layers).len() + shared.len() + a_layer.len()) as u64;
    let b_bytes = (config_for(&b_layers).len() + b_layer.len()) as u64;
    assert_eq!(recorder.started(), [(a.clone(), a_bytes), (b.clone(), b_bytes)]);
    assert_eq!((recorder.arrived(&a), recorder.arrived(&b)), (a_bytes, b_bytes));
    let mut finished = recorder.finished();
    finished.sort();
    assert_eq!(finished, [a.clone(), b.clone()]);
    // Bytes of an image arrive between its start and its end.
    let seen = recorder.seen();
    for image in [&a, &b] {
        let start = seen
            .iter()
            .position(|s| matches!(s, Seen::Started(of, _) if of == image));
        let end = seen.iter().position(|s| *s == Seen::Finished(image.clone()));
        let (start, end) = (start.unwrap(), end.unwrap());
        for (i, s) in seen.iter().enumerate() {
            if matches!(s, Seen::Bytes(of, _) if of == image) {
                assert!(start < i && i < end, "{seen:?}");
            }
        }
    }

    // Nothing to download, nothing told.
    let (again, recorder) = pull_recorded(&store, &refs);
    again.unwrap();
    assert_eq!(recorder.seen(), []);
}

#[test]
fn an_image_whose_download_breaks_off_still_ends() {
    let server = Server::start(|request, stream, _| {
        if request.path.ends_with(&sha256_digest(CONFIG)) {
            // Half the promised body, then the connection closes.
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", CONFIG.len());
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&CONFIG[..CONFIG.len() / 2]);
        } else {
            well_behaved(request, stream);
        }
    });
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let (pulled, recorder) = pull_recorded(&store, &[server.image()]);
    let err = pulled.unwrap_err();
    assert!(matches!(err, ImageError::Registry { what: "blob", .. }), "{err}");
    let image = server.image().to_string();
    assert_eq!(recorder.started(), [(image.clone(), CONFIG.len() as u64)]);
    assert_eq!(recorder.finished(), [image]);
}
