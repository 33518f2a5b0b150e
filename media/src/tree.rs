//! The file tree that the filesystem writers ([`crate::iso`], [`crate::squashfs`]) write:
//! directories, regular files, symlinks, device nodes, fifos and hard links, with their owners,
//! modes and times. File contents are [`Content`]s, read only when an image is written: only the
//! tree and its metadata are held in memory.
//!
//! Paths are relative (a leading `/` or `./` is dropped), `..` is refused, names have 1 to 255
//! bytes and no NUL. Missing parent directories are created with mode 0755, owned by root, at the
//! tree's time; [`Tree::dir`] on such a directory later sets its metadata. Every other path can
//! be added once.

use std::collections::BTreeMap;

use crate::content::Content;

/// Owner, permissions and modification time of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metadata {
    /// Permission bits (`0o7777`: setuid, setgid, sticky, rwx); the file type comes from the entry.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time, seconds since the Unix epoch (also written as access and change time).
    pub mtime: i64,
}

impl Metadata {
    /// `mode`, owned by root, modified at `mtime`.
    pub fn new(mode: u32, mtime: i64) -> Metadata {
        Metadata {
            mode,
            uid: 0,
            gid: 0,
            mtime,
        }
    }
}

/// A device node's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    /// A character device.
    Char,
    /// A block device.
    Block,
}

/// Why an entry could not be added to a [`Tree`].
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// A path given for the tree is not a plain relative path.
    #[error("bad path {path:?} for the file tree: {reason}")]
    BadPath {
        /// The path as given.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Two entries were given the same path.
    #[error("{0:?} is already in the file tree: each path can be added once")]
    Exists(String),
    /// A path goes through something that is not a directory.
    #[error("{path:?} cannot be added to the file tree: {parent:?} is not a directory")]
    NotADirectory {
        /// The path being added.
        path: String,
        /// Its ancestor that is a file, symlink or device.
        parent: String,
    },
    /// A hard link's target is missing or a directory.
    #[error("hard link {path:?}: its target {target:?} {reason}; add the target before its links")]
    BadLinkTarget {
        /// The link being added.
        path: String,
        /// The target as given.
        target: String,
        /// What is wrong with the target.
        reason: &'static str,
    },
}

/// What a node of the tree is.
#[derive(Debug)]
pub(crate) enum Kind<'a> {
    /// A directory: its entries by name (byte order, which is the kernel's strcmp order) and its
    /// parent directory (the root is its own parent).
    Dir {
        children: BTreeMap<String, usize>,
        parent: usize,
    },
    /// A regular file.
    File(Content<'a>),
    /// A symbolic link to this target.
    Symlink(String),
    /// A device node.
    Device { kind: DeviceKind, major: u32, minor: u32 },
    /// A named pipe.
    Fifo,
}

/// A node of the tree (an inode: hard links share one).
#[derive(Debug)]
pub(crate) struct Node<'a> {
    pub(crate) kind: Kind<'a>,
    pub(crate) meta: Metadata,
    /// Directory entries that point at this node (for directories: not kept, writers count them).
    pub(crate) links: u32,
    /// The first path it was added under (for messages and layouts).
    pub(crate) path: String,
}

/// A directory tree to write as a filesystem image; node 0 is the root directory.
#[derive(Debug)]
pub struct Tree<'a> {
    time: i64,
    nodes: Vec<Node<'a>>,
}

/// Mode of directories that are created because a path needs them.
const IMPLICIT_DIR_MODE: u32 = 0o755;

impl<'a> Tree<'a> {
    /// An empty tree; `time` (seconds since the epoch) is the time of the root, of directories
    /// created implicitly, and the image's creation time.
    pub fn new(time: i64) -> Tree<'a> {
        Tree {
            time,
            nodes: vec![Node {
                kind: Kind::Dir {
                    children: BTreeMap::new(),
                    parent: 0,
                },
                meta: Metadata::new(IMPLICIT_DIR_MODE, time),
                links: 1,
                path: String::new(),
            }],
        }
    }

    /// Sets the root directory's mode, owner and time.
    pub fn set_root(&mut self, meta: Metadata) {
        self.nodes[0].meta = meta;
    }

    /// Adds a directory (or sets the metadata of one that a longer path created already).
    pub fn dir(&mut self, path: &str, meta: Metadata) -> Result<(), TreeError> {
        let (parent, name, clean) = self.parent_of(path)?;
        if let Some(existing) = self.child(parent, &name) {
            if matches!(self.nodes[existing].kind, Kind::Dir { .. }) {
                self.nodes[existing].meta = meta;
                return Ok(());
            }
            return Err(TreeError::Exists(clean));
        }
        let kind = Kind::Dir {
            children: BTreeMap::new(),
            parent,
        };
        self.insert(parent, name, clean, kind, meta);
        Ok(())
    }

    /// Adds a regular file whose bytes are `content` (read when the image is written).
    pub fn file(&mut self, path: &str, content: Content<'a>, meta: Metadata) -> Result<(), TreeError> {
        self.add(path, Kind::File(content), meta)
    }

    /// Adds a symbolic link to `target`.
    pub fn symlink(&mut self, path: &str, target: &str, meta: Metadata) -> Result<(), TreeError> {
        if target.is_empty() || target.len() > 4095 || target.contains('\0') {
            return Err(TreeError::BadPath {
                path: path.to_string(),
                reason: "a symlink target must have 1 to 4095 bytes and no NUL",
            });
        }
        self.add(path, Kind::Symlink(target.to_string()), meta)
    }

    /// Adds a device node.
    pub fn device(
        &mut self,
        path: &str,
        kind: DeviceKind,
        major: u32,
        minor: u32,
        meta: Metadata,
    ) -> Result<(), TreeError> {
        self.add(path, Kind::Device { kind, major, minor }, meta)
    }

    /// Adds a named pipe.
    pub fn fifo(&mut self, path: &str, meta: Metadata) -> Result<(), TreeError> {
        self.add(path, Kind::Fifo, meta)
    }

    /// Adds `path` as another name of the entry already at `target`, which may be anything but a
    /// directory (a hard link: one inode, its link count counts every name). Writers may accept
    /// fewer kinds of targets (ISO 9660: regular files only).
    pub fn hard_link(&mut self, path: &str, target: &str) -> Result<(), TreeError> {
        let bad = |reason| TreeError::BadLinkTarget {
            path: path.to_string(),
            target: target.to_string(),
            reason,
        };
        let node = self.lookup(target).ok_or_else(|| bad("is not in the tree"))?;
        if matches!(self.nodes[node].kind, Kind::Dir { .. }) {
            return Err(bad("is a directory"));
        }
        let (parent, name, clean) = self.parent_of(path)?;
        if self.child(parent, &name).is_some() {
            return Err(TreeError::Exists(clean));
        }
        self.link(parent, name, node);
        self.nodes[node].links += 1;
        Ok(())
    }

    /// The time given to [`Tree::new`].
    pub(crate) fn time(&self) -> i64 {
        self.time
    }

    /// The nodes; node 0 is the root.
    pub(crate) fn nodes(&self) -> &[Node<'a>] {
        &self.nodes
    }

    /// The entries of `node` by name if it is a directory.
    pub(crate) fn children(&self, node: usize) -> Option<&BTreeMap<String, usize>> {
        match &self.nodes[node].kind {
            Kind::Dir { children, .. } => Some(children),
            _ => None,
        }
    }

    /// The node at `path`.
    pub(crate) fn lookup(&self, path: &str) -> Option<usize> {
        components(path)
            .ok()?
            .iter()
            .try_fold(0, |node, name| self.child(node, name))
    }

    /// Where an entry at `path` would go without changing the tree: its existing directory and
    /// its name. Fails when the path is bad or taken, or its directory is not in the tree.
    pub(crate) fn free_path(&self, path: &str) -> Result<(usize, String), TreeError> {
        let components = components(path)?;
        let bad = |reason| TreeError::BadPath {
            path: path.to_string(),
            reason,
        };
        let (last, ancestors) = components
            .split_last()
            .ok_or_else(|| bad("it names the root directory"))?;
        let mut dir = 0;
        for (depth, name) in ancestors.iter().enumerate() {
            dir = match self.child(dir, name) {
                Some(next) if matches!(self.nodes[next].kind, Kind::Dir { .. }) => next,
                Some(_) => {
                    return Err(TreeError::NotADirectory {
                        path: components.join("/"),
                        parent: ancestors[..=depth].join("/"),
                    })
                }
                None => return Err(bad("its directory is not in the tree: add it first")),
            };
        }
        if self.child(dir, last).is_some() {
            return Err(TreeError::Exists(components.join("/")));
        }
        Ok((dir, last.to_string()))
    }

    fn add(&mut self, path: &str, kind: Kind<'a>, meta: Metadata) -> Result<(), TreeError> {
        let (parent, name, clean) = self.parent_of(path)?;
        if self.child(parent, &name).is_some() {
            return Err(TreeError::Exists(clean));
        }
        self.insert(parent, name, clean, kind, meta);
        Ok(())
    }

    fn insert(&mut self, parent: usize, name: String, path: String, kind: Kind<'a>, meta: Metadata) -> usize {
        let id = self.nodes.len();
        self.nodes.push(Node {
            kind,
            meta,
            links: 1,
            path,
        });
        self.link(parent, name, id);
        id
    }

    fn link(&mut self, parent: usize, name: String, node: usize) {
        if let Kind::Dir { children, .. } = &mut self.nodes[parent].kind {
            children.insert(name, node);
        }
    }

    fn child(&self, dir: usize, name: &str) -> Option<usize> {
        self.children(dir).and_then(|children| children.get(name).copied())
    }

    /// The directory that `path` goes into (created with its ancestors as needed), the last
    /// component, and the cleaned path.
    fn parent_of(&mut self, path: &str) -> Result<(usize, String, String), TreeError> {
        let components = components(path)?;
        let Some((last, ancestors)) = components.split_last() else {
            return Err(TreeError::BadPath {
                path: path.to_string(),
                reason: "it names the root directory (use set_root for its metadata)",
            });
        };
        let mut dir = 0;
        for (depth, name) in ancestors.iter().enumerate() {
            let so_far = ancestors[..=depth].join("/");
            dir = match self.child(dir, name) {
                Some(next) if matches!(self.nodes[next].kind, Kind::Dir { .. }) => next,
                Some(_) => {
                    return Err(TreeError::NotADirectory {
                        path: components.join("/"),
                        parent: so_far,
                    })
                }
                None => {
                    let kind = Kind::Dir {
                        children: BTreeMap::new(),
                        parent: dir,
                    };
                    let meta = Metadata::new(IMPLICIT_DIR_MODE, self.time);
                    self.insert(dir, name.to_string(), so_far, kind, meta)
                }
            };
        }
        Ok((dir, last.to_string(), components.join("/")))
    }
}

/// The components of a relative path (a leading `/` or `./` is allowed and dropped).
fn components(path: &str) -> Result<Vec<&str>, TreeError> {
    let bad = |reason| TreeError::BadPath {
        path: path.to_string(),
        reason,
    };
    let mut out = Vec::new();
    for name in path.split('/') {
        match name {
            "" | "." => continue,
            ".." => return Err(bad("\"..\" is not allowed")),
            _ if name.len() > 255 => return Err(bad("a name has more than 255 bytes")),
            _ if name.contains('\0') => return Err(bad("a name contains NUL")),
            _ => out.push(name),
        }
    }
    Ok(out)
}
