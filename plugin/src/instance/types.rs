//! The Instance SPI's wire types, as InfraKit's Go types marshal them (`pkg/spi/instance`,
//! `pkg/rpc/instance`): Go field names, every request field optional and nullable, maps sorted.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Tags, sorted (Go marshals maps sorted by key).
pub type Tags = BTreeMap<String, String>;

/// `instance.Spec`: what to provision.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Spec {
    /// The plugin's properties (see `docs/plugin.md`).
    #[serde(rename = "Properties")]
    pub properties: Option<Value>,
    /// Tags to put on the instance.
    #[serde(rename = "Tags")]
    pub tags: Option<Tags>,
    /// Boot-time data for the guest: it becomes the instance's userdata.
    #[serde(rename = "Init")]
    pub init: String,
    /// A stable identity (an IP address, a pet's name).
    #[serde(rename = "LogicalID")]
    pub logical_id: Option<String>,
    /// Attachments (accepted and ignored: local VMs have none).
    #[serde(rename = "Attachments")]
    pub attachments: Option<Vec<Value>>,
}

/// `instance.Description`: one instance, as `DescribeInstances` answers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Description {
    /// The instance's ID.
    #[serde(rename = "ID")]
    pub id: String,
    /// Its logical ID, or null.
    #[serde(rename = "LogicalID")]
    pub logical_id: Option<String>,
    /// Its tags (null when it has none, as Go marshals a nil map).
    #[serde(rename = "Tags")]
    pub tags: Option<Tags>,
    /// Its properties and state, only when asked for.
    #[serde(rename = "Properties", skip_serializing_if = "Option::is_none")]
    pub properties: Option<Value>,
}

/// `ValidateRequest`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ValidateRequest {
    /// The plugin type (ignored).
    #[serde(rename = "Type")]
    pub kind: String,
    /// The properties to check.
    #[serde(rename = "Properties")]
    pub properties: Option<Value>,
}

/// `ValidateResponse` (also `LabelResponse` and `DestroyResponse`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OkResponse {
    /// The plugin type.
    #[serde(rename = "Type")]
    pub kind: String,
    /// Always true: a failure is an error.
    #[serde(rename = "OK")]
    pub ok: bool,
}

/// `ProvisionRequest`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ProvisionRequest {
    /// The plugin type (ignored).
    #[serde(rename = "Type")]
    pub kind: String,
    /// What to provision.
    #[serde(rename = "Spec")]
    pub spec: Spec,
}

/// `ProvisionResponse`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProvisionResponse {
    /// The plugin type.
    #[serde(rename = "Type")]
    pub kind: String,
    /// The new instance's ID.
    #[serde(rename = "ID")]
    pub id: Option<String>,
}

/// `LabelRequest`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct LabelRequest {
    /// The plugin type (ignored).
    #[serde(rename = "Type")]
    pub kind: String,
    /// The instance.
    #[serde(rename = "Instance")]
    pub instance: String,
    /// Tags to merge into its tags.
    #[serde(rename = "Labels")]
    pub labels: Option<Tags>,
}

/// `instance.Context`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Context {
    /// Why the instance goes (`terminate`, `rolling_update`, ...).
    #[serde(rename = "Reason")]
    pub reason: String,
}

/// `DestroyRequest`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct DestroyRequest {
    /// The plugin type (ignored).
    #[serde(rename = "Type")]
    pub kind: String,
    /// The instance.
    #[serde(rename = "Instance")]
    pub instance: String,
    /// Why (0.6 clients).
    #[serde(rename = "Context")]
    pub context: Option<Context>,
}

/// `DescribeInstancesRequest`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct DescribeRequest {
    /// The plugin type (ignored).
    #[serde(rename = "Type")]
    pub kind: String,
    /// Only instances carrying all of these tags.
    #[serde(rename = "Tags")]
    pub tags: Option<Tags>,
    /// Also answer each instance's properties and state.
    #[serde(rename = "Properties")]
    pub properties: bool,
}

/// `DescribeInstancesResponse`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DescribeResponse {
    /// The plugin type.
    #[serde(rename = "Type")]
    pub kind: String,
    /// The instances.
    #[serde(rename = "Descriptions")]
    pub descriptions: Vec<Description>,
}
