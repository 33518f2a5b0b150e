//! The instance properties this plugin takes (`docs/plugin.md`), checked strictly: every problem
//! names the field.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;
use vmm::machine::{DiskSpec, PublishedPort};
use vmm::BackendKind;

/// The properties as sent: every field optional, unknown ones refused.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Wire {
    #[serde(rename = "Moby")]
    moby: Option<Value>,
    #[serde(rename = "Backend")]
    backend: Option<String>,
    #[serde(rename = "CPUs")]
    cpus: Option<u32>,
    #[serde(rename = "Memory")]
    memory: Option<u64>,
    #[serde(rename = "Disks")]
    disks: Option<Vec<String>>,
    #[serde(rename = "Networking")]
    networking: Option<String>,
    #[serde(rename = "Publish")]
    publish: Option<Vec<String>>,
    #[serde(rename = "Accel")]
    accel: Option<String>,
    #[serde(rename = "Format")]
    format: Option<String>,
}

/// Where the LinuxKit spec comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpecSource {
    /// YAML (or JSON, which is YAML) text given inline.
    Inline(String),
    /// A spec file, relative to the plugin's base directory unless absolute.
    File(PathBuf),
}

/// The image formats the plugin builds and boots: those `moby run` boots (every format but
/// `tar`, `docker` and `tar-kernel-initrd`).
fn bootable_formats() -> impl Iterator<Item = builder::Format> {
    builder::Format::SUPPORTED
        .into_iter()
        .filter(|format| format.boot_path(std::path::Path::new(""), "x").is_some())
}

/// Checked properties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Properties {
    /// The LinuxKit spec.
    pub spec: SpecSource,
    /// The backend.
    pub backend: BackendKind,
    /// vCPUs.
    pub cpus: u32,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// Disks, LinuxKit's way (`size=1G`, `file=PATH,size=1G`).
    pub disks: Vec<DiskSpec>,
    /// The backend's networking mode.
    pub networking: Option<String>,
    /// Published ports.
    pub publish: Vec<PublishedPort>,
    /// The accelerator (qemu).
    pub accel: Option<String>,
    /// The output format built and booted.
    pub format: builder::Format,
}

/// Properties that are not right; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PropertiesError(pub String);

impl Properties {
    /// Checks `value` (the `Properties` of a spec), decoded as the RPC layer decodes params (Go's
    /// rules: field names case-insensitive, null is absent).
    pub fn parse(value: Option<Value>) -> Result<Properties, PropertiesError> {
        let err = |text: String| PropertiesError(text);
        let value = value.ok_or_else(|| err("Properties: missing: give at least {\"Moby\": SPEC}".into()))?;
        let wire: Wire = crate::rpc::decode(value).map_err(|e| err(format!("Properties: {e}")))?;
        let spec = match wire.moby {
            None | Some(Value::Null) => {
                return Err(err(
                    "Properties.Moby: missing: give the LinuxKit spec (an object, YAML text, or a file path)".into(),
                ))
            }
            Some(Value::String(text)) if text.contains('\n') => SpecSource::Inline(text),
            Some(Value::String(path)) if !path.trim().is_empty() => SpecSource::File(PathBuf::from(path)),
            Some(Value::Object(map)) => SpecSource::Inline(Value::Object(map).to_string()),
            Some(other) => {
                return Err(err(format!(
                    "Properties.Moby: {other} is not a spec: give an object, YAML text, or a file path"
                )))
            }
        };
        let backend = match wire.backend.as_deref() {
            None => BackendKind::Qemu,
            Some(name) => name
                .parse()
                .map_err(|e: String| err(format!("Properties.Backend: {e}")))?,
        };
        let cpus = wire.cpus.unwrap_or(1);
        if cpus == 0 {
            return Err(err("Properties.CPUs: 0: give at least 1".into()));
        }
        let memory_mib = wire.memory.unwrap_or(1024);
        if memory_mib < 64 {
            return Err(err(format!(
                "Properties.Memory: {memory_mib} MiB is too little: give at least 64"
            )));
        }
        let disks = wire
            .disks
            .unwrap_or_default()
            .iter()
            .enumerate()
            .map(|(i, d)| {
                d.parse::<DiskSpec>()
                    .map_err(|e| err(format!("Properties.Disks[{i}]: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let publish = wire
            .publish
            .unwrap_or_default()
            .iter()
            .enumerate()
            .map(|(i, p)| {
                p.parse::<PublishedPort>()
                    .map_err(|e| err(format!("Properties.Publish[{i}]: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let format = match wire.format {
            None => builder::Format::KernelInitrd,
            Some(name) => bootable_formats()
                .find(|bootable| bootable.name() == name)
                .ok_or_else(|| {
                    let names: Vec<&str> = bootable_formats().map(builder::Format::name).collect();
                    err(format!(
                        "Properties.Format: {name:?} is not a format the plugin builds and boots: use one of {}",
                        names.join(", ")
                    ))
                })?,
        };
        Ok(Properties {
            spec,
            backend,
            cpus,
            memory_mib,
            disks,
            networking: wire.networking,
            publish,
            accel: wire.accel,
            format,
        })
    }

    /// The spec's text and the name errors give it: inline text is `Properties.Moby`, a file its
    /// path (relative ones under `base_dir`).
    pub fn spec_text(&self, base_dir: &Path) -> Result<(String, String), PropertiesError> {
        match &self.spec {
            SpecSource::Inline(text) => Ok(("Properties.Moby".to_string(), text.clone())),
            SpecSource::File(path) => {
                let path = base_dir.join(path);
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| PropertiesError(format!("Properties.Moby: cannot read {}: {e}", path.display())))?;
                Ok((path.display().to_string(), text))
            }
        }
    }
}
