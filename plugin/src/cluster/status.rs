//! A cluster's status: each member the file asks for and each instance it has that no member
//! names, with its state, address and whether it runs its group's spec and properties.

use serde::Serialize;

use super::converge::desired;
use super::error::ClusterError;
use super::plan::{self, Health};
use super::Cluster;

/// Where the cluster is, against its file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    /// The cluster's name.
    pub cluster: String,
    /// Whether every member is up and up to date, and there is nothing else.
    pub converged: bool,
    /// The members, group by group in file order, then the instances no member names.
    pub instances: Vec<InstanceStatus>,
}

/// One instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceStatus {
    /// Its group (none for an instance without the group tag).
    pub group: Option<String>,
    /// Its name.
    pub instance: String,
    /// Its logical ID.
    pub logical_id: Option<String>,
    /// `missing` (no instance yet), `building`, `starting`, `booting` (running, not yet on its
    /// network), `running`, `stopping`, `stopped` or `failed`.
    pub state: String,
    /// Its address on its network (the static one for a member not running yet).
    pub address: Option<String>,
    /// Whether it runs its group's spec and properties (`None`: not known, or missing).
    pub up_to_date: Option<bool>,
    /// Whether the file asks for it (`false`: converging destroys it).
    pub member: bool,
    /// Why it failed.
    pub error: Option<String>,
}

impl Status {
    /// The status as pretty-printed JSON (`instances` fields in camelCase), with a final newline.
    pub fn to_json(&self) -> String {
        // A struct of strings, booleans and options always encodes.
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text
    }
}

impl Cluster {
    /// The status of every member and instance. Specs are resolved for their digests but not
    /// built (one that cannot be resolved leaves `up_to_date` unknown); nothing is created.
    pub async fn status(&self) -> Result<Status, ClusterError> {
        let desired = desired(&self.file, &self.images(), false, &|_| {}).await?;
        let seen = if self.dir().join("instances").is_dir() {
            self.observe(self.plugin()?, &desired).await?
        } else {
            Vec::new()
        };
        let wants = desired.wants();
        let mut instances = Vec::new();
        for want in &wants {
            let member = want.member;
            let row = match seen.iter().find(|s| s.id == member.name) {
                None => InstanceStatus {
                    group: Some(member.group.clone()),
                    instance: member.name.clone(),
                    logical_id: Some(member.logical_id.clone()),
                    state: "missing".into(),
                    address: member.address.map(|ip| ip.to_string()),
                    up_to_date: None,
                    member: true,
                    error: None,
                },
                Some(instance) => InstanceStatus {
                    group: Some(member.group.clone()),
                    instance: member.name.clone(),
                    logical_id: instance.logical_id.clone(),
                    state: state(instance),
                    address: instance
                        .address
                        .clone()
                        .or_else(|| member.address.map(|ip| ip.to_string())),
                    up_to_date: want.digest.map(|_| !plan::outdated(want, instance)),
                    member: true,
                    error: instance.error.clone(),
                },
            };
            instances.push(row);
        }
        for instance in &seen {
            if wants.iter().any(|w| w.member.name == instance.id) {
                continue;
            }
            instances.push(InstanceStatus {
                group: instance.group.clone(),
                instance: instance.id.clone(),
                logical_id: instance.logical_id.clone(),
                state: state(instance),
                address: instance.address.clone(),
                up_to_date: None,
                member: false,
                error: instance.error.clone(),
            });
        }
        Ok(Status {
            cluster: self.file.name().to_string(),
            converged: plan::converged(&wants, &seen),
            instances,
        })
    }
}

/// An instance's state in a word: a running one still waiting for its lease is `booting`.
fn state(instance: &plan::Seen) -> String {
    match (instance.state.as_str(), instance.health) {
        ("running", Health::Pending) => "booting".into(),
        (state, _) => state.to_string(),
    }
}
