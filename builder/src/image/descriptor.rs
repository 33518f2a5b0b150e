//! Descriptors, manifests, indexes and image configs in both their OCI and Docker v2 schema 2
//! forms, plus digest helpers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::platform::Platform;

/// Media types that the store understands.
pub mod media_type {
    /// OCI image index.
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    /// OCI image manifest.
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    /// OCI image config.
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    /// Docker manifest list (schema 2).
    pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    /// Docker image manifest (schema 2).
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    /// Docker image config.
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

    /// Every manifest and index type, as sent in a registry `Accept` header.
    pub const MANIFEST_TYPES: [&str; 4] = [OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST];

    /// Whether `media_type` names an index (OCI index or Docker manifest list).
    pub fn is_index(media_type: &str) -> bool {
        media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
    }

    /// Whether `media_type` names a single-platform image manifest (OCI or Docker).
    pub fn is_manifest(media_type: &str) -> bool {
        media_type == OCI_MANIFEST || media_type == DOCKER_MANIFEST
    }
}

/// A content descriptor: what a blob is, its digest and its size.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Descriptor {
    /// Media type, e.g. `application/vnd.oci.image.layer.v1.tar+gzip`.
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    /// `sha256:<hex>` digest of the blob.
    pub digest: String,
    /// Size of the blob in bytes.
    pub size: u64,
}

/// The parts of an image config (`config` object of the config blob) that the builder uses.
///
/// LinuxKit does not tell a missing list from an empty one for any of these (they end up in
/// `omitempty` runtime-spec fields), so they are plain vectors.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageConfigFile {
    /// Target architecture recorded in the config (OCI name).
    pub architecture: String,
    /// Target OS recorded in the config.
    pub os: String,
    /// `Entrypoint`.
    pub entrypoint: Vec<String>,
    /// `Cmd`.
    pub cmd: Vec<String>,
    /// `Env`, `NAME=value` strings.
    pub env: Vec<String>,
    /// `WorkingDir`, empty when unset.
    pub working_dir: String,
    /// `User`, empty when unset.
    pub user: String,
    /// `Labels`, e.g. `org.mobyproject.config`.
    pub labels: BTreeMap<String, String>,
    /// `rootfs.diff_ids`: the sha256 of each layer's uncompressed tar, bottom layer first.
    pub diff_ids: Vec<String>,
}

impl ImageConfigFile {
    /// Parses a config blob (OCI or Docker; both use the same JSON).
    pub fn parse(bytes: &[u8]) -> Result<ImageConfigFile, serde_json::Error> {
        let wire: WireConfigFile = serde_json::from_slice(bytes)?;
        let config = wire.config.unwrap_or_default();
        Ok(ImageConfigFile {
            architecture: wire.architecture,
            os: wire.os,
            entrypoint: config.entrypoint.unwrap_or_default(),
            cmd: config.cmd.unwrap_or_default(),
            env: config.env.unwrap_or_default(),
            working_dir: config.working_dir.unwrap_or_default(),
            user: config.user.unwrap_or_default(),
            labels: config.labels.unwrap_or_default(),
            diff_ids: wire.rootfs.and_then(|r| r.diff_ids).unwrap_or_default(),
        })
    }
}

#[derive(Deserialize)]
struct WireConfigFile {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
    #[serde(default)]
    config: Option<WireConfig>,
    #[serde(default)]
    rootfs: Option<WireRootfs>,
}

#[derive(Deserialize)]
struct WireRootfs {
    #[serde(default)]
    diff_ids: Option<Vec<String>>,
}

// Every field may be JSON null in configs written by Go tools, hence the Options.
#[derive(Deserialize, Default)]
struct WireConfig {
    #[serde(rename = "Entrypoint", default)]
    entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd", default)]
    cmd: Option<Vec<String>>,
    #[serde(rename = "Env", default)]
    env: Option<Vec<String>>,
    #[serde(rename = "WorkingDir", default)]
    working_dir: Option<String>,
    #[serde(rename = "User", default)]
    user: Option<String>,
    #[serde(rename = "Labels", default)]
    labels: Option<BTreeMap<String, String>>,
}

/// A platform as written in index entries (field order as go-containerregistry writes it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub(crate) struct WirePlatform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(rename = "os.version", default, skip_serializing_if = "Option::is_none")]
    pub os_version: Option<String>,
    #[serde(rename = "os.features", default, skip_serializing_if = "Option::is_none")]
    pub os_features: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<Vec<String>>,
}

impl WirePlatform {
    /// The platform, or `None` for BuildKit's `unknown/unknown` attestation entries.
    pub fn to_platform(&self) -> Option<Platform> {
        if self.os == "unknown" && self.architecture == "unknown" {
            return None;
        }
        Some(Platform::new(&self.os, &self.architecture, self.variant.as_deref()))
    }
}

/// A descriptor as found in manifests and indexes (extra fields the store needs).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct WireDescriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default)]
    pub platform: Option<WirePlatform>,
}

impl WireDescriptor {
    pub fn descriptor(&self) -> Descriptor {
        Descriptor {
            media_type: self.media_type.clone(),
            digest: self.digest.clone(),
            size: self.size,
        }
    }

    /// The entry's platform, if it has a real one.
    pub fn platform(&self) -> Option<Platform> {
        self.platform.as_ref().and_then(WirePlatform::to_platform)
    }
}

/// An image index or Docker manifest list.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct IndexManifest {
    #[serde(default)]
    pub manifests: Vec<WireDescriptor>,
}

impl IndexManifest {
    /// The entries that are single-platform image manifests, with their platform (if any).
    pub fn image_entries(&self) -> impl Iterator<Item = (usize, &WireDescriptor)> + Clone {
        self.manifests
            .iter()
            .enumerate()
            .filter(|(_, m)| media_type::is_manifest(&m.media_type))
    }

    /// Picks the image manifest for `platform`, variant-aware (see [`Platform::select`]).
    pub fn select(&self, platform: &Platform) -> Option<&WireDescriptor> {
        let platforms: Vec<(usize, Platform)> = self
            .image_entries()
            .filter_map(|(i, m)| m.platform().map(|p| (i, p)))
            .collect();
        let index = platform.select(platforms.iter().map(|(i, p)| (*i, p)))?;
        self.manifests.get(index)
    }

    /// The platforms offered by the index, for error messages.
    pub fn platform_list(&self) -> String {
        let names: Vec<String> = self
            .image_entries()
            .filter_map(|(_, m)| m.platform())
            .map(|p| p.to_string())
            .collect();
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        }
    }
}

/// A single-platform image manifest.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ImageManifest {
    pub config: WireDescriptor,
    #[serde(default)]
    pub layers: Vec<WireDescriptor>,
}

/// A manifest blob parsed as either kind.
#[derive(Debug, Clone)]
pub(crate) enum Manifest {
    Index(IndexManifest),
    Image(ImageManifest),
}

#[derive(Deserialize)]
struct Probe {
    #[serde(rename = "schemaVersion", default)]
    schema_version: Option<i64>,
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<serde_json::Value>,
    #[serde(default)]
    config: Option<serde_json::Value>,
}

/// Parses a manifest or index blob. `declared` is the media type from the referring descriptor
/// (may be empty); the blob's own `mediaType`, or its shape, decides when they disagree or are
/// missing. Returns the media type used and the parsed manifest.
pub(crate) fn parse_manifest(bytes: &[u8], declared: &str) -> Result<(String, Manifest), String> {
    let probe: Probe = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    if probe.schema_version.is_some_and(|v| v != 2) {
        return Err(format!(
            "schema version {} is not supported (only schema 2 manifests are)",
            probe.schema_version.unwrap_or_default()
        ));
    }
    let media_type = match probe.media_type.filter(|m| !m.is_empty()) {
        Some(m) => m,
        None if media_type::is_index(declared) || media_type::is_manifest(declared) => declared.to_string(),
        None if probe.manifests.is_some() => media_type::OCI_INDEX.to_string(),
        None if probe.config.is_some() => media_type::OCI_MANIFEST.to_string(),
        None => return Err("neither an image manifest nor an index".to_string()),
    };
    if media_type::is_index(&media_type) {
        let index = serde_json::from_slice(bytes).map_err(|e| format!("invalid index: {e}"))?;
        Ok((media_type, Manifest::Index(index)))
    } else if media_type::is_manifest(&media_type) {
        let manifest = serde_json::from_slice(bytes).map_err(|e| format!("invalid image manifest: {e}"))?;
        Ok((media_type, Manifest::Image(manifest)))
    } else {
        Err(format!("unsupported media type {media_type}"))
    }
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// `sha256:<hex>` of everything `reader` gives, read in bounded chunks.
pub(crate) fn sha256_read(mut reader: impl std::io::Read) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0; 64 * 1024];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return Ok(format!("sha256:{}", hex::encode(hasher.finalize()))),
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// The hex part of a `sha256:<64 hex>` digest, or `None` if `digest` is not one.
pub fn sha256_hex(digest: &str) -> Option<&str> {
    let hex = digest.strip_prefix("sha256:")?;
    let valid = hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    valid.then_some(hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_nulls_and_missing_fields_are_empty() {
        let c = ImageConfigFile::parse(
            br#"{"architecture":"arm64","os":"linux","config":{"Entrypoint":null,"Cmd":["/init"],"Labels":{"a":"b"}}}"#,
        )
        .unwrap();
        assert_eq!(c.architecture, "arm64");
        assert!(c.entrypoint.is_empty());
        assert_eq!(c.cmd, ["/init"]);
        assert_eq!(c.labels.get("a").map(String::as_str), Some("b"));
        let empty = ImageConfigFile::parse(br#"{"rootfs":{}}"#).unwrap();
        assert_eq!(empty, ImageConfigFile::default());
        assert!(ImageConfigFile::parse(b"[1]").is_err());
    }

    #[test]
    fn manifests_are_recognised_by_type_or_shape() {
        let docker_list = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","digest":"sha256:aa","size":1,"platform":{"architecture":"arm64","os":"linux","variant":"v8"}}]}"#;
        let (mt, m) = parse_manifest(docker_list, "").unwrap();
        assert_eq!(mt, media_type::DOCKER_MANIFEST_LIST);
        let Manifest::Index(index) = m else {
            panic!("expected an index")
        };
        assert_eq!(index.select(&Platform::linux("arm64")).unwrap().digest, "sha256:aa");
        assert!(index.select(&Platform::linux("amd64")).is_none());
        assert_eq!(index.platform_list(), "linux/arm64/v8");

        let bare = br#"{"schemaVersion":2,"config":{"digest":"sha256:cc","size":2},"layers":[]}"#;
        let (mt, m) = parse_manifest(bare, "").unwrap();
        assert_eq!(mt, media_type::OCI_MANIFEST);
        assert!(matches!(m, Manifest::Image(ref i) if i.config.digest == "sha256:cc"));

        assert!(parse_manifest(br#"{"schemaVersion":1,"fsLayers":[]}"#, "").is_err());
        assert!(parse_manifest(br#"{"mediaType":"text/plain"}"#, "").is_err());
        assert!(parse_manifest(b"nope", "").is_err());
    }

    #[test]
    fn attestation_entries_have_no_platform() {
        let index: IndexManifest = serde_json::from_str(
            r#"{"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:a","size":1,"platform":{"architecture":"unknown","os":"unknown"}}]}"#,
        )
        .unwrap();
        assert!(index.manifests[0].platform().is_none());
        assert_eq!(index.platform_list(), "none");
    }

    #[test]
    fn digests() {
        assert_eq!(
            sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let d = sha256_digest(b"x");
        assert_eq!(sha256_hex(&d).map(str::len), Some(64));
        assert!(sha256_hex("sha256:ABC").is_none());
        assert!(sha256_hex("sha512:00").is_none());
        assert!(sha256_hex(&format!("sha256:{}", "g".repeat(64))).is_none());
    }
}
