//! The InfraKit instance plugin: JSON-RPC over HTTP on a unix socket, building images on demand and
//! provisioning them through `vmm`.
//!
//! The transport and the JSON-RPC layer, as InfraKit's Go plugins speak them:
//!
//! - [`InfrakitEnv`] and [`SocketOptions`] say where the plugin listens: InfraKit's plugin
//!   directory, a socket named after the plugin (default [`DEFAULT_NAME`]), `NAME.pid` beside it;
//! - a [`Service`] holds the methods, registered by name for the [`Interface`]s the plugin
//!   implements, with the handshake methods every plugin answers;
//! - a [`Server`] claims the socket and serves the service until told to stop.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use plugin::{InfrakitEnv, Interface, MethodError, Server, Service, SocketOptions};
//!
//! #[derive(Default, serde::Deserialize, serde::Serialize)]
//! #[serde(default)]
//! struct Echo {
//!     #[serde(rename = "Text")]
//!     text: String,
//! }
//!
//! let mut service = Service::new([Interface::new("Echo", "0.1.0")])?;
//! service.register("Echo.Say", |echo: Echo| async move { Ok::<_, MethodError>(echo) })?;
//! let options = SocketOptions::new(InfrakitEnv::from_process().plugins_dir()?).name("echo");
//! let server = Server::bind(&options, service)?;
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! // Whoever holds `stop` (a SIGTERM handler, say) stops the plugin by sending on it or dropping it.
//! # drop(stop);
//! server.serve(async { stopped.await.unwrap_or(()) }).await?;
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

pub mod cluster;
mod http;
pub mod instance;
mod rpc;
mod server;
mod socket;

pub use rpc::{Interface, MethodError, RegisterError, Service};
pub use server::Server;
pub use socket::{InfrakitEnv, SocketError, SocketOptions, DEFAULT_NAME};
