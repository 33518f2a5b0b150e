//! One authenticated HTTP client for Google's JSON APIs: every call carries an access token,
//! is retried with backoff where the API says it may be (429, 5xx, `Retry-After`), and its
//! errors carry the API's message.

use std::time::Duration;

use google_cloud_auth::credentials::{service_account, AccessTokenCredentials};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;

use super::config::CredentialsSource;
use super::error::GcpError;

/// What moby does in Google Cloud: Compute Engine and Cloud Storage.
const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// Attempts per call when the API answers "try again" (429, 500, 502, 503, 504) or cannot be
/// reached.
const ATTEMPTS: u32 = 6;
/// The first pause between attempts; doubled each time, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// The longest pause between attempts (also the cap on a `Retry-After`).
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The service a call goes to, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// Compute Engine.
    Compute,
    /// Cloud Storage.
    Storage,
}

impl Service {
    fn name(self) -> &'static str {
        match self {
            Service::Compute => "Compute Engine",
            Service::Storage => "Cloud Storage",
        }
    }
}

/// An authenticated client.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    credentials: AccessTokenCredentials,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").finish_non_exhaustive()
    }
}

impl Api {
    /// A client using the credentials `source` gives. Call it inside a Tokio runtime: the
    /// credentials refresh their tokens in a task of their own.
    pub fn new(source: &CredentialsSource) -> Result<Api, GcpError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(GcpError::Credentials(
                "credentials are set up inside a Tokio runtime".into(),
            ));
        }
        // reqwest and the auth crate are built without a crypto provider (no aws-lc).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let credentials = match source {
            CredentialsSource::KeyFile(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| GcpError::CredentialsFile {
                    path: path.clone(),
                    source,
                })?;
                let key: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
                    GcpError::Credentials(format!("{} is not a service-account key (JSON): {e}", path.display()))
                })?;
                if key.get("type").and_then(|t| t.as_str()) != Some("service_account") {
                    return Err(GcpError::Credentials(format!(
                        "{} is not a service-account key: its \"type\" is not \"service_account\"",
                        path.display()
                    )));
                }
                service_account::Builder::new(key)
                    .with_access_specifier(service_account::AccessSpecifier::from_scopes([SCOPE]))
                    .build_access_token_credentials()
                    .map_err(|e| GcpError::Credentials(format!("{}: {e}", path.display())))?
            }
            CredentialsSource::ApplicationDefault => {
                if let Some(path) = std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS").filter(|p| !p.is_empty()) {
                    // The auth crate's own message does not say which variable named the file.
                    std::fs::metadata(&path).map_err(|source| GcpError::CredentialsFile {
                        path: path.clone().into(),
                        source,
                    })?;
                }
                google_cloud_auth::credentials::Builder::default()
                    .with_scopes([SCOPE])
                    .build_access_token_credentials()
                    .map_err(|e| GcpError::Credentials(format!("application default credentials: {e}")))?
            }
        };
        let http = reqwest::Client::builder()
            .user_agent(concat!("moby/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(30))
            // An upload's "resume incomplete" is a 308 without a Location: it is an answer.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| GcpError::Credentials(format!("cannot set up an HTTP client: {e}")))?;
        Ok(Api { http, credentials })
    }

    /// An access token for the next request.
    pub async fn token(&self) -> Result<String, GcpError> {
        self.credentials
            .access_token()
            .await
            .map(|t| t.token)
            .map_err(|e| GcpError::Credentials(error_chain(&e)))
    }

    /// Sends the request `build` makes (called again for each attempt) and returns the response
    /// when it succeeded; `call` names it in errors. 429 and 5xx answers and failed connections
    /// are retried with backoff (a `Retry-After` is honoured); other errors are returned at once.
    pub async fn send(
        &self,
        service: Service,
        call: &str,
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<reqwest::Response, GcpError> {
        self.send_accepting(service, call, |status| status.is_success(), build)
            .await
    }

    /// [`Api::send`], where `accept` says which answers are the call's (e.g. an upload's 308).
    pub async fn send_accepting(
        &self,
        service: Service,
        call: &str,
        accept: impl Fn(StatusCode) -> bool,
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<reqwest::Response, GcpError> {
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 1;
        loop {
            let token = self.token().await?;
            let sent = build(&self.http).bearer_auth(token).send().await;
            let retry_after = match sent {
                Ok(response) if accept(response.status()) => return Ok(response),
                Ok(response) if retryable(response.status()) && attempt < ATTEMPTS => {
                    let wait = retry_after(&response).unwrap_or(backoff);
                    tracing::debug!(
                        "{} {call}: HTTP {}; retrying in {wait:?}",
                        service.name(),
                        response.status()
                    );
                    wait
                }
                Ok(response) => return Err(api_error(service, call, response).await),
                Err(e) if (e.is_connect() || e.is_timeout()) && attempt < ATTEMPTS => {
                    tracing::debug!("{} {call}: {e}; retrying in {backoff:?}", service.name());
                    backoff
                }
                Err(e) => {
                    return Err(GcpError::Transport {
                        service: service.name(),
                        call: call.to_string(),
                        why: error_chain(&e),
                    })
                }
            };
            tokio::time::sleep(retry_after.min(MAX_BACKOFF)).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
            attempt += 1;
        }
    }

    /// [`Api::send`] of a JSON call: `method` on `url` with `body`, the answer decoded.
    pub async fn json<T: DeserializeOwned>(
        &self,
        service: Service,
        call: &str,
        method: Method,
        url: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<T, GcpError> {
        let response = self
            .send(service, call, |http| {
                let request = http.request(method.clone(), url);
                match body {
                    Some(body) => request
                        .header(reqwest::header::CONTENT_TYPE, "application/json")
                        .body(body.to_string()),
                    None => request,
                }
            })
            .await?;
        let bytes = response.bytes().await.map_err(|e| GcpError::Transport {
            service: service.name(),
            call: call.to_string(),
            why: format!("cannot read the answer: {}", error_chain(&e)),
        })?;
        serde_json::from_slice(&bytes).map_err(|e| GcpError::Transport {
            service: service.name(),
            call: call.to_string(),
            why: format!("unexpected answer ({e}): {}", preview(&bytes)),
        })
    }
}

fn retryable(status: StatusCode) -> bool {
    matches!(status.as_u16(), 429 | 500 | 502 | 503 | 504)
}

/// A `Retry-After` in seconds (the form Google's APIs use).
fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    let value = response.headers().get(reqwest::header::RETRY_AFTER)?;
    value.to_str().ok()?.trim().parse().ok().map(Duration::from_secs)
}

/// The API's error (`{"error": {"code", "message", "errors": [{"reason"}]}}`) as a [`GcpError`].
pub async fn api_error(service: Service, call: &str, response: reqwest::Response) -> GcpError {
    let status = response.status();
    let body = response.bytes().await.unwrap_or_default();
    let (reason, message) = decode_error(&body);
    GcpError::Api {
        service: service.name(),
        call: call.to_string(),
        status: status.as_u16(),
        reason,
        message: message.unwrap_or_else(|| {
            format!("{} {}", status.canonical_reason().unwrap_or("error"), preview(&body))
                .trim()
                .to_string()
        }),
    }
}

/// The reason and message of a Google API error body.
fn decode_error(body: &[u8]) -> (Option<String>, Option<String>) {
    #[derive(serde::Deserialize)]
    struct Envelope {
        error: Body,
    }
    #[derive(serde::Deserialize)]
    struct Body {
        #[serde(default)]
        message: Option<String>,
        #[serde(default)]
        status: Option<String>,
        #[serde(default)]
        errors: Vec<Item>,
    }
    #[derive(serde::Deserialize)]
    struct Item {
        #[serde(default)]
        reason: Option<String>,
    }
    match serde_json::from_slice::<Envelope>(body) {
        Ok(Envelope { error }) => (
            error.errors.into_iter().find_map(|e| e.reason).or(error.status),
            error.message.filter(|m| !m.is_empty()),
        ),
        Err(_) => (None, None),
    }
}

/// The start of a body, for messages.
fn preview(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(200) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

/// An error with its causes (reqwest's top message alone says little).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_errors_keep_the_reason_and_message() {
        let body = br#"{"error": {"code": 403, "message": "Required 'compute.images.create' permission", "errors": [{"message": "x", "domain": "global", "reason": "forbidden"}]}}"#;
        assert_eq!(
            decode_error(body),
            (
                Some("forbidden".into()),
                Some("Required 'compute.images.create' permission".into())
            )
        );
        let body = br#"{"error": {"code": 401, "message": "Request had invalid authentication credentials.", "status": "UNAUTHENTICATED"}}"#;
        assert_eq!(decode_error(body).0.as_deref(), Some("UNAUTHENTICATED"));
        assert_eq!(decode_error(b"<html>oops</html>"), (None, None));
        assert_eq!(preview(&[b'a'; 300]).chars().count(), 201);
    }
}
