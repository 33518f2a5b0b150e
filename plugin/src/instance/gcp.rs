//! The `gcp` backend as the plugin uses it: one [`Gcp`] per project and zone (making one reads
//! the credentials), each spec's image pushed once, and instance names as InfraKit's own GCP
//! plugin gave them.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, PoisonError};

use vmm::gcp::{CredentialsSource, Endpoints, Gcp, Location, PushOptions, Settings};
use vmm::{Backend, InstanceRecord, Tags, VmError};

use super::images::Image;
use super::properties::GcpProperties;

/// The `Gcp` backends in use and the image pushes under way.
#[derive(Debug, Default)]
pub struct GcpClouds {
    /// One backend per settings: endpoints and credentials are the plugin's environment's, so in
    /// practice one per project and zone.
    backends: Mutex<HashMap<Settings, Gcp>>,
    /// One lock per `PROJECT/IMAGE`: whoever holds it pushes the image unless it is there.
    pushes: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl GcpClouds {
    /// The backend for `location`, talking to the endpoints and with the credentials the plugin's
    /// environment gives (made once; a failure is not remembered, so fixing the key file helps).
    pub fn backend(&self, location: &Location) -> Result<Gcp, String> {
        let settings = Settings {
            location: location.clone(),
            endpoints: Endpoints::resolve(None, None),
            credentials: CredentialsSource::resolve(None),
        };
        let mut backends = self.backends.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(gcp) = backends.get(&settings) {
            return Ok(gcp.clone());
        }
        let gcp = Gcp::new(&settings, vmm::gcp::Machine::default()).map_err(|e| e.to_string())?;
        backends.insert(settings, gcp.clone());
        Ok(gcp)
    }

    /// The GCE image of `image` (a build in the `gcp` format) in `gcp`'s project: found ready, or
    /// pushed now. Concurrent callers for one image wait for one push.
    pub async fn ensure_image(&self, gcp: &Gcp, image: &Image, properties: &GcpProperties) -> Result<String, String> {
        let name = image_name(&image.digest, properties.machine.nested_virt);
        let key = format!("{}/{name}", gcp.location().project);
        let lock = {
            let mut pushes = self.pushes.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(pushes.entry(key).or_default())
        };
        let _held = lock.lock().await;
        if gcp.image_ready(&name).await.map_err(|e| e.to_string())? {
            return Ok(name);
        }
        let options = PushOptions {
            name: name.clone(),
            bucket: properties.bucket.clone(),
            family: None,
            nested_virt: properties.machine.nested_virt,
            uefi: false,
            // One that exists but is not ready (failed, or left by a push that was cut short)
            // is replaced.
            replace: true,
            labels: Default::default(),
        };
        tracing::info!(
            "pushing {} as image {name} (project {}, bucket {})",
            image.boot.display(),
            gcp.location().project,
            options.bucket
        );
        gcp.push(&image.boot, &options, &|_, _| {})
            .await
            .map_err(|e| e.to_string())?;
        Ok(name)
    }
}

/// The GCE image name of a spec: `moby-` and the first 32 hex digits of its digest (`-vmx` after
/// it for an image carrying the nested-virtualization licence).
pub fn image_name(digest: &str, nested_virt: bool) -> String {
    let hex: String = digest.trim_start_matches("sha256:").chars().take(32).collect();
    if nested_virt {
        format!("moby-{hex}-vmx")
    } else {
        format!("moby-{hex}")
    }
}

/// The name of a new `gcp` instance, as InfraKit's GCP plugin named them: `PREFIX-a-b-c-d` for a
/// logical ID that is an IPv4 address (it becomes the instance's internal address), another
/// logical ID as it is (it must be a Compute Engine name), else `PREFIX-` and 12 random hex
/// digits.
pub fn instance_name(prefix: &str, logical_id: Option<&str>) -> Result<String, String> {
    let Some(logical) = logical_id else {
        return super::plugin::new_id(prefix);
    };
    if let Ok(ip) = logical.parse::<Ipv4Addr>() {
        let [a, b, c, d] = ip.octets();
        return Ok(format!("{prefix}-{a}-{b}-{c}-{d}"));
    }
    vmm::gcp::check_name("a gcp instance name", logical)
        .map(|()| logical.to_string())
        .map_err(|e| format!("Spec.LogicalID: {e} (or give an IPv4 address)"))
}

/// Whether `error` says the instance is not there (Compute Engine answered 404).
pub fn is_gone(error: &VmError) -> bool {
    matches!(error, VmError::Gcp(e) if e.status() == Some(404))
}

/// The instance `name` if it is one of moby's (labelled `created-by=moby`) in `gcp`'s zone.
pub async fn moby_instance(gcp: &Gcp, name: &str) -> Result<Option<InstanceRecord>, String> {
    let all = gcp.list(&Tags::new()).await.map_err(|e| e.to_string())?;
    Ok(all.into_iter().find(|vm| vm.name == name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_infrakit_s_gcp_plugin() {
        assert_eq!(instance_name("moby", Some("10.0.0.5")).unwrap(), "moby-10-0-0-5");
        assert_eq!(
            instance_name("web", Some("192.168.1.250")).unwrap(),
            "web-192-168-1-250"
        );
        assert_eq!(instance_name("moby", Some("db-1")).unwrap(), "db-1");
        let e = instance_name("moby", Some("Db_1")).unwrap_err();
        assert!(
            e.starts_with("Spec.LogicalID: a gcp instance name \"Db_1\" is not valid"),
            "{e}"
        );
        let random = instance_name("pets", None).unwrap();
        assert!(vmm::gcp::is_name(&random), "{random}");
        assert_eq!(random.len(), "pets-".len() + 12, "{random}");
        assert_ne!(random, instance_name("pets", None).unwrap());
    }

    #[test]
    fn image_names_are_the_digest_s_first_32_hex_digits() {
        let digest = format!("sha256:{}", "0123456789abcdef".repeat(4));
        assert_eq!(image_name(&digest, false), "moby-0123456789abcdef0123456789abcdef");
        assert_eq!(image_name(&digest, true), "moby-0123456789abcdef0123456789abcdef-vmx");
        assert!(vmm::gcp::is_name(&image_name(&digest, true)));
    }
}
