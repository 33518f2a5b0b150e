//! The registry side of pulls: HTTP GETs of manifests and blobs (distribution API v2) with token
//! or basic authentication, where every body is read with a bound and every transfer is watched
//! for stalls.
//!
//! oci-client, which pushes use, reads manifests, token responses and error bodies whole into
//! memory before anyone can look at their size, so a registry answering with an endless body
//! exhausts memory; pulls therefore speak HTTP themselves, over reqwest (which oci-client already
//! brings in).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, WWW_AUTHENTICATE};
use reqwest::{Response, StatusCode};
use tokio::time::Instant;

use super::auth::DockerConfig;
use super::descriptor::{media_type, Descriptor};
use super::layout::{BlobWriter, MAX_JSON_BLOB};
use super::pull::Remote;
use super::{CacheGap, ImageError};
use crate::progress::Progress;

/// How long a transfer may go without 16 KiB arriving, unless
/// `MOBY_PULL_STALL_TIMEOUT` (seconds) or [`super::PullOptions::stall_timeout`] say otherwise.
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(60);
/// The environment variable that overrides [`DEFAULT_STALL_TIMEOUT`].
pub const STALL_TIMEOUT_ENV: &str = "MOBY_PULL_STALL_TIMEOUT";
/// What counts as progress: a registry trickling a byte a second is as stuck as a silent one.
const PROGRESS_BYTES: u64 = 16 << 10;
/// Token responses are a few kilobytes.
const MAX_TOKEN_RESPONSE: u64 = 1 << 20;
/// How much of an error response is read to explain it.
const MAX_ERROR_BODY: u64 = 64 << 10;

/// The stall timeout in force: `configured`, else `$MOBY_PULL_STALL_TIMEOUT`, else the default.
pub(crate) fn stall_timeout(configured: Option<Duration>) -> Result<Duration, ImageError> {
    if let Some(timeout) = configured {
        return Ok(timeout);
    }
    let Some(value) = std::env::var_os(STALL_TIMEOUT_ENV) else {
        return Ok(DEFAULT_STALL_TIMEOUT);
    };
    let text = value.to_string_lossy();
    match text.trim().parse::<u64>() {
        Ok(seconds) if seconds > 0 => Ok(Duration::from_secs(seconds)),
        _ => Err(ImageError::InvalidEnvironment {
            name: STALL_TIMEOUT_ENV,
            value: text.into_owned(),
            reason: "it must be a whole number of seconds, at least 1",
        }),
    }
}

/// What one request is about, for its errors.
#[derive(Clone, Copy)]
pub(crate) struct Target<'a> {
    pub remote: &'a Remote,
    pub image: &'a str,
    /// "manifest" or "blob".
    pub what: &'static str,
    /// Tag or digest.
    pub object: &'a str,
}

impl Target<'_> {
    fn failed(&self, detail: String) -> ImageError {
        ImageError::Registry {
            image: self.image.to_string(),
            registry: self.remote.url.clone(),
            what: self.what,
            object: self.object.to_string(),
            detail,
        }
    }

    fn unauthorized(&self, detail: String) -> ImageError {
        ImageError::Unauthorized {
            image: self.image.to_string(),
            registry: self.remote.url.clone(),
            host: self.remote.host.clone(),
            detail,
        }
    }

    fn stalled(&self, timeout: Duration) -> ImageError {
        ImageError::Stalled {
            image: self.image.to_string(),
            registry: self.remote.url.clone(),
            what: self.what,
            object: self.object.to_string(),
            progress: PROGRESS_BYTES,
            seconds: timeout.as_secs(),
        }
    }

    fn too_large(&self, part: &'static str, limit: u64) -> ImageError {
        ImageError::TooLarge {
            image: self.image.to_string(),
            registry: self.remote.url.clone(),
            what: part,
            object: self.object.to_string(),
            limit,
        }
    }

    /// A transport error: connecting failed (unreachable), or the exchange broke off.
    fn transport(&self, error: &reqwest::Error) -> ImageError {
        if error.is_connect() {
            return ImageError::Unreachable {
                image: self.image.to_string(),
                // What the cache lacked is filled in by the caller, who knows.
                cached: CacheGap::NotCached,
                registry: self.remote.url.clone(),
                detail: super::pull::error_chain(error),
            };
        }
        self.failed(format!("the transfer broke off: {}", super::pull::error_chain(error)))
    }
}

/// Fails a transfer that does not move: its deadline moves on each time another
/// [`PROGRESS_BYTES`] have arrived.
struct Watchdog {
    timeout: Duration,
    deadline: Instant,
    since: u64,
}

impl Watchdog {
    fn start(timeout: Duration) -> Watchdog {
        Watchdog {
            timeout,
            deadline: Instant::now() + timeout,
            since: 0,
        }
    }

    /// `future`'s output, or `None` when the deadline passed first.
    async fn guard<T>(&self, future: impl Future<Output = T>) -> Option<T> {
        tokio::time::timeout_at(self.deadline, future).await.ok()
    }

    fn arrived(&mut self, bytes: usize) {
        self.since += bytes as u64;
        if self.since >= PROGRESS_BYTES {
            self.since = 0;
            self.deadline = Instant::now() + self.timeout;
        }
    }
}

/// A registry client for pulls, shared by the concurrent requests of one pull.
pub(crate) struct Registry {
    http: reqwest::Client,
    docker: DockerConfig,
    stall: Duration,
    /// The `Authorization` value that worked, per registry and repository (tokens are scoped to
    /// a repository).
    authorizations: Mutex<HashMap<String, HeaderValue>>,
}

impl Registry {
    pub fn new(docker: DockerConfig, stall: Duration) -> Result<Registry, String> {
        install_crypto_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(30))
            .user_agent(concat!("moby-rs/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot set up the HTTP client: {e}"))?;
        Ok(Registry {
            http,
            docker,
            stall,
            authorizations: Mutex::new(HashMap::new()),
        })
    }

    /// A manifest or index (by tag or digest), at most [`MAX_JSON_BLOB`] bytes of it.
    pub async fn manifest(&self, target: Target<'_>) -> Result<Vec<u8>, ImageError> {
        let url = url(target.remote, "manifests", target.object);
        let mut watchdog = Watchdog::start(self.stall);
        let accept = media_type::MANIFEST_TYPES.join(", ");
        let mut response = self.get(target, &url, &accept, &mut watchdog).await?;
        let (body, complete) = self.read(target, &mut response, MAX_JSON_BLOB, &mut watchdog).await?;
        if !complete {
            return Err(target.too_large("manifest", MAX_JSON_BLOB));
        }
        Ok(body)
    }

    /// Streams a blob into `writer`, which checks its size as it grows, telling `progress`.
    pub async fn download(
        &self,
        target: Target<'_>,
        blob: &Descriptor,
        writer: &mut BlobWriter,
        progress: &dyn Progress,
    ) -> Result<(), ImageError> {
        let url = url(target.remote, "blobs", &blob.digest);
        let mut watchdog = Watchdog::start(self.stall);
        let mut response = self.get(target, &url, "*/*", &mut watchdog).await?;
        while let Some(chunk) = self.chunk(target, &mut response, &mut watchdog).await? {
            std::io::Write::write_all(writer, chunk.as_ref()).map_err(|e| writer.io_error(e))?;
            writer.check_not_oversized()?;
            progress.pull_bytes(target.image, chunk.as_ref().len() as u64);
        }
        Ok(())
    }

    /// GET `url`, authenticating once when the registry asks to; any answer but success is an
    /// error that says what the registry meant.
    async fn get(
        &self,
        target: Target<'_>,
        url: &str,
        accept: &str,
        watchdog: &mut Watchdog,
    ) -> Result<Response, ImageError> {
        let key = format!(
            "{}/{}",
            target.remote.oci.resolve_registry(),
            target.remote.oci.repository()
        );
        let mut authenticated = false;
        loop {
            let mut request = self.http.get(url).header(ACCEPT, accept);
            if let Some(authorization) = self.authorization(&key) {
                request = request.header(AUTHORIZATION, authorization);
            }
            let response = watchdog
                .guard(request.send())
                .await
                .ok_or_else(|| target.stalled(self.stall))?
                .map_err(|e| target.transport(&e))?;
            if response.status() == StatusCode::UNAUTHORIZED && !authenticated {
                authenticated = true;
                if let Some(authorization) = self.authenticate(target, &response).await? {
                    self.authorizations
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(key.clone(), authorization);
                    continue;
                }
            }
            if response.status().is_success() {
                return Ok(response);
            }
            return Err(self.refusal(target, response, watchdog).await);
        }
    }

    fn authorization(&self, key: &str) -> Option<HeaderValue> {
        let authorizations = self.authorizations.lock().unwrap_or_else(|e| e.into_inner());
        authorizations.get(key).cloned()
    }

    /// Answers a 401's challenge: a bearer token from the realm it names (with the Docker
    /// credentials for the host, if any), or the credentials themselves for basic auth.
    /// `None` when there is nothing to answer with.
    async fn authenticate(&self, target: Target<'_>, response: &Response) -> Result<Option<HeaderValue>, ImageError> {
        let Some((scheme, params)) = response
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|h| h.to_str().ok())
            .and_then(parse_challenge)
        else {
            return Ok(None);
        };
        let credentials = self.docker.credentials_for(&target.remote.host)?;
        let header = |value: String| {
            HeaderValue::from_str(&value).map_err(|_| target.unauthorized("the registry sent an unusable token".into()))
        };
        if scheme.eq_ignore_ascii_case("basic") {
            return credentials
                .map(|c| {
                    let pair = format!("{}:{}", c.username, c.password);
                    header(format!(
                        "Basic {}",
                        base64::engine::general_purpose::STANDARD.encode(pair)
                    ))
                })
                .transpose();
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Ok(None);
        }
        let Some(realm) = params.get("realm") else {
            return Ok(None);
        };
        let scope = format!("repository:{}:pull", target.remote.oci.repository());
        let mut query = vec![("scope", scope.as_str())];
        if let Some(service) = params.get("service") {
            query.push(("service", service));
        }
        let mut request = self.http.get(realm.as_str()).query(&query);
        match &credentials {
            Some(_) if !may_send_credentials(realm, target.remote.plain_http) => {
                tracing::warn!(
                    "not sending the credentials for {} to its token service {realm}: it is not HTTPS",
                    target.remote.host
                );
            }
            Some(c) => request = request.basic_auth(&c.username, Some(&c.password)),
            None => {}
        }
        let mut watchdog = Watchdog::start(self.stall);
        let mut reply = watchdog
            .guard(request.send())
            .await
            .ok_or_else(|| target.stalled(self.stall))?
            .map_err(|e| target.transport(&e))?;
        let status = reply.status();
        let limit = if status.is_success() {
            MAX_TOKEN_RESPONSE
        } else {
            MAX_ERROR_BODY
        };
        let (body, complete) = self.read(target, &mut reply, limit, &mut watchdog).await?;
        if !status.is_success() {
            return Err(target.unauthorized(format!("{realm} refused a token: {}", describe(status, &body))));
        }
        if !complete {
            return Err(target.too_large("token response", MAX_TOKEN_RESPONSE));
        }
        #[derive(serde::Deserialize)]
        struct Token {
            token: Option<String>,
            access_token: Option<String>,
        }
        let token = serde_json::from_slice::<Token>(&body)
            .ok()
            .and_then(|t| t.token.or(t.access_token))
            .ok_or_else(|| target.unauthorized(format!("{realm} sent no token")))?;
        header(format!("Bearer {token}")).map(Some)
    }

    /// The error for an unsuccessful answer, from its status and the start of its body.
    async fn refusal(&self, target: Target<'_>, mut response: Response, watchdog: &mut Watchdog) -> ImageError {
        let status = response.status();
        let body = match self.read(target, &mut response, MAX_ERROR_BODY, watchdog).await {
            Ok((body, _)) => body,
            Err(e) => return e,
        };
        let codes = error_codes(&body);
        let has = |wanted: &[&str]| codes.iter().any(|c| wanted.contains(&c.as_str()));
        if status == StatusCode::NOT_FOUND || has(&["MANIFEST_UNKNOWN", "NAME_UNKNOWN", "BLOB_UNKNOWN"]) {
            return ImageError::NotFound {
                image: target.image.to_string(),
                registry: target.remote.url.clone(),
                what: target.what,
                object: target.object.to_string(),
            };
        }
        let detail = describe(status, &body);
        if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) || has(&["DENIED", "UNAUTHORIZED"]) {
            return target.unauthorized(detail);
        }
        target.failed(detail)
    }

    /// Reads the body, at most `limit` bytes of it; the flag says whether that was all of it.
    async fn read(
        &self,
        target: Target<'_>,
        response: &mut Response,
        limit: u64,
        watchdog: &mut Watchdog,
    ) -> Result<(Vec<u8>, bool), ImageError> {
        if response.content_length().is_some_and(|length| length > limit) {
            return Ok((Vec::new(), false));
        }
        let mut body = Vec::new();
        while let Some(chunk) = self.chunk(target, response, watchdog).await? {
            let chunk = chunk.as_ref();
            let room = usize::try_from(limit).unwrap_or(usize::MAX) - body.len();
            if chunk.len() > room {
                body.extend_from_slice(&chunk[..room]);
                return Ok((body, false));
            }
            body.extend_from_slice(chunk);
        }
        Ok((body, true))
    }

    /// The next piece of a body, or `None` at its end.
    async fn chunk(
        &self,
        target: Target<'_>,
        response: &mut Response,
        watchdog: &mut Watchdog,
    ) -> Result<Option<impl AsRef<[u8]>>, ImageError> {
        let chunk = watchdog
            .guard(response.chunk())
            .await
            .ok_or_else(|| target.stalled(self.stall))?
            .map_err(|e| target.transport(&e))?;
        if let Some(chunk) = &chunk {
            watchdog.arrived(chunk.as_ref().len());
        }
        Ok(chunk)
    }
}

/// Installs ring as rustls' crypto provider (reqwest is built without one, to avoid aws-lc);
/// harmless when one is already installed.
pub(crate) fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn url(remote: &Remote, kind: &str, object: &str) -> String {
    let scheme = if remote.plain_http { "http" } else { "https" };
    format!(
        "{scheme}://{}/v2/{}/{kind}/{object}",
        remote.oci.resolve_registry(),
        remote.oci.repository()
    )
}

/// `HTTP 500: message` from a status and an error body (the OCI error envelope's messages, or
/// the start of the text).
fn describe(status: StatusCode, body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Envelope {
        errors: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    let text = match serde_json::from_slice::<Envelope>(body) {
        Ok(envelope) => envelope
            .errors
            .iter()
            .map(|e| format!("{} {}", e.code, e.message).trim().to_string())
            .collect::<Vec<_>>()
            .join("; "),
        Err(_) => String::from_utf8_lossy(&body[..body.len().min(200)]).trim().to_string(),
    };
    if text.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {text}")
    }
}

/// The `code`s of an OCI error envelope.
fn error_codes(body: &[u8]) -> Vec<String> {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("errors").and_then(|e| e.as_array()).cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|e| e.get("code").and_then(|c| c.as_str()).map(str::to_string))
        .collect()
}

/// The first challenge of a `WWW-Authenticate` value: its scheme and its `key="value"` (or
/// `key=token`) parameters.
fn parse_challenge(header: &str) -> Option<(String, HashMap<String, String>)> {
    let header = header.trim();
    let (scheme, mut rest) = header.split_once(' ').unwrap_or((header, ""));
    if scheme.is_empty() {
        return None;
    }
    let mut params = HashMap::new();
    loop {
        rest = rest.trim_start_matches([' ', ',']);
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let (value, after) = match after.strip_prefix('"') {
            Some(quoted) => {
                let mut value = String::new();
                let mut chars = quoted.char_indices();
                let mut end = quoted.len();
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => value.extend(chars.next().map(|(_, c)| c)),
                        '"' => {
                            end = i + 1;
                            break;
                        }
                        c => value.push(c),
                    }
                }
                (value, &quoted[end..])
            }
            None => {
                let end = after.find(',').unwrap_or(after.len());
                (after[..end].trim().to_string(), &after[end..])
            }
        };
        params.insert(key.trim().to_ascii_lowercase(), value);
        rest = after;
    }
    Some((scheme.to_string(), params))
}

/// Whether credentials may go to the token service `realm`: never in clear text for a registry
/// reached over HTTPS (without them the service may still hand out an anonymous token).
fn may_send_credentials(realm: &str, registry_plain_http: bool) -> bool {
    let clear_text = realm
        .get(..7)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("http://"));
    registry_plain_http || !clear_text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse() {
        let (scheme, params) = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        )
        .unwrap();
        assert_eq!(scheme, "Bearer");
        assert_eq!(params["realm"], "https://auth.example/token");
        assert_eq!(params["service"], "registry.example");
        assert_eq!(params["scope"], "repository:a/b:pull,push");
        let (scheme, params) = parse_challenge(r#"Basic realm="a \"quoted\" realm", charset=UTF-8"#).unwrap();
        assert_eq!(scheme, "Basic");
        assert_eq!(params["realm"], r#"a "quoted" realm"#);
        assert_eq!(params["charset"], "UTF-8");
        assert!(parse_challenge("").is_none());
    }

    #[test]
    fn error_bodies_are_described() {
        let envelope = br#"{"errors":[{"code":"DENIED","message":"no"},{"code":"X"}]}"#;
        assert_eq!(error_codes(envelope), ["DENIED", "X"]);
        assert_eq!(
            describe(StatusCode::FORBIDDEN, envelope),
            "HTTP 403 Forbidden: DENIED no; X"
        );
        assert_eq!(describe(StatusCode::BAD_GATEWAY, b""), "HTTP 502 Bad Gateway");
        assert_eq!(
            describe(StatusCode::BAD_GATEWAY, b"<html>"),
            "HTTP 502 Bad Gateway: <html>"
        );
    }

    #[test]
    fn credentials_never_go_to_a_clear_text_token_service_of_an_https_registry() {
        assert!(super::may_send_credentials("https://auth.example/token", false));
        assert!(!super::may_send_credentials("http://auth.example/token", false));
        assert!(!super::may_send_credentials("HTTP://auth.example/token", false));
        assert!(super::may_send_credentials("http://127.0.0.1:5000/token", true));
    }
}
