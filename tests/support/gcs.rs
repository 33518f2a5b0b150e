//! A real Cloud Storage emulator for tests: `gcp-storage-emulator` (PyPI, installed by
//! `scripts/gcs-emulator.sh` into `target/gcs-emulator`; `MOBY_GCS_EMULATOR` may name another)
//! on a free loopback port, in memory, with one bucket; stopped when dropped.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::registry::{free_port, wait_for};

/// A running emulator.
pub struct StorageEmulator {
    child: Child,
    port: u16,
}

fn binary() -> PathBuf {
    std::env::var_os("MOBY_GCS_EMULATOR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/gcs-emulator/bin/gcp-storage-emulator")
        })
}

impl StorageEmulator {
    /// Starts an emulator holding the (empty) bucket `bucket`.
    pub fn start(bucket: &str) -> StorageEmulator {
        let binary = binary();
        assert!(
            binary.exists(),
            "{} is missing: run scripts/gcs-emulator.sh (scripts/setup.sh does)",
            binary.display()
        );
        let port = free_port();
        let child = Command::new(&binary)
            .args([
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--in-memory",
                "-q",
            ])
            .args(["--default-bucket", bucket])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let emulator = StorageEmulator { child, port };
        wait_for("the storage emulator", Duration::from_secs(30), || {
            emulator
                .get(&format!("/storage/v1/b/{bucket}"))
                .is_some_and(|(status, _)| status == 200)
        });
        emulator
    }

    /// Its root URL (`http://127.0.0.1:PORT`), what `STORAGE_EMULATOR_HOST` takes.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The names of the objects in `bucket`.
    pub fn objects(&self, bucket: &str) -> Vec<String> {
        let (status, body) = self
            .get(&format!("/storage/v1/b/{bucket}/o"))
            .expect("the emulator answers");
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let list: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let mut names: Vec<String> = list["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|i| i["name"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// The contents of `bucket/object`, if it exists.
    pub fn object(&self, bucket: &str, object: &str) -> Option<Vec<u8>> {
        let (status, body) = self.get(&format!("/storage/v1/b/{bucket}/o/{object}?alt=media"))?;
        (status == 200).then_some(body)
    }

    /// A GET: its status and body; `None` when the emulator does not answer (yet).
    fn get(&self, path: &str) -> Option<(u16, Vec<u8>)> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).ok()?;
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&raw[..split]).into_owned();
        let status = head.split_whitespace().nth(1)?.parse().ok()?;
        let mut body = raw[split + 4..].to_vec();
        if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
            body = dechunk(&body);
        }
        Some((status, body))
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = data.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&data[..end]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&data[end + 2..end + 2 + size]);
        data = &data[end + 2 + size + 2..];
    }
    out
}

impl Drop for StorageEmulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
