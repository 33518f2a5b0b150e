//! The InfraKit Instance SPI over `vmm` and the builder: images built on demand by spec digest,
//! instances recorded before Provision answers, VMs started and destroyed in the background.

mod images;
mod plugin;
mod properties;
mod store;
mod types;

pub use images::Images;
pub use plugin::InstancePlugin;
pub use store::Store;
