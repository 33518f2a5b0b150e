//! Finding UEFI firmware (OVMF on x86_64, AAVMF/QEMU_EFI on aarch64) for `--uefi`, or taking
//! `--fw`. Split images (CODE + VARS) get a per-VM copy of the VARS template in the state dir.

use std::path::{Path, PathBuf};

use crate::machine::Arch;

/// UEFI firmware found on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Firmware {
    /// The code image (or a combined image when `vars_template` is `None`).
    pub code: PathBuf,
    /// The variable store template that goes with `code`, for split images.
    pub vars_template: Option<PathBuf>,
}

/// Firmware as attached to one VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UefiFirmware {
    /// The code image, attached read-only (or a combined image, loaded with `-bios`).
    pub code: PathBuf,
    /// The VM's own writable variable store, for split images.
    pub vars: Option<PathBuf>,
}

/// Errors from firmware lookup.
#[derive(Debug, thiserror::Error)]
pub enum FirmwareError {
    /// No firmware in any known place.
    #[error("no UEFI firmware found for {arch} (looked in {looked}): install it (Debian package {package}) or give its path")]
    NotFound {
        /// Guest architecture.
        arch: Arch,
        /// The places searched, comma-separated.
        looked: String,
        /// The Debian package that provides it.
        package: &'static str,
    },
    /// `--fw` names a file that does not exist.
    #[error("firmware {0} does not exist: check its path, or install OVMF (Debian package ovmf) and let it be found")]
    FwMissing(PathBuf),
    /// Copying the VARS template into the state dir failed.
    #[error("cannot copy UEFI variable store {from} to {to}: {source}")]
    CopyVars {
        /// The template.
        from: PathBuf,
        /// The per-VM copy.
        to: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// The Debian package with UEFI firmware for `arch`.
pub fn firmware_package(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "ovmf",
        Arch::Aarch64 => "qemu-efi-aarch64",
    }
}

/// Where firmware is looked for, in order: `(code, vars template)`; `None` vars means a
/// combined image.
pub fn search_paths(arch: Arch) -> Vec<(PathBuf, Option<PathBuf>)> {
    let pairs: &[(&str, Option<&str>)] = match arch {
        Arch::X86_64 => &[
            (
                "/usr/share/OVMF/OVMF_CODE_4M.fd",
                Some("/usr/share/OVMF/OVMF_VARS_4M.fd"),
            ),
            ("/usr/share/OVMF/OVMF_CODE.fd", Some("/usr/share/OVMF/OVMF_VARS.fd")),
            (
                "/usr/share/edk2/ovmf/OVMF_CODE.fd",
                Some("/usr/share/edk2/ovmf/OVMF_VARS.fd"),
            ),
            (
                "/usr/share/edk2/x64/OVMF_CODE.4m.fd",
                Some("/usr/share/edk2/x64/OVMF_VARS.4m.fd"),
            ),
            (
                "/usr/share/edk2-ovmf/x64/OVMF_CODE.fd",
                Some("/usr/share/edk2-ovmf/x64/OVMF_VARS.fd"),
            ),
            ("/usr/share/qemu/OVMF.fd", None),
            ("/usr/share/ovmf/OVMF.fd", None),
            ("/usr/share/ovmf/bios.bin", None),
        ],
        Arch::Aarch64 => &[
            ("/usr/share/AAVMF/AAVMF_CODE.fd", Some("/usr/share/AAVMF/AAVMF_VARS.fd")),
            (
                "/usr/share/edk2/aarch64/QEMU_EFI-pflash.raw",
                Some("/usr/share/edk2/aarch64/vars-template-pflash.raw"),
            ),
            ("/usr/share/qemu-efi-aarch64/QEMU_EFI.fd", None),
        ],
    };
    pairs
        .iter()
        .map(|(c, v)| (PathBuf::from(c), v.map(PathBuf::from)))
        .collect()
}

/// Finds firmware: `fw` if given (a combined image unless a `VARS` file sits beside a `CODE`
/// one), else the first of [`search_paths`] whose files exist.
pub fn find(arch: Arch, fw: Option<&Path>) -> Result<Firmware, FirmwareError> {
    find_in(arch, fw, &search_paths(arch))
}

/// [`find`] over an explicit list of candidates.
pub fn find_in(
    arch: Arch,
    fw: Option<&Path>,
    candidates: &[(PathBuf, Option<PathBuf>)],
) -> Result<Firmware, FirmwareError> {
    if let Some(fw) = fw {
        if !fw.is_file() {
            return Err(FirmwareError::FwMissing(fw.to_path_buf()));
        }
        let vars = fw
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| n.contains("_CODE"))
            .map(|n| fw.with_file_name(n.replace("_CODE", "_VARS")))
            .filter(|v| v.is_file());
        return Ok(Firmware {
            code: fw.to_path_buf(),
            vars_template: vars,
        });
    }
    for (code, vars) in candidates {
        if code.is_file() && vars.as_ref().is_none_or(|v| v.is_file()) {
            return Ok(Firmware {
                code: code.clone(),
                vars_template: vars.clone(),
            });
        }
    }
    let looked = candidates
        .iter()
        .map(|(c, _)| c.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    Err(FirmwareError::NotFound {
        arch,
        looked,
        package: firmware_package(arch),
    })
}

impl Firmware {
    /// Prepares the firmware for one VM: split images get `STATE/efi-vars.fd`, copied from the
    /// template the first time and kept across runs.
    pub fn for_vm(&self, state_dir: &Path) -> Result<UefiFirmware, FirmwareError> {
        let vars = match &self.vars_template {
            None => None,
            Some(t) => {
                let to = state_dir.join("efi-vars.fd");
                if !to.exists() {
                    std::fs::copy(t, &to).map_err(|source| FirmwareError::CopyVars {
                        from: t.clone(),
                        to: to.clone(),
                        source,
                    })?;
                }
                Some(to)
            }
        };
        Ok(UefiFirmware {
            code: self.code.clone(),
            vars,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_installed_ovmf() {
        // This host has the Debian ovmf package: the 4M split image comes first.
        let f = find(Arch::X86_64, None).unwrap();
        assert_eq!(f.code, Path::new("/usr/share/OVMF/OVMF_CODE_4M.fd"));
        assert_eq!(
            f.vars_template.as_deref(),
            Some(Path::new("/usr/share/OVMF/OVMF_VARS_4M.fd"))
        );
    }

    #[test]
    fn missing_firmware_names_the_package() {
        let d = tempfile::tempdir().unwrap();
        let cands = vec![(d.path().join("OVMF_CODE.fd"), Some(d.path().join("OVMF_VARS.fd")))];
        let e = find_in(Arch::X86_64, None, &cands).unwrap_err().to_string();
        assert!(e.contains("Debian package ovmf") && !e.contains("--"), "{e}");
        let e = find_in(Arch::Aarch64, None, &[]).unwrap_err().to_string();
        assert!(e.contains("Debian package qemu-efi-aarch64"), "{e}");
        let e = find(Arch::X86_64, Some(&d.path().join("nope.fd"))).unwrap_err();
        assert!(matches!(e, FirmwareError::FwMissing(_)));
    }

    #[test]
    fn explicit_fw_and_vars_copy() {
        let d = tempfile::tempdir().unwrap();
        let code = d.path().join("OVMF_CODE.fd");
        std::fs::write(&code, "code").unwrap();
        std::fs::write(d.path().join("OVMF_VARS.fd"), "vars").unwrap();
        let combined = d.path().join("OVMF.fd");
        std::fs::write(&combined, "all").unwrap();
        assert_eq!(find(Arch::X86_64, Some(&combined)).unwrap().vars_template, None);
        let f = find(Arch::X86_64, Some(&code)).unwrap();
        assert_eq!(f.vars_template, Some(d.path().join("OVMF_VARS.fd")));
        let state = d.path().join("state");
        std::fs::create_dir(&state).unwrap();
        let vm = f.for_vm(&state).unwrap();
        let vars = state.join("efi-vars.fd");
        assert_eq!(
            vm,
            UefiFirmware {
                code: code.clone(),
                vars: Some(vars.clone())
            }
        );
        assert_eq!(std::fs::read_to_string(&vars).unwrap(), "vars");
        // Kept across runs: a second run does not overwrite what the guest stored.
        std::fs::write(&vars, "guest wrote this").unwrap();
        f.for_vm(&state).unwrap();
        assert_eq!(std::fs::read_to_string(&vars).unwrap(), "guest wrote this");
    }
}
