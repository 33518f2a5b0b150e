//! What goes wrong with a cluster: its file (each problem naming the file, line, group and
//! field), its state, or one of its instances.

use std::fmt;
use std::path::PathBuf;

/// One problem with a cluster file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The cluster file, as it was named.
    pub file: String,
    /// Where in it (1-based; 0 when the problem has no place, such as an unreadable file).
    pub line: usize,
    /// The column (1-based).
    pub column: usize,
    /// The field's path, such as `groups.nodes.size` (empty for a problem of the YAML itself).
    pub field: String,
    /// What is wrong and what to do.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Problems, one a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

/// Why a cluster command failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The cluster file cannot be read.
    #[error("cannot read the cluster file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The cluster file is not right: nothing was started.
    #[error("{0}")]
    Invalid(Problems),
    /// Another process is converging or removing the cluster.
    #[error(
        "cluster {cluster} is being changed by another process (it holds {}): wait for it, or stop it",
        lock.display()
    )]
    Busy {
        /// The cluster's name.
        cluster: String,
        /// The lock file.
        lock: PathBuf,
    },
    /// The cluster's state cannot be read or written.
    #[error("cluster {cluster}: {message}")]
    State {
        /// The cluster's name.
        cluster: String,
        /// What failed, naming the file.
        message: String,
    },
    /// An instance could not be provisioned or destroyed.
    #[error("instance {instance}: {message}")]
    Instance {
        /// The instance.
        instance: String,
        /// The plugin's error.
        message: String,
    },
    /// An instance did not come up in time.
    #[error("instance {instance} is not up after {seconds} s ({state}){}", console_tail(console))]
    Timeout {
        /// The instance.
        instance: String,
        /// How long it was given.
        seconds: u64,
        /// How far it got (`starting`, `running, no DHCP lease on lab yet`).
        state: String,
        /// The end of its console log.
        console: String,
    },
    /// An instance stopped or failed instead of coming up.
    #[error("instance {instance} {state} instead of coming up{}{}", error.as_deref().map(|e| format!(": {e}")).unwrap_or_default(), console_tail(console))]
    Failed {
        /// The instance.
        instance: String,
        /// `stopped` or `failed`.
        state: String,
        /// Why, when known.
        error: Option<String>,
        /// The end of its console log.
        console: String,
    },
    /// A rolled instance came back with another spec than the one it was rolled to.
    #[error("instance {instance} was rolled out to spec {wanted} but came back with {found}")]
    Stuck {
        /// The instance.
        instance: String,
        /// The digest it should have.
        wanted: String,
        /// The digest it has.
        found: String,
    },
}

/// The end of a console log as the last lines of an error, or nothing.
fn console_tail(console: &str) -> String {
    if console.trim().is_empty() {
        String::new()
    } else {
        format!("; the end of its console:\n{}", console.trim_end())
    }
}
