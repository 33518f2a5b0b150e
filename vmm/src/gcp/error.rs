//! [`GcpError`]: why a call to Google Cloud failed, with the API's own words.

use std::path::PathBuf;

/// Why talking to Google Cloud (credentials, Cloud Storage, Compute Engine) failed. Messages
/// carry the API's own message (quota, permission, not found), never a dump, and name the
/// setting to change where one is missing.
#[derive(Debug, thiserror::Error)]
pub enum GcpError {
    /// A setting that has no value (the project, the zone, the bucket).
    #[error("no Google Cloud {what} is given: set {variable}")]
    Missing {
        /// What is missing (`project`).
        what: &'static str,
        /// The environment variable that gives it.
        variable: &'static str,
    },
    /// A setting with a value Google Cloud would refuse.
    #[error("{what} {value:?} is not valid: {why}")]
    Invalid {
        /// What it is (`the instance name`).
        what: &'static str,
        /// The value.
        value: String,
        /// What a valid one looks like.
        why: &'static str,
    },
    /// A credentials file that cannot be read.
    #[error("cannot read the Google Cloud credentials file {path}: {source}")]
    CredentialsFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// No usable credentials, or the token service refused them.
    #[error("cannot get Google Cloud credentials: {0}")]
    Credentials(String),
    /// The API answered with an error.
    #[error("{service} {call}: {message} (HTTP {status}{})", reason.as_ref().map(|r| format!(", {r}")).unwrap_or_default())]
    Api {
        /// `Compute Engine` or `Cloud Storage`.
        service: &'static str,
        /// What was asked (`images.insert projects/p/global/images/x`).
        call: String,
        /// The HTTP status.
        status: u16,
        /// The API's reason (`forbidden`, `quotaExceeded`, `notFound`).
        reason: Option<String>,
        /// The API's message.
        message: String,
    },
    /// The API could not be reached, or its answer could not be read.
    #[error("{service} {call}: {why}")]
    Transport {
        /// `Compute Engine` or `Cloud Storage`.
        service: &'static str,
        /// What was asked.
        call: String,
        /// Why.
        why: String,
    },
    /// A long-running operation ended with an error.
    #[error("{what} failed: {message}")]
    Operation {
        /// What the operation did (`creating image x`).
        what: String,
        /// The operation's errors, joined.
        message: String,
    },
    /// A long-running operation did not end in time.
    #[error("{what} did not finish within {minutes} minutes (operation {operation})")]
    OperationTimeout {
        /// What the operation did.
        what: String,
        /// The operation's name.
        operation: String,
        /// How long it was given.
        minutes: u64,
    },
    /// An image of that name exists and replacing it was not asked for.
    #[error("the image {name} exists in project {project}: replace it, or push under another name")]
    ImageExists {
        /// The image.
        name: String,
        /// The project.
        project: String,
    },
    /// A file that is not a GCE image archive.
    #[error("{} is not a GCE image: {why}", path.display())]
    NotAnImage {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// A local file.
    #[error("cannot {doing} {}: {source}", path.display())]
    Io {
        /// What was tried.
        doing: &'static str,
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl GcpError {
    /// The HTTP status of an API error.
    pub fn status(&self) -> Option<u16> {
        match self {
            GcpError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}
