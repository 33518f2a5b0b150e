//! Making images available in the store: cache lookups first, registry pulls for the rest.
//!
//! A pull runs in three phases so that shared layers are fetched once and the cache is never
//! left inconsistent:
//! 1. plan: fetch (or read from the cache) each image's root manifest or index and the
//!    platform manifests it needs, concurrently across images;
//! 2. download every missing config and layer blob once, concurrently (bounded), each streamed
//!    to a temporary file and verified before it gets its name;
//! 3. store the manifests, then name the images in `index.json` in one atomic rewrite.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use tokio::sync::Semaphore;

use super::auth::DockerConfig;
use super::descriptor::{sha256_digest, sha256_hex, Descriptor, ImageManifest, Manifest};
use super::layout::{parse_child, parse_root, select_child, BlobOrigin, ResolvedImage, Store, MAX_JSON_BLOB};
use super::platform::Platform;
use super::registry::{stall_timeout, Registry, Target};
use super::{CacheGap, ImageError};
use crate::progress::{self, Progress};
use crate::reference::Reference;

/// How many images are planned at once.
const IMAGE_CONCURRENCY: usize = 4;
/// How many blobs are downloaded at once.
const BLOB_CONCURRENCY: usize = 4;
/// Registries that LinuxKit (go-containerregistry) also treats as Docker Hub.
const DOCKER_HUB_ALIASES: [&str; 3] = ["docker.io", "index.docker.io", "registry-1.docker.io"];

/// How [`ensure_images`] and [`ensure_layouts`] reach registries.
#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// Fetch each image's manifest from its registry even when the cache has it
    /// (blobs already cached are still not downloaded again).
    pub always_pull: bool,
    /// `(registry, url)` pairs, as from `--mirror REGISTRY=URL`; registry `*` applies to every
    /// registry without its own mirror. See [`parse_mirror`].
    pub mirrors: Vec<(String, String)>,
    /// The platform to resolve indexes for.
    pub platform: Platform,
    /// Docker `config.json` to read credentials from instead of `$DOCKER_CONFIG/config.json`
    /// or `~/.docker/config.json`.
    pub docker_config: Option<PathBuf>,
    /// A download fails when less than 16 KiB arrive in this time; `None` means
    /// `$MOBY_PULL_STALL_TIMEOUT` seconds, else [`super::DEFAULT_STALL_TIMEOUT`].
    pub stall_timeout: Option<Duration>,
    /// Told how the downloads go.
    pub progress: Option<Arc<dyn Progress>>,
}

/// Parses a `--mirror` value: `REGISTRY=URL`, or just `URL` for every registry (key `*`).
/// The URL must start with `http://` or `https://` and may carry a path prefix.
pub fn parse_mirror(text: &str) -> Result<(String, String), ImageError> {
    let (registry, url) = match text.split_once('=') {
        Some((registry, url)) => (registry.trim_end_matches('/'), url),
        None => ("*", text),
    };
    let invalid = |reason: &str| ImageError::InvalidMirror {
        mirror: text.to_string(),
        reason: reason.to_string(),
    };
    if registry.is_empty() {
        return Err(invalid("the registry before '=' is empty"));
    }
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| invalid("the mirror URL must start with http:// or https://"))?;
    if rest.trim_end_matches('/').is_empty() || rest.starts_with('/') {
        return Err(invalid("the mirror URL has no host"));
    }
    Ok((registry.to_string(), url.to_string()))
}

/// Which platforms of an image are needed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Want {
    /// One platform, resolved as [`Store::resolve`] does.
    One(Platform),
    /// Every index entry that matches any of these (non-empty) platforms.
    Matching(Vec<Platform>),
    /// Every image manifest of the index.
    All,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Request {
    reference: Reference,
    want: Want,
}

/// Makes each reference available in `store` for `opts.platform`, pulling what the cache lacks,
/// and returns them resolved, in the order given. Images are pulled concurrently; a failure of
/// one does not stop the others, and every failure is reported.
pub fn ensure_images(store: &Store, refs: &[Reference], opts: &PullOptions) -> Result<Vec<ResolvedImage>, ImageError> {
    let requests: Vec<Request> = refs
        .iter()
        .map(|r| Request {
            reference: r.clone(),
            want: Want::One(opts.platform.clone()),
        })
        .collect();
    ensure(store, &requests, opts)?;
    refs.iter()
        .map(|r| {
            store
                .resolve(r, &opts.platform)?
                // Only possible if another process removed it in the meantime.
                .ok_or_else(|| ImageError::NotInCache {
                    image: r.to_string(),
                    dir: store.dir().to_path_buf(),
                })
        })
        .collect()
}

/// Makes the given platforms (all of them when the list is empty) of each image index
/// available, as `format: oci` volumes need before [`super::oci_layout_entries`].
pub fn ensure_layouts(
    store: &Store,
    images: &[(Reference, Vec<Platform>)],
    opts: &PullOptions,
) -> Result<(), ImageError> {
    let requests: Vec<Request> = images
        .iter()
        .map(|(r, platforms)| Request {
            reference: r.clone(),
            want: if platforms.is_empty() {
                Want::All
            } else {
                Want::Matching(platforms.clone())
            },
        })
        .collect();
    ensure(store, &requests, opts)
}

fn ensure(store: &Store, requests: &[Request], opts: &PullOptions) -> Result<(), ImageError> {
    let mut pending = Vec::new();
    let mut gaps = HashMap::new();
    let mut seen = HashSet::new();
    for request in requests {
        let key = (request.reference.cache_name(), request.want.clone());
        if !seen.insert(key) {
            continue;
        }
        let gap = if opts.always_pull {
            Some(CacheGap::Refresh)
        } else {
            cache_gap(store, request)?
        };
        if let Some(gap) = gap {
            gaps.insert(request.reference.to_string(), gap);
            pending.push(request.clone());
        }
    }
    if pending.is_empty() {
        return Ok(());
    }
    let _pulling = store.lock_for_pull()?;
    let session = Session::new(store, &pending, opts)?;
    let mut errors = run_blocking(session.pull_all(&pending))?;
    explain_unreachable(&mut errors, &gaps);
    if errors.len() > 1 {
        return Err(ImageError::Several(errors));
    }
    errors.pop().map_or(Ok(()), Err)
}

/// Runs a future to completion on a private single-threaded runtime, on a helper thread when
/// the caller is itself inside a tokio runtime (where blocking on another one would panic).
pub(crate) fn run_blocking<F: Future + Send>(future: F) -> Result<F::Output, ImageError>
where
    F::Output: Send,
{
    let run = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map(|runtime| runtime.block_on(future))
            .map_err(|e| ImageError::io("start the async runtime for", "pulls", e))
    };
    if tokio::runtime::Handle::try_current().is_err() {
        return run();
    }
    std::thread::scope(|scope| {
        scope
            .spawn(run)
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// What the cache lacks of what `request` needs; `None` when it holds everything.
fn cache_gap(store: &Store, request: &Request) -> Result<Option<CacheGap>, ImageError> {
    let image = request.reference.to_string();
    let no_platform = |err| match err {
        // The tag may have moved to an index that has the platform: ask the registry.
        ImageError::NoPlatform {
            platform, available, ..
        } => Ok(Some(CacheGap::NoPlatform { platform, available })),
        other => Err(other),
    };
    match &request.want {
        Want::One(platform) => match store.lookup(&request.reference, platform) {
            Ok(found) => Ok(found.err()),
            Err(err) => no_platform(err),
        },
        want => {
            let Some(entry) = store.find_entry(&request.reference)? else {
                return Ok(Some(CacheGap::NotCached));
            };
            let Some(root) = store.read_small_blob(&image, &entry.digest)? else {
                return Ok(store.blob_gap(&entry.descriptor()));
            };
            let manifests = match parse_root(&image, &entry, &root)? {
                Manifest::Image(manifest) => vec![manifest],
                Manifest::Index(index) => {
                    let children = match children_for(&image, &index, want) {
                        Ok(children) => children,
                        Err(err) => return no_platform(err),
                    };
                    let mut manifests = Vec::new();
                    for child in children {
                        match store.read_small_blob(&image, &child.digest)? {
                            Some(bytes) => manifests.push(parse_child(&image, &child, &bytes)?),
                            None => return Ok(store.blob_gap(&child)),
                        }
                    }
                    manifests
                }
            };
            Ok(manifests
                .iter()
                .flat_map(manifest_blobs)
                .find_map(|blob| store.blob_gap(&blob)))
        }
    }
}

/// Says in each "registry unreachable" error what the cache lacked for that image.
fn explain_unreachable(errors: &mut [ImageError], gaps: &HashMap<String, CacheGap>) {
    for error in errors {
        if let ImageError::Unreachable { image, cached, .. } = error {
            if let Some(gap) = gaps.get(image.as_str()) {
                *cached = gap.clone();
            }
        }
    }
}

/// The index entries `want` selects; an error when a requested platform is absent.
fn children_for(
    image: &str,
    index: &super::descriptor::IndexManifest,
    want: &Want,
) -> Result<Vec<Descriptor>, ImageError> {
    match want {
        Want::One(platform) => Ok(vec![select_child(image, index, platform)?]),
        Want::All => Ok(index.image_entries().map(|(_, m)| m.descriptor()).collect()),
        Want::Matching(platforms) => {
            let mut children: Vec<Descriptor> = Vec::new();
            for platform in platforms {
                let matching: Vec<Descriptor> = index
                    .image_entries()
                    .filter(|(_, m)| m.platform().is_some_and(|p| platform.matches(&p)))
                    .map(|(_, m)| m.descriptor())
                    .collect();
                if matching.is_empty() {
                    return Err(ImageError::NoPlatform {
                        image: image.to_string(),
                        platform: platform.to_string(),
                        available: index.platform_list(),
                    });
                }
                for child in matching {
                    if !children.contains(&child) {
                        children.push(child);
                    }
                }
            }
            Ok(children)
        }
    }
}

/// Per image of a pull: how many of the blobs to download are its own, and their bytes.
fn owned_downloads(owners: &[(Descriptor, usize)], images: usize) -> Vec<(usize, u64)> {
    let mut owned = vec![(0, 0); images];
    for (blob, owner) in owners {
        owned[*owner].0 += 1;
        owned[*owner].1 += blob.size;
    }
    owned
}

/// Config and layers of a manifest.
fn manifest_blobs(manifest: &ImageManifest) -> Vec<Descriptor> {
    std::iter::once(manifest.config.descriptor())
        .chain(manifest.layers.iter().map(|l| l.descriptor()))
        .collect()
}

/// Where an image is pulled from.
#[derive(Debug, Clone)]
pub(crate) struct Remote {
    /// The reference as the client uses it (registry replaced by a mirror if one applies).
    pub oci: oci_client::Reference,
    /// `scheme://host` for messages.
    pub url: String,
    /// The host whose credentials apply.
    pub host: String,
    /// Whether the host is reached over plain HTTP.
    pub plain_http: bool,
}

/// A manifest or index blob held in memory.
#[derive(Debug, Clone)]
struct Fetched {
    descriptor: Descriptor,
    bytes: Vec<u8>,
}

/// What one image needs: its blobs in memory (written last) and the blobs to download.
struct Plan {
    request: Request,
    remote: Remote,
    root: Fetched,
    manifests: Vec<Fetched>,
    blobs: Vec<Descriptor>,
}

struct Session<'s> {
    store: &'s Store,
    registry: Registry,
    remotes: HashMap<Reference, Remote>,
    always_pull: bool,
    progress: &'s dyn Progress,
}

impl<'s> Session<'s> {
    fn new(store: &'s Store, pending: &[Request], opts: &'s PullOptions) -> Result<Self, ImageError> {
        let mut remotes = HashMap::new();
        for request in pending {
            let remote = remote_for(&request.reference, &opts.mirrors)?;
            remotes.insert(request.reference.clone(), remote);
        }
        let docker = DockerConfig::load(opts.docker_config.as_deref())?;
        let registry = Registry::new(docker, stall_timeout(opts.stall_timeout)?).map_err(|detail| {
            let first = pending.first().map(|r| &r.reference);
            ImageError::Registry {
                image: first.map(Reference::to_string).unwrap_or_default(),
                registry: first.map(|r| r.registry().to_string()).unwrap_or_default(),
                what: "manifest",
                object: first.and_then(|r| r.tag()).unwrap_or("latest").to_string(),
                detail,
            }
        })?;
        Ok(Session {
            store,
            registry,
            remotes,
            always_pull: opts.always_pull,
            progress: progress::or_silent(&opts.progress),
        })
    }

    /// Pulls every request; returns the errors (empty when all succeeded).
    async fn pull_all(&self, pending: &[Request]) -> Vec<ImageError> {
        let image_slots = Semaphore::new(IMAGE_CONCURRENCY);
        let planned = join_all(pending.iter().map(|request| async {
            let _slot = image_slots.acquire().await;
            self.plan(request).await
        }))
        .await;
        let mut errors = Vec::new();
        let mut plans = Vec::new();
        for result in planned {
            match result {
                Ok(plan) => plans.push(plan),
                Err(e) => errors.push(e),
            }
        }

        // Each missing blob once, attributed to the first image that needs it.
        let mut owners: Vec<(Descriptor, usize)> = Vec::new();
        let mut seen = HashSet::new();
        for (i, plan) in plans.iter().enumerate() {
            for blob in &plan.blobs {
                if seen.insert(blob.digest.clone()) && !self.store.has_blob(&blob.digest, blob.size) {
                    owners.push((blob.clone(), i));
                }
            }
        }
        let owned = owned_downloads(&owners, plans.len());
        for (plan, (count, bytes)) in plans.iter().zip(&owned) {
            if *count > 0 {
                self.progress.pull_started(&plan.request.reference.to_string(), *bytes);
            }
        }
        let left: Vec<AtomicUsize> = owned.iter().map(|(count, _)| AtomicUsize::new(*count)).collect();
        let blob_slots = Semaphore::new(BLOB_CONCURRENCY);
        let downloads = join_all(owners.iter().map(|(blob, owner)| async {
            let _slot = blob_slots.acquire().await;
            let plan = &plans[*owner];
            let result = self.download(plan, blob).await;
            if left[*owner].fetch_sub(1, Ordering::Relaxed) == 1 {
                self.progress.pull_finished(&plan.request.reference.to_string());
            }
            result
        }))
        .await;
        let mut failed: HashMap<String, String> = HashMap::new();
        for ((blob, owner), result) in owners.iter().zip(downloads) {
            if let Err(e) = result {
                failed.insert(blob.digest.clone(), plans[*owner].request.reference.to_string());
                errors.push(e);
            }
        }

        let mut named = Vec::new();
        for (i, plan) in plans.iter().enumerate() {
            let owns_failure = owners.iter().any(|(d, o)| *o == i && failed.contains_key(&d.digest));
            let shared_failure = plan.blobs.iter().find(|b| failed.contains_key(&b.digest));
            match (owns_failure, shared_failure) {
                // Its own download error is already in the list.
                (true, _) => continue,
                (false, Some(blob)) => {
                    errors.push(ImageError::Registry {
                        image: plan.request.reference.to_string(),
                        registry: plan.remote.url.clone(),
                        what: "blob",
                        object: blob.digest.clone(),
                        detail: format!(
                            "it is shared with {}, whose download of it failed",
                            failed[&blob.digest]
                        ),
                    });
                    continue;
                }
                (false, None) => {}
            }
            match self.store_manifests(plan) {
                Ok(()) => named.push((plan.request.reference.cache_name(), plan.root.descriptor.clone())),
                Err(e) => errors.push(e),
            }
        }
        if let Err(e) = self.store.set_entries(&named) {
            errors.push(e);
        }
        errors
    }

    /// Fetches (or reads from the cache) the root and the platform manifests of one image.
    async fn plan(&self, request: &Request) -> Result<Plan, ImageError> {
        let image = request.reference.to_string();
        let remote = self.remote(&request.reference)?;
        tracing::info!("pulling {image} from {}", remote.url);
        let local = if self.always_pull {
            None
        } else {
            self.local_root(request)?
        };
        let root = match local {
            Some(root) => root,
            None => {
                let object = request.reference.digest().map(str::to_string);
                self.fetch_manifest(&remote, &image, object.as_deref()).await?
            }
        };
        let entry_like = super::layout::IndexEntry::named(&image, &root.descriptor);
        let (manifests, images) = match parse_root(&image, &entry_like, &root.bytes)? {
            Manifest::Image(manifest) => (Vec::new(), vec![manifest]),
            Manifest::Index(index) => {
                let children = children_for(&image, &index, &request.want)?;
                let mut fetched = Vec::new();
                let mut parsed = Vec::new();
                for child in children {
                    let bytes = match self.store.read_small_blob(&image, &child.digest)? {
                        Some(bytes) => bytes,
                        None => self.fetch_manifest(&remote, &image, Some(&child.digest)).await?.bytes,
                    };
                    parsed.push(parse_child(&image, &child, &bytes)?);
                    fetched.push(Fetched {
                        descriptor: child,
                        bytes,
                    });
                }
                (fetched, parsed)
            }
        };
        // Configs are read whole; one bigger than any real config is not downloaded at all.
        if let Some(config) = images.iter().map(|m| &m.config).find(|c| c.size > MAX_JSON_BLOB) {
            return Err(ImageError::TooLarge {
                image,
                registry: remote.url.clone(),
                what: "config",
                object: config.digest.clone(),
                limit: MAX_JSON_BLOB,
            });
        }
        let mut blobs: Vec<Descriptor> = Vec::new();
        for blob in images.iter().flat_map(manifest_blobs) {
            if !blobs.iter().any(|b| b.digest == blob.digest) {
                blobs.push(blob);
            }
        }
        Ok(Plan {
            request: request.clone(),
            remote,
            root,
            manifests,
            blobs,
        })
    }

    /// The cached root blob, if it is there and covers the wanted platforms.
    fn local_root(&self, request: &Request) -> Result<Option<Fetched>, ImageError> {
        let image = request.reference.to_string();
        let Some(entry) = self.store.find_entry(&request.reference)? else {
            return Ok(None);
        };
        let Some(bytes) = self.store.read_small_blob(&image, &entry.digest)? else {
            return Ok(None);
        };
        let covers = match parse_root(&image, &entry, &bytes)? {
            Manifest::Image(_) => true,
            Manifest::Index(index) => children_for(&image, &index, &request.want).is_ok(),
        };
        Ok(covers.then(|| Fetched {
            descriptor: entry.descriptor(),
            bytes,
        }))
    }

    fn remote(&self, reference: &Reference) -> Result<Remote, ImageError> {
        self.remotes
            .get(reference)
            .cloned()
            .ok_or_else(|| ImageError::NotInCache {
                image: reference.to_string(),
                dir: self.store.dir().to_path_buf(),
            })
    }

    /// Fetches a manifest or index by tag (`digest` = None) or digest and verifies it.
    async fn fetch_manifest(&self, remote: &Remote, image: &str, digest: Option<&str>) -> Result<Fetched, ImageError> {
        if let Some(digest) = digest.filter(|d| sha256_hex(d).is_none()) {
            return Err(ImageError::InvalidDigest {
                digest: digest.to_string(),
            });
        }
        let object = match digest {
            Some(digest) => digest.to_string(),
            None => remote.oci.tag().unwrap_or("latest").to_string(),
        };
        let target = Target {
            remote,
            image,
            what: "manifest",
            object: &object,
        };
        let bytes = self.registry.manifest(target).await?;
        let actual = sha256_digest(&bytes);
        if let Some(expected) = digest.filter(|d| *d != actual) {
            return Err(ImageError::DigestMismatch {
                image: image.to_string(),
                source_url: remote.url.clone(),
                expected: expected.to_string(),
                actual,
            });
        }
        let (media_type, _) =
            super::descriptor::parse_manifest(&bytes, "").map_err(|reason| ImageError::InvalidManifest {
                what: "manifest",
                image: image.to_string(),
                digest: actual.clone(),
                reason,
            })?;
        Ok(Fetched {
            descriptor: Descriptor {
                media_type,
                digest: actual,
                size: bytes.len() as u64,
            },
            bytes,
        })
    }

    /// Streams one blob into the store, verifying size and digest.
    async fn download(&self, plan: &Plan, blob: &Descriptor) -> Result<(), ImageError> {
        let image = plan.request.reference.to_string();
        let mut writer = self.store.blob_writer(
            &blob.digest,
            Some(blob.size),
            BlobOrigin {
                image: image.clone(),
                source: plan.remote.url.clone(),
            },
        )?;
        tracing::debug!("downloading {} ({} bytes) for {image}", blob.digest, blob.size);
        let target = Target {
            remote: &plan.remote,
            image: &image,
            what: "blob",
            object: &blob.digest,
        };
        self.registry.download(target, blob, &mut writer, self.progress).await?;
        writer.commit()
    }

    /// Writes the platform manifests, then the root, once all their blobs are in place.
    fn store_manifests(&self, plan: &Plan) -> Result<(), ImageError> {
        let origin = BlobOrigin {
            image: plan.request.reference.to_string(),
            source: plan.remote.url.clone(),
        };
        for fetched in plan.manifests.iter().chain(std::iter::once(&plan.root)) {
            self.store
                .write_blob_bytes(&fetched.descriptor.digest, &fetched.bytes, origin.clone())?;
        }
        Ok(())
    }
}

/// Where to pull `reference` from, honouring mirrors.
pub(crate) fn remote_for(reference: &Reference, mirrors: &[(String, String)]) -> Result<Remote, ImageError> {
    let registry = reference.registry();
    let mirror = mirror_for(registry, mirrors);
    let (host, prefix, plain_http) = match mirror {
        Some(url) => {
            let (plain_http, rest) = match url.strip_prefix("http://") {
                Some(rest) => (true, rest),
                None => (false, url.strip_prefix("https://").unwrap_or(url)),
            };
            let rest = rest.trim_end_matches('/');
            let (host, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            (host.to_string(), prefix.to_string(), plain_http)
        }
        None => (registry.to_string(), String::new(), is_loopback(registry)),
    };
    let repository = if prefix.is_empty() {
        reference.repository().to_string()
    } else {
        format!("{prefix}/{}", reference.repository())
    };
    let oci = match (reference.tag(), reference.digest()) {
        (Some(tag), Some(digest)) => {
            oci_client::Reference::with_tag_and_digest(host.clone(), repository, tag.to_string(), digest.to_string())
        }
        (None, Some(digest)) => oci_client::Reference::with_digest(host.clone(), repository, digest.to_string()),
        (tag, None) => oci_client::Reference::with_tag(host.clone(), repository, tag.unwrap_or("latest").to_string()),
    };
    let scheme = if plain_http { "http" } else { "https" };
    Ok(Remote {
        url: format!("{scheme}://{}", oci.resolve_registry()),
        oci,
        host,
        plain_http,
    })
}

fn mirror_for<'m>(registry: &str, mirrors: &'m [(String, String)]) -> Option<&'m str> {
    let hub = DOCKER_HUB_ALIASES.contains(&registry);
    let same = |key: &str| key == registry || (hub && DOCKER_HUB_ALIASES.contains(&key));
    // Later flags win, as in LinuxKit where each one overwrites the map entry.
    mirrors
        .iter()
        .rev()
        .find(|(key, _)| same(key))
        .or_else(|| mirrors.iter().rev().find(|(key, _)| key == "*"))
        .map(|(_, url)| url.as_str())
}

/// Loopback registries are spoken to over plain HTTP (go-containerregistry does the same).
fn is_loopback(registry: &str) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        registry.rsplit_once(':').map_or(registry, |(h, _)| h)
    };
    host == "localhost"
        || host.ends_with(".localhost")
        || host == "::1"
        || host.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

/// An error and its causes, on one line.
pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod hostile_registry;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::layout::tests::{corpus, reference};

    #[test]
    fn mirrors_parse_like_linuxkit() {
        assert_eq!(
            parse_mirror("docker.io=http://127.0.0.1:5000").unwrap(),
            ("docker.io".to_string(), "http://127.0.0.1:5000".to_string())
        );
        assert_eq!(parse_mirror("https://m.example/v").unwrap().0, "*");
        for bad in ["docker.io=127.0.0.1:5000", "=http://x", "http://", "ftp://x"] {
            assert!(parse_mirror(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn remotes_apply_mirrors_and_plain_http() {
        let mirrors = vec![
            ("docker.io".to_string(), "http://127.0.0.1:5001/hub/".to_string()),
            ("*".to_string(), "https://mirror.example".to_string()),
        ];
        let hub = remote_for(&reference("alpine:3.19"), &mirrors).unwrap();
        assert_eq!(hub.url, "http://127.0.0.1:5001");
        assert_eq!(hub.oci.repository(), "hub/library/alpine");
        assert_eq!(hub.oci.tag(), Some("3.19"));
        assert!(hub.plain_http);
        let other = remote_for(&reference("quay.io/a/b@sha256:00"), &mirrors).unwrap();
        assert_eq!(other.url, "https://mirror.example");
        assert_eq!(other.oci.digest(), Some("sha256:00"));
        let direct = remote_for(&reference("localhost:5000/x/y"), &[]).unwrap();
        assert_eq!(direct.url, "http://localhost:5000");
        assert_eq!(direct.oci.tag(), Some("latest"));
        let hub_direct = remote_for(&reference("busybox"), &[]).unwrap();
        assert_eq!(hub_direct.url, "https://index.docker.io");
        assert_eq!(hub_direct.host, "docker.io");
    }

    #[test]
    fn loopback_detection() {
        for yes in [
            "localhost:5000",
            "127.0.0.1:5000",
            "127.1.2.3",
            "[::1]:5000",
            "a.localhost",
        ] {
            assert!(is_loopback(yes), "{yes}");
        }
        for no in ["docker.io", "10.0.0.1:5000", "localhost.example.com", "quay.io:443"] {
            assert!(!is_loopback(no), "{no}");
        }
    }

    #[test]
    fn cached_images_need_no_network() {
        // The corpus is read-only: anything but a pure cache hit would fail to lock or write.
        let store = corpus();
        let refs: Vec<Reference> = ["kernel:6.6.0", "init:v1", "hello:v1", "init:v1"]
            .iter()
            .map(|n| reference(&format!("localhost:5000/conformance/{n}")))
            .collect();
        let opts = PullOptions {
            platform: Platform::linux("arm64"),
            ..PullOptions::default()
        };
        let resolved = ensure_images(&store, &refs, &opts).unwrap();
        assert_eq!(resolved.len(), 4);
        assert_eq!(resolved[0].config.architecture, "arm64");
        assert_eq!(resolved[1], resolved[3]);
        ensure_layouts(
            &store,
            &[(reference("localhost:5000/conformance/voldata:v1"), vec![])],
            &opts,
        )
        .unwrap();
    }

    #[test]
    fn unreachable_registry_is_a_clear_error() {
        let (_tmp, store) = crate::image::layout::tests::corpus_copy();
        // Nothing listens on port 1 of the loopback address.
        let r = reference("127.0.0.1:1/nothing/here:v1");
        let err = ensure_images(&store, &[r], &PullOptions::default()).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, ImageError::Unreachable { .. }), "{text}");
        assert!(
            text.contains("127.0.0.1:1/nothing/here:v1") && text.contains("http://127.0.0.1:1"),
            "{text}"
        );
        assert!(text.contains("run with network access"), "{text}");
    }

    /// A copy of the corpus cache with `image` from it also named `127.0.0.1:1/moved/NAME`
    /// (where nothing listens), as `root` if given.
    fn renamed(image: &str, root: Option<&[u8]>) -> (tempfile::TempDir, Store, Reference) {
        let (tmp, store) = crate::image::layout::tests::corpus_copy();
        let entry = store
            .find_entry(&reference(&format!("localhost:5000/conformance/{image}")))
            .unwrap()
            .unwrap();
        let mut descriptor = entry.descriptor();
        if let Some(root) = root {
            descriptor.digest = sha256_digest(root);
            descriptor.size = root.len() as u64;
            let origin = BlobOrigin {
                image: image.into(),
                source: "test".into(),
            };
            store.write_blob_bytes(&descriptor.digest, root, origin).unwrap();
        }
        let moved = reference(&format!("127.0.0.1:1/moved/{image}"));
        store.set_entry(&moved.cache_name(), &descriptor).unwrap();
        (tmp, store, moved)
    }

    fn unreachable_gap(store: &Store, image: &Reference, arch: &str) -> (CacheGap, String) {
        let opts = PullOptions {
            platform: Platform::linux(arch),
            ..PullOptions::default()
        };
        let err = ensure_images(store, std::slice::from_ref(image), &opts).unwrap_err();
        let text = err.to_string();
        let ImageError::Unreachable {
            image: named, cached, ..
        } = err
        else {
            panic!("expected an unreachable registry, got {text}");
        };
        assert_eq!(named, image.to_string());
        (cached, text)
    }

    #[test]
    fn an_index_without_the_platform_is_reported_as_such() {
        let store = corpus();
        let kernel = store
            .find_entry(&reference("localhost:5000/conformance/kernel:6.6.0"))
            .unwrap()
            .unwrap();
        let index = store.read_small_blob("kernel", &kernel.digest).unwrap().unwrap();
        let mut index: serde_json::Value = serde_json::from_slice(&index).unwrap();
        let manifests = index["manifests"].as_array_mut().unwrap();
        manifests.retain(|m| m["platform"]["architecture"] == "arm64");
        let (_tmp, store, moved) = renamed("kernel:6.6.0", Some(&serde_json::to_vec(&index).unwrap()));
        let (gap, text) = unreachable_gap(&store, &moved, "amd64");
        assert_eq!(
            gap,
            CacheGap::NoPlatform {
                platform: "linux/amd64".into(),
                available: "linux/arm64".into()
            }
        );
        assert!(
            text.contains("is in the cache without a manifest for linux/amd64"),
            "{text}"
        );
        assert!(!text.contains("not in the cache"), "{text}");
    }

    #[test]
    fn a_missing_or_damaged_layer_is_reported_as_such() {
        let (_tmp, store, moved) = renamed("hello:v1", None);
        let layer = store.resolve(&moved, &Platform::host()).unwrap().unwrap().layers[0].clone();
        let path = store.blob_path(&layer.digest).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..100]).unwrap();
        let (gap, text) = unreachable_gap(&store, &moved, "amd64");
        let damaged = CacheGap::DamagedBlob {
            digest: layer.digest.clone(),
            expected: layer.size,
            actual: 100,
        };
        assert_eq!(gap, damaged);
        assert!(
            text.contains(&format!("damaged blob {} (100 bytes instead of", layer.digest)),
            "{text}"
        );
        std::fs::remove_file(&path).unwrap();
        let (gap, _) = unreachable_gap(&store, &moved, "amd64");
        assert_eq!(gap, CacheGap::MissingBlob { digest: layer.digest });
        // Anything else still is not in the cache at all.
        let (gap, text) = unreachable_gap(&store, &reference("127.0.0.1:1/moved/other:v1"), "amd64");
        assert_eq!(gap, CacheGap::NotCached);
        assert!(text.contains("is not in the cache"), "{text}");
    }

    #[test]
    fn every_failure_is_reported() {
        let (_tmp, store) = crate::image::layout::tests::corpus_copy();
        let refs = [reference("127.0.0.1:1/a:v1"), reference("127.0.0.1:1/b:v1")];
        let err = ensure_images(&store, &refs, &PullOptions::default()).unwrap_err();
        let ImageError::Several(errors) = &err else {
            panic!("expected several errors, got {err}");
        };
        assert_eq!(errors.len(), 2);
        let text = err.to_string();
        assert!(text.starts_with("2 images could not be made available"), "{text}");
        assert!(
            text.contains("127.0.0.1:1/a:v1") && text.contains("127.0.0.1:1/b:v1"),
            "{text}"
        );
    }

    #[test]
    fn works_inside_a_tokio_runtime() {
        let store = corpus();
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let r = reference("localhost:5000/conformance/init:v1");
        let (_tmp, writable) = crate::image::layout::tests::corpus_copy();
        runtime.block_on(async {
            assert_eq!(
                ensure_images(&store, std::slice::from_ref(&r), &PullOptions::default())
                    .unwrap()
                    .len(),
                1
            );
            let missing = reference("127.0.0.1:1/x:y");
            assert!(ensure_images(&writable, &[missing], &PullOptions::default()).is_err());
        });
    }
}
