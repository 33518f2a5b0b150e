//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread;

/// A request the fake metadata server saw: path and `Metadata-Flavor` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub path: String,
    pub flavor: Option<String>,
}

/// A fake HTTP metadata server on 127.0.0.1 answering `routes` (path -> body; others 404), like
/// GCE's: it refuses requests without `Metadata-Flavor: Google` with 403.
pub struct Server {
    pub base: String,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

pub fn gcp_server(routes: &[(&str, &str)]) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}/computeMetadata/v1/", listener.local_addr().unwrap());
    let routes: BTreeMap<String, String> = routes.iter().map(|(p, b)| (p.to_string(), b.to_string())).collect();
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
            let path = request.split(' ').nth(1).unwrap_or_default().to_string();
            let flavor = request
                .lines()
                .find_map(|l| l.strip_prefix("Metadata-Flavor: "))
                .map(|s| s.trim().to_string());
            seen_by_server.lock().unwrap().push(Seen {
                path: path.clone(),
                flavor: flavor.clone(),
            });
            let key = path.trim_start_matches("/computeMetadata/v1/");
            let (status, body) = if flavor.as_deref() != Some("Google") {
                ("403 Forbidden", String::new())
            } else if let Some(body) = routes.get(key) {
                ("200 OK", body.clone())
            } else {
                ("404 Not Found", "not found".to_string())
            };
            let response = format!(
                "HTTP/1.1 {status}\r\nMetadata-Flavor: Google\r\nContent-Type: application/text\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.write_all(response.as_bytes());
        }
    });
    Server { base, seen }
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
