//! `file=PATH`: userdata from a file, as LinuxKit's file provider.

use std::fs;
use std::path::{Path, PathBuf};

use super::Provider;

/// The `file=PATH` provider.
#[derive(Debug, Clone)]
pub struct File {
    path: PathBuf,
}

impl File {
    /// Userdata read from `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        File { path: path.into() }
    }
}

impl Provider for File {
    fn name(&self) -> String {
        self.path.display().to_string()
    }

    fn probe(&mut self) -> bool {
        self.path.exists()
    }

    fn extract(&mut self, _config: &Path) -> Result<Option<Vec<u8>>, String> {
        fs::read(&self.path)
            .map(Some)
            .map_err(|e| format!("cannot read {}: {e}", self.path.display()))
    }
}
