//! An image's flattened filesystem written below a prefix, with LinuxKit's adjustments: a few
//! build-time artefacts dropped, `/etc/hosts` and `/etc/resolv.conf` replaced, and the mount points
//! every container needs appended.

use crate::tar::{EntryKind, EntrySink, Header, DEFAULT_MTIME};
use crate::Reference;

use super::{copy_entry, write_bytes, write_prefix_dirs, BuildError, Images};

/// Entries that `docker export` used to add and that never belong in an image.
const EXCLUDED: [&str; 6] = [
    ".dockerenv",
    "Dockerfile",
    "dev/console",
    "dev/pts",
    "dev/shm",
    "etc/hostname",
];

/// The fixed `/etc/hosts` every image gets.
pub(super) const HOSTS: &str = "127.0.0.1       localhost\n::1     localhost ip6-localhost ip6-loopback\nfe00::0 ip6-localnet\nff00::0 ip6-mcastprefix\nff02::1 ip6-allnodes\nff02::2 ip6-allrouters\n";

/// The `/etc/resolv.conf` containers get.
pub(super) const RESOLV_CONF: &str = "\n# no resolv.conf configured\n";

/// Where the root filesystem's `/etc/resolv.conf` points, so that it stays writable.
const RESOLV_SYMLINK: &str = "/run/resolvconf/resolv.conf";

/// How `/etc/resolv.conf` is provided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Resolv {
    /// A placeholder file (containers).
    File,
    /// A symlink into `/run` (init images and volumes).
    Symlink,
}

/// The entries appended after every image tree, in LinuxKit's (sorted) order.
#[derive(Clone, Copy)]
enum Touch {
    Dir(&'static str),
    Hosts,
    Mtab,
    ResolvConf,
}

impl Touch {
    /// The appended entry's path in the image.
    const fn name(self) -> &'static str {
        match self {
            Touch::Dir(name) => name,
            Touch::Hosts => "etc/hosts",
            Touch::Mtab => "etc/mtab",
            Touch::ResolvConf => "etc/resolv.conf",
        }
    }
}

const TOUCHES: [Touch; 9] = [
    Touch::Dir("dev"),
    Touch::Dir("dev/pts"),
    Touch::Dir("dev/shm"),
    Touch::Dir("etc"),
    Touch::Hosts,
    Touch::Mtab,
    Touch::ResolvConf,
    Touch::Dir("proc"),
    Touch::Dir("sys"),
];

/// Why LinuxKit's adjustments cannot be applied to an image: they would produce entries that an
/// extractor writes through a symlink, or cannot create.
#[derive(Debug, thiserror::Error)]
pub enum ImageTreeError {
    /// A directory that every image gets (with entries of its own) is something else in this one.
    #[error("{entry:?} is not a directory in the image, but every image gets it as a directory, with entries of its own; extracting them would go through the image's {entry:?}")]
    NotADirectory {
        /// The image's entry.
        entry: String,
    },
    /// An entry lies below a file that is replaced in every image.
    #[error("entry {entry:?} lies below {replaced:?}, which every image gets as a file")]
    BelowReplaced {
        /// The image's entry.
        entry: String,
        /// The replaced file.
        replaced: &'static str,
    },
    /// A hard link points to an entry that is left out of every image.
    #[error("hard link {entry:?} points to {target:?}, which is left out of every image")]
    LinkToExcluded {
        /// The hard link.
        entry: String,
        /// Its target.
        target: String,
    },
}

/// One image written below `prefix`.
pub(super) struct ImageTree<'a> {
    /// Where the image is in the spec, e.g. `init[0]`, recorded in `LINUXKIT.location`.
    pub location: &'a str,
    /// Directory prefix ending in `/`, or empty for the root.
    pub prefix: &'a str,
    /// How `/etc/resolv.conf` is provided.
    pub resolv: Resolv,
}

impl ImageTree<'_> {
    /// Writes the prefix directories and, when `image` is given, its adjusted filesystem.
    pub fn write(
        &self,
        image: Option<&Reference>,
        images: &dyn Images,
        sink: &mut dyn EntrySink,
    ) -> Result<(), BuildError> {
        let source = image.map_or_else(|| "empty".to_string(), Reference::to_string);
        write_prefix_dirs(sink, self.prefix, &source, self.location)?;
        let Some(image) = image else { return Ok(()) };

        let mut has_mtab = false;
        images.walk(image, &mut |entry, data| {
            let mut header = entry.clone();
            header.set_origin(&source, self.location);
            let name = header.name.clone();
            if EXCLUDED.contains(&name.as_str()) {
                return Ok(());
            }
            check_adjustable(entry).map_err(|problem| BuildError::ImageTree {
                image: source.clone(),
                source: Box::new(problem),
            })?;
            header.name = format!("{}{name}", self.prefix);
            match name.as_str() {
                "etc/hosts" => self.write_replacement(sink, header, Touch::Hosts)?,
                "etc/resolv.conf" => self.write_replacement(sink, header, Touch::ResolvConf)?,
                _ => {
                    if name == "etc/mtab" {
                        has_mtab = true;
                        header.mtime = DEFAULT_MTIME;
                    }
                    if header.kind == EntryKind::HardLink {
                        header.link_name = format!("{}{}", self.prefix, header.link_name);
                    }
                    copy_entry(sink, &header, data)?;
                }
            }
            Ok(())
        })?;

        for touch in TOUCHES {
            if matches!(touch, Touch::Mtab) && has_mtab {
                continue;
            }
            let header = match touch {
                Touch::Dir(name) => Header::new(name, EntryKind::Directory, 0o755),
                Touch::Hosts | Touch::ResolvConf => Header::new(touch.name(), EntryKind::Regular, 0o644),
                Touch::Mtab => {
                    let mut h = Header::new(touch.name(), EntryKind::Symlink, 0o755);
                    h.link_name = "/proc/mounts".into();
                    h
                }
            };
            let mut header = header.with_origin(&source, self.location);
            header.name = format!("{}{}", self.prefix, header.name);
            match touch {
                Touch::Hosts | Touch::ResolvConf => self.write_replacement(sink, header, touch)?,
                _ => sink.write_header(&header)?,
            }
        }
        Ok(())
    }

    /// Writes `/etc/hosts` or `/etc/resolv.conf` in place of whatever the image had, keeping the
    /// image's owner and mode as LinuxKit does.
    fn write_replacement(&self, sink: &mut dyn EntrySink, mut header: Header, which: Touch) -> Result<(), BuildError> {
        header.mtime = DEFAULT_MTIME;
        if matches!(which, Touch::ResolvConf) && self.resolv == Resolv::Symlink {
            header.kind = EntryKind::Symlink;
            header.size = 0;
            header.link_name = RESOLV_SYMLINK.into();
            sink.write_header(&header)?;
            return Ok(());
        }
        let contents = if matches!(which, Touch::Hosts) {
            HOSTS
        } else {
            RESOLV_CONF
        };
        header.kind = EntryKind::Regular;
        header.link_name.clear();
        header.size = contents.len() as u64;
        write_bytes(sink, &header, contents.as_bytes())?;
        Ok(())
    }
}

/// Refuses what the adjustments would break: a non-directory where the appended directories go, an
/// entry below a replaced file, a hard link to a left-out entry.
fn check_adjustable(entry: &Header) -> Result<(), ImageTreeError> {
    let name = entry.name.as_str();
    if entry.kind != EntryKind::Directory && TOUCHES.iter().any(|t| matches!(t, Touch::Dir(dir) if *dir == name)) {
        return Err(ImageTreeError::NotADirectory {
            entry: name.to_string(),
        });
    }
    let below = |dir: &str| name.strip_prefix(dir).is_some_and(|rest| rest.starts_with('/'));
    // Both are written as files (or resolv.conf as a symlink) whatever they are in the image.
    let replaced = [Touch::Hosts.name(), Touch::ResolvConf.name()];
    if let Some(replaced) = replaced.into_iter().find(|replaced| below(replaced)) {
        return Err(ImageTreeError::BelowReplaced {
            entry: name.to_string(),
            replaced,
        });
    }
    if entry.kind == EntryKind::HardLink && EXCLUDED.contains(&entry.link_name.as_str()) {
        return Err(ImageTreeError::LinkToExcluded {
            entry: name.to_string(),
            target: entry.link_name.clone(),
        });
    }
    Ok(())
}
