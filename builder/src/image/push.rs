//! Pushing an image of the store to a registry: blobs the registry lacks, then the manifest.

use std::io::Read;
use std::path::PathBuf;

use oci_client::secrets::RegistryAuth;
use oci_client::RegistryOperation;

use super::auth::DockerConfig;
use super::descriptor::media_type;
use super::layout::Store;
use super::pull::{remote_for, run_blocking};
use super::registry::install_crypto_provider;
use super::{ImageError, Platform};
use crate::Reference;

/// Options of [`push_image`].
#[derive(Debug, Clone, Default)]
pub struct PushOptions {
    /// Docker `config.json` with credentials (default `$DOCKER_CONFIG` or `~/.docker`).
    pub docker_config: Option<PathBuf>,
}

/// Pushes `local` (an image of the store with a single-platform manifest) to the registry as
/// `remote`; returns the manifest digest. Loopback registries are spoken to over plain HTTP.
pub fn push_image(
    store: &Store,
    local: &Reference,
    remote: &Reference,
    options: &PushOptions,
) -> Result<String, ImageError> {
    let image = local.to_string();
    let resolved = store
        .resolve(local, &Platform::host())?
        .ok_or_else(|| ImageError::NotInCache {
            image: image.clone(),
            dir: store.dir().to_path_buf(),
        })?;
    if resolved.root_digest != resolved.manifest_digest {
        return Err(ImageError::InvalidArchive {
            what: format!("image {image}"),
            reason: "pushing multi-platform indexes is not supported yet".to_string(),
        });
    }
    let manifest = store
        .read_small_blob(&image, &resolved.manifest_digest)?
        .ok_or_else(|| ImageError::NotInCache {
            image: image.clone(),
            dir: store.dir().to_path_buf(),
        })?;
    let content_type = serde_json::from_slice::<serde_json::Value>(&manifest)
        .ok()
        .and_then(|m| m["mediaType"].as_str().map(str::to_string))
        .unwrap_or_else(|| media_type::OCI_MANIFEST.to_string());
    let mut blobs = vec![resolved.config_descriptor.clone()];
    blobs.extend(resolved.layers.iter().cloned());

    let target = remote_for(remote, &[])?;
    let registry_error = |what: &'static str, object: &str, e: &dyn std::fmt::Display| ImageError::Push {
        image: remote.to_string(),
        registry: target.url.clone(),
        what,
        object: object.to_string(),
        detail: e.to_string(),
    };
    let auth = match DockerConfig::load(options.docker_config.as_deref())?.credentials_for(&target.host)? {
        Some(c) => RegistryAuth::Basic(c.username, c.password),
        None => RegistryAuth::Anonymous,
    };
    let http_hosts = if target.plain_http {
        vec![target.oci.resolve_registry().to_string()]
    } else {
        Vec::new()
    };
    let client =
        new_client(http_hosts).map_err(|e| registry_error("manifest", target.oci.tag().unwrap_or("latest"), &e))?;
    let oci = &target.oci;
    run_blocking(async {
        client
            .auth(oci, &auth, RegistryOperation::Push)
            .await
            .map_err(|e| registry_error("manifest", oci.tag().unwrap_or("latest"), &e))?;
        for blob in &blobs {
            let exists = client.blob_exists(oci, &blob.digest).await.unwrap_or(false);
            if exists {
                continue;
            }
            let mut data = Vec::new();
            let mut reader = store.open_verified(&resolved.name, blob)?;
            reader.read_to_end(&mut data).map_err(|e| reader.error(e))?;
            client
                .push_blob(oci, data, &blob.digest)
                .await
                .map_err(|e| registry_error("blob", &blob.digest, &e))?;
        }
        let content_type = content_type
            .parse()
            .map_err(|e| registry_error("manifest", &resolved.manifest_digest, &e))?;
        client
            .push_manifest_raw(oci, manifest.clone(), content_type)
            .await
            .map_err(|e| registry_error("manifest", oci.tag().unwrap_or("latest"), &e))?;
        Ok(resolved.manifest_digest.clone())
    })?
}

/// An oci-client registry client that speaks plain HTTP to `http_hosts` and HTTPS to the rest.
fn new_client(http_hosts: Vec<String>) -> Result<oci_client::Client, String> {
    install_crypto_provider();
    let config = oci_client::client::ClientConfig {
        protocol: oci_client::client::ClientProtocol::HttpsExcept(http_hosts),
        platform_resolver: None,
        connect_timeout: Some(std::time::Duration::from_secs(30)),
        read_timeout: Some(std::time::Duration::from_secs(300)),
        ..oci_client::client::ClientConfig::default()
    };
    oci_client::Client::try_from(config).map_err(|e| format!("cannot set up the HTTP client: {e}"))
}
