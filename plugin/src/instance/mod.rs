//! The InfraKit Instance SPI over `vmm` and the builder: images built on demand by spec digest,
//! instances recorded before Provision answers, VMs started and destroyed in the background.

mod gcp;
mod images;
mod plugin;
pub(crate) mod properties;
mod store;
pub(crate) mod types;

use std::sync::Arc;

pub use images::Images;
pub use plugin::InstancePlugin;
pub use store::Store;

use crate::rpc::{Interface, MethodError, RegisterError, Service};
use types::{
    DescribeRequest, DescribeResponse, DestroyRequest, LabelRequest, OkResponse, ProvisionRequest, ProvisionResponse,
    ValidateRequest,
};

/// The plugin type answered in responses (InfraKit's `Type` field; empty as InfraKit's own
/// single-type plugins answer it).
const TYPE: &str = "";

/// The Instance interface: 0.6.1 (`Handshake.Hello`), also answering as 0.5.0 and 0.6.0.
pub fn interface() -> Interface {
    Interface::new("Instance", "0.6.1").with_older_versions(["0.5.0", "0.6.0"])
}

fn ok() -> OkResponse {
    OkResponse {
        kind: TYPE.into(),
        ok: true,
    }
}

/// Registers the Instance SPI's methods of `plugin` on `service` (which must implement
/// [`interface`]).
pub fn register(service: &mut Service, plugin: Arc<InstancePlugin>) -> Result<(), RegisterError> {
    let p = Arc::clone(&plugin);
    service.register("Instance.Validate", move |req: ValidateRequest| {
        let p = Arc::clone(&p);
        async move {
            p.validate(req.properties).await.map_err(MethodError::new)?;
            Ok(ok())
        }
    })?;
    let p = Arc::clone(&plugin);
    service.register("Instance.Provision", move |req: ProvisionRequest| {
        let p = Arc::clone(&p);
        async move {
            let id = p.provision(req.spec).await.map_err(MethodError::new)?;
            Ok(ProvisionResponse {
                kind: TYPE.into(),
                id: Some(id),
            })
        }
    })?;
    let p = Arc::clone(&plugin);
    service.register("Instance.Label", move |req: LabelRequest| {
        let p = Arc::clone(&p);
        async move {
            p.label(&req.instance, req.labels.unwrap_or_default())
                .await
                .map_err(MethodError::new)?;
            Ok(ok())
        }
    })?;
    let p = Arc::clone(&plugin);
    service.register("Instance.Destroy", move |req: DestroyRequest| {
        let p = Arc::clone(&p);
        async move {
            if let Some(reason) = req.context.map(|c| c.reason).filter(|r| !r.is_empty()) {
                tracing::info!("destroying {} ({reason})", req.instance);
            }
            p.destroy(&req.instance).await.map_err(MethodError::new)?;
            Ok(ok())
        }
    })?;
    let p = plugin;
    service.register("Instance.DescribeInstances", move |req: DescribeRequest| {
        let p = Arc::clone(&p);
        async move {
            let descriptions = p
                .describe(&req.tags.unwrap_or_default(), req.properties)
                .await
                .map_err(MethodError::new)?;
            Ok(DescribeResponse {
                kind: TYPE.into(),
                descriptions,
            })
        }
    })?;
    Ok(())
}
