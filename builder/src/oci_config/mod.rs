//! `config.json` and `runtime.json` generation, as LinuxKit generates them.
//!
//! [`generate`] merges a container entry of the YAML, the image's `org.mobyproject.config` label and
//! the image config (precedence yaml > label > image config, field by field, with LinuxKit's exact
//! rules) into an OCI runtime-spec `config.json` and LinuxKit's `runtime.json` settings.
//! [`rootfs_mounts`] and [`runtime_json`] then finish `runtime.json` once the caller knows where the
//! image tree was written. The JSON is byte-compatible with Go's `json.MarshalIndent`.
//!
//! Deliberate differences from LinuxKit v1.7.1, where LinuxKit is wrong:
//! 1. `capabilities.add` is de-duplicated against the label's capabilities, and `binds.add` against
//!    the label's binds (LinuxKit's merge means to, but its seen-set is never filled).
//! 2. A bind mount in `mounts` whose source names a volume gets the volume's merged directory as
//!    its source, as binds do (LinuxKit checks the volume, then loses the rewrite).
//! 3. camelCase keys that LinuxKit's YAML decoder silently drops are honoured: memory `kernelTCP`
//!    and `disableOOMKiller`, cpu `realtimeRuntime`/`realtimePeriod`, blockio `leafWeight`,
//!    `weightDevice` and `throttle*Device`, `hugepageLimits`, network `classID`, the `hostID` and
//!    `containerID` of id mappings; a mount's `uidmappings`/`gidmappings` reach `config.json`.
//! 4. A read-only volume may be bound with options that make it read-only (`ro,rslave`), where
//!    LinuxKit accepts exactly `:ro` only.

mod generate;
mod ids;
mod spec_types;
mod volumes;

#[cfg(test)]
mod corpus_tests;

use std::fmt;

pub use generate::generate;
pub use ids::IdMap;
pub use spec_types::*;
pub use volumes::Volumes;

/// What the image config (not the label) provides: the defaults for `command`, `env` and `cwd`.
/// The image's `User` is ignored, as LinuxKit ignores it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImageDefaults<'a> {
    /// `Entrypoint`.
    pub entrypoint: Option<&'a [String]>,
    /// `Cmd`, appended to the entrypoint.
    pub cmd: Option<&'a [String]>,
    /// `Env`.
    pub env: Option<&'a [String]>,
    /// `WorkingDir`; empty means `/`.
    pub working_dir: &'a str,
}

/// A generated bundle configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    /// The bytes of `config.json`.
    pub config_json: Vec<u8>,
    /// The `runtime.json` settings, still without the rootfs mounts (see [`runtime_json`]).
    pub runtime: RuntimeConfig,
    /// Whether the root filesystem is read-only: the tree then goes under `rootfs/`, not `lower/`.
    pub readonly: bool,
}

/// Where a bad value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The container entry of the YAML spec.
    Yaml,
    /// The image's `org.mobyproject.config` label.
    Label,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Yaml => f.write_str("yaml"),
            Origin::Label => f.write_str("label org.mobyproject.config"),
        }
    }
}

/// Why a container's configuration cannot be generated. The caller adds the image reference and
/// the container's place in the spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OciConfigError {
    /// A value is malformed or unknown (capability, rlimit, bind, tmpfs, mount, device mode, id).
    #[error("{origin}: {field}: {message}")]
    Invalid {
        /// YAML or label.
        origin: Origin,
        /// The field, e.g. `rlimits[0]` or `devices[1].mode`.
        field: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// A bind or mount names a volume that the spec does not declare.
    #[error("yaml: {field}: volume {name:?} is not declared in the volumes section ({declared})")]
    VolumeNotFound {
        /// The field, e.g. `binds[1]`.
        field: String,
        /// The volume name.
        name: String,
        /// The declared volumes, for the message.
        declared: String,
    },
    /// A read-only volume is bound read-write.
    #[error(
        "yaml: {field}: volume {name:?} is read-only, so the container must mount it read-only: \
         add the \"ro\" option (e.g. \"{name}:/path:ro\")"
    )]
    ReadonlyVolume {
        /// The field, e.g. `binds[1]`.
        field: String,
        /// The volume name.
        name: String,
    },
    /// The JSON could not be written (a bug: the runtime-spec structs always serialise).
    #[error("cannot write {file}: {reason}")]
    Encode {
        /// `config.json` or `runtime.json`.
        file: &'static str,
        /// Why.
        reason: String,
    },
}

impl OciConfigError {
    /// Whether the bad value came from the YAML or from the image label.
    #[cfg(test)]
    pub(crate) fn origin(&self) -> Origin {
        match self {
            OciConfigError::Invalid { origin, .. } => *origin,
            OciConfigError::VolumeNotFound { .. }
            | OciConfigError::ReadonlyVolume { .. }
            | OciConfigError::Encode { .. } => Origin::Yaml,
        }
    }
}

/// The mounts that put a container's root filesystem in place, which `runtime.json` lists before
/// the user's: an overlay of `lower` under a tmpfs upper layer, or for a read-only container a
/// bind of `lower` onto `rootfs`. `bundle_dir` is the bundle's path in the image
/// (`containers/onboot/000-x`); `lower` is where the image tree is, which is another bundle's
/// `lower` or `rootfs` when an earlier container already unpacked the same image.
pub fn rootfs_mounts(bundle_dir: &str, lower: &str, readonly: bool) -> Vec<RuntimeMount> {
    let bundle = bundle_dir.trim_matches('/');
    let lower = format!("/{}", lower.trim_start_matches('/'));
    let rootfs = format!("/{bundle}/rootfs");
    if readonly {
        return vec![RuntimeMount {
            destination: rootfs,
            source: lower,
            options: vec!["bind".into()],
            ..RuntimeMount::default()
        }];
    }
    let tmp = format!("/{bundle}/tmp");
    vec![
        RuntimeMount {
            destination: tmp.clone(),
            kind: "tmpfs".into(),
            source: "tmpfs".into(),
            ..RuntimeMount::default()
        },
        // Private, so that nothing outside the container sees the temporary layers.
        RuntimeMount {
            destination: tmp.clone(),
            options: vec!["remount".into(), "private".into()],
            ..RuntimeMount::default()
        },
        RuntimeMount {
            destination: rootfs,
            kind: "overlay".into(),
            source: "overlay".into(),
            options: vec![
                format!("lowerdir={lower}"),
                format!("upperdir={tmp}/upper"),
                format!("workdir={tmp}/work"),
            ],
            ..RuntimeMount::default()
        },
    ]
}

/// The bytes of `runtime.json`: `rootfs_mounts` first, then the configured runtime mounts.
pub fn runtime_json(runtime: &RuntimeConfig, rootfs_mounts: Vec<RuntimeMount>) -> Result<Vec<u8>, OciConfigError> {
    let mut full = runtime.clone();
    full.mounts = rootfs_mounts;
    full.mounts.extend(runtime.mounts.iter().cloned());
    crate::gojson::to_go_json(&full).map_err(|e| OciConfigError::Encode {
        file: "runtime.json",
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_rootfs_mounts() {
        let mounts = rootfs_mounts("containers/onboot/001-b", "containers/onboot/000-a/lower", false);
        let json = String::from_utf8(crate::gojson::to_go_json(&mounts).unwrap()).unwrap();
        assert!(json.contains("\"lowerdir=/containers/onboot/000-a/lower\""));
        assert!(json.contains("\"upperdir=/containers/onboot/001-b/tmp/upper\""));
        assert!(json.contains("\"workdir=/containers/onboot/001-b/tmp/work\""));
        assert_eq!(mounts.len(), 3);
        assert_eq!(mounts[0].destination, "/containers/onboot/001-b/tmp");
        assert_eq!(mounts[1].options, ["remount", "private"]);
        assert_eq!(mounts[2].destination, "/containers/onboot/001-b/rootfs");
    }

    #[test]
    fn readonly_rootfs_is_one_bind() {
        let mounts = rootfs_mounts("containers/services/s", "containers/services/s/rootfs", true);
        assert_eq!(
            mounts,
            [RuntimeMount {
                destination: "/containers/services/s/rootfs".into(),
                source: "/containers/services/s/rootfs".into(),
                options: vec!["bind".into()],
                ..RuntimeMount::default()
            }]
        );
    }

    #[test]
    fn runtime_json_prepends_rootfs_and_writes_every_key() {
        let runtime = RuntimeConfig {
            mounts: vec![RuntimeMount {
                destination: "/user".into(),
                ..RuntimeMount::default()
            }],
            ..RuntimeConfig::default()
        };
        let out = String::from_utf8(runtime_json(&runtime, rootfs_mounts("c/x", "c/x/rootfs", true)).unwrap()).unwrap();
        let rootfs = out.find("\"/c/x/rootfs\"").unwrap();
        let user = out.find("\"/user\"").unwrap();
        assert!(rootfs < user);
        for key in ["cgroups", "mkdir", "interfaces", "bindNS", "namespace", "cgroup", "uts"] {
            assert!(out.contains(&format!("\"{key}\"")), "{key} missing in {out}");
        }
        assert!(!out.ends_with('\n'));
    }

    #[test]
    fn errors_name_origin_and_field() {
        let err = OciConfigError::Invalid {
            origin: Origin::Label,
            field: "rlimits[0]".into(),
            message: "bad".into(),
        };
        assert_eq!(err.to_string(), "label org.mobyproject.config: rlimits[0]: bad");
        assert_eq!(err.origin(), Origin::Label);
    }
}
