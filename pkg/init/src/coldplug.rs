//! Coldplug: loads the kernel modules of the devices present at boot.
//!
//! Every `modalias` file under `/sys/devices` is matched against the aliases of
//! `/lib/modules/$(uname -r)/modules.alias` (shell globs, as `modprobe` does); when that file is
//! missing, the aliases are read from the `.modinfo` section of each module listed in
//! `modules.dep`. A matching module is loaded with `finit_module` after its dependencies from
//! `modules.dep` (in reverse order, deepest first). Loading drivers makes new devices appear (virtio
//! devices under the PCI transport, input devices under the ACPI button), so passes repeat until
//! nothing new loads.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// A module name as the kernel spells it: file stem with `-` as `_`.
fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    stem.replace('-', "_")
}

struct Modules {
    dir: PathBuf,
    /// name -> (relative path, dependency paths as listed)
    deps: BTreeMap<String, (String, Vec<String>)>,
    /// (glob, module name)
    aliases: Vec<(String, String)>,
    builtin: BTreeSet<String>,
    loaded: BTreeSet<String>,
    /// Modules that failed to load (name -> error), not tried again.
    failed: BTreeMap<String, String>,
}

/// Loads the modules for the present devices; returns the names loaded. Nothing to do (no
/// `/lib/modules/<release>`) is not an error.
pub fn coldplug() -> Result<Vec<String>> {
    match Coldplug::open()? {
        Some(mut coldplug) => Ok(coldplug.pass()),
        None => Ok(Vec::new()),
    }
}

/// The modules of the running kernel, kept across coldplug passes (stage 1 repeats passes while it
/// waits for its root device).
pub struct Coldplug {
    modules: Modules,
}

impl Coldplug {
    /// Reads `/lib/modules/$(uname -r)`: None when it has no `modules.dep` (nothing to load).
    pub fn open() -> Result<Option<Coldplug>> {
        let dir = modules_dir()?;
        if !dir.join("modules.dep").exists() {
            return Ok(None);
        }
        Ok(Some(Coldplug {
            modules: Modules::load(&dir)?,
        }))
    }

    /// Matches every `modalias` under `/sys/devices` and loads what matches, pass after pass while
    /// new modules make new devices appear; returns the modules loaded. A module that fails to load
    /// is reported once (see [`Coldplug::failures`]) and not tried again.
    pub fn pass(&mut self) -> Vec<String> {
        let modules = &mut self.modules;
        let mut loaded_now = Vec::new();
        for _pass in 0..8 {
            let mut aliases = Vec::new();
            collect_modaliases(Path::new("/sys/devices"), &mut aliases, 0);
            aliases.sort();
            aliases.dedup();
            let mut wanted = BTreeSet::new();
            for alias in &aliases {
                for (glob, name) in &modules.aliases {
                    if !modules.loaded.contains(name)
                        && !modules.failed.contains_key(name)
                        && glob_match(glob.as_bytes(), alias.as_bytes())
                    {
                        wanted.insert(name.clone());
                    }
                }
            }
            let mut progress = false;
            for name in wanted {
                match modules.load_with_deps(&name) {
                    Ok(newly) => {
                        progress |= !newly.is_empty();
                        loaded_now.extend(newly);
                    }
                    Err(err) => eprintln!("init: coldplug: {err:#}"),
                }
            }
            if !progress {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        loaded_now
    }

    /// Loads a module by name or alias (`squashfs`, `fs-iso9660`) with its dependencies, as
    /// [`modprobe`] does; built-in or already loaded is success. Returns the modules inserted.
    pub fn load(&mut self, name: &str) -> Result<Vec<String>> {
        let module = self.modules.resolve(name)?;
        self.modules.load_with_deps(&module)
    }

    /// Every module loaded so far (this boot, by anyone).
    pub fn loaded(&self) -> impl Iterator<Item = &str> {
        self.modules.loaded.iter().map(String::as_str)
    }

    /// The modules that failed to load, with why.
    pub fn failures(&self) -> impl Iterator<Item = (&str, &str)> {
        self.modules
            .failed
            .iter()
            .map(|(name, why)| (name.as_str(), why.as_str()))
    }

    /// Where the modules are read from.
    pub fn dir(&self) -> &Path {
        &self.modules.dir
    }
}

/// `/lib/modules/$(uname -r)`.
pub fn modules_dir() -> Result<PathBuf> {
    let release = nix::sys::utsname::uname()?.release().to_string_lossy().into_owned();
    Ok(Path::new("/lib/modules").join(release))
}

/// Hotplug: loads the modules for devices that appear after boot, from the kernel's uevents.
pub struct Hotplug {
    socket: netlink_sys::Socket,
    modules: Option<Modules>,
}

impl Hotplug {
    /// Listens to the kernel's uevents (netlink group 1). None when there is nothing to load
    /// modules from or the socket cannot be opened (reported).
    pub fn open() -> Option<Hotplug> {
        let release = nix::sys::utsname::uname()
            .ok()?
            .release()
            .to_string_lossy()
            .into_owned();
        if !Path::new("/lib/modules").join(release).join("modules.dep").exists() {
            return None;
        }
        let open = || -> std::io::Result<netlink_sys::Socket> {
            let mut socket = netlink_sys::Socket::new(netlink_sys::protocols::NETLINK_KOBJECT_UEVENT)?;
            socket.bind(&netlink_sys::SocketAddr::new(0, 1))?;
            socket.set_non_blocking(true)?;
            Ok(socket)
        };
        match open() {
            Ok(socket) => Some(Hotplug { socket, modules: None }),
            Err(err) => {
                eprintln!("init: no hotplug (uevent socket: {err})");
                None
            }
        }
    }

    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.socket.as_fd()
    }

    /// Reads the pending uevents and loads the modules of added devices; returns what it loaded.
    pub fn handle(&mut self) -> Vec<String> {
        let mut aliases = Vec::new();
        let mut buf = vec![0u8; 16 * 1024];
        while let Ok(n) = self.socket.recv(&mut &mut buf[..], 0) {
            if n == 0 {
                break;
            }
            aliases.extend(added_modalias(&buf[..n]));
        }
        if aliases.is_empty() {
            return Vec::new();
        }
        if self.modules.is_none() {
            let release = nix::sys::utsname::uname()
                .map(|u| u.release().to_string_lossy().into_owned())
                .unwrap_or_default();
            match Modules::load(&Path::new("/lib/modules").join(release)) {
                Ok(modules) => self.modules = Some(modules),
                Err(err) => {
                    eprintln!("init: hotplug: {err:#}");
                    return Vec::new();
                }
            }
        }
        let Some(modules) = &mut self.modules else {
            return Vec::new();
        };
        let mut loaded = Vec::new();
        for alias in aliases {
            let wanted: BTreeSet<String> = modules
                .aliases
                .iter()
                .filter(|(glob, name)| !modules.loaded.contains(name) && glob_match(glob.as_bytes(), alias.as_bytes()))
                .map(|(_, name)| name.clone())
                .collect();
            for name in wanted {
                match modules.load_with_deps(&name) {
                    Ok(newly) => loaded.extend(newly),
                    Err(err) => eprintln!("init: hotplug: {err:#}"),
                }
            }
        }
        loaded
    }
}

/// The `MODALIAS` of a kernel uevent (`ACTION@DEVPATH\0KEY=VALUE\0...`) whose action is `add`.
/// udev's re-broadcasts (starting `libudev`) are ignored.
fn added_modalias(message: &[u8]) -> Option<String> {
    let mut fields = message.split(|b| *b == 0);
    let head = fields.next()?;
    if !head.starts_with(b"add@") {
        return None;
    }
    fields
        .filter_map(|f| f.strip_prefix(b"MODALIAS="))
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .next()
}

/// Where init points the kernel's `/proc/sys/kernel/modprobe` (a link to `/init`): the kernel's
/// own module requests (`fs-overlay` for an overlay mount, `rtnl-link-veth` for a veth pair, ...)
/// then load modules through [`modprobe`].
pub const MODPROBE_LINK: &str = "/run/moby-init/modprobe";

/// Makes [`MODPROBE_LINK`] and registers it with the kernel.
pub fn register_modprobe() -> Result<()> {
    fs::create_dir_all("/run/moby-init")?;
    let _ = fs::remove_file(MODPROBE_LINK);
    std::os::unix::fs::symlink("/init", MODPROBE_LINK).with_context(|| format!("link {MODPROBE_LINK}"))?;
    fs::write("/proc/sys/kernel/modprobe", MODPROBE_LINK).context("write /proc/sys/kernel/modprobe")
}

/// `modprobe [-q] [--] NAME...`: loads each module, named or by alias (as the kernel asks:
/// `fs-overlay`, `rtnl-link-veth`, `net-pf-10`), with its dependencies.
pub fn modprobe(args: &[String]) -> std::process::ExitCode {
    let quiet = args.iter().any(|a| a == "-q" || a == "--quiet");
    let names: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let result = (|| -> Result<()> {
        let release = nix::sys::utsname::uname()?.release().to_string_lossy().into_owned();
        let dir = Path::new("/lib/modules").join(&release);
        let mut modules = Modules::load(&dir)?;
        for name in names {
            let module = modules.resolve(name)?;
            modules.load_with_deps(&module)?;
        }
        Ok(())
    })();
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            if !quiet {
                eprintln!("modprobe: {err:#}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}

impl Modules {
    fn load(dir: &Path) -> Result<Modules> {
        let dep_path = dir.join("modules.dep");
        let dep_text = fs::read_to_string(&dep_path).with_context(|| format!("read {}", dep_path.display()))?;
        let mut deps = BTreeMap::new();
        for line in dep_text.lines() {
            let Some((path, rest)) = line.split_once(':') else {
                continue;
            };
            let list = rest.split_whitespace().map(str::to_string).collect();
            deps.insert(module_name(path), (path.to_string(), list));
        }
        let mut aliases = Vec::new();
        match fs::read_to_string(dir.join("modules.alias")) {
            Ok(text) => {
                for line in text.lines() {
                    let mut words = line.split_whitespace();
                    if let (Some("alias"), Some(glob), Some(name)) = (words.next(), words.next(), words.next()) {
                        aliases.push((glob.to_string(), name.replace('-', "_")));
                    }
                }
            }
            Err(_) => {
                for (name, (path, _)) in &deps {
                    for alias in modinfo_aliases(&dir.join(path)) {
                        aliases.push((alias, name.clone()));
                    }
                }
            }
        }
        let builtin = fs::read_to_string(dir.join("modules.builtin"))
            .unwrap_or_default()
            .lines()
            .map(module_name)
            .collect();
        let loaded = fs::read_to_string("/proc/modules")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .collect();
        Ok(Modules {
            dir: dir.to_path_buf(),
            deps,
            aliases,
            builtin,
            loaded,
            failed: BTreeMap::new(),
        })
    }

    /// The module named `name` (`-` and `_` alike), else the first whose alias matches `name`.
    fn resolve(&self, name: &str) -> Result<String> {
        let wanted = name.replace('-', "_");
        if self.deps.contains_key(&wanted) || self.builtin.contains(&wanted) {
            return Ok(wanted);
        }
        self.aliases
            .iter()
            .find(|(glob, _)| glob_match(glob.as_bytes(), name.as_bytes()))
            .map(|(_, module)| module.clone())
            .with_context(|| format!("no module named or aliased {name} in {}", self.dir.display()))
    }

    /// Loads `name` after its dependencies; returns the modules actually inserted.
    fn load_with_deps(&mut self, name: &str) -> Result<Vec<String>> {
        if self.builtin.contains(name) {
            return Ok(Vec::new());
        }
        let Some((path, dep_paths)) = self.deps.get(name).cloned() else {
            anyhow::bail!("module {name} is not in {}/modules.dep", self.dir.display());
        };
        let mut order: Vec<String> = dep_paths.iter().rev().cloned().collect();
        order.push(path);
        let mut newly = Vec::new();
        for path in order {
            let module = module_name(&path);
            if self.loaded.contains(&module) || self.builtin.contains(&module) {
                continue;
            }
            let full = self.dir.join(&path);
            let file = fs::File::open(&full).with_context(|| format!("open {}", full.display()))?;
            match nix::kmod::finit_module(&file, &CString::default(), nix::kmod::ModuleInitFlags::empty()) {
                Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
                Err(err) => {
                    let why = format!("loading {} failed: {err}", full.display());
                    self.failed.insert(module, why.clone());
                    anyhow::bail!(why);
                }
            }
            self.loaded.insert(module.clone());
            newly.push(module);
        }
        Ok(newly)
    }
}

fn collect_modaliases(dir: &Path, out: &mut Vec<String>, depth: usize) {
    if depth > 24 {
        return;
    }
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let Ok(kind) = entry.file_type() else { continue };
        if kind.is_dir() {
            collect_modaliases(&entry.path(), out, depth + 1);
        } else if kind.is_file() && entry.file_name() == "modalias" {
            if let Ok(text) = fs::read_to_string(entry.path()) {
                let text = text.trim();
                if !text.is_empty() {
                    out.push(text.to_string());
                }
            }
        }
    }
}

/// The `alias=` values of the `.modinfo` section of an (uncompressed, ELF64 little-endian) module.
fn modinfo_aliases(path: &Path) -> Vec<String> {
    let Ok(data) = fs::read(path) else { return Vec::new() };
    let Some(section) = elf_section(&data, ".modinfo") else {
        return Vec::new();
    };
    section
        .split(|b| *b == 0)
        .filter_map(|entry| entry.strip_prefix(b"alias="))
        .map(|alias| String::from_utf8_lossy(alias).into_owned())
        .collect()
}

fn elf_section<'a>(data: &'a [u8], wanted: &str) -> Option<&'a [u8]> {
    let u16_at = |o: usize| Some(u16::from_le_bytes(data.get(o..o + 2)?.try_into().ok()?) as usize);
    let u32_at = |o: usize| Some(u32::from_le_bytes(data.get(o..o + 4)?.try_into().ok()?) as usize);
    let u64_at = |o: usize| Some(u64::from_le_bytes(data.get(o..o + 8)?.try_into().ok()?) as usize);
    if data.get(..5)? != b"\x7fELF\x02" {
        return None;
    }
    let (shoff, shentsize, shnum, shstrndx) = (u64_at(0x28)?, u16_at(0x3A)?, u16_at(0x3C)?, u16_at(0x3E)?);
    let header = |i: usize| shoff + i * shentsize;
    let strtab = u64_at(header(shstrndx) + 0x18)?;
    for i in 0..shnum {
        let h = header(i);
        let name_at = strtab + u32_at(h)?;
        let name = data.get(name_at..)?.split(|b| *b == 0).next()?;
        if name == wanted.as_bytes() {
            let (offset, size) = (u64_at(h + 0x18)?, u64_at(h + 0x20)?);
            return data.get(offset..offset + size);
        }
    }
    None
}

/// Shell glob (`*`, `?`, `[...]`, `[!...]`) as `fnmatch(3)` without flags.
pub fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.first() {
        None => text.is_empty(),
        Some(b'*') => (0..=text.len()).any(|skip| glob_match(&pattern[1..], &text[skip..])),
        Some(b'?') => !text.is_empty() && glob_match(&pattern[1..], &text[1..]),
        Some(b'[') => {
            let Some(&c) = text.first() else { return false };
            let mut i = 1;
            let negate = matches!(pattern.get(1), Some(b'!' | b'^'));
            if negate {
                i += 1;
            }
            let mut matched = false;
            let mut first = true;
            while i < pattern.len() && (first || pattern[i] != b']') {
                first = false;
                if pattern.get(i + 1) == Some(&b'-') && pattern.get(i + 2).is_some_and(|e| *e != b']') {
                    matched |= pattern[i] <= c && c <= pattern[i + 2];
                    i += 3;
                } else {
                    matched |= pattern[i] == c;
                    i += 1;
                }
            }
            if i >= pattern.len() {
                // No closing bracket: a literal '['.
                return c == b'[' && glob_match(&pattern[1..], &text[1..]);
            }
            matched != negate && glob_match(&pattern[i + 1..], &text[1..])
        }
        Some(&p) => text.first() == Some(&p) && glob_match(&pattern[1..], &text[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_fnmatch() {
        assert!(glob_match(b"acpi*:LNXPWRBN:*", b"acpi:LNXPWRBN:"));
        assert!(glob_match(b"virtio:d00000001v*", b"virtio:d00000001v00001AF4"));
        assert!(!glob_match(b"virtio:d00000002v*", b"virtio:d00000001v00001AF4"));
        assert!(glob_match(
            b"pci:v00001AF4d00001000sv*sd*bc*sc*i*",
            b"pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00"
        ));
        assert!(glob_match(b"a[0-9]c", b"a5c"));
        assert!(!glob_match(b"a[!0-9]c", b"a5c"));
        assert!(glob_match(b"a?c", b"abc"));
    }

    /// A minimal ELF64: null section, `.modinfo`, `.shstrtab`.
    fn tiny_module(modinfo: &[u8]) -> Vec<u8> {
        let shstrtab = b"\0.modinfo\0.shstrtab\0";
        let mut data = vec![0u8; 64];
        data[..5].copy_from_slice(b"\x7fELF\x02");
        let modinfo_at = data.len();
        data.extend_from_slice(modinfo);
        let strtab_at = data.len();
        data.extend_from_slice(shstrtab);
        let shoff = data.len();
        data[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
        data[0x3A..0x3C].copy_from_slice(&64u16.to_le_bytes());
        data[0x3C..0x3E].copy_from_slice(&3u16.to_le_bytes());
        data[0x3E..0x40].copy_from_slice(&2u16.to_le_bytes());
        for (name, offset, size) in [
            (0u32, 0usize, 0usize),
            (1, modinfo_at, modinfo.len()),
            (10, strtab_at, shstrtab.len()),
        ] {
            let mut header = [0u8; 64];
            header[..4].copy_from_slice(&name.to_le_bytes());
            header[0x18..0x20].copy_from_slice(&(offset as u64).to_le_bytes());
            header[0x20..0x28].copy_from_slice(&(size as u64).to_le_bytes());
            data.extend_from_slice(&header);
        }
        data
    }

    #[test]
    fn aliases_come_from_the_modinfo_section() {
        let module = tiny_module(b"license=GPL\0alias=fs-overlay\0alias=acpi*:LNXPWRBN:*\0depends=\0");
        let dir = std::env::temp_dir().join(format!("moby-init-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.ko");
        fs::write(&path, module).unwrap();
        assert_eq!(modinfo_aliases(&path), ["fs-overlay", "acpi*:LNXPWRBN:*"]);
        fs::write(&path, b"not an elf").unwrap();
        assert!(modinfo_aliases(&path).is_empty());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn uevents_of_added_devices_give_their_modalias() {
        let add = b"add@/devices/pci0000:00/0000:00:03.0/virtio0\0ACTION=add\0SUBSYSTEM=virtio\0MODALIAS=virtio:d00000002v00001AF4\0SEQNUM=1\0";
        assert_eq!(added_modalias(add).as_deref(), Some("virtio:d00000002v00001AF4"));
        let remove = b"remove@/devices/x\0ACTION=remove\0MODALIAS=virtio:d00000002v00001AF4\0";
        assert_eq!(added_modalias(remove), None);
        assert_eq!(
            added_modalias(b"add@/devices/virtual/net/veth0\0ACTION=add\0INTERFACE=veth0\0"),
            None
        );
        assert_eq!(added_modalias(b"libudev\0\xfe\xed"), None);
    }

    #[test]
    fn module_names_use_underscores() {
        assert_eq!(module_name("kernel/drivers/virtio/virtio_pci.ko"), "virtio_pci");
        assert_eq!(module_name("kernel/net/core/fail-over.ko.xz"), "fail_over");
    }
}
