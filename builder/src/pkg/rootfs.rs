//! The staging directory a package's root filesystem is put together in.
//!
//! Paths are image paths (`/usr/bin/x`). A symbolic link met on the way is followed as it would be
//! inside the image (an absolute target starts again at the staging root, `..` stops there), so
//! nothing a package unpacks or copies can land outside the staging directory, whatever links an
//! earlier step made. The last component itself is never followed: writing a file over a link
//! replaces the link.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

/// How many symbolic links one lookup may follow (as Linux's `MAXSYMLINKS`).
const MAX_LINKS: usize = 40;

/// A staging directory, with the owners declared for its paths (everything else is root's).
#[derive(Debug)]
pub struct Rootfs {
    root: PathBuf,
    owners: BTreeMap<String, (u64, u64)>,
}

fn escapes(path: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{path:?} is not a path in the image"),
    )
}

/// The components of an image path, without `.` and the root; `..` is kept.
fn components(path: &str) -> Vec<String> {
    Path::new(path)
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_string_lossy().into_owned()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect()
}

impl Rootfs {
    /// A staging area in the (existing, empty) directory `root`.
    pub fn new(root: impl Into<PathBuf>) -> Rootfs {
        Rootfs {
            root: root.into(),
            owners: BTreeMap::new(),
        }
    }

    /// The staging directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Owners declared by steps, by image path without the leading `/`.
    pub fn owners(&self) -> &BTreeMap<String, (u64, u64)> {
        &self.owners
    }

    /// Records that `path` belongs to `owner` in the image.
    pub fn set_owner(&mut self, path: &str, owner: (u64, u64)) {
        self.owners.insert(path.trim_start_matches('/').to_string(), owner);
    }

    /// The host path of the directory that holds `path`'s last component, following links inside
    /// the image, and that last component. Missing directories are created when `create` is set.
    fn parent_of(&self, path: &str, create: bool) -> io::Result<(PathBuf, String)> {
        let mut parts = components(path);
        let last = parts.pop().filter(|l| l != "..").ok_or_else(|| escapes(path))?;
        let mut pending: Vec<String> = parts.into_iter().rev().collect();
        let mut resolved: Vec<String> = Vec::new();
        let mut links = 0;
        while let Some(part) = pending.pop() {
            if part == ".." {
                resolved.pop();
                continue;
            }
            let host = self.host(&resolved).join(&part);
            match fs::symlink_metadata(&host) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidInput,
                            format!("too many symbolic links in {path:?}"),
                        ));
                    }
                    let target = fs::read_link(&host)?.to_string_lossy().into_owned();
                    if target.starts_with('/') {
                        resolved.clear();
                    }
                    pending.extend(components(&target).into_iter().rev());
                }
                Ok(meta) if meta.is_dir() => resolved.push(part),
                Ok(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        format!(
                            "{path:?}: /{} is not a directory",
                            resolved.iter().chain([&part]).cloned().collect::<Vec<_>>().join("/")
                        ),
                    ))
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                    fs::create_dir(&host)?;
                    fs::set_permissions(&host, fs::Permissions::from_mode(0o755))?;
                    resolved.push(part);
                }
                Err(e) => return Err(e),
            }
        }
        Ok((self.host(&resolved), last))
    }

    fn host(&self, parts: &[String]) -> PathBuf {
        parts.iter().fold(self.root.clone(), |p, c| p.join(c))
    }

    /// The host path `path` names (its parents resolved inside the image; the last component not
    /// followed), creating missing parent directories.
    pub fn prepare(&self, path: &str) -> io::Result<PathBuf> {
        let (parent, last) = self.parent_of(path, true)?;
        Ok(parent.join(last))
    }

    /// Removes whatever is at `host` (a file, link or whole directory).
    fn clear(host: &Path) -> io::Result<()> {
        match fs::symlink_metadata(host) {
            Ok(meta) if meta.is_dir() => fs::remove_dir_all(host),
            Ok(_) => fs::remove_file(host),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Writes a regular file (replacing what was there) with `mode`.
    pub fn write_file(&self, path: &str, mut data: &[u8], mode: u32) -> io::Result<()> {
        self.write_from(path, &mut data, mode).map(drop)
    }

    /// Writes a regular file at `path` (replacing what was there) from `data`, then gives it
    /// `mode` (after writing, so that set-id bits survive for a builder that is not root).
    pub fn write_from(&self, path: &str, data: &mut dyn io::Read, mode: u32) -> io::Result<u64> {
        let host = self.prepare(path)?;
        if fs::symlink_metadata(&host).is_ok_and(|m| !m.is_file()) {
            Self::clear(&host)?;
        }
        let mut file = fs::File::create(&host)?;
        let written = io::copy(data, &mut file)?;
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        Ok(written)
    }

    /// Copies the host file `from` to `path` with `mode` (or `from`'s own permission bits).
    pub fn copy_file(&self, from: &Path, path: &str, mode: Option<u32>) -> io::Result<()> {
        let host = self.prepare(path)?;
        if fs::symlink_metadata(&host).is_ok() {
            Self::clear(&host)?;
        }
        fs::copy(from, &host)?;
        let mode = match mode {
            Some(m) => m,
            None => fs::metadata(from)?.permissions().mode() & 0o7777,
        };
        fs::set_permissions(&host, fs::Permissions::from_mode(mode))
    }

    /// Makes `path` a directory (and its parents), with `mode` for the last one.
    pub fn mkdir(&self, path: &str, mode: u32) -> io::Result<()> {
        let host = self.prepare(path)?;
        match fs::symlink_metadata(&host) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                Self::clear(&host)?;
                fs::create_dir(&host)?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => fs::create_dir(&host)?,
            Err(e) => return Err(e),
        }
        fs::set_permissions(&host, fs::Permissions::from_mode(mode))
    }

    /// Makes `path` a symbolic link to `target` (replacing a file or link there).
    pub fn symlink(&self, path: &str, target: &str) -> io::Result<()> {
        let host = self.prepare(path)?;
        if fs::symlink_metadata(&host).is_ok() {
            Self::clear(&host)?;
        }
        std::os::unix::fs::symlink(target, &host)
    }

    /// Makes `path` a hard link to the image path `existing`.
    pub fn hard_link(&self, path: &str, existing: &str) -> io::Result<()> {
        let from = self.prepare(existing)?;
        let host = self.prepare(path)?;
        if fs::symlink_metadata(&host).is_ok() {
            Self::clear(&host)?;
        }
        fs::hard_link(from, &host)
    }

    /// Deletes `path` (a file, link or whole directory); nothing there is fine.
    pub fn remove(&self, path: &str) -> io::Result<()> {
        match self.parent_of(path, false) {
            Ok((parent, last)) => Self::clear(&parent.join(last)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Copies the host file, directory (recursively) or symbolic link `from` to `path`: files keep
    /// their permission bits unless `mode` is given, links stay links (never followed, at any
    /// depth). FIFOs, sockets and devices are refused: reading one would block or never end.
    pub fn copy(&self, from: &Path, path: &str, mode: Option<u32>) -> io::Result<()> {
        let meta =
            fs::symlink_metadata(from).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", from.display())))?;
        let kind = meta.file_type();
        if kind.is_symlink() {
            self.symlink(path, &fs::read_link(from)?.to_string_lossy())
        } else if kind.is_file() {
            self.copy_file(from, path, mode)
        } else if kind.is_dir() {
            self.mkdir(path, meta.permissions().mode() & 0o7777)?;
            let mut entries: Vec<_> = fs::read_dir(from)?.collect::<Result<_, _>>()?;
            entries.sort_by_key(|e| e.file_name());
            for entry in entries {
                let name = entry.file_name().to_string_lossy().into_owned();
                self.copy(&entry.path(), &format!("{}/{name}", path.trim_end_matches('/')), mode)?;
            }
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} is not a file, folder or symbolic link (a package cannot hold FIFOs, sockets or devices)",
                    from.display()
                ),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn staged() -> (tempfile::TempDir, Rootfs) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("root")).unwrap();
        let rootfs = Rootfs::new(dir.path().join("root"));
        (dir, rootfs)
    }

    #[test]
    fn files_dirs_links_and_removal() {
        let (_d, r) = staged();
        r.write_file("/etc/motd", b"hi\n", 0o644).unwrap();
        r.mkdir("/run/config", 0o700).unwrap();
        r.symlink("/bin/sh", "busybox").unwrap();
        r.hard_link("/bin/ash", "/etc/motd").unwrap();
        let root = r.root();
        assert_eq!(fs::read(root.join("etc/motd")).unwrap(), b"hi\n");
        assert_eq!(
            fs::metadata(root.join("run/config")).unwrap().permissions().mode() & 0o7777,
            0o700
        );
        assert_eq!(fs::read_link(root.join("bin/sh")).unwrap(), Path::new("busybox"));
        assert_eq!(fs::read(root.join("bin/ash")).unwrap(), b"hi\n");
        r.remove("/etc").unwrap();
        r.remove("/nothing/there").unwrap();
        assert!(!root.join("etc").exists());
        // A file replaces a link; a directory replaces a file.
        r.write_file("/bin/sh", b"#!", 0o755).unwrap();
        assert!(fs::symlink_metadata(root.join("bin/sh")).unwrap().is_file());
        r.mkdir("/bin/sh", 0o755).unwrap();
        assert!(root.join("bin/sh").is_dir());
    }

    #[test]
    fn links_are_followed_inside_the_image_only() {
        let (d, r) = staged();
        // /lib -> /usr/lib (absolute) and /up -> ../../.. must both stay in the staging dir.
        r.symlink("/lib", "/usr/lib").unwrap();
        r.symlink("/up", "../../..").unwrap();
        r.write_file("/lib/libc.so", b"elf", 0o644).unwrap();
        r.write_file("/up/escaped", b"no", 0o644).unwrap();
        assert_eq!(fs::read(r.root().join("usr/lib/libc.so")).unwrap(), b"elf");
        assert_eq!(fs::read(r.root().join("escaped")).unwrap(), b"no");
        assert!(!d.path().join("escaped").exists());
        assert!(
            r.write_file("/../x", b"", 0o644).is_ok(),
            "`..` at the root stays at the root"
        );
        assert!(r.root().join("x").exists());
        r.symlink("/loop", "/loop").unwrap();
        let e = r.write_file("/loop/x", b"", 0o644).unwrap_err();
        assert!(e.to_string().contains("too many symbolic links"), "{e}");
        r.write_file("/file", b"", 0o644).unwrap();
        let e = r.write_file("/file/x", b"", 0o644).unwrap_err();
        assert!(e.to_string().contains("/file is not a directory"), "{e}");
    }

    #[test]
    fn trees_are_copied_with_modes_and_links() {
        let (d, r) = staged();
        let src = d.path().join("src");
        fs::create_dir_all(src.join("sub")).unwrap();
        fs::write(src.join("sub/run.sh"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(src.join("sub/run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink("sub/run.sh", src.join("link")).unwrap();
        r.copy(&src, "/opt/app", None).unwrap();
        let meta = fs::metadata(r.root().join("opt/app/sub/run.sh")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, 0o755);
        assert_eq!(
            fs::read_link(r.root().join("opt/app/link")).unwrap(),
            Path::new("sub/run.sh")
        );
    }
}
