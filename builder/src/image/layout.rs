//! The OCI image layout on disk: `oci-layout`, `index.json` and `blobs/sha256/<hex>`.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tempfile::NamedTempFile;

use super::descriptor::{
    parse_manifest, sha256_digest, sha256_hex, Descriptor, ImageConfigFile, ImageManifest, IndexManifest, Manifest,
    WirePlatform,
};
use super::platform::Platform;
use super::{BlobDamage, CacheGap, DamagedBlob, ImageError};
use crate::reference::Reference;

/// The annotation that names an image in `index.json`.
pub(crate) const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The lock file guarding `index.json` (the same name LinuxKit uses, so both tools exclude each other).
const LOCK_FILE: &str = ".lock";
/// Held shared by pulls and exclusively by garbage collection, so that gc never deletes blobs a
/// running pull has written but not referenced yet.
const PULL_LOCK_FILE: &str = ".pull.lock";
/// Where blobs (and `index.json`) are written before they are verified and renamed into place.
const TMP_DIR: &str = ".tmp";
/// `oci-layout` as go-containerregistry writes it.
const OCI_LAYOUT: &str = "{\n    \"imageLayoutVersion\": \"1.0.0\"\n}";
/// Manifests, indexes and configs are small; anything bigger is not one.
pub(crate) const MAX_JSON_BLOB: u64 = 16 << 20;
/// A writer locks its temporary file right after creating it; a younger unlocked file may be
/// one whose writer has not got there yet.
const STALE_TMP_AGE: Duration = Duration::from_secs(60);

/// A local OCI image layout used as the image cache.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
    writable: bool,
}

/// An image found in the cache, resolved to one platform, with every blob present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedImage {
    /// The reference that was looked up.
    pub reference: Reference,
    /// The name of its `index.json` entry (as [`Store::list`] shows it and [`Store::remove`] takes it).
    pub name: String,
    /// Digest of the blob `index.json` names (an index or a manifest).
    pub root_digest: String,
    /// Digest of the platform's image manifest (equal to `root_digest` for single manifests).
    pub manifest_digest: String,
    /// Descriptor of the config blob.
    pub config_descriptor: Descriptor,
    /// The parsed image config.
    pub config: ImageConfigFile,
    /// Layer blobs, bottom layer first.
    pub layers: Vec<Descriptor>,
}

/// `index.json`. Unknown fields are kept so that rewriting it loses nothing.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RootIndex {
    #[serde(rename = "schemaVersion")]
    schema_version: i64,
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    media_type: Option<String>,
    #[serde(default)]
    pub manifests: Vec<IndexEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    annotations: Option<BTreeMap<String, String>>,
    #[serde(flatten)]
    extra: BTreeMap<String, serde_json::Value>,
}

impl Default for RootIndex {
    fn default() -> Self {
        RootIndex {
            schema_version: 2,
            media_type: Some(super::media_type::OCI_INDEX.to_string()),
            manifests: Vec::new(),
            annotations: None,
            extra: BTreeMap::new(),
        }
    }
}

impl RootIndex {
    /// An index holding `manifests`.
    pub fn with_entries(manifests: Vec<IndexEntry>) -> RootIndex {
        RootIndex {
            manifests,
            ..RootIndex::default()
        }
    }

    /// The JSON text, indented with three spaces as go-containerregistry (and so LinuxKit)
    /// writes it.
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        let mut bytes = Vec::new();
        let formatter = serde_json::ser::PrettyFormatter::with_indent(b"   ");
        let mut serializer = serde_json::Serializer::with_formatter(&mut bytes, formatter);
        self.serialize(&mut serializer)?;
        Ok(bytes)
    }
}

/// One descriptor in `index.json`, fields in go-containerregistry's order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct IndexEntry {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub size: u64,
    pub digest: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    data: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    urls: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    platform: Option<WirePlatform>,
    #[serde(rename = "artifactType", default, skip_serializing_if = "Option::is_none")]
    artifact_type: Option<String>,
    #[serde(flatten)]
    extra: BTreeMap<String, serde_json::Value>,
}

impl IndexEntry {
    /// A named entry for a root blob.
    pub fn named(name: &str, descriptor: &Descriptor) -> IndexEntry {
        IndexEntry {
            media_type: descriptor.media_type.clone(),
            size: descriptor.size,
            digest: descriptor.digest.clone(),
            data: None,
            urls: None,
            annotations: Some(BTreeMap::from([(REF_NAME.to_string(), name.to_string())])),
            platform: None,
            artifact_type: None,
            extra: BTreeMap::new(),
        }
    }

    /// The `org.opencontainers.image.ref.name` annotation.
    pub fn name(&self) -> Option<&str> {
        self.annotations.as_ref()?.get(REF_NAME).map(String::as_str)
    }

    /// The entry as a plain descriptor.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor {
            media_type: self.media_type.clone(),
            digest: self.digest.clone(),
            size: self.size,
        }
    }
}

/// Who a blob being written belongs to and where it comes from, for error messages.
#[derive(Debug, Clone)]
pub(crate) struct BlobOrigin {
    pub image: String,
    pub source: String,
}

/// An exclusive or shared `flock` on a lock file, released when dropped.
struct LockGuard {
    _file: File,
}

fn lock_file(path: &Path, exclusive: bool) -> Result<LockGuard, ImageError> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| ImageError::io("open lock file", path, e))?;
    let locked = if exclusive { file.lock() } else { file.lock_shared() };
    locked.map_err(|e| ImageError::io("lock", path, e))?;
    Ok(LockGuard { _file: file })
}

impl Store {
    /// Opens the layout at `dir`, creating the directory, `oci-layout`, `index.json` and
    /// `blobs/sha256` when they are missing. An existing layout is not modified.
    pub fn open(dir: &Path) -> Result<Store, ImageError> {
        let store = Store {
            dir: dir.to_path_buf(),
            writable: true,
        };
        if store.index_path().is_file() && store.dir.join("oci-layout").is_file() {
            store.check_layout()?;
            store.remove_stale_tmp_files();
            return Ok(store);
        }
        fs::create_dir_all(dir).map_err(|e| ImageError::io("create directory", dir, e))?;
        {
            let _lock = store.lock_index()?;
            // Another process may have initialised it while we waited for the lock.
            let layout = store.dir.join("oci-layout");
            if !layout.is_file() {
                store.write_atomically(&layout, OCI_LAYOUT.as_bytes())?;
            }
            if !store.index_path().is_file() {
                store.write_index_unlocked(&RootIndex::default())?;
            }
            let blobs = store.blobs_dir();
            fs::create_dir_all(&blobs).map_err(|e| ImageError::io("create directory", &blobs, e))?;
        }
        // Not under the lock: reading takes a shared lock of its own.
        store.check_layout()?;
        store.remove_stale_tmp_files();
        Ok(store)
    }

    /// Opens an existing layout for reading only: nothing is created, and operations that
    /// would write fail with [`ImageError::ReadOnly`].
    pub fn open_read_only(dir: &Path) -> Result<Store, ImageError> {
        let store = Store {
            dir: dir.to_path_buf(),
            writable: false,
        };
        if !store.index_path().is_file() {
            return Err(ImageError::InvalidLayout {
                dir: dir.to_path_buf(),
                reason: "it has no index.json".to_string(),
            });
        }
        store.check_layout()?;
        Ok(store)
    }

    /// The default cache directory: `$MOBY_CACHE`, else `~/.moby/cache`.
    pub fn default_dir() -> PathBuf {
        if let Some(dir) = std::env::var_os("MOBY_CACHE").filter(|d| !d.is_empty()) {
            return PathBuf::from(dir);
        }
        let home = std::env::var_os("HOME").filter(|h| !h.is_empty());
        home.map(PathBuf::from).unwrap_or_default().join(".moby").join("cache")
    }

    /// The layout directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the store may be written.
    pub fn is_writable(&self) -> bool {
        self.writable
    }

    fn check_layout(&self) -> Result<(), ImageError> {
        let layout = self.dir.join("oci-layout");
        let text = match fs::read(&layout) {
            Ok(text) => text,
            // Some tools write layouts without the marker file; index.json is what matters.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return self.read_index().map(drop),
            Err(e) => return Err(ImageError::io("read", layout, e)),
        };
        #[derive(Deserialize)]
        struct LayoutFile {
            #[serde(rename = "imageLayoutVersion")]
            version: String,
        }
        let parsed: LayoutFile = serde_json::from_slice(&text).map_err(|e| self.invalid(format!("oci-layout: {e}")))?;
        if !parsed.version.starts_with("1.") {
            return Err(self.invalid(format!("oci-layout has unsupported version {}", parsed.version)));
        }
        self.read_index().map(drop)
    }

    fn invalid(&self, reason: String) -> ImageError {
        ImageError::InvalidLayout {
            dir: self.dir.clone(),
            reason,
        }
    }

    fn ensure_writable(&self, action: &'static str) -> Result<(), ImageError> {
        if self.writable {
            Ok(())
        } else {
            Err(ImageError::ReadOnly {
                dir: self.dir.clone(),
                action,
            })
        }
    }

    pub(crate) fn index_path(&self) -> PathBuf {
        self.dir.join("index.json")
    }

    fn blobs_dir(&self) -> PathBuf {
        self.dir.join("blobs").join("sha256")
    }

    /// The path of a blob (which may not exist).
    pub fn blob_path(&self, digest: &str) -> Result<PathBuf, ImageError> {
        let hex = sha256_hex(digest).ok_or_else(|| ImageError::InvalidDigest {
            digest: digest.to_string(),
        })?;
        Ok(self.blobs_dir().join(hex))
    }

    /// Whether the blob is present with the given size (its content is trusted: blobs only get
    /// their final name after verification).
    pub fn has_blob(&self, digest: &str, size: u64) -> bool {
        let blob = Descriptor {
            media_type: String::new(),
            digest: digest.to_string(),
            size,
        };
        self.blob_gap(&blob).is_none()
    }

    /// What is wrong with a blob the cache should hold: missing, or of the wrong size (damaged;
    /// a pull replaces it). `None` when it is there (its content is checked when it is read).
    pub(crate) fn blob_gap(&self, blob: &Descriptor) -> Option<CacheGap> {
        let size = self
            .blob_path(&blob.digest)
            .ok()
            .and_then(|p| fs::metadata(p).ok())
            .filter(fs::Metadata::is_file)
            .map(|m| m.len());
        match size {
            Some(size) if size == blob.size => None,
            Some(actual) => Some(CacheGap::DamagedBlob {
                digest: blob.digest.clone(),
                expected: blob.size,
                actual,
            }),
            None => Some(missing(&blob.digest)),
        }
    }

    /// Opens the blob `blob` of image `image` (its `index.json` name, for error messages) for
    /// reading through a [`VerifiedBlob`].
    pub fn open_verified(&self, image: &str, blob: &Descriptor) -> Result<VerifiedBlob, ImageError> {
        let path = self.blob_path(&blob.digest)?;
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ImageError::BlobMissing {
                    image: image.to_string(),
                    digest: blob.digest.clone(),
                    dir: self.dir.clone(),
                })
            }
            Err(e) => return Err(ImageError::io("open blob", path, e)),
        };
        Ok(VerifiedBlob {
            store: self.clone(),
            image: image.to_string(),
            blob: blob.clone(),
            path,
            file,
            hasher: Sha256::new(),
            read: 0,
            verdict: None,
        })
    }

    /// Reads a blob through a [`VerifiedBlob`] to its end: `Ok` when it is intact.
    pub fn verify_blob(&self, image: &str, blob: &Descriptor) -> Result<(), ImageError> {
        let mut reader = self.open_verified(image, blob)?;
        io::copy(&mut reader, &mut io::sink())
            .map(drop)
            .map_err(|e| reader.error(e))
    }

    /// The report on a damaged blob; the file is removed first when the cache is writable and
    /// `file` (open) is still the one under its name, so that a good copy that another process
    /// has just stored there is never removed.
    fn damaged(&self, image: &str, digest: &str, path: &Path, file: &File, problem: BlobDamage) -> DamagedBlob {
        let removed = self.writable && is_same_file(file, path) && fs::remove_file(path).is_ok();
        if removed {
            tracing::debug!("removed the damaged blob {digest} from the cache ({problem})");
        }
        DamagedBlob {
            image: image.to_string(),
            digest: digest.to_string(),
            problem,
            path: path.to_path_buf(),
            removed,
        }
    }

    /// Reads a small (JSON) blob and checks its digest; `Ok(None)` if it is missing.
    pub(crate) fn read_small_blob(&self, image: &str, digest: &str) -> Result<Option<Vec<u8>>, ImageError> {
        let path = self.blob_path(digest)?;
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(ImageError::io("open blob", path, e)),
        };
        // The digest may come from content not checked yet (an index just fetched names a layer
        // as its manifest): a blob too big to be JSON is the asker's mistake, not damage, and is
        // never removed. One read whole that does not hash to its own name is damaged.
        let len = file
            .metadata()
            .map_err(|e| ImageError::io("read blob", &path, e))?
            .len();
        if len > MAX_JSON_BLOB {
            return Err(ImageError::InvalidManifest {
                what: "manifest or config",
                image: image.to_string(),
                digest: digest.to_string(),
                reason: format!(
                    "the cache's blob is {len} bytes, more than any manifest or config ({MAX_JSON_BLOB}): \
                     the image names something else (a layer?) where a manifest or config belongs"
                ),
            });
        }
        let mut bytes = Vec::new();
        (&file)
            .take(MAX_JSON_BLOB + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| ImageError::io("read blob", &path, e))?;
        let actual = sha256_digest(&bytes);
        if actual != digest {
            let problem = BlobDamage::Content { actual };
            return Err(ImageError::CorruptBlob(
                self.damaged(image, digest, &path, &file, problem),
            ));
        }
        Ok(Some(bytes))
    }

    // ----- index.json -----

    fn lock_index(&self) -> Result<LockGuard, ImageError> {
        lock_file(&self.dir.join(LOCK_FILE), true)
    }

    /// Taken (shared) by pulls for their whole duration; see [`PULL_LOCK_FILE`].
    pub(crate) fn lock_for_pull(&self) -> Result<PullGuard, ImageError> {
        self.ensure_writable("pull images")?;
        Ok(PullGuard {
            _lock: lock_file(&self.dir.join(PULL_LOCK_FILE), false)?,
        })
    }

    /// Reads `index.json`. We replace it atomically, so no lock is needed against ourselves;
    /// LinuxKit rewrites it in place, so a shared lock is taken when its lock file exists.
    pub(crate) fn read_index(&self) -> Result<RootIndex, ImageError> {
        let _guard = File::open(self.dir.join(LOCK_FILE))
            .ok()
            .and_then(|f| f.lock_shared().ok().map(|()| LockGuard { _file: f }));
        self.read_index_unlocked()
    }

    fn read_index_unlocked(&self) -> Result<RootIndex, ImageError> {
        let path = self.index_path();
        let bytes = fs::read(&path).map_err(|e| ImageError::io("read", &path, e))?;
        let index: RootIndex = serde_json::from_slice(&bytes)
            .map_err(|e| self.invalid(format!("index.json is not a valid image index: {e}")))?;
        if index.schema_version != 2 {
            return Err(self.invalid(format!(
                "index.json has schema version {} (expected 2)",
                index.schema_version
            )));
        }
        Ok(index)
    }

    /// Reads, changes and atomically rewrites `index.json` under the exclusive lock.
    pub(crate) fn update_index<T>(&self, change: impl FnOnce(&mut RootIndex) -> T) -> Result<T, ImageError> {
        self.ensure_writable("update index.json")?;
        let _lock = self.lock_index()?;
        let mut index = self.read_index_unlocked()?;
        let before = index.manifests.clone();
        let result = change(&mut index);
        if index.manifests != before {
            self.write_index_unlocked(&index)?;
        }
        Ok(result)
    }

    fn write_index_unlocked(&self, index: &RootIndex) -> Result<(), ImageError> {
        let bytes = index
            .to_json()
            .map_err(|e| self.invalid(format!("cannot serialise index.json: {e}")))?;
        self.write_atomically(&self.index_path(), &bytes)
    }

    /// Writes `path` via a synced temporary file and a rename.
    fn write_atomically(&self, path: &Path, bytes: &[u8]) -> Result<(), ImageError> {
        let dir = path.parent().unwrap_or(&self.dir);
        let mut tmp = self.temp_file(".tmp")?;
        tmp.write_all(bytes)
            .and_then(|()| tmp.as_file().sync_all())
            .map_err(|e| ImageError::io("write", tmp.path().to_path_buf(), e))?;
        tmp.persist(path)
            .map_err(|e| ImageError::io("replace", path, e.error))?;
        sync_dir(dir)
    }

    /// Names `descriptor` as `name` in `index.json`, replacing any entry of that name (as
    /// LinuxKit's DescriptorWrite does). Does nothing if the same entry is already there.
    #[cfg(test)]
    pub(crate) fn set_entry(&self, name: &str, descriptor: &Descriptor) -> Result<(), ImageError> {
        self.set_entries(&[(name.to_string(), descriptor.clone())])
    }

    /// [`Store::set_entry`] for several names in one index rewrite.
    pub(crate) fn set_entries(&self, entries: &[(String, Descriptor)]) -> Result<(), ImageError> {
        self.update_index(|index| {
            for (name, descriptor) in entries {
                let unchanged = index.manifests.iter().filter(|e| e.name() == Some(name)).count() == 1
                    && index.manifests.iter().any(|e| {
                        e.name() == Some(name)
                            && e.digest == descriptor.digest
                            && e.media_type == descriptor.media_type
                            && e.size == descriptor.size
                    });
                if unchanged {
                    continue;
                }
                index.manifests.retain(|e| e.name() != Some(name));
                index.manifests.push(IndexEntry::named(name, descriptor));
            }
        })
    }

    /// The `index.json` entry for a reference, by exact name: its [`Reference::cache_name`]
    /// (what we write), then, for an untagged reference, the expanded name without `:latest`
    /// (what LinuxKit's build writes). A tag@digest or digest reference only matches an entry
    /// of exactly that name, never the plain tag's.
    pub(crate) fn find_entry(&self, reference: &Reference) -> Result<Option<IndexEntry>, ImageError> {
        let index = self.read_index()?;
        let names = [reference.cache_name(), reference.to_string()];
        Ok(names.iter().find_map(|name| {
            index
                .manifests
                .iter()
                .find(|e| e.name() == Some(name.as_str()))
                .cloned()
        }))
    }

    /// The entry with exactly this name.
    pub(crate) fn entry_named(&self, name: &str) -> Result<Option<IndexEntry>, ImageError> {
        let index = self.read_index()?;
        Ok(index.manifests.into_iter().find(|e| e.name() == Some(name)))
    }

    /// Every named image in `index.json` with its root digest, in index order.
    pub fn list(&self) -> Result<Vec<(String, String)>, ImageError> {
        let index = self.read_index()?;
        Ok(index
            .manifests
            .iter()
            .filter_map(|e| e.name().map(|n| (n.to_string(), e.digest.clone())))
            .collect())
    }

    // ----- lookups -----

    /// Looks `reference` up in the cache and resolves it for `platform`. `Ok(None)` when the
    /// image is not there or some of its blobs are missing (a pull completes it); an error when
    /// it is there but unusable (corrupt blobs, no manifest for the platform).
    ///
    /// A single-platform manifest is returned for any platform, as LinuxKit does.
    pub fn resolve(&self, reference: &Reference, platform: &Platform) -> Result<Option<ResolvedImage>, ImageError> {
        self.lookup(reference, platform).map(Result::ok)
    }

    /// [`Store::resolve`], saying what the cache lacks when the image is not (all) there.
    pub(crate) fn lookup(
        &self,
        reference: &Reference,
        platform: &Platform,
    ) -> Result<Result<ResolvedImage, CacheGap>, ImageError> {
        let Some(entry) = self.find_entry(reference)? else {
            return Ok(Err(CacheGap::NotCached));
        };
        let image = reference.to_string();
        let Some(root) = self.read_small_blob(&image, &entry.digest)? else {
            return Ok(Err(missing(&entry.digest)));
        };
        let (manifest_digest, manifest) = match parse_root(&image, &entry, &root)? {
            Manifest::Image(manifest) => (entry.digest.clone(), manifest),
            Manifest::Index(index) => {
                let child = select_child(&image, &index, platform)?;
                let Some(bytes) = self.read_small_blob(&image, &child.digest)? else {
                    return Ok(Err(missing(&child.digest)));
                };
                (child.digest.clone(), parse_child(&image, &child, &bytes)?)
            }
        };
        self.resolve_manifest(reference, &entry, &manifest_digest, &manifest)
    }

    fn resolve_manifest(
        &self,
        reference: &Reference,
        entry: &IndexEntry,
        manifest_digest: &str,
        manifest: &ImageManifest,
    ) -> Result<Result<ResolvedImage, CacheGap>, ImageError> {
        let image = reference.to_string();
        let config_descriptor = manifest.config.descriptor();
        let Some(config_bytes) = self.read_small_blob(&image, &config_descriptor.digest)? else {
            return Ok(Err(missing(&config_descriptor.digest)));
        };
        let config = ImageConfigFile::parse(&config_bytes).map_err(|e| ImageError::InvalidManifest {
            what: "config",
            image: image.clone(),
            digest: config_descriptor.digest.clone(),
            reason: e.to_string(),
        })?;
        let layers: Vec<Descriptor> = manifest.layers.iter().map(|l| l.descriptor()).collect();
        if config.diff_ids.len() != layers.len() {
            return Err(ImageError::InvalidManifest {
                what: "config",
                image,
                digest: config_descriptor.digest,
                reason: format!(
                    "its rootfs.diff_ids lists {} layers, but the manifest has {}",
                    config.diff_ids.len(),
                    layers.len()
                ),
            });
        }
        if let Some(gap) = layers.iter().find_map(|l| self.blob_gap(l)) {
            return Ok(Err(gap));
        }
        Ok(Ok(ResolvedImage {
            reference: reference.clone(),
            name: entry.name().map_or_else(|| reference.cache_name(), str::to_string),
            root_digest: entry.digest.clone(),
            manifest_digest: manifest_digest.to_string(),
            config_descriptor,
            config,
            layers,
        }))
    }

    // ----- blobs -----

    /// A writer for a new blob that must hash to `digest` (and have `size` bytes when given).
    pub(crate) fn blob_writer(
        &self,
        digest: &str,
        size: Option<u64>,
        origin: BlobOrigin,
    ) -> Result<BlobWriter, ImageError> {
        self.ensure_writable("write blobs")?;
        let final_path = self.blob_path(digest)?;
        let blobs = self.blobs_dir();
        fs::create_dir_all(&blobs).map_err(|e| ImageError::io("create directory", &blobs, e))?;
        let file = self.temp_file("blob-")?;
        Ok(BlobWriter {
            file,
            final_path,
            hasher: Sha256::new(),
            written: 0,
            digest: digest.to_string(),
            size,
            origin,
        })
    }

    /// Stores an in-memory blob (manifest, index, config) after checking its digest.
    pub(crate) fn write_blob_bytes(&self, digest: &str, bytes: &[u8], origin: BlobOrigin) -> Result<(), ImageError> {
        if self.has_blob(digest, bytes.len() as u64) {
            return Ok(());
        }
        let mut writer = self.blob_writer(digest, Some(bytes.len() as u64), origin)?;
        writer.write_all(bytes).map_err(|e| writer.io_error(e))?;
        writer.commit()
    }

    // ----- removal -----

    /// Removes the `index.json` entries named `name` (exactly as [`Store::list`] shows it),
    /// then garbage-collects the blobs no other image uses. Returns whether anything was named so.
    pub fn remove(&self, name: &str) -> Result<bool, ImageError> {
        let removed = self.update_index(|index| {
            let before = index.manifests.len();
            index.manifests.retain(|e| e.name() != Some(name));
            before != index.manifests.len()
        })?;
        if removed {
            self.gc()?;
        }
        Ok(removed)
    }

    /// Deletes every blob that no `index.json` entry reaches (through indexes and manifests) and
    /// temporary files left by killed processes. Waits for running pulls to finish first.
    /// Returns the number of blobs deleted.
    pub fn gc(&self) -> Result<usize, ImageError> {
        self.ensure_writable("collect garbage")?;
        let _pulls = lock_file(&self.dir.join(PULL_LOCK_FILE), true)?;
        let _index = self.lock_index()?;
        let index = self.read_index_unlocked()?;
        let mut reachable = HashSet::new();
        for entry in &index.manifests {
            self.mark_reachable(&entry.descriptor(), &mut reachable)?;
        }
        let mut deleted = 0;
        for (hex, path) in self.blob_files()? {
            if !reachable.contains(&format!("sha256:{hex}")) {
                fs::remove_file(&path).map_err(|e| ImageError::io("remove", &path, e))?;
                deleted += 1;
            }
        }
        self.remove_stale_tmp_files();
        Ok(deleted)
    }

    /// Empties the cache: every entry, blob and stale temporary file (the layout itself stays).
    pub fn clean(&self) -> Result<(), ImageError> {
        self.ensure_writable("clean")?;
        let _pulls = lock_file(&self.dir.join(PULL_LOCK_FILE), true)?;
        let _index = self.lock_index()?;
        let mut index = self.read_index_unlocked()?;
        index.manifests.clear();
        self.write_index_unlocked(&index)?;
        for (_, path) in self.blob_files()? {
            fs::remove_file(&path).map_err(|e| ImageError::io("remove", &path, e))?;
        }
        self.remove_stale_tmp_files();
        Ok(())
    }

    /// Adds `descriptor` and the blobs it reaches to `reachable`. Missing blobs end the walk
    /// quietly: an incomplete image must not stop gc.
    fn mark_reachable(&self, descriptor: &Descriptor, reachable: &mut HashSet<String>) -> Result<(), ImageError> {
        if !reachable.insert(descriptor.digest.clone()) {
            return Ok(());
        }
        if !super::media_type::is_index(&descriptor.media_type)
            && !super::media_type::is_manifest(&descriptor.media_type)
        {
            return Ok(());
        }
        let bytes = match self.read_small_blob("(garbage collection)", &descriptor.digest) {
            Ok(Some(bytes)) => bytes,
            Ok(None) | Err(ImageError::CorruptBlob(_)) | Err(ImageError::InvalidDigest { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        match parse_manifest(&bytes, &descriptor.media_type) {
            Ok((_, Manifest::Index(index))) => {
                for child in &index.manifests {
                    self.mark_reachable(&child.descriptor(), reachable)?;
                }
            }
            Ok((_, Manifest::Image(manifest))) => {
                reachable.insert(manifest.config.digest.clone());
                for layer in &manifest.layers {
                    reachable.insert(layer.digest.clone());
                }
            }
            Err(_) => {}
        }
        Ok(())
    }

    /// `(hex, path)` of every file in `blobs/sha256`.
    fn blob_files(&self) -> Result<Vec<(String, PathBuf)>, ImageError> {
        let dir = self.blobs_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(ImageError::io("list", dir, e)),
        };
        let mut files = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| ImageError::io("list", &dir, e))?;
            if entry.file_type().is_ok_and(|t| t.is_file()) {
                if let Some(name) = entry.file_name().to_str() {
                    files.push((name.to_string(), entry.path()));
                }
            }
        }
        Ok(files)
    }

    /// A new file in `.tmp`, locked for as long as it is open so that
    /// [`Store::remove_stale_tmp_files`] in any process leaves it alone; dropping it deletes it.
    fn temp_file(&self, prefix: &str) -> Result<NamedTempFile, ImageError> {
        let dir = self.dir.join(TMP_DIR);
        fs::create_dir_all(&dir).map_err(|e| ImageError::io("create directory", &dir, e))?;
        let file = tempfile::Builder::new()
            .prefix(prefix)
            .tempfile_in(&dir)
            .map_err(|e| ImageError::io("create temporary file in", &dir, e))?;
        file.as_file()
            .try_lock()
            .map_err(|e| ImageError::io("lock", file.path().to_path_buf(), e.into()))?;
        Ok(file)
    }

    /// Removes the temporary files that interrupted processes left in `.tmp`: those nobody holds
    /// locked (the lock of a killed process goes with it) and older than [`STALE_TMP_AGE`].
    /// Best effort: what cannot be removed now is tried again next time.
    fn remove_stale_tmp_files(&self) {
        if !self.writable {
            return;
        }
        let dir = self.dir.join(TMP_DIR);
        let Ok(entries) = fs::read_dir(&dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > STALE_TMP_AGE);
            let unowned = || File::open(&path).is_ok_and(|file| file.try_lock().is_ok());
            if old && unowned() {
                match fs::remove_file(&path) {
                    Ok(()) => tracing::debug!("removed {}, left by an interrupted run", path.display()),
                    Err(e) => tracing::debug!("cannot remove {}: {e}", path.display()),
                }
            }
        }
    }
}

/// Held by a running pull; see [`Store::lock_for_pull`].
pub(crate) struct PullGuard {
    _lock: LockGuard,
}

fn sync_dir(dir: &Path) -> Result<(), ImageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| ImageError::io("sync directory", dir, e))
}

/// Parses the root blob named by an `index.json` entry.
pub(crate) fn parse_root(image: &str, entry: &IndexEntry, bytes: &[u8]) -> Result<Manifest, ImageError> {
    parse_manifest(bytes, &entry.media_type)
        .map(|(_, m)| m)
        .map_err(|reason| ImageError::InvalidManifest {
            what: "manifest",
            image: image.to_string(),
            digest: entry.digest.clone(),
            reason,
        })
}

/// Picks the index entry for `platform`, or explains which platforms exist.
pub(crate) fn select_child(image: &str, index: &IndexManifest, platform: &Platform) -> Result<Descriptor, ImageError> {
    index
        .select(platform)
        .map(|m| m.descriptor())
        .ok_or_else(|| ImageError::NoPlatform {
            image: image.to_string(),
            platform: platform.to_string(),
            available: index.platform_list(),
        })
}

/// Parses a platform manifest found through an index; it must be an image manifest.
pub(crate) fn parse_child(image: &str, child: &Descriptor, bytes: &[u8]) -> Result<ImageManifest, ImageError> {
    let invalid = |reason: String| ImageError::InvalidManifest {
        what: "manifest",
        image: image.to_string(),
        digest: child.digest.clone(),
        reason,
    };
    match parse_manifest(bytes, &child.media_type).map_err(invalid)? {
        (_, Manifest::Image(manifest)) => Ok(manifest),
        (_, Manifest::Index(_)) => Err(invalid("an index nested in an index is not supported".to_string())),
    }
}

fn missing(digest: &str) -> CacheGap {
    CacheGap::MissingBlob {
        digest: digest.to_string(),
    }
}

fn is_same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), fs::symlink_metadata(path)) {
        (Ok(open), Ok(named)) => open.dev() == named.dev() && open.ino() == named.ino(),
        _ => false,
    }
}

/// A cached blob read through its descriptor ([`Store::open_verified`]): hashed as it is read,
/// and the read that reaches the descriptor's size fails instead of returning its bytes when
/// the size or the digest is wrong (a file that ends early fails at its end). The error is an
/// `io::Error` of kind `InvalidData` carrying a [`DamagedBlob`] ([`DamagedBlob::find`] recovers
/// it). Every reader of cached layers goes through it: builds, `format: oci` volumes, exports and
/// pushes. Consumers that stop early (a tar's end marker) read the rest to get the verdict.
pub struct VerifiedBlob {
    store: Store,
    image: String,
    blob: Descriptor,
    path: PathBuf,
    file: File,
    hasher: Sha256,
    read: u64,
    /// Set once every byte is in: `Ok` when intact, else the report every later read repeats.
    verdict: Option<Result<(), DamagedBlob>>,
}

impl VerifiedBlob {
    /// An error of this reader as an [`ImageError`]: the damage report, else an I/O error naming
    /// the blob file.
    pub fn error(&self, error: io::Error) -> ImageError {
        match DamagedBlob::find(&error) {
            Some(damage) => ImageError::CorruptBlob(damage.clone()),
            None => ImageError::io("read blob", &self.path, error),
        }
    }
    /// Checks what was read against the descriptor once all its bytes are in: nothing may follow,
    /// and the digest must match.
    fn verify(&mut self) -> io::Result<()> {
        let mut probe = [0u8; 1];
        let problem = if self.file.read(&mut probe)? > 0 {
            Some(BlobDamage::Size {
                expected: self.blob.size,
                actual: self.file.metadata().map_or(self.read + 1, |m| m.len()),
            })
        } else {
            let actual = format!("sha256:{}", hex::encode(self.hasher.clone().finalize()));
            (actual != self.blob.digest).then_some(BlobDamage::Content { actual })
        };
        match problem {
            Some(problem) => Err(self.damaged(problem)),
            None => {
                self.verdict = Some(Ok(()));
                Ok(())
            }
        }
    }

    fn damaged(&mut self, problem: BlobDamage) -> io::Error {
        let report = self
            .store
            .damaged(&self.image, &self.blob.digest, &self.path, &self.file, problem);
        self.verdict = Some(Err(report.clone()));
        io::Error::new(io::ErrorKind::InvalidData, report)
    }
}

impl Read for VerifiedBlob {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &self.verdict {
            Some(Ok(())) => return Ok(0),
            Some(Err(report)) => return Err(io::Error::new(io::ErrorKind::InvalidData, report.clone())),
            None if buf.is_empty() => return Ok(0),
            None => {}
        }
        let left = self.blob.size - self.read;
        if left == 0 {
            self.verify()?;
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self.file.read(&mut buf[..want])?;
        if n == 0 {
            let actual = self.read;
            return Err(self.damaged(BlobDamage::Size {
                expected: self.blob.size,
                actual,
            }));
        }
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        if self.read == self.blob.size {
            self.verify()?;
        }
        Ok(n)
    }
}

/// A blob being written: hashed while written to a temporary file, renamed into place by
/// [`BlobWriter::commit`] only if digest and size match. Dropping it deletes the temporary file.
pub(crate) struct BlobWriter {
    file: NamedTempFile,
    final_path: PathBuf,
    hasher: Sha256,
    written: u64,
    digest: String,
    size: Option<u64>,
    origin: BlobOrigin,
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl BlobWriter {
    /// Fails early when more bytes arrived than the descriptor announced.
    pub fn check_not_oversized(&self) -> Result<(), ImageError> {
        match self.size {
            Some(size) if self.written > size => Err(self.size_error(size)),
            _ => Ok(()),
        }
    }

    /// The digest of what was written so far.
    pub fn digest_so_far(&self) -> String {
        format!("sha256:{}", hex::encode(self.hasher.clone().finalize()))
    }

    /// An I/O error on the temporary file.
    pub fn io_error(&self, e: io::Error) -> ImageError {
        ImageError::io("write", self.file.path().to_path_buf(), e)
    }

    fn size_error(&self, expected: u64) -> ImageError {
        ImageError::SizeMismatch {
            image: self.origin.image.clone(),
            source_url: self.origin.source.clone(),
            digest: self.digest.clone(),
            expected,
            actual: self.written,
        }
    }

    /// Verifies size and digest, syncs the data and renames it to `blobs/sha256/<hex>`.
    pub fn commit(self) -> Result<(), ImageError> {
        if let Some(size) = self.size.filter(|s| *s != self.written) {
            return Err(self.size_error(size));
        }
        let actual = self.digest_so_far();
        if actual != self.digest {
            return Err(ImageError::DigestMismatch {
                image: self.origin.image,
                source_url: self.origin.source,
                expected: self.digest,
                actual,
            });
        }
        let BlobWriter {
            mut file, final_path, ..
        } = self;
        file.flush()
            .and_then(|()| file.as_file().sync_all())
            .map_err(|e| ImageError::io("sync", file.path().to_path_buf(), e))?;
        file.persist(&final_path)
            .map_err(|e| ImageError::io("rename blob to", &final_path, e.error))?;
        match final_path.parent() {
            Some(dir) => sync_dir(dir),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::image::media_type;

    /// The conformance corpus: `$MOBY_CONFORMANCE_DIR`, else `shared/conformance` next to the
    /// repository or one of its parents.
    pub(crate) fn corpus_dir() -> PathBuf {
        if let Some(dir) = std::env::var_os("MOBY_CONFORMANCE_DIR") {
            return PathBuf::from(dir);
        }
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        manifest
            .ancestors()
            .map(|a| a.join("shared").join("conformance"))
            .find(|c| c.join("cache").join("index.json").is_file())
            .unwrap_or_else(|| panic!("conformance corpus not found above {manifest:?}; set MOBY_CONFORMANCE_DIR"))
    }

    pub(crate) fn corpus() -> Store {
        Store::open_read_only(&corpus_dir().join("cache")).expect("corpus cache opens")
    }

    pub(crate) fn reference(text: &str) -> Reference {
        Reference::parse(text).expect("valid reference")
    }

    fn conformance(name: &str) -> Reference {
        reference(&format!("localhost:5000/conformance/{name}"))
    }

    /// Copies the corpus cache to a temporary directory (tests that write must not touch it).
    pub(crate) fn corpus_copy() -> (tempfile::TempDir, Store) {
        let tmp = tempfile::tempdir().unwrap();
        let src = corpus_dir().join("cache");
        copy_tree(&src, tmp.path());
        let store = Store::open(tmp.path()).unwrap();
        (tmp, store)
    }

    fn copy_tree(src: &Path, dst: &Path) {
        fs::create_dir_all(dst).unwrap();
        for entry in fs::read_dir(src).unwrap() {
            let entry = entry.unwrap();
            let target = dst.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                copy_tree(&entry.path(), &target);
            } else {
                fs::copy(entry.path(), &target).unwrap();
                // The corpus is read-only; the copy must be writable.
                use std::os::unix::fs::PermissionsExt;
                fs::set_permissions(&target, fs::Permissions::from_mode(0o644)).unwrap();
            }
        }
    }

    const README_IMAGES: [(&str, &str); 12] = [
        (
            "kernel:6.6.0",
            "sha256:14410c9e2347f8278aa147ccc3596fa175068bc84500f071b89926fa9fa36316",
        ),
        (
            "init:v1",
            "sha256:d18e82f94b0a01fb0e8af3f15098c340a547fab3cb52dd5bd3c7045e2a249127",
        ),
        (
            "runc:v1",
            "sha256:7e6d18d000e2ec72505729a3a6f93a5b9fa2742189b1507739effb2fd667da4d",
        ),
        (
            "hello:v1",
            "sha256:b1c84a335bbd64acd02fd28286a6579b0f0d661b37375c5795a00888584c5962",
        ),
        (
            "layered:v1",
            "sha256:f56018a5b88143f440ccef8e680ba456be42fa0a5519f64c15656d62639de223",
        ),
        (
            "netsvc:v1",
            "sha256:79661a70ae0fe1d6bebfec7644911765d51b749183a872227223984c40b525de",
        ),
        (
            "sandbox:v1",
            "sha256:a8b1eee6050b73d6b6dd9daa30d132f78fca01a541af3ce66dcb24d641e387cb",
        ),
        (
            "devmgr:v1",
            "sha256:7c20e1f6bd71839b55fbfc8c3e6a39b875599bd22a3f8bd9ae9d9ef14091db12",
        ),
        (
            "labelcmd:v1",
            "sha256:8e492738f494ed37618dd48b6bf404881e46a42ae861a6acccc126e650117d7c",
        ),
        (
            "badlabel:v1",
            "sha256:3e6f5c6f9cf33a992f9f22f6a9936337e0c66908c8fd42adea5ef807032441fc",
        ),
        (
            "voldata:v1",
            "sha256:1dc9a14b8725155b001cb384f20316720a871e5732507493755e8ff4ed2a9647",
        ),
        (
            "scratch:v1",
            "sha256:0d5f5c16f46d65ca9000c9405c7210b9b664d49136f51233526382ff8e576821",
        ),
    ];

    #[test]
    fn resolves_every_corpus_image() {
        let store = corpus();
        for (name, digest) in README_IMAGES {
            for arch in ["amd64", "arm64"] {
                let r = conformance(name);
                let resolved = store
                    .resolve(&r, &Platform::linux(arch))
                    .unwrap()
                    .unwrap_or_else(|| panic!("{name} for {arch} not resolved"));
                assert_eq!(resolved.root_digest, digest, "{name}");
                assert_eq!(resolved.reference, r);
                for layer in &resolved.layers {
                    assert!(store.has_blob(&layer.digest, layer.size), "{name}: {layer:?}");
                }
                if !name.starts_with("kernel") && !name.starts_with("voldata") {
                    assert_eq!(resolved.manifest_digest, digest, "{name} is a plain manifest");
                }
            }
        }
    }

    #[test]
    fn kernel_index_resolves_per_platform() {
        let store = corpus();
        let r = conformance("kernel:6.6.0");
        let amd = store.resolve(&r, &Platform::linux("amd64")).unwrap().unwrap();
        let arm = store.resolve(&r, &Platform::linux("arm64")).unwrap().unwrap();
        let arm_v8 = store
            .resolve(&r, &Platform::parse("linux/arm64/v8").unwrap())
            .unwrap()
            .unwrap();
        assert_ne!(amd.manifest_digest, arm.manifest_digest);
        assert_eq!(arm.manifest_digest, arm_v8.manifest_digest);
        assert_eq!(amd.config.architecture, "amd64");
        assert_eq!(arm.config.architecture, "arm64");
        assert_ne!(amd.layers, arm.layers);
        let err = store.resolve(&r, &Platform::linux("riscv64")).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, ImageError::NoPlatform { .. }), "{text}");
        assert!(
            text.contains("linux/riscv64") && text.contains("linux/amd64, linux/arm64"),
            "{text}"
        );
    }

    #[test]
    fn image_configs_are_parsed() {
        let store = corpus();
        let host = Platform::linux("amd64");
        let hello = store.resolve(&conformance("hello:v1"), &host).unwrap().unwrap();
        assert_eq!(hello.config.entrypoint, ["/bin/hello"]);
        assert_eq!(hello.config.cmd, ["--greeting", "world"]);
        assert_eq!(hello.config.working_dir, "/srv");
        assert_eq!(hello.config.user, "1000:1000");
        assert!(hello.config.env.iter().any(|e| e == "GREETING=hello"));
        let netsvc = store.resolve(&conformance("netsvc:v1"), &host).unwrap().unwrap();
        assert!(netsvc.config.labels["org.mobyproject.config"].starts_with("{\"capabilities\""));
        let layered = store.resolve(&conformance("layered:v1"), &host).unwrap().unwrap();
        assert_eq!(layered.layers.len(), 2);
        let scratch = store.resolve(&conformance("scratch:v1"), &host).unwrap().unwrap();
        assert!(scratch.layers.is_empty());
        assert_eq!(scratch.config_descriptor.media_type, media_type::OCI_CONFIG);
    }

    #[test]
    fn digest_references_match_by_exact_name() {
        let store = corpus();
        let host = Platform::host();
        let hello = "sha256:b1c84a335bbd64acd02fd28286a6579b0f0d661b37375c5795a00888584c5962";
        let scratch = "sha256:0d5f5c16f46d65ca9000c9405c7210b9b664d49136f51233526382ff8e576821";
        let r = conformance(&format!("hello:v1@{hello}"));
        assert_eq!(store.resolve(&r, &host).unwrap().unwrap().root_digest, hello);
        let r = conformance(&format!("scratch@{scratch}"));
        assert_eq!(store.resolve(&r, &host).unwrap().unwrap().root_digest, scratch);
        // Not stored under these names, even though the digests are in the cache.
        for missing in [
            format!("scratch:v1@{scratch}"),
            format!("hello@{hello}"),
            "hello".to_string(),
        ] {
            assert!(
                store.resolve(&conformance(&missing), &host).unwrap().is_none(),
                "{missing}"
            );
        }
        assert!(store.resolve(&conformance("hello:v2"), &host).unwrap().is_none());
    }

    #[test]
    fn lists_in_index_order() {
        let list = corpus().list().unwrap();
        assert_eq!(list.len(), 14);
        assert_eq!(list[0].0, "localhost:5000/conformance/kernel:6.6.0");
        assert_eq!(list[0].1, README_IMAGES[0].1);
        assert!(list.iter().any(
            |(n, _)| n.ends_with("scratch@sha256:0d5f5c16f46d65ca9000c9405c7210b9b664d49136f51233526382ff8e576821")
        ));
    }

    #[test]
    fn read_only_store_refuses_writes() {
        let store = corpus();
        assert!(!store.is_writable());
        assert!(matches!(store.remove("x"), Err(ImageError::ReadOnly { .. })));
        assert!(matches!(store.gc(), Err(ImageError::ReadOnly { .. })));
        assert!(Store::open_read_only(Path::new("/nonexistent/moby")).is_err());
    }

    #[test]
    fn open_creates_an_empty_layout() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("cache");
        let store = Store::open(&dir).unwrap();
        assert_eq!(fs::read_to_string(dir.join("oci-layout")).unwrap(), OCI_LAYOUT);
        let index = fs::read_to_string(dir.join("index.json")).unwrap();
        assert_eq!(
            index,
            "{\n   \"schemaVersion\": 2,\n   \"mediaType\": \"application/vnd.oci.image.index.v1+json\",\n   \"manifests\": []\n}"
        );
        assert!(dir.join("blobs/sha256").is_dir());
        assert!(store.list().unwrap().is_empty());
        // Re-opening leaves it alone.
        Store::open(&dir).unwrap();
        assert_eq!(fs::read_to_string(dir.join("index.json")).unwrap(), index);
    }

    #[test]
    fn broken_layouts_are_reported() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("index.json"), "{not json").unwrap();
        fs::write(tmp.path().join("oci-layout"), OCI_LAYOUT).unwrap();
        let err = Store::open(tmp.path()).unwrap_err().to_string();
        assert!(err.contains("index.json is not a valid image index"), "{err}");
    }

    #[test]
    fn blob_writer_verifies_before_naming() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        let origin = BlobOrigin {
            image: "example/img:1".into(),
            source: "test".into(),
        };
        let good = sha256_digest(b"hello");
        store.write_blob_bytes(&good, b"hello", origin.clone()).unwrap();
        assert!(store.has_blob(&good, 5));
        let other = sha256_digest(b"other");
        let err = store.write_blob_bytes(&other, b"hello", origin.clone()).unwrap_err();
        assert!(matches!(err, ImageError::DigestMismatch { ref actual, .. } if *actual == good));
        assert!(err.to_string().contains("example/img:1"));
        assert!(!store.blob_path(&other).unwrap().exists());
        // The temporary file is gone too.
        assert_eq!(fs::read_dir(tmp.path().join(TMP_DIR)).unwrap().count(), 0);
        let mut w = store.blob_writer(&good, Some(4), origin).unwrap();
        w.write_all(b"hello").unwrap();
        assert!(w.check_not_oversized().is_err());
        assert!(matches!(w.commit(), Err(ImageError::SizeMismatch { .. })));
    }

    /// Plants `.tmp/NAME`, last modified an hour ago unless `fresh`.
    fn plant_tmp_file(cache: &Path, name: &str, fresh: bool) -> PathBuf {
        let path = cache.join(TMP_DIR).join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let file = File::create(&path).unwrap();
        if !fresh {
            let hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
            file.set_modified(hour_ago).unwrap();
        }
        path
    }

    #[test]
    fn temporary_files_of_interrupted_runs_are_swept_on_open() {
        let tmp = tempfile::tempdir().unwrap();
        Store::open(tmp.path()).unwrap();
        let stale = plant_tmp_file(tmp.path(), "blob-stale", false);
        let young = plant_tmp_file(tmp.path(), "blob-young", true);
        // A live writer holds its file locked, however long the download takes.
        let live = plant_tmp_file(tmp.path(), "blob-live", false);
        let writer = File::open(&live).unwrap();
        writer.try_lock().unwrap();
        Store::open_read_only(tmp.path()).unwrap();
        assert!(stale.exists(), "a read-only store removes nothing");
        Store::open(tmp.path()).unwrap();
        assert!(!stale.exists());
        assert!(young.exists() && live.exists());
        drop(writer);
        Store::open(tmp.path()).unwrap();
        assert!(!live.exists(), "once its writer is gone, it is stale");
    }

    #[test]
    fn writers_lock_their_temporary_files() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        let origin = BlobOrigin {
            image: "t".into(),
            source: "t".into(),
        };
        let writer = store.blob_writer(&sha256_digest(b"x"), Some(1), origin).unwrap();
        let path = writer.file.path().to_path_buf();
        assert!(File::open(&path).unwrap().try_lock().is_err());
        drop(writer);
        assert!(!path.exists());
    }

    #[test]
    fn corrupt_blobs_are_detected_on_read() {
        let (_tmp, store) = corpus_copy();
        let r = conformance("hello:v1");
        let entry = store.find_entry(&r).unwrap().unwrap();
        let path = store.blob_path(&entry.digest).unwrap();
        let mut bytes = fs::read(&path).unwrap();
        bytes[0] ^= 1;
        fs::write(&path, bytes).unwrap();
        let err = store.resolve(&r, &Platform::host()).unwrap_err();
        assert!(matches!(err, ImageError::CorruptBlob(_)), "{err}");
    }

    /// hello:v1's only layer in a writable copy of the corpus, and that copy.
    fn hello_layer() -> (tempfile::TempDir, Store, ResolvedImage) {
        let (tmp, store) = corpus_copy();
        let resolved = store
            .resolve(&conformance("hello:v1"), &Platform::linux("amd64"))
            .unwrap()
            .unwrap();
        (tmp, store, resolved)
    }

    /// Reads the blob whole through a verifying reader.
    fn read_verified(store: &Store, image: &ResolvedImage) -> Result<Vec<u8>, ImageError> {
        let mut reader = store.open_verified(&image.name, &image.layers[0])?;
        let mut bytes = Vec::new();
        reader.read_to_end(&mut bytes).map_err(|e| reader.error(e))?;
        Ok(bytes)
    }

    fn damage_of(err: ImageError) -> DamagedBlob {
        match err {
            ImageError::CorruptBlob(damage) => damage,
            other => panic!("expected a damaged blob, got {other}"),
        }
    }

    #[test]
    fn verified_reads_pass_intact_blobs() {
        let (_tmp, store, hello) = hello_layer();
        let path = store.blob_path(&hello.layers[0].digest).unwrap();
        assert_eq!(read_verified(&store, &hello).unwrap(), fs::read(&path).unwrap());
        store.verify_blob(&hello.name, &hello.layers[0]).unwrap();
    }

    #[test]
    fn a_large_blob_named_as_a_manifest_is_refused_and_kept() {
        let (_tmp, store, _) = hello_layer();
        let big = vec![0u8; usize::try_from(MAX_JSON_BLOB).unwrap() + 1];
        let digest = sha256_digest(&big);
        store
            .write_blob_bytes(
                &digest,
                &big,
                BlobOrigin {
                    image: "big".into(),
                    source: "test".into(),
                },
            )
            .unwrap();
        let err = store.read_small_blob("hostile/index:1", &digest).unwrap_err();
        assert!(
            matches!(err, ImageError::InvalidManifest { .. }) && err.to_string().contains("more than any manifest"),
            "{err}"
        );
        assert!(
            store.blob_path(&digest).unwrap().exists(),
            "a good blob is never removed"
        );
    }

    #[test]
    fn verified_reads_find_damage_and_remove_the_blob() {
        let (_tmp, store, hello) = hello_layer();
        let layer = &hello.layers[0];
        let path = store.blob_path(&layer.digest).unwrap();
        let good = fs::read(&path).unwrap();
        let mut flipped = good.clone();
        flipped[9] ^= 1;
        let cases = [
            (flipped, "its content hashes to sha256:".to_string()),
            (
                good[..good.len() - 1].to_vec(),
                format!("it has {} bytes instead of {}", good.len() - 1, good.len()),
            ),
            (
                [&good[..], &[0]].concat(),
                format!("it has {} bytes instead of {}", good.len() + 1, good.len()),
            ),
        ];
        for (bytes, problem) in cases {
            fs::write(&path, &bytes).unwrap();
            let report = damage_of(read_verified(&store, &hello).unwrap_err());
            let text = report.to_string();
            assert_eq!(report.image, "localhost:5000/conformance/hello:v1");
            assert_eq!(report.digest, layer.digest);
            assert!(report.removed, "{text}");
            assert!(text.contains(&layer.digest) && text.contains(&problem), "{text}");
            assert!(
                text.contains("hello:v1") && text.contains("removed from the cache"),
                "{text}"
            );
            assert!(!path.exists(), "a damaged blob is removed");
        }
    }

    #[test]
    fn a_read_only_cache_keeps_its_damaged_blob() {
        let (tmp, store, hello) = hello_layer();
        let path = store.blob_path(&hello.layers[0].digest).unwrap();
        let mut bytes = fs::read(&path).unwrap();
        bytes[9] ^= 1;
        fs::write(&path, &bytes).unwrap();
        let read_only = Store::open_read_only(tmp.path()).unwrap();
        let report = damage_of(read_only.verify_blob(&hello.name, &hello.layers[0]).unwrap_err());
        assert!(!report.removed);
        assert!(
            report.to_string().contains("remove the image from the cache"),
            "{report}"
        );
        assert!(path.exists());
    }

    #[test]
    fn missing_layer_means_not_resolved() {
        let (_tmp, store) = corpus_copy();
        let r = conformance("layered:v1");
        let resolved = store.resolve(&r, &Platform::host()).unwrap().unwrap();
        fs::remove_file(store.blob_path(&resolved.layers[1].digest).unwrap()).unwrap();
        assert!(store.resolve(&r, &Platform::host()).unwrap().is_none());
    }

    #[test]
    fn set_entry_replaces_by_name_and_keeps_others() {
        let (_tmp, store) = corpus_copy();
        let before = store.list().unwrap();
        let d = Descriptor {
            media_type: media_type::OCI_MANIFEST.into(),
            digest: README_IMAGES[2].1.into(),
            size: 345,
        };
        store.set_entry("localhost:5000/conformance/hello:v1", &d).unwrap();
        let after = store.list().unwrap();
        assert_eq!(after.len(), before.len());
        assert_eq!(
            after.last().unwrap(),
            &("localhost:5000/conformance/hello:v1".to_string(), d.digest.clone())
        );
        // Setting the same entry again leaves the file untouched.
        let text = fs::read(store.index_path()).unwrap();
        store.set_entry("localhost:5000/conformance/hello:v1", &d).unwrap();
        assert_eq!(fs::read(store.index_path()).unwrap(), text);
    }

    #[test]
    fn remove_collects_only_unshared_blobs() {
        let (_tmp, store) = corpus_copy();
        let host = Platform::host();
        let hello = conformance("hello:v1");
        let layers = store.resolve(&hello, &host).unwrap().unwrap().layers;
        // hello:v1 is also named by its digest reference, so removing the tag frees nothing.
        assert!(store.remove("localhost:5000/conformance/hello:v1").unwrap());
        assert!(store.resolve(&hello, &host).unwrap().is_none());
        assert!(store.has_blob(&layers[0].digest, layers[0].size));
        let digest_name = store
            .list()
            .unwrap()
            .into_iter()
            .find(|(n, _)| n.contains("hello:v1@"))
            .unwrap()
            .0;
        assert!(store.remove(&digest_name).unwrap());
        assert!(!store.has_blob(&layers[0].digest, layers[0].size));
        assert!(!store.remove("nothing:here").unwrap());
        // Every other image still resolves, both platforms of the kernel included.
        for (name, _) in README_IMAGES.iter().filter(|(n, _)| *n != "hello:v1") {
            for arch in ["amd64", "arm64"] {
                assert!(
                    store
                        .resolve(&conformance(name), &Platform::linux(arch))
                        .unwrap()
                        .is_some(),
                    "{name}"
                );
            }
        }
    }

    #[test]
    fn gc_removes_strays_and_clean_removes_everything() {
        let (tmp, store) = corpus_copy();
        let stray = sha256_digest(b"stray");
        store
            .write_blob_bytes(
                &stray,
                b"stray",
                BlobOrigin {
                    image: "t".into(),
                    source: "t".into(),
                },
            )
            .unwrap();
        assert_eq!(store.gc().unwrap(), 1);
        assert!(!store.has_blob(&stray, 5));
        assert_eq!(store.gc().unwrap(), 0);
        store.clean().unwrap();
        assert!(store.list().unwrap().is_empty());
        assert_eq!(fs::read_dir(tmp.path().join("blobs/sha256")).unwrap().count(), 0);
    }
}
