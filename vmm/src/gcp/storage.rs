//! Cloud Storage: resumable uploads (in chunks, resumed where the service says it got to) and
//! object deletes, over the JSON API.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use reqwest::{Method, StatusCode};

use super::api::{Api, Service};
use super::error::GcpError;

/// Bytes per upload request: a multiple of 256 KiB, as resumable uploads require.
const CHUNK: u64 = 8 << 20;

/// Cloud Storage at `root` (`https://storage.googleapis.com/`).
#[derive(Debug, Clone)]
pub struct Storage {
    api: Api,
    root: String,
}

impl Storage {
    /// Cloud Storage at `root`.
    pub fn new(api: Api, root: &str) -> Storage {
        Storage {
            api,
            root: root.to_string(),
        }
    }

    fn object_url(&self, bucket: &str, object: &str) -> String {
        format!("{}storage/v1/b/{bucket}/o/{}", self.root, encode(object))
    }

    /// Uploads `path` as `gs://bucket/object` with a resumable upload; `progress(sent, total)`
    /// is called as chunks are acknowledged.
    pub async fn upload(
        &self,
        path: &Path,
        bucket: &str,
        object: &str,
        progress: &(dyn Fn(u64, u64) + Sync),
    ) -> Result<(), GcpError> {
        let io = |doing, source| GcpError::Io {
            doing,
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(|e| io("open", e))?;
        let total = file.metadata().map_err(|e| io("read", e))?.len();
        let call = format!("upload of gs://{bucket}/{object}");
        let start_url = format!(
            "{}upload/storage/v1/b/{bucket}/o?uploadType=resumable&name={}",
            self.root,
            encode(object)
        );
        let metadata = serde_json::json!({ "name": object }).to_string();
        let started = self
            .api
            .send(Service::Storage, &call, |http| {
                http.post(&start_url)
                    .header("X-Upload-Content-Type", "application/octet-stream")
                    .header("X-Upload-Content-Length", total)
                    .header(reqwest::header::CONTENT_TYPE, "application/json; charset=UTF-8")
                    .body(metadata.clone())
            })
            .await?;
        let session = started
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| GcpError::Transport {
                service: "Cloud Storage",
                call: call.clone(),
                why: "the service gave no upload session (no Location header)".into(),
            })?;
        let mut sent = 0;
        let mut stalled = 0;
        progress(0, total);
        loop {
            let len = CHUNK.min(total - sent);
            let mut chunk = vec![0; len as usize];
            file.read_exact_at(&mut chunk, sent).map_err(|e| io("read", e))?;
            let range = if len == 0 {
                format!("bytes */{total}")
            } else {
                format!("bytes {sent}-{}/{total}", sent + len - 1)
            };
            let answer = self
                .api
                .send_accepting(
                    Service::Storage,
                    &call,
                    |s| s.is_success() || s.as_u16() == 308,
                    |http| {
                        http.request(Method::PUT, &session)
                            .header(reqwest::header::CONTENT_RANGE, &range)
                            .body(chunk.clone())
                    },
                )
                .await?;
            if answer.status().is_success() {
                progress(total, total);
                return Ok(());
            }
            // 308: the service says how much it has; carry on from there.
            let received = answer
                .headers()
                .get(reqwest::header::RANGE)
                .and_then(|r| r.to_str().ok())
                .and_then(|r| r.strip_prefix("bytes=0-"))
                .and_then(|end| end.parse::<u64>().ok())
                .map_or(0, |end| end + 1);
            if received > total {
                return Err(GcpError::Transport {
                    service: "Cloud Storage",
                    call,
                    why: format!("the service reports {received} bytes received of {total}"),
                });
            }
            stalled = if received <= sent { stalled + 1 } else { 0 };
            if stalled > 5 {
                return Err(GcpError::Transport {
                    service: "Cloud Storage",
                    call,
                    why: format!("the upload does not advance past byte {received} of {total}"),
                });
            }
            sent = received;
            progress(sent, total);
        }
    }

    /// Deletes `gs://bucket/object`; `false` when there was none.
    pub async fn delete(&self, bucket: &str, object: &str) -> Result<bool, GcpError> {
        let url = self.object_url(bucket, object);
        let call = format!("delete of gs://{bucket}/{object}");
        let answer = self
            .api
            .send_accepting(
                Service::Storage,
                &call,
                |s| s.is_success() || s == StatusCode::NOT_FOUND,
                |http| http.delete(&url),
            )
            .await?;
        Ok(answer.status() != StatusCode::NOT_FOUND)
    }
}

/// Percent-encodes an object name for a URL path or query.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_are_encoded() {
        assert_eq!(encode("images/web 1.img.tar.gz"), "images%2Fweb%201.img.tar.gz");
    }
}
