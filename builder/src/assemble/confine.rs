//! The check across the whole entry stream: whatever part of the spec an entry comes from (the
//! kernel image's `kernel.tar`, several init images sharing the root, volumes, `files`), it is a
//! relative path without `..`, and its directory, with the symbolic links written before it
//! followed, stays inside the root, so that extracting the output never writes (or hard-links)
//! outside it. A link to an absolute path counts as leaving the root: an extractor on a host
//! follows it there. Links that stay inside (a merged-usr `lib -> usr/lib`) are fine. Each image is
//! checked on its own while it is flattened and `files` when the spec is loaded; this catches what
//! one part does to another.

use std::collections::HashMap;
use std::io;

use crate::tar::{gopath, EntryKind, EntrySink, Header, PAX_LOCATION, PAX_SOURCE};

/// An entry that extracting the output would write outside the image root or through a link.
#[derive(Debug, thiserror::Error)]
#[error("entry {entry:?} ({origin}) {reason}")]
pub struct EscapeError {
    /// The entry's name.
    pub entry: String,
    /// Where it comes from: the image (or `linuxkit.files`) and the place in the spec.
    pub origin: String,
    /// What is wrong with it.
    pub reason: String,
}

/// An [`EntrySink`] that refuses escaping entries before passing the rest on.
pub(crate) struct Confined<'a> {
    sink: &'a mut dyn EntrySink,
    /// Symbolic links written so far, by cleaned name: their target and their origin.
    symlinks: HashMap<String, Link>,
}

/// A symbolic link written to the stream.
struct Link {
    target: String,
    origin: String,
}

/// Links followed at most while resolving one path, as Linux's `MAXSYMLINKS`.
const MAX_LINKS_FOLLOWED: usize = 40;

impl<'a> Confined<'a> {
    pub(crate) fn new(sink: &'a mut dyn EntrySink) -> Confined<'a> {
        Confined {
            sink,
            symlinks: HashMap::new(),
        }
    }

    fn check(&self, header: &Header) -> Result<(), EscapeError> {
        let refuse = |reason: String| EscapeError {
            entry: header.name.clone(),
            origin: origin(header),
            reason,
        };
        let name = inside_root(&header.name).map_err(&refuse)?;
        if let Some(message) = self.below_symlink(&name) {
            return Err(refuse(message));
        }
        if header.kind == EntryKind::HardLink {
            let target =
                inside_root(&header.link_name).map_err(|why| refuse(format!("is a hard link whose target {why}")))?;
            if let Some(message) = self.below_symlink(&target) {
                return Err(refuse(format!(
                    "is a hard link to {:?}, which {message}",
                    header.link_name
                )));
            }
        }
        Ok(())
    }

    /// Why `name` (cleaned) may not be written: its directory, with the links written so far
    /// followed, leaves the root or loops.
    fn below_symlink(&self, name: &str) -> Option<String> {
        let link = self.leaving_link(gopath::parent(name))?;
        let from = &self.symlinks.get(&link).map_or("", |l| l.origin.as_str());
        Some(format!(
            "lies below {link:?}, a symbolic link written before it ({from}) that leads outside the \
             image root: extracting the image would write there"
        ))
    }

    /// The link through which `dir` (cleaned, relative) leaves the root when the links written so
    /// far are followed: to an absolute path, above the root, or round in a loop. `None` when `dir`
    /// stays inside.
    fn leaving_link(&self, dir: &str) -> Option<String> {
        let mut pending: Vec<&str> = dir.rsplit('/').collect();
        let mut resolved: Vec<&str> = Vec::new();
        let mut followed = 0;
        let mut last_link = None;
        while let Some(element) = pending.pop() {
            match element {
                "" | "." => continue,
                ".." => {
                    if resolved.pop().is_none() {
                        return last_link;
                    }
                    continue;
                }
                _ => resolved.push(element),
            }
            let path = resolved.join("/");
            let Some(link) = self.symlinks.get(&path) else {
                continue;
            };
            followed += 1;
            if link.target.starts_with('/') || followed > MAX_LINKS_FOLLOWED {
                return Some(path);
            }
            last_link = Some(path);
            resolved.pop();
            pending.extend(link.target.rsplit('/'));
        }
        None
    }
}

impl EntrySink for Confined<'_> {
    fn write_header(&mut self, header: &Header) -> io::Result<()> {
        self.check(header).map_err(io::Error::other)?;
        if header.kind == EntryKind::Symlink {
            let link = Link {
                target: header.link_name.clone(),
                origin: origin(header),
            };
            self.symlinks.insert(gopath::clean(&header.name), link);
        }
        self.sink.write_header(header)
    }

    fn write_data(&mut self, data: &[u8]) -> io::Result<()> {
        self.sink.write_data(data)
    }

    fn finish(&mut self) -> io::Result<()> {
        self.sink.finish()
    }
}

/// `path` cleaned, if it stays inside the root: relative, and without a `..` element (which an
/// extractor resolves through whatever the element before it is).
fn inside_root(path: &str) -> Result<String, String> {
    if path.starts_with('/') {
        return Err(format!("{path:?} is absolute"));
    }
    if path.split('/').any(|element| element == "..") {
        return Err(format!("{path:?} has a '..' element"));
    }
    Ok(gopath::clean(path))
}

/// `IMAGE, LOCATION` from the entry's LinuxKit PAX records.
fn origin(header: &Header) -> String {
    let record = |key| header.pax.get(key).map(String::as_str).unwrap_or("?");
    format!("from {}, {}", record(PAX_SOURCE), record(PAX_LOCATION))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::testing::RecordingSink;

    fn entry(name: &str, kind: EntryKind, link: &str, source: &str) -> Header {
        let mut header = Header::new(name.to_string(), kind, 0o755).with_origin(source, "init[0]");
        header.link_name = link.to_string();
        header
    }

    fn written(entries: &[Header]) -> Result<Vec<String>, String> {
        let mut recording = RecordingSink::default();
        let mut confined = Confined::new(&mut recording);
        for header in entries {
            confined.write_header(header).map_err(|e| e.to_string())?;
        }
        Ok(recording.entries().into_iter().map(|(header, _)| header.name).collect())
    }

    #[test]
    fn entries_below_a_symlink_of_another_part_are_refused() {
        let err = written(&[
            entry("etc", EntryKind::Symlink, "/etc", "evil/init"),
            entry("etc/passwd", EntryKind::Regular, "", "good/init"),
        ])
        .unwrap_err();
        assert_eq!(
            err,
            "entry \"etc/passwd\" (from good/init, init[0]) lies below \"etc\", a symbolic link written before it \
             (from evil/init, init[0]) that leads outside the image root: extracting the image would write there"
        );
        // A link deeper down, reached through a directory and a name that is not clean.
        let err = written(&[
            entry("usr/", EntryKind::Directory, "", "a"),
            entry("usr/lib", EntryKind::Symlink, "../../host", "a"),
            entry("./usr//lib/x", EntryKind::Regular, "", "b"),
        ])
        .unwrap_err();
        assert!(err.contains("lies below \"usr/lib\""), "{err}");
    }

    #[test]
    fn links_are_followed_through_chains_and_loops() {
        // `a` leads to `b`, which leads to the host's root.
        let err = written(&[
            entry("b", EntryKind::Symlink, "/", "a"),
            entry("a", EntryKind::Symlink, "b", "a"),
            entry("a/etc/passwd", EntryKind::Regular, "", "b"),
        ])
        .unwrap_err();
        assert!(err.contains("lies below \"b\""), "{err}");
        // Relative links that climb above the root through another link.
        let err = written(&[
            entry("x/", EntryKind::Directory, "", "a"),
            entry("x/up", EntryKind::Symlink, "../..", "a"),
            entry("x/up/etc/passwd", EntryKind::Regular, "", "b"),
        ])
        .unwrap_err();
        assert!(err.contains("lies below \"x/up\""), "{err}");
        let err = written(&[
            entry("p", EntryKind::Symlink, "q", "a"),
            entry("q", EntryKind::Symlink, "p", "a"),
            entry("p/x", EntryKind::Regular, "", "b"),
        ])
        .unwrap_err();
        assert!(err.contains("that leads outside the image root"), "{err}");
    }

    #[test]
    fn hard_links_through_a_symlink_are_refused() {
        let err = written(&[
            entry("host", EntryKind::Symlink, "/", "a"),
            entry("shadow", EntryKind::HardLink, "host/etc/shadow", "b"),
        ])
        .unwrap_err();
        assert!(
            err.contains("is a hard link to \"host/etc/shadow\", which lies below \"host\""),
            "{err}"
        );
        let err = written(&[entry("x", EntryKind::HardLink, "../x", "b")]).unwrap_err();
        assert!(
            err.contains("hard link whose target \"../x\" has a '..' element"),
            "{err}"
        );
    }

    #[test]
    fn names_outside_the_root_are_refused() {
        for name in ["/etc/passwd", "../x", "a/../../x", "a/.."] {
            let err = written(&[entry(name, EntryKind::Regular, "", "k")]).unwrap_err();
            assert!(
                err.starts_with(&format!("entry {name:?} (from k, init[0]) {name:?} ")),
                "{err}"
            );
        }
    }

    #[test]
    fn everything_else_passes_in_order() {
        let entries = [
            entry("lib", EntryKind::Symlink, "usr/lib", "a"),
            entry("lib", EntryKind::Symlink, "usr/lib64", "b"),
            entry("usr/lib/x", EntryKind::Regular, "", "b"),
            // A merged-usr link of one image and the firmware of another, below it.
            entry("lib/firmware/fw.bin", EntryKind::Regular, "", "c"),
            entry("usr/share", EntryKind::Symlink, "../lib/./share", "c"),
            entry("usr/share/doc", EntryKind::Regular, "", "c"),
            entry("bin/", EntryKind::Directory, "", "b"),
            entry("bin/sh", EntryKind::Symlink, "busybox", "b"),
            entry("libx", EntryKind::HardLink, "usr/lib/x", "b"),
        ];
        let names: Vec<String> = entries.iter().map(|h| h.name.clone()).collect();
        assert_eq!(written(&entries).unwrap(), names);
    }
}
