//! A fake Google Compute Engine v1 API for the GCP tests, in process, on one loopback port:
//!
//! - `/compute/v1/projects/{project}/...`: images.{insert,get,delete},
//!   instances.{insert,get,list,delete,setLabels,setMetadata,getSerialPortOutput},
//!   zoneOperations/globalOperations.{get,wait}, routed by the discovery document's `flatPath`s
//!   (`schema`), every request and response checked against its schemas, state kept as GCE does
//!   (`state`);
//! - `POST /token` (OAuth: service-account JWT-bearer and refresh-token grants) and the metadata
//!   server under `/computeMetadata/v1/` (`auth`);
//! - fault injection and introspection for assertions ([`GceFake`]).
//!
//! A request that breaks the schema is answered 400 with Google's error JSON and recorded as a
//! [`Violation`], so a test fails on `assert_no_violations` even when the client ignores the 400.
//!
//! ```ignore
//! let fake = GceFake::start(Some(storage_url));
//! std::env::set_var("GCE_METADATA_HOST", fake.metadata_host());
//! // ... run the client against fake.compute_endpoint() ...
//! fake.assert_no_violations();
//! ```

#![allow(dead_code)]

mod auth;
mod disk_image;
mod filter;
mod http;
mod schema;
mod state;

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

pub use auth::{generate_rsa_pem, sign_jwt};

use auth::{Auth, AuthFailure};
use http::{Request, Response, Server};
use schema::{Discovery, Route};
use state::{Call, Compute};

/// The project of the fake's credentials and metadata server.
pub const PROJECT: &str = "moby-fake-project";

/// One request the fake received.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    /// The discovery method id (`compute.instances.insert`), or `oauth2.token`,
    /// `metadata.get`, `unknown`.
    pub method_id: String,
    /// `GET`, `POST`, `DELETE`.
    pub http_method: String,
    /// The path, percent-encoded as sent.
    pub path: String,
    /// The decoded query parameters, in order.
    pub query: Vec<(String, String)>,
    /// The body: JSON when it parses, else a string (a form), `Null` when empty.
    pub body: Value,
}

/// A request (or one of the fake's own responses) that breaks the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The method id, or `unknown` for a path no method serves.
    pub method_id: String,
    /// Where: `resource.disks[0].type`, `query.maxResults`, `path.zone`, `response.status`.
    pub field: String,
    /// What is wrong, in Google's words where we know them.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.method_id, self.field, self.message)
    }
}

/// An error to answer instead of serving a method, for `times` calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// HTTP status (429, 503, 403, ...).
    pub status: u16,
    /// `errors[0].reason` (`rateLimitExceeded`, `backendError`, ...).
    pub reason: String,
    /// The message.
    pub message: String,
    /// How many calls in a row get it.
    pub times: u32,
    /// A `Retry-After` header, in seconds.
    pub retry_after_secs: Option<u64>,
}

impl Fault {
    /// A fault for the next call only, without `Retry-After`.
    pub fn new(status: u16, reason: &str, message: &str) -> Fault {
        Fault {
            status,
            reason: reason.to_string(),
            message: message.to_string(),
            times: 1,
            retry_after_secs: None,
        }
    }

    /// The same fault for `times` calls in a row.
    pub fn times(self, times: u32) -> Fault {
        Fault { times, ..self }
    }

    /// With a `Retry-After: SECS` header.
    pub fn retry_after(self, secs: u64) -> Fault {
        Fault {
            retry_after_secs: Some(secs),
            ..self
        }
    }
}

#[derive(Default)]
struct Log {
    requests: Vec<RecordedRequest>,
    violations: Vec<Violation>,
}

struct Shared {
    url: String,
    storage: Option<String>,
    discovery: &'static Discovery,
    auth: Auth,
    compute: Mutex<Compute>,
    log: Mutex<Log>,
    faults: Mutex<BTreeMap<String, VecDeque<Fault>>>,
}

/// The running fake; dropping it stops its threads.
pub struct GceFake {
    // Declared first so that it is dropped (threads joined) first.
    server: Server,
    shared: Arc<Shared>,
}

impl GceFake {
    /// Starts the fake on a free loopback port. `storage_endpoint` (`http://127.0.0.1:PORT`, a
    /// Cloud Storage emulator) is where `rawDisk.source` objects are read; `None` makes every
    /// image insert's operation fail with a clear error.
    pub fn start(storage_endpoint: Option<String>) -> GceFake {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port for fake-gce");
        let url = format!("http://{}", listener.local_addr().expect("the fake's address"));
        let shared = Arc::new(Shared {
            storage: storage_endpoint,
            discovery: Discovery::get(),
            auth: Auth::new(&url, PROJECT),
            compute: Mutex::new(Compute::new(&format!("{url}/compute/v1/"))),
            log: Mutex::default(),
            faults: Mutex::default(),
            url,
        });
        let handler_state = shared.clone();
        let server = Server::start(
            listener,
            Arc::new(move |request: &Request| handle(&handler_state, request)),
        )
        .expect("start fake-gce's server");
        GceFake { server, shared }
    }

    /// `http://127.0.0.1:PORT`: the token endpoint, the metadata server and Compute all live here.
    pub fn url(&self) -> String {
        self.shared.url.clone()
    }

    /// `{url}/compute/v1/`, the Compute API's base URL (GCE's is
    /// `https://compute.googleapis.com/compute/v1/`); selfLinks start with it.
    pub fn compute_endpoint(&self) -> String {
        format!("{}/compute/v1/", self.shared.url)
    }

    /// `{url}/token`, the OAuth token endpoint (the key files' `token_uri`).
    pub fn token_uri(&self) -> String {
        self.shared.auth.token_uri()
    }

    /// `127.0.0.1:PORT`, the value for `GCE_METADATA_HOST`.
    pub fn metadata_host(&self) -> String {
        self.server.addr().to_string()
    }

    /// The project id of the credentials and of the metadata server ([`PROJECT`]).
    pub fn project(&self) -> &'static str {
        PROJECT
    }

    /// A Google service-account key file (`type`, `project_id`, `private_key_id`, `private_key`
    /// as PKCS#8 PEM, `client_email`, `client_id`, `token_uri` = [`Self::token_uri`], ...). The
    /// first call makes the RSA key with `openssl` and registers it: from then on the token
    /// endpoint takes its assertions and Compute takes JWTs it signed.
    pub fn service_account_key(&self) -> Value {
        self.shared.auth.service_account_key()
    }

    /// An `authorized_user` credentials file whose refresh token the token endpoint accepts.
    pub fn authorized_user(&self) -> Value {
        self.shared.auth.authorized_user()
    }

    /// A fresh access token (cloud-platform scope), for tests that call the API themselves.
    pub fn access_token(&self) -> String {
        self.shared.auth.issue_token()
    }

    /// Refuses every token from now on (401 on Compute, `invalid_grant` at `/token`, 404 at the
    /// metadata token), or stops refusing.
    pub fn refuse_tokens(&self, refuse: bool) {
        self.shared.auth.refuse_tokens(refuse);
    }

    /// Expires every token issued and every self-signed JWT used so far: their next use is 401.
    pub fn expire_tokens(&self) {
        self.shared.auth.expire_tokens();
    }

    /// The next call of `method_id` (`compute.images.insert`, or `oauth2.token`) answers
    /// `status` with Google's error JSON carrying `reason` and `message`.
    pub fn fail_next(&self, method_id: &str, status: u16, reason: &str, message: &str) {
        self.inject(method_id, Fault::new(status, reason, message));
    }

    /// Queues a fault for `method_id` (after the ones already queued for it).
    pub fn inject(&self, method_id: &str, fault: Fault) {
        let mut faults = self.shared.faults.lock().unwrap();
        faults.entry(method_id.to_string()).or_default().push_back(fault);
    }

    /// The next operation started by `method_id` ends DONE with an error saying `message` (code
    /// `INTERNAL_ERROR`), and its effect is not applied.
    pub fn fail_operation(&self, method_id: &str, message: &str) {
        self.shared.compute.lock().unwrap().fail_operation(method_id, message);
    }

    /// How many `get`/`wait` polls an operation needs to be DONE (default 2: RUNNING on the
    /// first, DONE on the second; 0: DONE in the answer that starts it).
    pub fn set_operation_polls(&self, polls: u32) {
        self.shared.compute.lock().unwrap().set_polls_until_done(polls);
    }

    /// Sets an instance's status (e.g. `TERMINATED` when its guest powered off); false if no
    /// instance has that name.
    pub fn set_instance_status(&self, name: &str, status: &str) -> bool {
        self.shared.compute.lock().unwrap().set_instance_status(name, status)
    }

    /// Writes `text` to an instance's serial console; false if no instance has that name.
    pub fn append_serial_output(&self, name: &str, text: &str) -> bool {
        self.shared.compute.lock().unwrap().append_serial_output(name, text)
    }

    /// Every image as `images.get` would answer it, by project and name.
    pub fn images(&self) -> Vec<Value> {
        self.shared.compute.lock().unwrap().images()
    }

    /// Every instance as `instances.get` would answer it, by project, zone and name.
    pub fn instances(&self) -> Vec<Value> {
        self.shared.compute.lock().unwrap().instances()
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.log.lock().unwrap().requests.clone()
    }

    /// Every API violation seen, in order (requests and the fake's own responses).
    pub fn violations(&self) -> Vec<Violation> {
        self.shared.log.lock().unwrap().violations.clone()
    }

    /// Panics listing the violations, if there are any.
    #[track_caller]
    pub fn assert_no_violations(&self) {
        let violations = self.violations();
        if !violations.is_empty() {
            let lines: Vec<String> = violations.iter().map(|v| format!("  {v}")).collect();
            panic!("the client broke the Compute API:\n{}", lines.join("\n"));
        }
    }
}

/// Serves one request of any of the fake's endpoints.
fn handle(shared: &Shared, request: &Request) -> Response {
    let parsed_query = http::parse_form(&request.query);
    let query = parsed_query.clone().unwrap_or_default();
    let body = if request.body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&request.body).unwrap_or_else(|_| json!(String::from_utf8_lossy(&request.body)))
    };
    let compute_path = request
        .path
        .strip_prefix(&format!("/{}", shared.discovery.service_path));
    let route = compute_path.map(|path| shared.discovery.route(&request.method, path));
    let method_id = match (&route, request.path.as_str()) {
        (Some(Route::Method(method, _)), _) => method.id.clone(),
        (_, "/token") => "oauth2.token".to_string(),
        (_, path) if path == "/" || path.starts_with("/computeMetadata/") => "metadata.get".to_string(),
        _ => "unknown".to_string(),
    };
    shared.log.lock().unwrap().requests.push(RecordedRequest {
        method_id: method_id.clone(),
        http_method: request.method.clone(),
        path: request.path.clone(),
        query: query.clone(),
        body,
    });

    match route {
        Some(Route::Method(method, _)) if parsed_query.is_err() => {
            let message = format!("Invalid query string {:?}: bad percent-encoding.", request.query);
            record_violation(shared, &method.id, "query", &message);
            google_error(400, "invalid", &message)
        }
        Some(Route::Method(method, params)) => compute(shared, request, method, &params, &query),
        Some(Route::NotFound) | None if method_id == "unknown" => {
            let message = format!(
                "The requested URL {} {} was not found on this server (fake-gce serves the methods of tests/data/gcp/compute-v1.json).",
                request.method, request.path
            );
            if compute_path.is_some() {
                record_violation(shared, "unknown", "path", &message);
            }
            google_error(404, "notFound", &message)
        }
        _ => {
            if let Some(response) = take_fault(shared, &method_id) {
                return response;
            }
            if method_id == "oauth2.token" {
                shared.auth.token_endpoint(request)
            } else {
                shared.auth.metadata(request)
            }
        }
    }
}

/// A Compute call: validation (recorded), authentication, injected faults, the method, and the
/// check of the fake's own answer.
fn compute(
    shared: &Shared,
    request: &Request,
    method: &schema::Method,
    params: &BTreeMap<String, String>,
    query: &[(String, String)],
) -> Response {
    let (problems, body) =
        shared
            .discovery
            .check_request(method, params, query, request.header("content-type"), &request.body);
    for problem in &problems {
        record_violation(shared, &method.id, &problem.field, &problem.message);
    }
    if let Err(failure) = shared
        .auth
        .check_bearer(request.header("authorization"), &method.scopes)
    {
        return auth_error(&failure);
    }
    if let Some(first) = problems.first() {
        let errors: Vec<Value> = problems
            .iter()
            .map(|p| json!({ "message": p.message, "domain": "global", "reason": "invalid", "location": p.field }))
            .collect();
        let mut error = google_error_json(400, "invalid", &first.message);
        error["error"]["errors"] = Value::Array(errors);
        return Response::json(400, &error);
    }
    if let Some(response) = take_fault(shared, &method.id) {
        return response;
    }
    // Reading the image file may take a while: done before taking the state lock.
    let import = (method.id == "compute.images.insert")
        .then(|| body["rawDisk"]["source"].as_str().and_then(disk_image::parse_source))
        .flatten()
        .map(|name| {
            let sha1 = body["rawDisk"]["sha1Checksum"].as_str();
            disk_image::import(shared.storage.as_deref(), &name, sha1)
        });
    let result = shared.compute.lock().unwrap().call(Call {
        method_id: &method.id,
        params,
        query,
        body: &body,
        import,
    });
    match result {
        Ok(answer) => {
            for problem in shared.discovery.check_response(method, &answer) {
                record_violation(
                    shared,
                    &method.id,
                    &problem.field,
                    &format!("fake-gce's own answer: {}", problem.message),
                );
            }
            Response::json(200, &answer)
        }
        Err(error) => {
            if let Some(field) = &error.violation {
                record_violation(shared, &method.id, field, &error.message);
            }
            google_error(error.status, &error.reason, &error.message)
        }
    }
}

fn record_violation(shared: &Shared, method_id: &str, field: &str, message: &str) {
    shared.log.lock().unwrap().violations.push(Violation {
        method_id: method_id.to_string(),
        field: field.to_string(),
        message: message.to_string(),
    });
}

/// The injected fault for this call of `method_id`, if one is queued.
fn take_fault(shared: &Shared, method_id: &str) -> Option<Response> {
    let mut faults = shared.faults.lock().unwrap();
    let queue = faults.get_mut(method_id)?;
    let fault = queue.front_mut()?;
    let mut response = google_error(fault.status, &fault.reason, &fault.message);
    if let Some(secs) = fault.retry_after_secs {
        response = response.with_header("Retry-After", &secs.to_string());
    }
    fault.times = fault.times.saturating_sub(1);
    if fault.times == 0 {
        queue.pop_front();
    }
    Some(response)
}

fn auth_error(failure: &AuthFailure) -> Response {
    const SEE: &str = "See https://developers.google.com/identity/sign-in/web/devconsole-project.";
    let (status, message, reason, inner) = match failure {
        AuthFailure::Missing => (
            401,
            format!(
                "Request is missing required authentication credential. Expected OAuth 2 access token, \
                 login cookie or other valid authentication credential. {SEE}"
            ),
            "required",
            "Login Required.".to_string(),
        ),
        AuthFailure::Invalid(why) => (
            401,
            format!(
                "Request had invalid authentication credentials. Expected OAuth 2 access token, login \
                 cookie or other valid authentication credential. {SEE} (fake-gce: {why})"
            ),
            "authError",
            "Invalid Credentials".to_string(),
        ),
        AuthFailure::InsufficientScopes => (
            403,
            "Request had insufficient authentication scopes.".to_string(),
            "insufficientPermissions",
            "Insufficient Permission".to_string(),
        ),
    };
    let mut error = google_error_json(status, reason, &message);
    error["error"]["errors"] = json!([{
        "message": inner,
        "domain": "global",
        "reason": reason,
        "location": "Authorization",
        "locationType": "header",
    }]);
    let response = Response::json(status, &error);
    if status == 401 {
        response.with_header("WWW-Authenticate", "Bearer realm=\"https://accounts.google.com/\"")
    } else {
        response
    }
}

/// Google's error response.
fn google_error(status: u16, reason: &str, message: &str) -> Response {
    Response::json(status, &google_error_json(status, reason, message))
}

/// `{"error": {"code", "message", "errors": [{"message", "domain", "reason"}], "status"}}`.
fn google_error_json(status: u16, reason: &str, message: &str) -> Value {
    let domain = if reason.contains("RateLimit") || reason.contains("rateLimit") || reason.contains("quota") {
        "usageLimits"
    } else {
        "global"
    };
    let canonical = match status {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ALREADY_EXISTS",
        412 => "FAILED_PRECONDITION",
        429 => "RESOURCE_EXHAUSTED",
        500 => "INTERNAL",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "UNKNOWN",
    };
    json!({
        "error": {
            "code": status,
            "message": message,
            "errors": [{ "message": message, "domain": domain, "reason": reason }],
            "status": canonical,
        }
    })
}
