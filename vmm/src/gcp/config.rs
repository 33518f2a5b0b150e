//! Where moby talks to Google Cloud: the project and zone, the bucket images are uploaded to,
//! the API endpoints and the credentials. Given values win; else the variables gcloud and
//! LinuxKit use.

use std::path::PathBuf;

use super::error::GcpError;

/// The project (`CLOUDSDK_CORE_PROJECT`).
pub const PROJECT_ENV: &str = "CLOUDSDK_CORE_PROJECT";
/// The zone (`CLOUDSDK_COMPUTE_ZONE`).
pub const ZONE_ENV: &str = "CLOUDSDK_COMPUTE_ZONE";
/// The bucket images are uploaded to (LinuxKit's `CLOUDSDK_IMAGE_BUCKET`).
pub const BUCKET_ENV: &str = "CLOUDSDK_IMAGE_BUCKET";
/// A service-account key file (LinuxKit's `CLOUDSDK_COMPUTE_KEYS`); without it, application
/// default credentials.
pub const KEYS_ENV: &str = "CLOUDSDK_COMPUTE_KEYS";
/// The Compute Engine API's base URL (gcloud's `api_endpoint_overrides/compute`).
pub const COMPUTE_ENDPOINT_ENV: &str = "CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE";
/// Cloud Storage's base URL (gcloud's `api_endpoint_overrides/storage`).
pub const STORAGE_ENDPOINT_ENV: &str = "CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE";
/// A Cloud Storage emulator (`HOST:PORT` or a URL), as Google's client libraries take it.
pub const STORAGE_EMULATOR_ENV: &str = "STORAGE_EMULATOR_HOST";

/// LinuxKit's default zone.
pub const DEFAULT_ZONE: &str = "europe-west1-d";

/// The Compute Engine API.
const COMPUTE_ENDPOINT: &str = "https://compute.googleapis.com/compute/v1/";
/// Cloud Storage.
const STORAGE_ENDPOINT: &str = "https://storage.googleapis.com/";

/// A project and a zone.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Location {
    /// The project ID.
    pub project: String,
    /// The zone instances run in.
    pub zone: String,
}

impl Location {
    /// `project` and `zone` where given, else from the environment; the zone defaults to
    /// LinuxKit's.
    pub fn resolve(project: Option<String>, zone: Option<String>) -> Result<Location, GcpError> {
        let project = given_or_env(project, PROJECT_ENV).ok_or(GcpError::Missing {
            what: "project",
            variable: PROJECT_ENV,
        })?;
        check_project(&project)?;
        let zone = given_or_env(zone, ZONE_ENV).unwrap_or_else(|| DEFAULT_ZONE.to_string());
        if !is_name(&zone) {
            return Err(GcpError::Invalid {
                what: "the zone",
                value: zone,
                why: "a zone is lower-case letters, digits and `-`, e.g. europe-west1-d",
            });
        }
        Ok(Location { project, zone })
    }
}

/// The bucket `bucket` names, else `CLOUDSDK_IMAGE_BUCKET`.
pub fn resolve_bucket(bucket: Option<String>) -> Result<String, GcpError> {
    let bucket = given_or_env(bucket, BUCKET_ENV).ok_or(GcpError::Missing {
        what: "bucket",
        variable: BUCKET_ENV,
    })?;
    let valid = (3..=222).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.'))
        && bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
        && bucket.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !valid {
        return Err(GcpError::Invalid {
            what: "the bucket",
            value: bucket,
            why: "bucket names are 3 to 222 lower-case letters, digits, `-`, `_` and `.`",
        });
    }
    Ok(bucket)
}

/// The API endpoints: Google's, or overrides (an emulator, a private endpoint).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoints {
    /// The Compute Engine v1 base URL, ending in `/` (`https://compute.googleapis.com/compute/v1/`).
    pub compute: String,
    /// The Cloud Storage root URL, ending in `/` (`https://storage.googleapis.com/`).
    pub storage: String,
}

impl Endpoints {
    /// `compute` and `storage` where given, else from the environment, else Google's.
    pub fn resolve(compute: Option<String>, storage: Option<String>) -> Endpoints {
        let compute = given_or_env(compute, COMPUTE_ENDPOINT_ENV).unwrap_or_else(|| COMPUTE_ENDPOINT.to_string());
        let storage = storage
            .or_else(|| env(STORAGE_ENDPOINT_ENV))
            .map(|url| {
                let url = with_slash(url);
                url.strip_suffix("storage/v1/").map(str::to_string).unwrap_or(url)
            })
            .or_else(|| {
                env(STORAGE_EMULATOR_ENV).map(|host| {
                    if host.contains("://") {
                        host
                    } else {
                        format!("http://{host}")
                    }
                })
            })
            .unwrap_or_else(|| STORAGE_ENDPOINT.to_string());
        Endpoints {
            compute: with_slash(compute),
            storage: with_slash(storage),
        }
    }
}

/// Where credentials come from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CredentialsSource {
    /// A service-account key file.
    KeyFile(PathBuf),
    /// Application default credentials: `GOOGLE_APPLICATION_CREDENTIALS`, gcloud's
    /// application-default login, or the metadata server of the GCE instance this runs on.
    ApplicationDefault,
}

impl CredentialsSource {
    /// `keys` where given, else `CLOUDSDK_COMPUTE_KEYS`, else application default credentials.
    pub fn resolve(keys: Option<PathBuf>) -> CredentialsSource {
        match keys.or_else(|| env(KEYS_ENV).map(PathBuf::from)) {
            Some(path) => CredentialsSource::KeyFile(path),
            None => CredentialsSource::ApplicationDefault,
        }
    }
}

/// Everything needed to talk to one project and zone.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Settings {
    /// The project and zone.
    pub location: Location,
    /// The endpoints.
    pub endpoints: Endpoints,
    /// The credentials.
    pub credentials: CredentialsSource,
}

/// Whether `name` is a Compute Engine resource name (RFC 1035: `[a-z]([-a-z0-9]{0,61}[a-z0-9])?`).
pub fn is_name(name: &str) -> bool {
    let b = name.as_bytes();
    (1..=63).contains(&b.len())
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        && !name.ends_with('-')
}

/// Checks a resource name, naming what it is in the error.
pub fn check_name(what: &'static str, name: &str) -> Result<(), GcpError> {
    if is_name(name) {
        Ok(())
    } else {
        Err(GcpError::Invalid {
            what,
            value: name.to_string(),
            why: "Compute Engine names are 1 to 63 lower-case letters, digits and `-`, starting with a letter and not ending with `-`",
        })
    }
}

fn check_project(project: &str) -> Result<(), GcpError> {
    // Project IDs are names; older ones carry a domain (`example.com:proj`).
    let id = project.rsplit(':').next().unwrap_or(project);
    if is_name(id) || id.bytes().all(|b| b.is_ascii_digit()) && !id.is_empty() {
        Ok(())
    } else {
        Err(GcpError::Invalid {
            what: "the project",
            value: project.to_string(),
            why: "a project ID is lower-case letters, digits and `-` (or a project number)",
        })
    }
}

fn given_or_env(given: Option<String>, variable: &str) -> Option<String> {
    given.filter(|v| !v.is_empty()).or_else(|| env(variable))
}

fn env(variable: &str) -> Option<String> {
    std::env::var(variable).ok().filter(|v| !v.is_empty())
}

fn with_slash(url: String) -> String {
    if url.ends_with('/') {
        url
    } else {
        url + "/"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_compute_engine_rules() {
        for good in ["a", "moby-10-0-0-5", "x1"] {
            assert!(is_name(good), "{good}");
        }
        for bad in ["", "1a", "A", "a_b", "a-", "a.b", &"a".repeat(64)] {
            assert!(!is_name(bad), "{bad}");
        }
        let e = check_name("the instance name", "Web_1").unwrap_err().to_string();
        assert!(
            e.starts_with("the instance name \"Web_1\" is not valid: Compute Engine names"),
            "{e}"
        );
    }

    #[test]
    fn given_settings_win_and_bad_ones_are_named() {
        let location = Location::resolve(Some("proj-1".into()), Some("us-east1-b".into())).unwrap();
        assert_eq!(location.zone, "us-east1-b");
        let e = Location::resolve(Some("Proj".into()), None).unwrap_err().to_string();
        assert!(e.contains("the project \"Proj\" is not valid"), "{e}");
        let e = resolve_bucket(Some("B".into())).unwrap_err().to_string();
        assert!(e.contains("the bucket \"B\" is not valid"), "{e}");
        let endpoints = Endpoints::resolve(
            Some("http://127.0.0.1:1/compute/v1".into()),
            Some("http://127.0.0.1:2/storage/v1".into()),
        );
        assert_eq!(endpoints.compute, "http://127.0.0.1:1/compute/v1/");
        assert_eq!(endpoints.storage, "http://127.0.0.1:2/");
    }
}
