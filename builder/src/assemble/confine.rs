//! The check across the whole entry stream: whatever part of the spec an entry comes from (the
//! kernel image's `kernel.tar`, several init images sharing the root, volumes, `files`), it is a
//! relative path without `..`, and it is not written below a symbolic link written before it, so
//! that extracting the output never writes (or hard-links) through a link. Each image is checked on
//! its own while it is flattened and `files` when the spec is loaded; this catches what one part
//! does to another.

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
    /// Symbolic links written so far, by cleaned name, with their origin.
    symlinks: HashMap<String, String>,
}

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

    /// Why `name` (cleaned) may not be written: one of its ancestors is a symlink written before.
    fn below_symlink(&self, name: &str) -> Option<String> {
        gopath::ancestors(name).find_map(|dir| {
            self.symlinks.get(dir).map(|from| {
                format!(
                    "lies below {dir:?}, a symbolic link written before it ({from}): extracting the \
                     image would write wherever that link points"
                )
            })
        })
    }
}

impl EntrySink for Confined<'_> {
    fn write_header(&mut self, header: &Header) -> io::Result<()> {
        self.check(header).map_err(io::Error::other)?;
        if header.kind == EntryKind::Symlink {
            self.symlinks.insert(gopath::clean(&header.name), origin(header));
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
             (from evil/init, init[0]): extracting the image would write wherever that link points"
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
            entry("bin/", EntryKind::Directory, "", "b"),
            entry("bin/sh", EntryKind::Symlink, "busybox", "b"),
            entry("libx", EntryKind::HardLink, "usr/lib/x", "b"),
        ];
        let names: Vec<String> = entries.iter().map(|h| h.name.clone()).collect();
        assert_eq!(written(&entries).unwrap(), names);
    }
}
