//! The plugin's files in InfraKit's plugin directory, as InfraKit's own plugins lay them out
//! (docker/infrakit `pkg/discovery/local/dir.go`, `pkg/run/serverutil.go`): the socket named
//! after the plugin, which InfraKit discovers by listing the directory, and `NAME.pid` beside it
//! (the pid in decimal, no newline), which `infrakit plugin stop` reads.
//!
//! A socket left by a dead plugin (nothing accepts on it) is replaced; a live one is refused.
//! Both files are removed when the plugin stops, but only while they are still its own.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

/// The name InfraKit knows this plugin by unless told otherwise.
pub const DEFAULT_NAME: &str = "instance-moby";

/// The socket's mode unless told otherwise: only its owner may call the plugin.
const DEFAULT_MODE: u32 = 0o600;

/// The values of InfraKit's environment that say where its plugin directory is, passed in (the
/// library never reads the process's environment itself but in [`InfrakitEnv::from_process`]).
/// An empty value counts as unset, as in InfraKit.
#[derive(Clone, Debug, Default)]
pub struct InfrakitEnv {
    /// `$INFRAKIT_PLUGINS_DIR`: the plugin directory itself.
    pub plugins_dir: Option<OsString>,
    /// `$INFRAKIT_HOME`: the plugin directory is its `plugins`.
    pub infrakit_home: Option<OsString>,
    /// `$HOME`: the plugin directory is its `.infrakit/plugins`.
    pub home: Option<OsString>,
}

impl InfrakitEnv {
    /// The values of this process's environment.
    pub fn from_process() -> Self {
        InfrakitEnv {
            plugins_dir: std::env::var_os("INFRAKIT_PLUGINS_DIR"),
            infrakit_home: std::env::var_os("INFRAKIT_HOME"),
            home: std::env::var_os("HOME"),
        }
    }

    /// InfraKit's home: `$INFRAKIT_HOME`, else `$HOME/.infrakit`.
    pub fn home_dir(&self) -> Option<PathBuf> {
        let set = |value: &Option<OsString>| value.clone().filter(|value| !value.is_empty()).map(PathBuf::from);
        set(&self.infrakit_home).or_else(|| set(&self.home).map(|home| home.join(".infrakit")))
    }

    /// InfraKit's plugin directory: `$INFRAKIT_PLUGINS_DIR`, else `$INFRAKIT_HOME/plugins`, else
    /// `$HOME/.infrakit/plugins`.
    pub fn plugins_dir(&self) -> Result<PathBuf, SocketError> {
        let set = |value: &Option<OsString>| value.clone().filter(|value| !value.is_empty()).map(PathBuf::from);
        set(&self.plugins_dir)
            .or_else(|| set(&self.infrakit_home).map(|home| home.join("plugins")))
            .or_else(|| set(&self.home).map(|home| home.join(".infrakit/plugins")))
            .ok_or(SocketError::NoPluginsDir)
    }
}

/// Where and how the plugin listens.
#[derive(Clone, Debug)]
pub struct SocketOptions {
    dir: PathBuf,
    name: String,
    mode: u32,
}

impl SocketOptions {
    /// The socket [`DEFAULT_NAME`] in the plugin directory `dir` (created if missing), mode 0600.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        SocketOptions {
            dir: dir.into(),
            name: DEFAULT_NAME.to_owned(),
            mode: DEFAULT_MODE,
        }
    }

    /// Names the socket (InfraKit's name for the plugin) instead of [`DEFAULT_NAME`].
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Gives the socket this mode (such as 0o660 to let a group call the plugin) instead of 0600.
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }

    fn socket_path(&self) -> PathBuf {
        self.dir.join(&self.name)
    }

    fn pid_path(&self) -> PathBuf {
        self.dir.join(format!("{}.pid", self.name))
    }
}

/// Why the plugin cannot listen, or stopped listening.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// No plugin directory: none of the environment values that name it is set.
    #[error("cannot tell where InfraKit's plugin directory is: set INFRAKIT_PLUGINS_DIR, INFRAKIT_HOME or HOME")]
    NoPluginsDir,
    /// The plugin name cannot name a file in the plugin directory.
    #[error("plugin name {0:?} cannot name a socket: use a non-empty name without '/'")]
    BadName(String),
    /// Another plugin accepts connections on the socket.
    #[error("{} is the socket of a running plugin{}: stop it or give this plugin another name", .socket.display(), pid_note(.pid, .pid_file))]
    InUse {
        /// The socket.
        socket: PathBuf,
        /// The pid file beside it.
        pid_file: PathBuf,
        /// The pid it holds, when it holds one.
        pid: Option<u32>,
    },
    /// Something that is not a socket has the socket's name.
    #[error("{} exists and is not a socket: remove it or give this plugin another name", .0.display())]
    NotASocket(PathBuf),
    /// A file operation failed.
    #[error("cannot {action} {}: {source}", .path.display())]
    Io {
        /// What was being done, such as "listen on".
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The failure.
        source: io::Error,
    },
}

fn pid_note(pid: &Option<u32>, pid_file: &Path) -> String {
    match pid {
        Some(pid) => format!(" (pid {pid}, from {})", pid_file.display()),
        None => String::new(),
    }
}

fn io_error<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> SocketError + 'a {
    move |source| SocketError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// The socket and the pid file while they are this process's: removed on drop if they still
/// are (the same socket inode, the pid file holding this pid).
#[derive(Debug)]
pub(crate) struct SocketFiles {
    socket: PathBuf,
    pid_file: PathBuf,
    inode: (u64, u64),
}

impl SocketFiles {
    pub(crate) fn socket(&self) -> &Path {
        &self.socket
    }
}

impl Drop for SocketFiles {
    fn drop(&mut self) {
        if fs::symlink_metadata(&self.socket).is_ok_and(|meta| (meta.dev(), meta.ino()) == self.inode) {
            if let Err(err) = fs::remove_file(&self.socket) {
                tracing::warn!("cannot remove the plugin socket {}: {err}", self.socket.display());
            }
        }
        if read_pid(&self.pid_file) == Some(std::process::id()) {
            if let Err(err) = fs::remove_file(&self.pid_file) {
                tracing::warn!("cannot remove the pid file {}: {err}", self.pid_file.display());
            }
        }
    }
}

/// Listens on the socket `options` name, replacing a stale one, and writes the pid file.
pub(crate) fn claim(options: &SocketOptions) -> Result<(UnixListener, SocketFiles), SocketError> {
    if options.name.is_empty() || options.name.contains(['/', '\0']) || options.name == "." || options.name == ".." {
        return Err(SocketError::BadName(options.name.clone()));
    }
    fs::create_dir_all(&options.dir).map_err(io_error("create the plugin directory", &options.dir))?;
    let socket = options.socket_path();
    let pid_file = options.pid_path();
    let in_use = || SocketError::InUse {
        socket: socket.clone(),
        pid_file: pid_file.clone(),
        pid: read_pid(&pid_file),
    };
    match fs::symlink_metadata(&socket) {
        Ok(meta) if meta.file_type().is_socket() => match UnixStream::connect(&socket) {
            Ok(_) => return Err(in_use()),
            Err(err) if err.kind() == io::ErrorKind::ConnectionRefused => {
                tracing::info!("replacing the stale plugin socket {}", socket.display());
                fs::remove_file(&socket).map_err(io_error("remove the stale socket", &socket))?;
            }
            Err(err) => return Err(io_error("tell whether a plugin listens on", &socket)(err)),
        },
        Ok(_) => return Err(SocketError::NotASocket(socket)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => return Err(io_error("look at", &socket)(err)),
    }
    let listener = match UnixListener::bind(&socket) {
        Ok(listener) => listener,
        Err(err) if err.kind() == io::ErrorKind::AddrInUse => return Err(in_use()),
        Err(err) => return Err(io_error("listen on", &socket)(err)),
    };
    let meta = fs::symlink_metadata(&socket).map_err(io_error("look at", &socket))?;
    let files = SocketFiles {
        socket: socket.clone(),
        pid_file: pid_file.clone(),
        inode: (meta.dev(), meta.ino()),
    };
    fs::set_permissions(&socket, fs::Permissions::from_mode(options.mode))
        .map_err(io_error("set the mode of", &socket))?;
    listener.set_nonblocking(true).map_err(io_error("listen on", &socket))?;
    write_pid(&pid_file)?;
    Ok((listener, files))
}

/// Writes this process's pid, replacing the file whole (a reader never sees half of it).
fn write_pid(pid_file: &Path) -> Result<(), SocketError> {
    let mut partial = pid_file.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    fs::write(&partial, std::process::id().to_string()).map_err(io_error("write", &partial))?;
    fs::rename(&partial, pid_file).map_err(io_error("write", pid_file))
}

fn read_pid(pid_file: &Path) -> Option<u32> {
    fs::read_to_string(pid_file).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;
    use std::path::PathBuf;

    use super::{InfrakitEnv, SocketError};

    fn env(plugins_dir: &str, infrakit_home: &str, home: &str) -> InfrakitEnv {
        let value = |value: &str| Some(OsString::from(value));
        InfrakitEnv {
            plugins_dir: value(plugins_dir),
            infrakit_home: value(infrakit_home),
            home: value(home),
        }
    }

    #[test]
    fn the_plugin_directory_follows_infrakits_precedence() {
        assert_eq!(env("/p", "/ih", "/h").plugins_dir().unwrap(), PathBuf::from("/p"));
        assert_eq!(
            env("", "/ih", "/h").plugins_dir().unwrap(),
            PathBuf::from("/ih/plugins")
        );
        assert_eq!(
            env("", "", "/h").plugins_dir().unwrap(),
            PathBuf::from("/h/.infrakit/plugins")
        );
        let unset = InfrakitEnv {
            home: Some("/h".into()),
            ..InfrakitEnv::default()
        };
        assert_eq!(unset.plugins_dir().unwrap(), PathBuf::from("/h/.infrakit/plugins"));
        assert!(matches!(env("", "", "").plugins_dir(), Err(SocketError::NoPluginsDir)));
    }
}
