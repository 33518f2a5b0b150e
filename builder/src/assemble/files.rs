//! The `files` section: files, directories and symlinks added to the root filesystem, with their
//! missing parent directories.

use std::collections::HashSet;

use crate::oci_config::IdMap;
use crate::spec::fields::{self, FileTree};
use crate::spec::model::{File, IdRef};
use crate::spec::{HostPaths, MetadataFormat, Spec};
use crate::tar::{gopath, EntryKind, EntrySink, Header};

use super::{copy_entry, write_bytes, BuildError};

/// Why a `files` entry could not be written.
#[derive(Debug, thiserror::Error)]
#[error("files[{index}] ({path}): {problem}")]
pub struct FilesError {
    /// Index in the `files` section.
    pub index: usize,
    /// The entry's path.
    pub path: String,
    /// What is wrong.
    pub problem: String,
}

/// Writes every `files` entry, in order. The spec's validation already refused unsafe paths; they
/// are checked again here, as the last line of defence of the host.
pub(super) fn write_files(spec: &Spec, ids: &IdMap, sink: &mut dyn EntrySink) -> Result<(), BuildError> {
    let moby = &**spec;
    if !moby.files.is_empty() {
        tracing::info!("Add files:");
    }
    let mut added: HashSet<String> = HashSet::new();
    let mut tree = FileTree::default();
    for (index, file) in moby.files.iter().enumerate() {
        tracing::info!("  {}", file.path);
        let fail = |problem: String| FilesError {
            index,
            path: file.path.clone(),
            problem,
        };
        let path = fields::file_entry_name(&file.path).map_err(fail)?.to_string();
        tree.add(index, &path, file)
            .map_err(|blocked| fail(blocked.message(&file.path, &format!("files[{}]", blocked.index))))?;
        let Some(contents) = contents(spec, file).map_err(fail)? else {
            tracing::debug!(
                "skipping optional file {} whose source {} is missing",
                file.path,
                file.source
            );
            continue;
        };
        let mode = match file.mode.as_str() {
            "" if file.directory => 0o700,
            "" => 0o600,
            text => fields::parse_octal_mode(text).map_err(fail)?,
        };
        let id = |id: Option<&IdRef>, field: &str| match id {
            Some(id) => ids
                .resolve(id)
                .map(u64::from)
                .map_err(|e| fail(format!("{field}: {e}"))),
            None => Ok(0),
        };
        let uid = id(file.uid.as_ref(), "uid")?;
        let gid = id(file.gid.as_ref(), "gid")?;
        let location = format!("files[{index}]");
        let entry = |name: String, kind: EntryKind, mode: u32| {
            let mut h = Header::new(name, kind, mode).with_origin("linuxkit.files", &location);
            h.uid = uid;
            h.gid = gid;
            h
        };

        // LinuxKit's leading directories: the elements of `path.Dir`, without `.`.
        let mut dir = String::new();
        for element in gopath::dir(&path).split('/').filter(|e| *e != ".") {
            if !dir.is_empty() {
                dir.push('/');
            }
            dir.push_str(element);
            if added.insert(dir.clone()) {
                sink.write_header(&entry(dir.clone(), EntryKind::Directory, parent_dir_mode(mode)))?;
            }
        }
        added.insert(path.clone());

        match contents {
            Contents::Directory => sink.write_header(&entry(path, EntryKind::Directory, mode))?,
            Contents::Symlink(target) => {
                let mut h = entry(path, EntryKind::Symlink, mode);
                h.link_name = target;
                sink.write_header(&h)?;
            }
            Contents::Data(data) => {
                let mut h = entry(path, EntryKind::Regular, mode);
                h.size = data.len() as u64;
                write_bytes(sink, &h, &data)?;
            }
            Contents::Host { mut file, size } => {
                let mut h = entry(path, EntryKind::Regular, mode);
                h.size = size;
                copy_entry(sink, &h, &mut file)?;
            }
        }
    }
    Ok(())
}

/// The digest of the host file each entry copies, for the entries whose contents come from their
/// `source` (`None` for the others, and for an optional source that does not exist): the files
/// as a build would read them now.
pub(crate) fn source_digests(spec: &Spec) -> Result<Vec<Option<String>>, FilesError> {
    let mut digests = Vec::with_capacity(spec.files.len());
    for (index, file) in spec.files.iter().enumerate() {
        let fail = |problem: String| FilesError {
            index,
            path: file.path.clone(),
            problem,
        };
        let digest = match contents(spec, file).map_err(fail)? {
            Some(Contents::Host { file: host, .. }) => Some(crate::image::sha256_read(host).map_err(|err| {
                let source = spec.paths().source_path(&file.source);
                fail(format!("cannot read source {}: {err}", source.display()))
            })?),
            _ => None,
        };
        digests.push(digest);
    }
    Ok(digests)
}

/// What a `files` entry creates.
enum Contents {
    Directory,
    Symlink(String),
    Data(Vec<u8>),
    /// A `source` file, streamed (it may be large) with the size it had when opened.
    Host {
        file: std::fs::File,
        size: u64,
    },
}

/// Resolves an entry's contents; `None` for an optional source that does not exist.
fn contents(spec: &Spec, file: &File) -> Result<Option<Contents>, String> {
    if file.directory {
        return Ok(Some(Contents::Directory));
    }
    if !file.symlink.is_empty() {
        return Ok(Some(Contents::Symlink(file.symlink.clone())));
    }
    if let Some(text) = &file.contents {
        return Ok(Some(Contents::Data(text.as_bytes().to_vec())));
    }
    if !file.source.is_empty() {
        return Ok(open_source(spec.paths(), file)?.map(|(file, size)| Contents::Host { file, size }));
    }
    match file.metadata.as_str() {
        "yaml" => Ok(Some(Contents::Data(spec.metadata(MetadataFormat::Yaml)))),
        "json" => Ok(Some(Contents::Data(spec.metadata(MetadataFormat::Json)))),
        "" => Err("no contents: set one of contents, source, metadata, directory or symlink".into()),
        other => Err(format!("unknown metadata format {other:?}: use \"yaml\" or \"json\"")),
    }
}

/// Opens the host file of an entry's `source` (under `paths`), with the size it has now; `None`
/// for an optional source that does not exist. The error says why the file cannot be used.
fn open_source(paths: &HostPaths, file: &File) -> Result<Option<(std::fs::File, u64)>, String> {
    let source = paths.source_path(&file.source);
    let opened = match std::fs::File::open(&source) {
        Ok(opened) => opened,
        Err(_) if file.optional && !source.exists() => return Ok(None),
        Err(err) => return Err(format!("cannot read source {}: {err}", source.display())),
    };
    let meta = opened
        .metadata()
        .map_err(|err| format!("cannot read source {}: {err}", source.display()))?;
    // A device or FIFO (`/dev/zero`) has no size to announce and may never end.
    if !meta.is_file() {
        return Err(format!("source {} is not a regular file", source.display()));
    }
    Ok(Some((opened, meta.len())))
}

/// A parent directory's mode: the entry's mode with `x` added to every user/group/other triple that
/// has any bit set (0640 becomes 0750), other bits kept.
fn parent_dir_mode(mode: u32) -> u32 {
    let mut dir = mode;
    for triple in [0o700, 0o070, 0o007] {
        if mode & triple != 0 {
            dir |= triple & 0o111;
        }
    }
    dir
}

#[cfg(test)]
mod tests {
    use super::parent_dir_mode;

    #[test]
    fn parent_directories_become_searchable() {
        assert_eq!(parent_dir_mode(0o640), 0o750);
        assert_eq!(parent_dir_mode(0o600), 0o700);
        assert_eq!(parent_dir_mode(0o604), 0o705);
        assert_eq!(parent_dir_mode(0o4755), 0o4755);
        assert_eq!(parent_dir_mode(0), 0);
    }
}
