//! `aws` and `openstack`: EC2-style metadata servers, as LinuxKit's providers of those names.
//!
//! The hostname (`meta-data/hostname`) is required: it is the probe. Then `public-ipv4`,
//! `local-ipv4`, `placement/availability-zone`, `instance-type`, `instance-id` and
//! `local-hostname` go to `public_ipv4`, `local_ipv4`, `availability_zone`, `instance_type`,
//! `instance_id`, `local_hostname` (each logged and skipped when missing), the first public key
//! to `ssh/authorized_keys` (0600), and `user-data` is the userdata.
//!
//! For AWS an IMDSv2 session token is asked for first (`PUT /latest/api/token`) and sent with every
//! request when the server gives one; without it the requests are IMDSv1's, as LinuxKit's are.
//! (LinuxKit's `os.Mkdir` of `ssh` fails when the directory exists, losing the keys; here an
//! existing `ssh` directory is used.)

use std::path::Path;

use super::Provider;
use crate::http;
use crate::write::{write_authorized_keys, write_file_atomic};

/// The EC2 metadata API root (`meta-data/`, `user-data` below it).
pub const DEFAULT_BASE: &str = "http://169.254.169.254/latest/";

/// Metadata copied to files: (path under `meta-data/`, file under the config directory).
pub const META_FILES: [(&str, &str); 6] = [
    ("public-ipv4", "public_ipv4"),
    ("local-ipv4", "local_ipv4"),
    ("placement/availability-zone", "availability_zone"),
    ("instance-type", "instance_type"),
    ("instance-id", "instance_id"),
    ("local-hostname", "local_hostname"),
];

const TOKEN_HEADER: &str = "X-aws-ec2-metadata-token";
const TOKEN_TTL_HEADER: &str = "X-aws-ec2-metadata-token-ttl-seconds";

/// Which EC2-style cloud.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// Amazon EC2 (`aws`).
    Aws,
    /// OpenStack's EC2-compatible metadata service (`openstack`).
    OpenStack,
}

/// The `aws` or `openstack` provider.
#[derive(Debug, Clone)]
pub struct Ec2 {
    flavor: Flavor,
    base: String,
    token: Option<String>,
    /// Deadline and retries of each request.
    pub retry: http::Retry,
}

impl Ec2 {
    /// The provider asking the usual address.
    pub fn new(flavor: Flavor) -> Self {
        Ec2::with_base(flavor, DEFAULT_BASE)
    }

    /// The provider asking `base` (the `latest/` root, trailing slash added if missing).
    pub fn with_base(flavor: Flavor, base: &str) -> Self {
        let mut base = base.to_string();
        if !base.ends_with('/') {
            base.push('/');
        }
        Ec2 {
            flavor,
            base,
            token: None,
            retry: http::Retry::default(),
        }
    }

    fn label(&self) -> &'static str {
        match self.flavor {
            Flavor::Aws => "AWS",
            Flavor::OpenStack => "OpenStack",
        }
    }

    fn get(&self, path: &str) -> Result<Vec<u8>, String> {
        let url = format!("{}{path}", self.base);
        let headers: Vec<(&str, &str)> = self.token.iter().map(|t| (TOKEN_HEADER, t.as_str())).collect();
        http::get_retrying(&url, &headers, self.retry).map_err(|e| format!("{}: {e}", self.label()))
    }

    /// Asks for an IMDSv2 token (AWS only); no token is not an error.
    fn fetch_token(&mut self) {
        if self.flavor != Flavor::Aws || self.token.is_some() {
            return;
        }
        let url = format!("{}api/token", self.base);
        match http::put_empty(&url, &[(TOKEN_TTL_HEADER, "21600")], self.retry.timeout) {
            Ok(token) => {
                let token = String::from_utf8_lossy(&token).trim().to_string();
                if !token.is_empty() && !token.contains(['\r', '\n']) {
                    self.token = Some(token);
                }
            }
            Err(e) => debug!("AWS: no IMDSv2 token, using IMDSv1: {e}"),
        }
    }

    fn handle_ssh(&self, config: &Path) -> Result<(), String> {
        let key = self.get("meta-data/public-keys/0/openssh-key")?;
        write_authorized_keys(config, &key)
    }
}

impl Provider for Ec2 {
    fn name(&self) -> String {
        match self.flavor {
            Flavor::Aws => "AWS".into(),
            Flavor::OpenStack => "openstack".into(),
        }
    }

    fn probe(&mut self) -> bool {
        self.fetch_token();
        self.get("meta-data/hostname").inspect_err(|e| debug!("{e}")).is_ok()
    }

    fn extract(&mut self, config: &Path) -> Result<Option<Vec<u8>>, String> {
        let label = self.label();
        let hostname = self.get("meta-data/hostname")?;
        let path = config.join("hostname");
        write_file_atomic(&path, &hostname, 0o644)
            .map_err(|e| format!("{label}: cannot write the hostname to {}: {e}", path.display()))?;
        for (lookup, file) in META_FILES {
            match self.get(&format!("meta-data/{lookup}")) {
                Ok(value) => {
                    let path = config.join(file);
                    if let Err(e) = write_file_atomic(&path, &value, 0o644) {
                        info!("{label}: Failed to write {}: {e}", path.display());
                    }
                }
                Err(e) => info!("{label}: Failed to get {lookup}: {e}"),
            }
        }
        if let Err(e) = self.handle_ssh(config) {
            info!("{label}: Failed to get ssh data: {e}");
        }
        match self.get("user-data") {
            Ok(userdata) => Ok(Some(userdata)),
            Err(e) => {
                info!("{label}: Failed to get user-data: {e}");
                Ok(None)
            }
        }
    }
}
