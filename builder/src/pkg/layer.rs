//! The staged root filesystem as one reproducible layer: a tar with entries in path order (a
//! directory before its contents), LinuxKit's fixed mtime, uid/gid 0 unless declared, hard links
//! kept, compressed with deterministic gzip.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::image::LayerFile;
use crate::output::{PgzipOptions, PgzipWriter};
use crate::tar::{EntryKind, EntrySink, Header, TarWriter};

/// gzip level of package layers: they are built once and pulled many times.
const LAYER_LEVEL: u32 = 6;

/// A written layer: the compressed file and the digest of the uncompressed tar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// The compressed layer (path, digest, size).
    pub file: LayerFile,
    /// `sha256:` of the uncompressed tar (the config's `diff_ids` entry).
    pub diff_id: String,
    /// Size of the uncompressed tar.
    pub tar_size: u64,
}

/// A writer that hashes what passes through it.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<W> Hashing<W> {
    fn new(inner: W) -> Hashing<W> {
        Hashing {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    fn finish(self) -> (W, String, u64) {
        (
            self.inner,
            format!("sha256:{}", hex::encode(self.hasher.finalize())),
            self.count,
        )
    }
}

/// Walks `root` and writes its entries (parents first, names in byte order).
struct Walker<'a, S: EntrySink> {
    sink: &'a mut S,
    owners: &'a BTreeMap<String, (u64, u64)>,
    /// (dev, inode) of files with several links, to their first path.
    links: HashMap<(u64, u64), String>,
}

impl<S: EntrySink> Walker<'_, S> {
    fn header(&self, name: &str, relative: &str, kind: EntryKind, meta: &fs::Metadata) -> Header {
        let mut h = Header::new(name, kind, meta.mode() & 0o7777);
        if let Some((uid, gid)) = self.owners.get(relative) {
            h.uid = *uid;
            h.gid = *gid;
        }
        h
    }

    fn walk(&mut self, dir: &Path, prefix: &str) -> io::Result<()> {
        let mut names: Vec<_> = fs::read_dir(dir)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()?;
        names.sort();
        for name in names {
            let name = name.to_str().map(str::to_string).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: file names in an image must be UTF-8", dir.join(&name).display()),
                )
            })?;
            let relative = format!("{prefix}{name}");
            let path = dir.join(&name);
            let meta = fs::symlink_metadata(&path)?;
            let kind = meta.file_type();
            if kind.is_dir() {
                let h = self.header(&format!("{relative}/"), &relative, EntryKind::Directory, &meta);
                self.sink.write_header(&h)?;
                self.walk(&path, &format!("{relative}/"))?;
            } else if kind.is_symlink() {
                let mut h = self.header(&relative, &relative, EntryKind::Symlink, &meta);
                h.mode = 0o777;
                h.link_name = fs::read_link(&path)?.to_string_lossy().into_owned();
                self.sink.write_header(&h)?;
            } else if kind.is_file() {
                let key = (meta.dev(), meta.ino());
                if meta.nlink() > 1 {
                    if let Some(first) = self.links.get(&key) {
                        let mut h = self.header(&relative, &relative, EntryKind::HardLink, &meta);
                        h.link_name = first.clone();
                        self.sink.write_header(&h)?;
                        continue;
                    }
                    self.links.insert(key, relative.clone());
                }
                let mut h = self.header(&relative, &relative, EntryKind::Regular, &meta);
                h.size = meta.len();
                self.sink.write_header(&h)?;
                crate::tar::copy_data(self.sink, meta.len(), &mut fs::File::open(&path)?)?;
            } else if kind.is_fifo() {
                self.sink
                    .write_header(&self.header(&relative, &relative, EntryKind::Fifo, &meta))?;
            } else if kind.is_char_device() || kind.is_block_device() {
                let kind = if kind.is_char_device() {
                    EntryKind::Char
                } else {
                    EntryKind::Block
                };
                let mut h = self.header(&relative, &relative, kind, &meta);
                let rdev = meta.rdev();
                h.dev_major = ((rdev >> 32) & 0xffff_f000 | (rdev >> 8) & 0xfff) as u32;
                h.dev_minor = ((rdev >> 12) & 0xffff_ff00 | rdev & 0xff) as u32;
                self.sink.write_header(&h)?;
            }
            // Sockets are not part of an image.
        }
        Ok(())
    }
}

/// Writes the staged tree `root` as a gzip layer to `out` (a new file); `owners` maps paths
/// (without the leading `/`) to declared owners.
pub fn write_layer(root: &Path, owners: &BTreeMap<String, (u64, u64)>, out: &Path) -> io::Result<Layer> {
    let file = fs::File::create(out)?;
    let compressed = Hashing::new(BufWriter::new(file));
    let options = PgzipOptions {
        level: LAYER_LEVEL,
        ..PgzipOptions::default()
    };
    let gzip = PgzipWriter::new(compressed, options)?;
    let mut tar = TarWriter::new(Hashing::new(gzip));
    Walker {
        sink: &mut tar,
        owners,
        links: HashMap::new(),
    }
    .walk(root, "")?;
    tar.finish()?;
    let (gzip, diff_id, tar_size) = tar.into_inner().finish();
    let compressed = gzip.finish()?;
    let (mut file, digest, size) = compressed.finish();
    file.flush()?;
    file.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(Layer {
        file: LayerFile {
            path: PathBuf::from(out),
            digest,
            size,
        },
        diff_id,
        tar_size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tar::TarReader;
    use std::os::unix::fs::PermissionsExt;

    fn tree(dir: &Path) {
        fs::create_dir_all(dir.join("usr/bin")).unwrap();
        fs::write(dir.join("usr/bin/tool"), "elf").unwrap();
        fs::set_permissions(dir.join("usr/bin/tool"), fs::Permissions::from_mode(0o4755)).unwrap();
        fs::hard_link(dir.join("usr/bin/tool"), dir.join("usr/bin/same")).unwrap();
        std::os::unix::fs::symlink("usr/bin", dir.join("bin")).unwrap();
        fs::create_dir(dir.join("home")).unwrap();
        fs::write(dir.join("a.txt"), "a").unwrap();
    }

    fn listing(layer: &Path) -> Vec<String> {
        let gz = flate2::read::MultiGzDecoder::new(fs::File::open(layer).unwrap());
        let mut tar = TarReader::new(gz);
        let mut out = Vec::new();
        while let Some(h) = tar.next_header().unwrap() {
            out.push(format!(
                "{} {:?} {:o} {}:{} {} {}",
                h.name, h.kind, h.mode, h.uid, h.gid, h.mtime, h.link_name
            ));
        }
        out
    }

    #[test]
    fn sorted_fixed_and_reproducible() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        tree(&a);
        tree(&b);
        let owners = BTreeMap::from([("home".to_string(), (1000, 100))]);
        let la = write_layer(&a, &owners, &d.path().join("a.tar.gz")).unwrap();
        let lb = write_layer(&b, &owners, &d.path().join("b.tar.gz")).unwrap();
        assert_eq!(
            (la.file.digest.clone(), la.diff_id.clone()),
            (lb.file.digest, lb.diff_id)
        );
        assert_eq!(la.file.size, fs::metadata(d.path().join("a.tar.gz")).unwrap().len());
        let list = listing(&la.file.path);
        assert_eq!(
            list,
            [
                "a.txt Regular 644 0:0 1492533000 ",
                "bin Symlink 777 0:0 1492533000 usr/bin",
                "home/ Directory 755 1000:100 1492533000 ",
                "usr/ Directory 755 0:0 1492533000 ",
                "usr/bin/ Directory 755 0:0 1492533000 ",
                "usr/bin/same Regular 4755 0:0 1492533000 ",
                "usr/bin/tool HardLink 4755 0:0 1492533000 usr/bin/same",
            ]
        );
    }
}
