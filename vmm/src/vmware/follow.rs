//! The serial console of a VMware VM: a file (`STATE/console.log`) that VMware appends to, copied
//! to a writer as it grows until `vmrun list` no longer shows the VM.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::{Vmrun, VmwareError};

/// How [`follow`] polls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Follow {
    /// How often the console file is read.
    pub poll: Duration,
    /// How often `vmrun list` is asked whether the VM still runs.
    pub list_every: Duration,
}

impl Default for Follow {
    fn default() -> Self {
        Follow {
            poll: Duration::from_millis(200),
            list_every: Duration::from_secs(2),
        }
    }
}

/// Copies what was appended to `path` since the last call to `out`, and flushes `out`; nothing
/// while the file does not exist yet.
pub(crate) fn copy_new(file: &mut Option<File>, path: &Path, out: &mut dyn Write) -> Result<(), VmwareError> {
    if file.is_none() {
        match File::open(path) {
            Ok(f) => *file = Some(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(VmwareError::io("open", path)(e)),
        }
    }
    let Some(f) = file.as_mut() else { return Ok(()) };
    let mut buf = [0u8; 8192];
    loop {
        let n = f.read(&mut buf).map_err(VmwareError::io("read", path))?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n])
            .map_err(VmwareError::io("copy to the output the console of", path))?;
    }
    out.flush()
        .map_err(VmwareError::io("copy to the output the console of", path))
}

/// Copies the console file of the VM at `vmx` to `out` until `vmrun list` no longer lists it (or
/// `out` fails).
pub(crate) fn follow(
    vmrun: &Vmrun,
    vmx: &Path,
    console: &Path,
    out: &mut dyn Write,
    how: &Follow,
) -> Result<(), VmwareError> {
    let mut file = None;
    let mut listed = Instant::now();
    loop {
        copy_new(&mut file, console, out)?;
        if listed.elapsed() >= how.list_every {
            let running = vmrun.is_running(vmx)?;
            listed = Instant::now();
            if !running {
                return copy_new(&mut file, console, out);
            }
        }
        sleep(how.poll);
    }
}
