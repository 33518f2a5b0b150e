//! Registry credentials from Docker's `config.json` (`auths`, `credHelpers`, `credsStore`).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use serde::Deserialize;

use super::ImageError;

/// The key Docker uses for Docker Hub in `auths`.
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";
/// Names under which Docker Hub appears in references and configs.
const DOCKER_HUB_HOSTS: [&str; 3] = ["docker.io", "index.docker.io", "registry-1.docker.io"];

/// A username and password for HTTP basic auth (or a token exchange) with a registry.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, <redacted>)", self.username)
    }
}

#[derive(Debug, Default, Deserialize)]
struct ConfigFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(rename = "credsStore", default)]
    creds_store: Option<String>,
    #[serde(rename = "credHelpers", default)]
    cred_helpers: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// Docker's credential configuration, loaded once per pull session.
#[derive(Debug, Default)]
pub(crate) struct DockerConfig {
    path: PathBuf,
    file: ConfigFile,
}

impl DockerConfig {
    /// Loads `explicit`, else `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
    /// A missing file means anonymous access; an unreadable or invalid one is an error.
    pub fn load(explicit: Option<&Path>) -> Result<DockerConfig, ImageError> {
        let path = match explicit {
            Some(path) => path.to_path_buf(),
            None => match default_path() {
                Some(path) => path,
                None => return Ok(DockerConfig::default()),
            },
        };
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && explicit.is_none() => {
                return Ok(DockerConfig::default())
            }
            Err(e) => {
                return Err(ImageError::Credentials {
                    path,
                    reason: format!("cannot read it: {e}"),
                })
            }
        };
        let file = serde_json::from_slice(&bytes).map_err(|e| ImageError::Credentials {
            path: path.clone(),
            reason: format!("invalid JSON: {e}"),
        })?;
        Ok(DockerConfig { path, file })
    }

    /// Credentials for `host` (a registry host such as `docker.io` or `localhost:5000`), or
    /// `None` for anonymous access. `credHelpers` win over `auths`, which win over `credsStore`.
    pub fn credentials_for(&self, host: &str) -> Result<Option<Credentials>, ImageError> {
        let keys = candidate_keys(host);
        if let Some(helper) = keys.iter().find_map(|k| self.file.cred_helpers.get(k)) {
            return self.ask_helper(helper, &keys[0]);
        }
        for (key, entry) in &self.file.auths {
            if keys.iter().any(|k| normalize_key(key) == normalize_key(k)) {
                if let Some(credentials) = self.decode(key, entry)? {
                    return Ok(Some(credentials));
                }
            }
        }
        match &self.file.creds_store {
            Some(store) if !store.is_empty() => self.ask_helper(store, &keys[0]),
            _ => Ok(None),
        }
    }

    fn decode(&self, key: &str, entry: &AuthEntry) -> Result<Option<Credentials>, ImageError> {
        if let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
            let invalid = |why: &str| ImageError::Credentials {
                path: self.path.clone(),
                reason: format!("auths.{key:?}.auth {why}; run `docker login` again"),
            };
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|_| invalid("is not base64"))?;
            let text = String::from_utf8(bytes).map_err(|_| invalid("is not UTF-8"))?;
            let (username, password) = text.split_once(':').ok_or_else(|| invalid("is not user:password"))?;
            return Ok(Some(Credentials {
                username: username.to_string(),
                password: password.to_string(),
            }));
        }
        match (&entry.username, &entry.password) {
            (Some(username), Some(password)) if !username.is_empty() => Ok(Some(Credentials {
                username: username.clone(),
                password: password.clone(),
            })),
            _ => Ok(None),
        }
    }

    /// Runs `docker-credential-<helper> get`. A missing helper or unknown server means
    /// anonymous access (as a public image needs no login), with a warning.
    fn ask_helper(&self, helper: &str, server: &str) -> Result<Option<Credentials>, ImageError> {
        let program = format!("docker-credential-{helper}");
        let child = Command::new(&program)
            .arg("get")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match child {
            Ok(child) => child,
            Err(e) => {
                tracing::warn!(
                    "credential helper {program} from {} not usable ({e}); pulling anonymously",
                    self.path.display()
                );
                return Ok(None);
            }
        };
        if let Some(mut stdin) = child.stdin.take() {
            // A helper that exits early closes its stdin; its exit status tells the story.
            let _ = stdin.write_all(server.as_bytes());
        }
        let output = child.wait_with_output().map_err(|e| ImageError::Credentials {
            path: PathBuf::from(&program),
            reason: e.to_string(),
        })?;
        if !output.status.success() {
            tracing::warn!(
                "credential helper {program} has no credentials for {server}: {}",
                String::from_utf8_lossy(&output.stdout).trim()
            );
            return Ok(None);
        }
        #[derive(Deserialize)]
        struct HelperReply {
            #[serde(rename = "Username", default)]
            username: String,
            #[serde(rename = "Secret", default)]
            secret: String,
        }
        let reply: HelperReply = serde_json::from_slice(&output.stdout).map_err(|e| ImageError::Credentials {
            path: PathBuf::from(&program),
            reason: format!("invalid reply: {e}"),
        })?;
        if reply.username == "<token>" {
            // An identity token needs an OAuth2 refresh-token exchange, which we do not do.
            tracing::warn!("{program} returned an identity token for {server}; pulling anonymously");
            return Ok(None);
        }
        Ok(Some(Credentials {
            username: reply.username,
            password: reply.secret,
        }))
    }
}

fn default_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty())?;
    Some(PathBuf::from(home).join(".docker").join("config.json"))
}

/// The config keys that may hold credentials for `host`, the preferred one first.
fn candidate_keys(host: &str) -> Vec<String> {
    if DOCKER_HUB_HOSTS.contains(&host) {
        let mut keys = vec![DOCKER_HUB_KEY.to_string()];
        keys.extend(DOCKER_HUB_HOSTS.iter().map(|h| h.to_string()));
        keys
    } else {
        vec![host.to_string()]
    }
}

/// `https://host/v1/` and `host` name the same registry.
fn normalize_key(key: &str) -> &str {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    key.split('/').next().unwrap_or(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> (tempfile::TempDir, DockerConfig) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, json).unwrap();
        let config = DockerConfig::load(Some(&path)).unwrap();
        (dir, config)
    }

    #[test]
    fn auths_by_host_and_docker_hub_key() {
        let (_d, c) = config(
            r#"{"auths":{"127.0.0.1:5000":{"auth":"dXNlcjpwYTpzcw=="},
                "https://index.docker.io/v1/":{"auth":"aHViOnNlY3JldA=="},
                "https://quay.io":{"username":"q","password":"p"}}}"#,
        );
        let local = c.credentials_for("127.0.0.1:5000").unwrap().unwrap();
        assert_eq!((local.username.as_str(), local.password.as_str()), ("user", "pa:ss"));
        let hub = c.credentials_for("docker.io").unwrap().unwrap();
        assert_eq!(hub.username, "hub");
        assert_eq!(c.credentials_for("quay.io").unwrap().unwrap().password, "p");
        assert!(c.credentials_for("127.0.0.1:5001").unwrap().is_none());
        assert!(!format!("{local:?}").contains("pa:ss"));
    }

    #[test]
    fn broken_entries_are_errors_naming_the_file() {
        let (_d, c) = config(r#"{"auths":{"r.example":{"auth":"!!"}}}"#);
        let err = c.credentials_for("r.example").unwrap_err().to_string();
        assert!(err.contains("config.json") && err.contains("not base64"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, "{").unwrap();
        assert!(DockerConfig::load(Some(&path)).is_err());
        // An explicitly named file must exist; the default one may be absent.
        assert!(DockerConfig::load(Some(&dir.path().join("absent.json"))).is_err());
    }

    #[test]
    fn missing_helper_means_anonymous() {
        let (_d, c) = config(r#"{"credsStore":"moby-test-no-such-helper","auths":{"a.example":{}}}"#);
        assert!(c.credentials_for("a.example").unwrap().is_none());
    }

    #[test]
    fn keys_normalise() {
        assert_eq!(normalize_key("https://index.docker.io/v1/"), "index.docker.io");
        assert_eq!(normalize_key("localhost:5000"), "localhost:5000");
        assert_eq!(normalize_key("http://localhost:5000/"), "localhost:5000");
    }
}
