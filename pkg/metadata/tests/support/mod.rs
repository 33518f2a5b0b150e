//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread;

/// A request a fake server saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A fake HTTP server on 127.0.0.1: `handler` gives each request's status line and body.
pub struct Server {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

pub fn serve(handler: impl Fn(&Seen) -> (&'static str, String) + Send + 'static) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen_by_server = seen.clone();
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut request = Vec::new();
            let mut byte = [0u8; 1];
            while !request.ends_with(b"\r\n\r\n") {
                match conn.read(&mut byte) {
                    Ok(1) => request.push(byte[0]),
                    _ => break,
                }
            }
            let request = String::from_utf8_lossy(&request).into_owned();
            let mut lines = request.split("\r\n");
            let mut first = lines.next().unwrap_or_default().split(' ');
            let method = first.next().unwrap_or_default().to_string();
            let path = first.next().unwrap_or_default().to_string();
            let headers = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(n, v)| (n.to_string(), v.trim().to_string()))
                .collect();
            let request = Seen { method, path, headers };
            let (status, body) = handler(&request);
            seen_by_server.lock().unwrap().push(request);
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.write_all(response.as_bytes());
        }
    });
    Server { url, seen }
}

/// Like GCE's metadata server: `routes` below `/computeMetadata/v1/` (others 404); requests
/// without `Metadata-Flavor: Google` get 403.
pub fn gcp_server(routes: &[(&str, &str)]) -> Server {
    let routes: BTreeMap<String, String> = routes.iter().map(|(p, b)| (p.to_string(), b.to_string())).collect();
    serve(move |request| {
        let key = request.path.trim_start_matches("/computeMetadata/v1/");
        if request.header("Metadata-Flavor") != Some("Google") {
            ("403 Forbidden", String::new())
        } else if let Some(body) = routes.get(key) {
            ("200 OK", body.clone())
        } else {
            ("404 Not Found", "not found".to_string())
        }
    })
}

/// Like EC2's: `routes` below `/latest/`; with `token`, IMDSv2 only (a PUT to `api/token` gives it,
/// a GET without it gets 401); without, PUT is refused with 405 (IMDSv1 only, or OpenStack).
pub fn ec2_server(routes: &[(&str, &str)], token: Option<&'static str>) -> Server {
    let routes: BTreeMap<String, String> = routes.iter().map(|(p, b)| (p.to_string(), b.to_string())).collect();
    serve(move |request| {
        let key = request.path.trim_start_matches("/latest/");
        match (request.method.as_str(), key, token) {
            ("PUT", "api/token", Some(token)) => ("200 OK", token.to_string()),
            ("PUT", _, _) => ("405 Method Not Allowed", String::new()),
            (_, _, Some(token)) if request.header("X-aws-ec2-metadata-token") != Some(token) => {
                ("401 Unauthorized", String::new())
            }
            _ => match routes.get(key) {
                Some(body) => ("200 OK", body.clone()),
                None => ("404 Not Found", String::new()),
            },
        }
    })
}

/// Runs genisoimage (`args` then the source folder) to make `out` from `files`.
pub fn genisoimage(out: &Path, args: &[&str], files: &[(&str, &str)]) {
    let src = out.with_extension("src");
    for (name, contents) in files {
        let path = src.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap();
    }
    let status = std::process::Command::new("genisoimage")
        .args(["-quiet", "-o"])
        .arg(out)
        .args(args)
        .arg(&src)
        .status();
    match status {
        Ok(status) => assert!(status.success(), "genisoimage {args:?} failed"),
        Err(e) => panic!("cannot run genisoimage ({e}): install it (scripts/setup.sh, or apt-get install genisoimage)"),
    }
}

/// A userdata CD laid out as `moby run`'s (vmm::userdata): label `cidata`, Rock Ridge names,
/// `config` and `user-data` holding the userdata, `meta-data`. The `vmm-cd` test crate checks
/// the CD vmm itself writes.
pub fn cidata_iso(out: &Path, userdata: &str) {
    genisoimage(
        out,
        &["-r", "-V", "cidata", "-pad"],
        &[
            ("config", userdata),
            ("meta-data", "instance-id: instance-1\nlocal-hostname: instance-1\n"),
            ("user-data", userdata),
        ],
    )
}
