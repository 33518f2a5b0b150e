//! Google Compute Engine's metadata server, as LinuxKit's `gcp` provider: the instance's
//! hostname (required: it is the probe), the project's `ssh-keys` as root's `authorized_keys`,
//! and the instance attribute `user-data`.
//!
//! LinuxKit asks `metadata.google.internal`; this asks its fixed address 169.254.169.254 (with
//! that `Host` header) so no DNS is needed this early in boot. Every request has a 2 s deadline
//! and is retried once after a connection failure or timeout (not after an HTTP status).

use std::path::Path;

use super::Provider;
use crate::http;
use crate::write::{write_authorized_keys, write_file_atomic};

/// The metadata server's API root.
pub const DEFAULT_BASE: &str = "http://169.254.169.254/computeMetadata/v1/";
/// The metadata server's name, sent as `Host`.
pub const HOST: &str = "metadata.google.internal";

/// The `gcp` provider.
#[derive(Debug, Clone)]
pub struct Gcp {
    base: String,
    host_header: Option<String>,
    /// Deadline and retries of each request.
    pub retry: http::Retry,
}

impl Default for Gcp {
    fn default() -> Self {
        Gcp {
            base: DEFAULT_BASE.to_string(),
            host_header: Some(HOST.to_string()),
            retry: http::Retry::default(),
        }
    }
}

impl Gcp {
    /// The provider asking another server (tests, `METADATA_GCP_URL`): `base` is the
    /// `computeMetadata/v1/` root, with a trailing slash; the `Host` header is the URL's.
    pub fn with_base(base: &str) -> Self {
        let mut base = base.to_string();
        if !base.ends_with('/') {
            base.push('/');
        }
        Gcp {
            base,
            host_header: None,
            ..Gcp::default()
        }
    }

    fn get(&self, path: &str) -> Result<Vec<u8>, String> {
        let url = format!("{}{path}", self.base);
        let mut headers = vec![("Metadata-Flavor", "Google")];
        if let Some(host) = &self.host_header {
            headers.push(("Host", host));
        }
        http::get_retrying(&url, &headers, self.retry).map_err(|e| format!("GCP: {e}"))
    }

    /// Root's `authorized_keys` from the project's `ssh-keys` (`USER:KEY` lines; the user is
    /// dropped, as LinuxKit does).
    fn handle_ssh(&self, config: &Path) -> Result<(), String> {
        let keys = self.get("project/attributes/ssh-keys")?;
        let keys = String::from_utf8_lossy(&keys);
        let mut root_keys = String::new();
        for line in keys.split('\n') {
            if let Some((_user, key)) = line.split_once(':') {
                root_keys.push_str(key);
                root_keys.push('\n');
            }
        }
        write_authorized_keys(config, root_keys.as_bytes())
    }
}

impl Provider for Gcp {
    fn name(&self) -> String {
        "GCP".into()
    }

    fn probe(&mut self) -> bool {
        self.get("instance/hostname").inspect_err(|e| debug!("{e}")).is_ok()
    }

    fn extract(&mut self, config: &Path) -> Result<Option<Vec<u8>>, String> {
        let hostname = self.get("instance/hostname")?;
        let path = config.join("hostname");
        write_file_atomic(&path, &hostname, 0o644)
            .map_err(|e| format!("GCP: cannot write the hostname to {}: {e}", path.display()))?;
        if let Err(e) = self.handle_ssh(config) {
            info!("GCP: Failed to get ssh data: {e}");
        }
        match self.get("instance/attributes/user-data") {
            Ok(userdata) => Ok(Some(userdata)),
            Err(e) => {
                // Not an error: an instance without userdata.
                info!("GCP: Failed to get user-data: {e}");
                Ok(None)
            }
        }
    }
}
