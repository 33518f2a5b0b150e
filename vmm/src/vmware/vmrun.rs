//! `vmrun`: finding it, its argument vectors, running it, and reading `vmrun list`.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;

use super::VmwareError;

/// The VMware product vmrun drives (`vmrun -T PRODUCT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Product {
    /// VMware Workstation (`ws`), the default on Linux and Windows.
    Workstation,
    /// VMware Fusion (`fusion`), the default on macOS.
    Fusion,
    /// VMware Workstation Player (`player`).
    Player,
}

impl Product {
    /// The `-T` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Product::Workstation => "ws",
            Product::Fusion => "fusion",
            Product::Player => "player",
        }
    }

    /// The product on `os` (a `std::env::consts::OS` value): Fusion on macOS, else Workstation.
    pub fn for_os(os: &str) -> Product {
        if os == "macos" {
            Product::Fusion
        } else {
            Product::Workstation
        }
    }
}

impl fmt::Display for Product {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Product {
    type Err = VmwareError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "ws" | "workstation" => Ok(Product::Workstation),
            "fusion" => Ok(Product::Fusion),
            "player" => Ok(Product::Player),
            _ => Err(VmwareError::UnknownProduct(s.to_string())),
        }
    }
}

/// Where VMware installs vmrun on `os` (a `std::env::consts::OS` value), after `$PATH`.
pub fn vmrun_locations(os: &str) -> Vec<PathBuf> {
    match os {
        "linux" => vec!["/usr/bin/vmrun".into()],
        "macos" => vec!["/Applications/VMware Fusion.app/Contents/Library/vmrun".into()],
        "windows" => vec![
            r"C:\Program Files (x86)\VMware\VMware Workstation\vmrun.exe".into(),
            r"C:\Program Files\VMware\VMware Workstation\vmrun.exe".into(),
        ],
        _ => Vec::new(),
    }
}

/// `name` on `os`: with `.exe` on Windows.
pub(super) fn exe_name(name: &str, os: &str) -> String {
    if os == "windows" {
        format!("{name}.exe")
    } else {
        name.to_string()
    }
}

/// Looks `name` up in `path_var` (a `$PATH`-style list).
pub(super) fn search_path(name: &str, path_var: Option<&OsStr>) -> Option<PathBuf> {
    std::env::split_paths(path_var?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// `program ARGS` as text, for messages (quotes arguments with spaces).
pub(super) fn command_line(program: &Path, args: &[OsString]) -> String {
    std::iter::once(program.as_os_str())
        .chain(args.iter().map(OsString::as_os_str))
        .map(|a| {
            let a = a.to_string_lossy();
            if a.contains(char::is_whitespace) || a.is_empty() {
                format!("\"{a}\"")
            } else {
                a.into_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `program ARGS`; its standard output on success, else an error carrying the command line
/// and everything it printed.
pub(super) fn exec(program: &Path, args: &[OsString]) -> Result<String, VmwareError> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|source| VmwareError::Spawn {
            program: program.to_path_buf(),
            source,
        })?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        return Ok(stdout);
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    Err(VmwareError::CommandFailed {
        command: command_line(program, args),
        status: out.status,
        output: [stdout.trim(), stderr.trim()]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("\n"),
    })
}

/// A located vmrun and the product it drives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vmrun {
    /// The vmrun binary.
    pub path: PathBuf,
    /// `-T` product.
    pub product: Product,
}

impl Vmrun {
    /// vmrun for this host: `explicit` if given, else `vmrun` from `$PATH`, else
    /// VMware's install path ([`vmrun_locations`]). `product` defaults to [`Product::for_os`].
    pub fn find(explicit: Option<&Path>, product: Option<Product>) -> Result<Vmrun, VmwareError> {
        let path_var = std::env::var_os("PATH");
        Vmrun::find_in(explicit, product, std::env::consts::OS, path_var.as_deref())
    }

    /// [`Vmrun::find`] for `os` with an explicit `$PATH` value.
    pub fn find_in(
        explicit: Option<&Path>,
        product: Option<Product>,
        os: &str,
        path_var: Option<&OsStr>,
    ) -> Result<Vmrun, VmwareError> {
        let product = product.unwrap_or(Product::for_os(os));
        let path = match explicit {
            // A path: use it as is.
            Some(p) if p.components().count() > 1 => {
                if !p.is_file() {
                    return Err(VmwareError::VmrunPathMissing(p.to_path_buf()));
                }
                p.to_path_buf()
            }
            // A bare name: look it up.
            Some(p) => {
                let name = p.to_string_lossy();
                search_path(&name, path_var).ok_or_else(|| VmwareError::VmrunNotFound {
                    looked: vec![format!("$PATH for {name}")],
                })?
            }
            None => {
                let name = exe_name("vmrun", os);
                let fixed = vmrun_locations(os);
                match search_path(&name, path_var).or_else(|| fixed.iter().find(|p| p.is_file()).cloned()) {
                    Some(p) => p,
                    None => {
                        let mut looked = vec![format!("$PATH for {name}")];
                        looked.extend(fixed.iter().map(|p| p.display().to_string()));
                        return Err(VmwareError::VmrunNotFound { looked });
                    }
                }
            }
        };
        Ok(Vmrun { path, product })
    }

    fn base_args(&self, verb: &str) -> Vec<OsString> {
        vec!["-T".into(), self.product.as_str().into(), verb.into()]
    }

    /// `-T P start VMX nogui` (or `gui`).
    pub fn start_args(&self, vmx: &Path, gui: bool) -> Vec<OsString> {
        let mut args = self.base_args("start");
        args.push(vmx.into());
        args.push(if gui { "gui" } else { "nogui" }.into());
        args
    }

    /// `-T P list`.
    pub fn list_args(&self) -> Vec<OsString> {
        self.base_args("list")
    }

    /// `-T P stop VMX soft` (a guest shutdown; needs VMware Tools in the guest) or `hard` (power off).
    pub fn stop_args(&self, vmx: &Path, hard: bool) -> Vec<OsString> {
        let mut args = self.base_args("stop");
        args.push(vmx.into());
        args.push(if hard { "hard" } else { "soft" }.into());
        args
    }

    /// The command line `vmrun ARGS` as text, for messages (quotes arguments with spaces).
    pub fn command_line(&self, args: &[OsString]) -> String {
        command_line(&self.path, args)
    }

    /// Runs vmrun with `args`; its standard output on success. A failure carries what vmrun
    /// printed on either stream (it reports errors on stdout).
    pub fn exec(&self, args: &[OsString]) -> Result<String, VmwareError> {
        exec(&self.path, args)
    }

    /// The `.vmx` files of the running VMs (`vmrun list`).
    pub fn list(&self) -> Result<Vec<PathBuf>, VmwareError> {
        parse_list(&self.exec(&self.list_args())?)
    }

    /// Whether `vmx` is among the running VMs.
    pub fn is_running(&self, vmx: &Path) -> Result<bool, VmwareError> {
        Ok(self.list()?.iter().any(|p| same_file(p, vmx)))
    }
}

/// Whether two paths name the same file: equal, or equal once canonicalized (vmrun may report a
/// path through another symlink, e.g. `/private/tmp` for `/tmp` on macOS).
fn same_file(a: &Path, b: &Path) -> bool {
    if a == b {
        return true;
    }
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Parses `vmrun list`: `Total running VMs: N` then N `.vmx` paths, one a line.
pub fn parse_list(output: &str) -> Result<Vec<PathBuf>, VmwareError> {
    let bad = || VmwareError::BadList(output.to_string());
    let mut lines = output.lines().map(str::trim).filter(|l| !l.is_empty());
    let count: usize = lines
        .next()
        .and_then(|l| l.strip_prefix("Total running VMs:"))
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(bad)?;
    let vms: Vec<PathBuf> = lines.map(PathBuf::from).collect();
    if vms.len() != count {
        return Err(bad());
    }
    Ok(vms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strs(args: &[OsString]) -> Vec<&str> {
        args.iter().map(|a| a.to_str().unwrap()).collect()
    }

    #[test]
    fn products() {
        assert_eq!(Product::for_os("linux"), Product::Workstation);
        assert_eq!(Product::for_os("windows"), Product::Workstation);
        assert_eq!(Product::for_os("macos"), Product::Fusion);
        assert_eq!("Fusion".parse::<Product>().unwrap(), Product::Fusion);
        assert_eq!("workstation".parse::<Product>().unwrap(), Product::Workstation);
        assert_eq!("player".parse::<Product>().unwrap().as_str(), "player");
        assert_eq!(
            "esx".parse::<Product>().unwrap_err().to_string(),
            "unknown VMware product \"esx\": use ws (Workstation), fusion or player"
        );
    }

    #[test]
    fn argv_per_product() {
        let vmx = Path::new("/s/lk-state/linuxkit.vmx");
        let ws = Vmrun {
            path: "/usr/bin/vmrun".into(),
            product: Product::Workstation,
        };
        assert_eq!(
            strs(&ws.start_args(vmx, false)),
            ["-T", "ws", "start", "/s/lk-state/linuxkit.vmx", "nogui"]
        );
        assert_eq!(
            strs(&ws.start_args(vmx, true)),
            ["-T", "ws", "start", "/s/lk-state/linuxkit.vmx", "gui"]
        );
        assert_eq!(strs(&ws.list_args()), ["-T", "ws", "list"]);
        assert_eq!(
            strs(&ws.stop_args(vmx, false)),
            ["-T", "ws", "stop", "/s/lk-state/linuxkit.vmx", "soft"]
        );
        assert_eq!(
            strs(&ws.stop_args(vmx, true)),
            ["-T", "ws", "stop", "/s/lk-state/linuxkit.vmx", "hard"]
        );
        let fusion = Vmrun {
            path: "/Applications/VMware Fusion.app/Contents/Library/vmrun".into(),
            product: Product::Fusion,
        };
        assert_eq!(
            strs(&fusion.start_args(vmx, false)),
            ["-T", "fusion", "start", "/s/lk-state/linuxkit.vmx", "nogui"]
        );
        assert_eq!(strs(&fusion.list_args()), ["-T", "fusion", "list"]);
        assert_eq!(
            strs(&fusion.stop_args(vmx, true)),
            ["-T", "fusion", "stop", "/s/lk-state/linuxkit.vmx", "hard"]
        );
        assert_eq!(
            fusion.command_line(&fusion.list_args()),
            "\"/Applications/VMware Fusion.app/Contents/Library/vmrun\" -T fusion list"
        );
        let player = Vmrun {
            path: "vmrun".into(),
            product: Product::Player,
        };
        assert_eq!(strs(&player.list_args()), ["-T", "player", "list"]);
    }

    #[test]
    fn list_parsing() {
        assert_eq!(parse_list("Total running VMs: 0\n").unwrap(), Vec::<PathBuf>::new());
        assert_eq!(
            parse_list("Total running VMs: 2\n/s/a-state/linuxkit.vmx\n/Users/me/VMs/b b.vmx\n").unwrap(),
            [
                PathBuf::from("/s/a-state/linuxkit.vmx"),
                PathBuf::from("/Users/me/VMs/b b.vmx")
            ]
        );
        // Windows line endings.
        assert_eq!(
            parse_list("Total running VMs: 1\r\nC:\\VMs\\lk.vmx\r\n").unwrap(),
            [PathBuf::from("C:\\VMs\\lk.vmx")]
        );
        for bad in [
            "",
            "Error: cannot connect\n",
            "Total running VMs: 2\n/a.vmx\n",
            "Total running VMs: x\n",
        ] {
            let e = parse_list(bad).unwrap_err();
            assert!(matches!(e, VmwareError::BadList(ref o) if o == bad), "{bad:?}: {e}");
        }
    }

    #[test]
    fn missing_vmrun_says_where_it_looked() {
        let d = tempfile::tempdir().unwrap();
        let e = Vmrun::find_in(None, None, "linux", Some(d.path().as_os_str())).unwrap_err();
        assert_eq!(
            e.to_string(),
            "vmrun not found (looked in $PATH for vmrun, /usr/bin/vmrun): install VMware Workstation \
             (Linux, Windows) or Fusion (macOS), or give vmrun's path"
        );
        let e = Vmrun::find_in(None, None, "macos", None).unwrap_err().to_string();
        assert!(
            e.contains("looked in $PATH for vmrun, /Applications/VMware Fusion.app/Contents/Library/vmrun)"),
            "{e}"
        );
        let e = Vmrun::find_in(None, None, "windows", None).unwrap_err().to_string();
        assert!(
            e.contains(
                r"looked in $PATH for vmrun.exe, C:\Program Files (x86)\VMware\VMware Workstation\vmrun.exe, C:\Program Files\VMware\VMware Workstation\vmrun.exe)"
            ),
            "{e}"
        );
        let missing = d.path().join("vmrun");
        let e = Vmrun::find_in(Some(&missing), None, "linux", None).unwrap_err();
        assert!(
            matches!(e, VmwareError::VmrunPathMissing(ref p) if *p == missing),
            "{e}"
        );
        assert_eq!(
            e.to_string(),
            format!("vmrun {} does not exist: check its path", missing.display())
        );
    }

    #[test]
    fn finds_vmrun_in_path_or_override() {
        let d = tempfile::tempdir().unwrap();
        let vmrun = d.path().join("vmrun");
        std::fs::write(&vmrun, "").unwrap();
        let got = Vmrun::find_in(None, None, "linux", Some(d.path().as_os_str())).unwrap();
        assert_eq!(
            got,
            Vmrun {
                path: vmrun.clone(),
                product: Product::Workstation
            }
        );
        let got = Vmrun::find_in(None, None, "macos", Some(d.path().as_os_str())).unwrap();
        assert_eq!(got.product, Product::Fusion);
        let got = Vmrun::find_in(Some(&vmrun), Some(Product::Player), "linux", None).unwrap();
        assert_eq!((got.path, got.product), (vmrun.clone(), Product::Player));
        let got = Vmrun::find_in(Some(Path::new("vmrun")), None, "linux", Some(d.path().as_os_str())).unwrap();
        assert_eq!(got.path, vmrun);
    }
}
