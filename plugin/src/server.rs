//! The plugin's server: its socket claimed, then HTTP/1.1 connections (kept alive between
//! requests, as InfraKit's Go client keeps them) served until told to stop.

use std::future::Future;
use std::path::Path;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;

use crate::http::Endpoint;
use crate::rpc::Service;
use crate::socket::{self, SocketError, SocketFiles, SocketOptions};

/// How long a client may take to send a request's headers, which is also how long a kept-alive
/// connection may wait for its next request: longer than the 10 s InfraKit's Go client keeps an
/// idle connection, so that the client closes idle connections first (a server closing one just as
/// the client reuses it fails the client's POST, which Go does not retry).
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// How long calls under way may run on once the server is told to stop (InfraKit's Go server
/// gives them 10 s too).
const STOP_GRACE: Duration = Duration::from_secs(10);

/// After a failed accept (out of file descriptors, say), the pause before the next.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// A plugin listening on its socket, ready to serve a [`Service`].
pub struct Server {
    listener: std::os::unix::net::UnixListener,
    files: SocketFiles,
    endpoint: Endpoint,
}

impl Server {
    /// Listens on the socket `options` name (replacing the socket of a dead plugin, refusing
    /// that of a live one) with its mode, writes `NAME.pid` beside it, and prepares `service`.
    /// Nothing is answered before [`Server::serve`]; dropping the server removes both files.
    pub fn bind(options: &SocketOptions, service: Service) -> Result<Server, SocketError> {
        let (listener, files) = socket::claim(options)?;
        Ok(Server {
            listener,
            files,
            endpoint: Endpoint::new(service),
        })
    }

    /// The socket's path.
    pub fn socket_path(&self) -> &Path {
        self.files.socket()
    }

    /// Serves until `stop` completes; then stops accepting, removes the socket and the pid file,
    /// and lets the calls under way finish (for 10 s at most) before returning. Must run on a
    /// tokio runtime with its I/O and time drivers enabled.
    pub async fn serve(self, stop: impl Future<Output = ()>) -> Result<(), SocketError> {
        let Server {
            listener,
            files,
            endpoint,
        } = self;
        let listener = tokio::net::UnixListener::from_std(listener).map_err(|source| SocketError::Io {
            action: "listen on",
            path: files.socket().to_owned(),
            source,
        })?;
        let endpoint = Arc::new(endpoint);
        let connections = GracefulShutdown::new();
        let mut stop = pin!(stop);
        loop {
            let accepted = tokio::select! {
                () = &mut stop => break,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, _)) => {
                    let rpc = endpoint.connection();
                    let endpoint = Arc::clone(&endpoint);
                    let service = service_fn(move |request| {
                        let endpoint = Arc::clone(&endpoint);
                        let rpc = rpc.clone();
                        async move { endpoint.respond(rpc, request).await }
                    });
                    let connection = http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(HEADER_TIMEOUT)
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(stream), service);
                    let connection = connections.watch(connection);
                    tokio::spawn(async move {
                        if let Err(err) = connection.await {
                            tracing::debug!("plugin connection ended: {err}");
                        }
                    });
                }
                Err(err) => {
                    tracing::warn!("cannot accept a connection on {}: {err}", files.socket().display());
                    tokio::time::sleep(ACCEPT_RETRY).await;
                }
            }
        }
        drop(listener);
        drop(files);
        if tokio::time::timeout(STOP_GRACE, connections.shutdown()).await.is_err() {
            tracing::warn!(
                "calls still running {} s after the plugin was told to stop were cut off",
                STOP_GRACE.as_secs()
            );
        }
        Ok(())
    }
}
