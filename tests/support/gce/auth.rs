//! Google's credentials as the fake sees them: the OAuth token endpoint (`POST /token`: the
//! JWT-bearer grant of a service account and the refresh-token grant of an `authorized_user`),
//! the metadata server's token and project id, and the check of the `Authorization: Bearer`
//! header of every Compute request (a token issued here, or a self-signed RS256 JWT of the
//! registered service-account key).
//!
//! The service-account key is an RSA key made with the `openssl` CLI the first time a test asks
//! for it; signatures are checked with ring.

use std::collections::{HashMap, HashSet};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use ring::signature::{KeyPair, RsaKeyPair, UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::http::{parse_form, Request, Response};

/// The grant type of a service account's signed assertion.
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// The scope the metadata server and refresh tokens grant.
const CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";
/// How long an issued token lives, as Google's `expires_in`.
const TOKEN_LIFETIME_SECS: u64 = 3600;
/// Clock skew allowed on a JWT's `iat`, and its longest allowed lifetime (Google's: one hour).
const SKEW_SECS: u64 = 60;
const MAX_JWT_LIFETIME_SECS: u64 = 3600;

/// Why a Compute request's credentials were not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthFailure {
    /// No `Authorization: Bearer` header (Google: 401, reason `required`).
    Missing,
    /// Unknown, expired, refused or badly signed (Google: 401, reason `authError`); says why.
    Invalid(String),
    /// A valid token without any of the method's scopes (Google: 403).
    InsufficientScopes,
}

/// A service account's key: its JSON file and the key pair.
struct ServiceAccount {
    json: Value,
    client_email: String,
    private_key_id: String,
    public_key: Vec<u8>,
}

#[derive(Default)]
struct Tokens {
    /// Access tokens issued here, with their scopes and whether they expired.
    issued: HashMap<String, (Vec<String>, bool)>,
    /// Self-signed JWTs accepted so far (they expire with `expire_tokens` too).
    seen_jwts: HashSet<String>,
    expired_jwts: HashSet<String>,
    refusing: bool,
}

/// Credentials state and endpoints.
pub struct Auth {
    url: String,
    project: String,
    service_account: OnceLock<Result<ServiceAccount, String>>,
    tokens: Mutex<Tokens>,
    counter: AtomicU64,
}

impl Auth {
    /// Credentials for a fake at `url` (`http://127.0.0.1:PORT`) whose project is `project`.
    pub fn new(url: &str, project: &str) -> Auth {
        Auth {
            url: url.to_string(),
            project: project.to_string(),
            service_account: OnceLock::new(),
            tokens: Mutex::default(),
            counter: AtomicU64::new(1),
        }
    }

    /// The token endpoint's URL, `{url}/token`.
    pub fn token_uri(&self) -> String {
        format!("{}/token", self.url)
    }

    /// The service-account key file (made on first use); panics when `openssl` fails.
    pub fn service_account_key(&self) -> Value {
        match self.service_account() {
            Ok(account) => account.json.clone(),
            Err(why) => panic!("{why}"),
        }
    }

    /// An `authorized_user` credentials file (as `gcloud auth application-default login` writes).
    pub fn authorized_user(&self) -> Value {
        json!({
            "type": "authorized_user",
            "client_id": AUTHORIZED_CLIENT_ID,
            "client_secret": AUTHORIZED_CLIENT_SECRET,
            "refresh_token": AUTHORIZED_REFRESH_TOKEN,
            "token_uri": self.token_uri(),
            "quota_project_id": self.project,
        })
    }

    /// Issues an access token with the cloud-platform scope.
    pub fn issue_token(&self) -> String {
        self.issue(vec![CLOUD_PLATFORM.to_string()])
    }

    /// Whether every token is refused (401, and `invalid_grant` at the token endpoint).
    pub fn refuse_tokens(&self, refuse: bool) {
        self.tokens.lock().unwrap().refusing = refuse;
    }

    /// Expires every token issued and every self-signed JWT seen so far.
    pub fn expire_tokens(&self) {
        let mut tokens = self.tokens.lock().unwrap();
        for (_, expired) in tokens.issued.values_mut() {
            *expired = true;
        }
        let seen: Vec<String> = tokens.seen_jwts.drain().collect();
        tokens.expired_jwts.extend(seen);
    }

    /// Checks a Compute request's `Authorization` header for a method that needs one of `scopes`.
    pub fn check_bearer(&self, authorization: Option<&str>, scopes: &[String]) -> Result<(), AuthFailure> {
        let Some(token) = authorization.and_then(|value| {
            let (scheme, token) = value.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        }) else {
            return Err(AuthFailure::Missing);
        };
        let granted = {
            let tokens = self.tokens.lock().unwrap();
            if tokens.refusing {
                return Err(AuthFailure::Invalid("the test refuses every token".into()));
            }
            match tokens.issued.get(token) {
                Some((_, true)) => return Err(AuthFailure::Invalid("the access token expired".into())),
                Some((granted, false)) => Some(granted.clone()),
                None if tokens.expired_jwts.contains(token) => {
                    return Err(AuthFailure::Invalid("the self-signed JWT expired".into()))
                }
                None => None,
            }
        };
        let granted = match granted {
            Some(granted) => granted,
            None => {
                let granted = self.check_self_signed(token).map_err(AuthFailure::Invalid)?;
                self.tokens.lock().unwrap().seen_jwts.insert(token.to_string());
                granted
            }
        };
        // An empty grant is an audience-bound JWT: Google lets it call the whole API.
        if granted.is_empty() || granted.iter().any(|scope| scopes.contains(scope)) {
            Ok(())
        } else {
            Err(AuthFailure::InsufficientScopes)
        }
    }

    /// `POST /token`: the JWT-bearer and refresh-token grants.
    pub fn token_endpoint(&self, request: &Request) -> Response {
        let refuse = |why: &str| Response::json(400, &json!({ "error": "invalid_grant", "error_description": why }));
        if request.method != "POST" {
            return refuse("the token endpoint takes POST");
        }
        // Google's token endpoint takes a form (RFC 6749) or, as Google's own auth libraries
        // send it, a JSON object of the same fields.
        let json_fields = serde_json::from_slice::<serde_json::Map<String, Value>>(&request.body)
            .ok()
            .map(|map| {
                map.into_iter()
                    .filter_map(|(name, value)| value.as_str().map(|v| (name, v.to_string())))
                    .collect::<Vec<_>>()
            });
        let Some(form) = json_fields.or_else(|| parse_form(&String::from_utf8_lossy(&request.body)).ok()) else {
            return refuse("the body is neither a form nor a JSON object");
        };
        let field = |name: &str| form.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
        if self.tokens.lock().unwrap().refusing {
            return refuse("the test refuses every grant");
        }
        let scopes = match field("grant_type") {
            Some(JWT_BEARER) => match self.check_assertion(field("assertion").unwrap_or_default()) {
                Ok(scopes) => scopes,
                Err(why) => return refuse(&why),
            },
            Some("refresh_token") => {
                let expected = [
                    ("client_id", AUTHORIZED_CLIENT_ID),
                    ("client_secret", AUTHORIZED_CLIENT_SECRET),
                    ("refresh_token", AUTHORIZED_REFRESH_TOKEN),
                ];
                if let Some((name, _)) = expected.iter().find(|(name, value)| field(name) != Some(value)) {
                    return refuse(&format!("wrong or missing {name}"));
                }
                vec![CLOUD_PLATFORM.to_string()]
            }
            other => return refuse(&format!("unsupported grant_type {other:?}")),
        };
        let token = self.issue(scopes);
        Response::json(200, &token_json(&token))
    }

    /// The metadata server (`/` and `/computeMetadata/v1/...`): the default service account's
    /// token and email, the project id.
    pub fn metadata(&self, request: &Request) -> Response {
        if request.header("metadata-flavor") != Some("Google") {
            return Response::text(403, "Missing Metadata-Flavor:Google header.\n");
        }
        let path = request.path.trim_end_matches('/');
        let response = match path {
            // Client libraries probe the root to tell whether they run on GCE.
            "" => Response::text(200, "computeMetadata/\n"),
            "/computeMetadata/v1/instance/service-accounts/default/token" => {
                if self.tokens.lock().unwrap().refusing {
                    Response::text(404, "fake-gce: the test refuses every token\n")
                } else {
                    Response::json(200, &token_json(&self.issue(vec![CLOUD_PLATFORM.to_string()])))
                }
            }
            "/computeMetadata/v1/instance/service-accounts/default/email" => Response::text(200, &self.client_email()),
            "/computeMetadata/v1/project/project-id" => Response::text(200, &self.project),
            _ => Response::text(404, "Not Found\n"),
        };
        response.with_header("Metadata-Flavor", "Google")
    }

    fn client_email(&self) -> String {
        format!("moby-test@{}.iam.gserviceaccount.com", self.project)
    }

    fn issue(&self, scopes: Vec<String>) -> String {
        let n = self.counter.fetch_add(1, Ordering::SeqCst);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let digest = Sha256::digest(format!("{n}:{nanos}:{}", self.url));
        let token = format!("ya29.fake-{n}-{}", hex(&digest[..12]));
        self.tokens
            .lock()
            .unwrap()
            .issued
            .insert(token.clone(), (scopes, false));
        token
    }

    fn service_account(&self) -> Result<&ServiceAccount, String> {
        self.service_account
            .get_or_init(|| make_service_account(&self.url, &self.project, &self.client_email()))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// A JWT-bearer grant's assertion: signed by the registered key, `aud` the token URI, a
    /// scope, a current `iat`/`exp`. Returns the scopes.
    fn check_assertion(&self, assertion: &str) -> Result<Vec<String>, String> {
        let claims = self.verified_claims(assertion)?;
        if claims["aud"].as_str() != Some(self.token_uri().as_str()) {
            return Err(format!(
                "the assertion's aud {} is not the token URI {}",
                claims["aud"],
                self.token_uri()
            ));
        }
        let scopes = scopes_of(&claims);
        if scopes.is_empty() {
            return Err("the assertion has no scope claim".into());
        }
        Ok(scopes)
    }

    /// A self-signed JWT used as a bearer token: signed by the registered key, with `scope`
    /// (its scopes are returned) or an `aud` naming the Compute API (an empty list: any method).
    fn check_self_signed(&self, token: &str) -> Result<Vec<String>, String> {
        if token.split('.').count() != 3 {
            return Err("unknown access token".into());
        }
        let claims = self.verified_claims(token)?;
        let scopes = scopes_of(&claims);
        if !scopes.is_empty() {
            return Ok(scopes);
        }
        let audience = claims["aud"].as_str().unwrap_or_default().trim_end_matches('/');
        let compute_audiences = [
            "https://compute.googleapis.com".to_string(),
            "https://compute.googleapis.com/compute/v1".to_string(),
            self.url.clone(),
            format!("{}/compute/v1", self.url),
        ];
        if compute_audiences.iter().any(|a| a == audience) {
            Ok(Vec::new())
        } else {
            Err(format!(
                "the JWT has no scope and its aud {} is not the Compute API",
                claims["aud"]
            ))
        }
    }

    /// The claims of an RS256 JWT signed by the registered key, its `iss`, `iat` and `exp`
    /// checked.
    fn verified_claims(&self, jwt: &str) -> Result<Value, String> {
        // Only a key a test asked for is registered: verifying never makes one.
        let account = self
            .service_account
            .get()
            .and_then(|made| made.as_ref().ok())
            .ok_or("no service-account key is registered")?;
        let mut parts = jwt.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("not a JWT (three dot-separated parts)".into());
        };
        let decode_json = |part: &str, what: &str| -> Result<Value, String> {
            let bytes = URL_SAFE_NO_PAD
                .decode(part)
                .map_err(|e| format!("the JWT {what} is not base64url: {e}"))?;
            serde_json::from_slice(&bytes).map_err(|e| format!("the JWT {what} is not JSON: {e}"))
        };
        let header = decode_json(header, "header")?;
        if header["alg"] != "RS256" {
            return Err(format!("the JWT alg is {}, not RS256", header["alg"]));
        }
        if let Some(kid) = header["kid"].as_str() {
            if kid != account.private_key_id {
                return Err(format!("the JWT kid {kid} is not a registered key id"));
            }
        }
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|e| format!("the JWT signature is not base64url: {e}"))?;
        let signed = &jwt[..header_and_payload_len(jwt)];
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &account.public_key)
            .verify(signed.as_bytes(), &signature)
            .map_err(|_| "the JWT signature does not verify with the registered key".to_string())?;
        let claims = decode_json(payload, "payload")?;
        if claims["iss"].as_str() != Some(account.client_email.as_str()) {
            return Err(format!("the JWT iss {} is not {}", claims["iss"], account.client_email));
        }
        let now = now_secs();
        let (Some(iat), Some(exp)) = (claims["iat"].as_u64(), claims["exp"].as_u64()) else {
            return Err("the JWT needs numeric iat and exp claims".into());
        };
        if iat > now + SKEW_SECS {
            return Err(format!("the JWT iat {iat} is in the future (now {now})"));
        }
        if exp <= now {
            return Err(format!("the JWT expired at {exp} (now {now})"));
        }
        // An hour, with room for clock skew on both ends: Google's own auth library signs
        // `iat = now - 10 s`, `exp = now + 3610 s`, which Google accepts.
        if exp.saturating_sub(iat) > MAX_JWT_LIFETIME_SECS + SKEW_SECS {
            return Err(format!("the JWT lives {} s, more than an hour", exp - iat));
        }
        Ok(claims)
    }
}

const AUTHORIZED_CLIENT_ID: &str = "764086051850-fake.apps.googleusercontent.com";
const AUTHORIZED_CLIENT_SECRET: &str = "fake-client-secret";
const AUTHORIZED_REFRESH_TOKEN: &str = "1//fake-refresh-token";

fn header_and_payload_len(jwt: &str) -> usize {
    jwt.rfind('.').unwrap_or(jwt.len())
}

fn scopes_of(claims: &Value) -> Vec<String> {
    claims["scope"]
        .as_str()
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

fn token_json(token: &str) -> Value {
    json!({ "access_token": token, "expires_in": TOKEN_LIFETIME_SECS, "token_type": "Bearer" })
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new RSA key from `openssl genpkey`, in a Google service-account key file.
fn make_service_account(url: &str, project: &str, client_email: &str) -> Result<ServiceAccount, String> {
    let pem = generate_rsa_pem()?;
    let key_pair = key_pair_from_pem(&pem)?;
    let public_key = key_pair.public_key().as_ref().to_vec();
    let private_key_id = hex(&Sha256::digest(&public_key)[..20]);
    let client_id: String = Sha256::digest(client_email.as_bytes())
        .iter()
        .take(21)
        .map(|b| char::from(b'0' + b % 10))
        .collect();
    let client_id = format!("1{}", &client_id[1..]);
    let json = json!({
        "type": "service_account",
        "project_id": project,
        "private_key_id": private_key_id,
        "private_key": pem,
        "client_email": client_email,
        "client_id": client_id,
        "auth_uri": format!("{url}/o/oauth2/auth"),
        "token_uri": format!("{url}/token"),
        "auth_provider_x509_cert_url": format!("{url}/oauth2/v1/certs"),
        "client_x509_cert_url": format!("{url}/robot/v1/metadata/x509/{}", client_email.replace('@', "%40")),
        "universe_domain": "googleapis.com",
    });
    Ok(ServiceAccount {
        json,
        client_email: client_email.to_string(),
        private_key_id,
        public_key,
    })
}

/// A 2048-bit RSA private key as PKCS#8 PEM, from the `openssl` CLI.
pub fn generate_rsa_pem() -> Result<String, String> {
    let output = Command::new("openssl")
        .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"])
        .output()
        .map_err(|e| format!("cannot run openssl to make a service-account key: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "openssl genpkey failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    String::from_utf8(output.stdout).map_err(|_| "openssl wrote a key that is not text".to_string())
}

fn key_pair_from_pem(pem: &str) -> Result<RsaKeyPair, String> {
    let body: String = pem
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .map(str::trim)
        .collect();
    let der = STANDARD
        .decode(body)
        .map_err(|e| format!("the private key PEM is not base64: {e}"))?;
    RsaKeyPair::from_pkcs8(&der).map_err(|e| format!("the private key is not an RSA PKCS#8 key: {e}"))
}

/// Signs `claims` as an RS256 JWT with a service-account key file's `private_key` (its
/// `private_key_id` as `kid`): what a client does for a token grant or a self-signed JWT.
pub fn sign_jwt(key_file: &Value, claims: &Value) -> Result<String, String> {
    let pem = key_file["private_key"]
        .as_str()
        .ok_or("the key file has no private_key")?;
    let key_pair = key_pair_from_pem(pem)?;
    let mut header = json!({ "alg": "RS256", "typ": "JWT" });
    if let Some(kid) = key_file["private_key_id"].as_str() {
        header["kid"] = json!(kid);
    }
    let signed = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut signature = vec![0; key_pair.public().modulus_len()];
    key_pair
        .sign(
            &RSA_PKCS1_SHA256,
            &ring::rand::SystemRandom::new(),
            signed.as_bytes(),
            &mut signature,
        )
        .map_err(|_| "RSA signing failed".to_string())?;
    Ok(format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature)))
}
