//! The Compute Engine v1 calls moby makes (images, instances, their operations and serial
//! port), with the fields it reads. Mutating calls carry a `requestId`, so a retried insert or
//! delete is done once.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};

use super::api::{Api, Service};
use super::config::Location;
use super::error::GcpError;

/// How long an operation (an image import, an instance insert) may take.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// A long-running operation, as far as moby follows one.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    /// Its name.
    pub name: String,
    /// `PENDING`, `RUNNING` or `DONE`.
    pub status: String,
    /// The zone URL of a zonal operation.
    #[serde(default)]
    pub zone: Option<String>,
    /// Its errors, once done.
    #[serde(default)]
    pub error: Option<OperationErrors>,
    /// The HTTP error message of a failed operation.
    #[serde(default)]
    pub http_error_message: Option<String>,
}

/// An operation's errors.
#[derive(Debug, Clone, Deserialize)]
pub struct OperationErrors {
    /// Each error.
    #[serde(default)]
    pub errors: Vec<OperationError>,
}

/// One error of an operation.
#[derive(Debug, Clone, Deserialize)]
pub struct OperationError {
    /// Its code (`QUOTA_EXCEEDED`).
    #[serde(default)]
    pub code: String,
    /// Its message.
    #[serde(default)]
    pub message: String,
}

/// An image, as far as moby reads one.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Image {
    /// Its name.
    pub name: String,
    /// `PENDING`, `READY`, `FAILED`, ...
    #[serde(default)]
    pub status: String,
}

/// An instance, as far as moby reads one.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Instance {
    /// Its name.
    pub name: String,
    /// `PROVISIONING`, `STAGING`, `RUNNING`, `STOPPING`, `TERMINATED`, ...
    #[serde(default)]
    pub status: String,
    /// Its labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The fingerprint a label change must give.
    #[serde(default)]
    pub label_fingerprint: Option<String>,
    /// Its metadata.
    #[serde(default)]
    pub metadata: Metadata,
    /// Its network interfaces.
    #[serde(default)]
    pub network_interfaces: Vec<NetworkInterface>,
    /// Its machine type URL.
    #[serde(default)]
    pub machine_type: String,
    /// When it was created (RFC 3339).
    #[serde(default)]
    pub creation_timestamp: String,
}

/// An instance's metadata.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Metadata {
    /// The fingerprint a metadata change must give.
    #[serde(default)]
    pub fingerprint: Option<String>,
    /// The items.
    #[serde(default)]
    pub items: Vec<MetadataItem>,
}

/// One metadata item.
#[derive(Debug, Clone, Deserialize)]
pub struct MetadataItem {
    /// Its key.
    pub key: String,
    /// Its value.
    #[serde(default)]
    pub value: Option<String>,
}

impl Metadata {
    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.items
            .iter()
            .find(|i| i.key == key)
            .and_then(|i| i.value.as_deref())
    }
}

/// A network interface.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkInterface {
    /// Its internal address.
    #[serde(default, rename = "networkIP")]
    pub network_ip: Option<String>,
}

/// A piece of serial port output.
#[derive(Debug, Clone, Deserialize)]
pub struct SerialOutput {
    /// The text.
    #[serde(default)]
    pub contents: String,
    /// Where it starts (later than asked when older output was dropped).
    #[serde(default, deserialize_with = "int64")]
    pub start: u64,
    /// Where the next piece starts.
    #[serde(default, deserialize_with = "int64")]
    pub next: u64,
}

/// Compute Engine in one project and zone.
#[derive(Debug, Clone)]
pub struct Compute {
    api: Api,
    base: String,
    location: Location,
}

impl Compute {
    /// Compute Engine at `base` (`https://compute.googleapis.com/compute/v1/`).
    pub fn new(api: Api, base: &str, location: Location) -> Compute {
        Compute {
            api,
            base: base.to_string(),
            location,
        }
    }

    /// The project and zone.
    pub fn location(&self) -> &Location {
        &self.location
    }

    fn global(&self, path: &str) -> String {
        format!("{}projects/{}/global/{path}", self.base, self.location.project)
    }

    fn zonal(&self, path: &str) -> String {
        format!(
            "{}projects/{}/zones/{}/{path}",
            self.base, self.location.project, self.location.zone
        )
    }

    /// A JSON call.
    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        call: &str,
        method: Method,
        url: &str,
        body: Option<Value>,
    ) -> Result<T, GcpError> {
        self.api.json(Service::Compute, call, method, url, body.as_ref()).await
    }

    /// A mutating call, with a `requestId` so that retries are done once.
    async fn mutate(&self, call: &str, method: Method, url: &str, body: Option<Value>) -> Result<Operation, GcpError> {
        let id = crate::random::uuid_v4().map_err(|source| GcpError::Io {
            doing: "read",
            path: "/dev/urandom".into(),
            source,
        })?;
        let separator = if url.contains('?') { '&' } else { '?' };
        self.call(call, method, &format!("{url}{separator}requestId={id}"), body)
            .await
    }

    /// The image `name`, if it exists.
    pub async fn image(&self, name: &str) -> Result<Option<Image>, GcpError> {
        let url = self.global(&format!("images/{name}"));
        absent_on_404(self.call(&format!("images.get {name}"), Method::GET, &url, None).await)
    }

    /// Creates an image (`body` is an Image resource) and waits for it.
    pub async fn insert_image(&self, body: Value) -> Result<(), GcpError> {
        let name = body["name"].as_str().unwrap_or_default().to_string();
        let call = format!("images.insert {name}");
        let op = self
            .mutate(&call, Method::POST, &self.global("images"), Some(body))
            .await?;
        self.wait(op, &format!("creating image {name}")).await
    }

    /// Deletes the image `name` and waits; `false` when there was none.
    pub async fn delete_image(&self, name: &str) -> Result<bool, GcpError> {
        let url = self.global(&format!("images/{name}"));
        let op = self
            .mutate(&format!("images.delete {name}"), Method::DELETE, &url, None)
            .await;
        match absent_on_404(op)? {
            Some(op) => self.wait(op, &format!("deleting image {name}")).await.map(|()| true),
            None => Ok(false),
        }
    }

    /// Creates an instance (`body` is an Instance resource) and waits until it is created.
    pub async fn insert_instance(&self, body: Value) -> Result<(), GcpError> {
        let name = body["name"].as_str().unwrap_or_default().to_string();
        let call = format!("instances.insert {name}");
        let op = self
            .mutate(&call, Method::POST, &self.zonal("instances"), Some(body))
            .await?;
        self.wait(op, &format!("creating instance {name}")).await
    }

    /// The instance `name`, if it exists.
    pub async fn instance(&self, name: &str) -> Result<Option<Instance>, GcpError> {
        let url = self.zonal(&format!("instances/{name}"));
        absent_on_404(
            self.call(&format!("instances.get {name}"), Method::GET, &url, None)
                .await,
        )
    }

    /// The instances `filter` selects (Compute Engine's filter syntax), every page.
    pub async fn instances(&self, filter: &str) -> Result<Vec<Instance>, GcpError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Page {
            #[serde(default)]
            items: Vec<Instance>,
            #[serde(default)]
            next_page_token: Option<String>,
        }
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut url = reqwest::Url::parse(&self.zonal("instances")).map_err(|e| GcpError::Transport {
                service: "Compute Engine",
                call: "instances.list".into(),
                why: format!("bad endpoint: {e}"),
            })?;
            url.query_pairs_mut().append_pair("filter", filter);
            if let Some(token) = &token {
                url.query_pairs_mut().append_pair("pageToken", token);
            }
            let page: Page = self.call("instances.list", Method::GET, url.as_str(), None).await?;
            out.extend(page.items);
            match page.next_page_token.filter(|t| !t.is_empty()) {
                Some(next) => token = Some(next),
                None => return Ok(out),
            }
        }
    }

    /// Deletes the instance `name` and waits until it is gone; `false` when there was none.
    pub async fn delete_instance(&self, name: &str) -> Result<bool, GcpError> {
        let url = self.zonal(&format!("instances/{name}"));
        let op = self
            .mutate(&format!("instances.delete {name}"), Method::DELETE, &url, None)
            .await;
        match absent_on_404(op)? {
            Some(op) => self.wait(op, &format!("deleting instance {name}")).await.map(|()| true),
            None => Ok(false),
        }
    }

    /// Sets the instance's labels (all of them) and waits.
    pub async fn set_labels(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
        fingerprint: Option<&str>,
    ) -> Result<(), GcpError> {
        let url = self.zonal(&format!("instances/{name}/setLabels"));
        let body = json!({ "labels": labels, "labelFingerprint": fingerprint });
        let op = self
            .mutate(&format!("instances.setLabels {name}"), Method::POST, &url, Some(body))
            .await?;
        self.wait(op, &format!("labelling instance {name}")).await
    }

    /// Sets the instance's metadata items (all of them) and waits.
    pub async fn set_metadata(
        &self,
        name: &str,
        items: &[(String, String)],
        fingerprint: Option<&str>,
    ) -> Result<(), GcpError> {
        let url = self.zonal(&format!("instances/{name}/setMetadata"));
        let body = json!({ "fingerprint": fingerprint, "items": metadata_items(items) });
        let op = self
            .mutate(&format!("instances.setMetadata {name}"), Method::POST, &url, Some(body))
            .await?;
        self.wait(op, &format!("setting the metadata of instance {name}")).await
    }

    /// Serial port 1's output of instance `name` from byte `start`.
    pub async fn serial_output(&self, name: &str, start: u64) -> Result<SerialOutput, GcpError> {
        let call = format!("instances.getSerialPortOutput {name}");
        let url = self.zonal(&format!("instances/{name}/serialPort?port=1&start={start}"));
        self.call(&call, Method::GET, &url, None).await
    }

    /// Waits until `op` is done; its errors become [`GcpError::Operation`] (`what` says what it
    /// did).
    pub async fn wait(&self, mut op: Operation, what: &str) -> Result<(), GcpError> {
        let deadline = Instant::now() + OPERATION_TIMEOUT;
        while op.status != "DONE" {
            if Instant::now() > deadline {
                return Err(GcpError::OperationTimeout {
                    what: what.to_string(),
                    operation: op.name,
                    minutes: OPERATION_TIMEOUT.as_secs() / 60,
                });
            }
            // `wait` answers when the operation is done or after about two minutes.
            let url = match &op.zone {
                Some(_) => self.zonal(&format!("operations/{}/wait", op.name)),
                None => self.global(&format!("operations/{}/wait", op.name)),
            };
            let started = Instant::now();
            op = self
                .call(&format!("operations.wait {}", op.name), Method::POST, &url, None)
                .await?;
            if op.status != "DONE" && started.elapsed() < Duration::from_secs(1) {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        match op.error {
            Some(errors) if !errors.errors.is_empty() => Err(GcpError::Operation {
                what: what.to_string(),
                message: errors
                    .errors
                    .iter()
                    .map(|e| {
                        if e.code.is_empty() {
                            e.message.clone()
                        } else {
                            format!("{} ({})", e.message, e.code)
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
            }),
            _ => match op.http_error_message {
                Some(message) if !message.is_empty() => Err(GcpError::Operation {
                    what: what.to_string(),
                    message,
                }),
                _ => Ok(()),
            },
        }
    }
}

/// Metadata items as the API takes them.
pub fn metadata_items(items: &[(String, String)]) -> Value {
    Value::Array(items.iter().map(|(k, v)| json!({ "key": k, "value": v })).collect())
}

/// `Ok(None)` for an answer of 404 (the resource is not there), where absence is an answer.
fn absent_on_404<T>(result: Result<T, GcpError>) -> Result<Option<T>, GcpError> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(e) if e.status() == Some(404) => Ok(None),
        Err(e) => Err(e),
    }
}

/// An int64, which the API writes as a JSON string.
fn int64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Int {
        Text(String),
        Number(u64),
    }
    match Int::deserialize(d)? {
        Int::Number(n) => Ok(n),
        Int::Text(t) => t.parse().map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_offsets_are_read_as_the_api_writes_them() {
        let out: SerialOutput = serde_json::from_str(r#"{"contents": "boot\n", "start": "0", "next": "5"}"#).unwrap();
        assert_eq!((out.start, out.next, out.contents.as_str()), (0, 5, "boot\n"));
        let out: SerialOutput = serde_json::from_str(r#"{"start": 7, "next": 9}"#).unwrap();
        assert_eq!((out.start, out.next), (7, 9));
        assert!(serde_json::from_str::<SerialOutput>(r#"{"start": "x"}"#).is_err());
    }
}
