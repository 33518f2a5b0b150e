//! Byte-for-byte checks of [`TarWriter`] against the LinuxKit conformance corpus: every valid case's
//! tar is rebuilt purely from its `listing.tsv` plus file contents found in the corpus (saved files,
//! the image layers in the cache, tars nested in them, LinuxKit's fixed templates), and its sha256 must
//! equal LinuxKit's. Reading the cache's layers also exercises [`TarReader`] and `open_layer`.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{EntryKind, EntrySink, Header, TarReader, TarWriter, PAX_LOCATION, PAX_SOURCE};

/// The conformance corpus: `MOBY_CONFORMANCE`, else the first `shared/conformance` above the crate.
pub(crate) fn corpus_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("MOBY_CONFORMANCE") {
        return Some(PathBuf::from(dir));
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|dir| dir.join("shared/conformance"))
        .find(|dir| dir.join("expected").is_dir())
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// LinuxKit's `etc/hosts` template (moby/build/image.go).
const HOSTS: &str = "127.0.0.1       localhost\n::1     localhost ip6-localhost ip6-loopback\n\
fe00::0 ip6-localnet\nff00::0 ip6-mcastprefix\nff02::1 ip6-allnodes\nff02::2 ip6-allrouters\n";
/// LinuxKit's replacement `etc/resolv.conf` for containers.
const RESOLV: &str = "\n# no resolv.conf configured\n";

/// LinuxKit's `oci-layout` file for `format: oci` volumes (cache/imagesource.go).
const OCI_LAYOUT: &str = "{\n\t\t\"imageLayoutVersion\": \"1.0.0\"\n\t}";
/// The `index.json` LinuxKit generates for case 022's `voldata:v1` volume (Go's `json.MarshalIndent`
/// with a 3-space indent of a one-manifest index).
const VOLDATA_INDEX: &str = r#"{
   "schemaVersion": 2,
   "mediaType": "application/vnd.oci.image.index.v1+json",
   "manifests": [
      {
         "mediaType": "application/vnd.oci.image.index.v1+json",
         "size": 645,
         "digest": "sha256:1dc9a14b8725155b001cb384f20316720a871e5732507493755e8ff4ed2a9647",
         "annotations": {
            "org.opencontainers.image.ref.name": "localhost:5000/conformance/voldata:v1"
         }
      }
   ]
}"#;

/// File contents by sha256.
#[derive(Default)]
struct Store(HashMap<String, Vec<u8>>);

impl Store {
    fn add(&mut self, data: Vec<u8>) {
        self.0.insert(sha256_hex(&data), data);
    }

    /// Adds every regular file of a tar stream (recursing into `*.tar` members); `false` if the
    /// stream is not a tar.
    fn add_tar(&mut self, stream: impl Read) -> bool {
        let mut reader = TarReader::new(stream);
        loop {
            let header = match reader.next_header() {
                Ok(Some(header)) => header,
                Ok(None) => return true,
                Err(_) => return false,
            };
            if header.kind != EntryKind::Regular {
                continue;
            }
            let mut data = Vec::new();
            if reader.read_to_end(&mut data).is_err() {
                return false;
            }
            if header.name.ends_with(".tar") {
                self.add_tar(&data[..]);
            }
            self.add(data);
        }
    }

    fn add_dir(&mut self, dir: &Path) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                self.add_dir(&path);
            } else if let Ok(data) = fs::read(&path) {
                self.add(data);
            }
        }
    }

    fn build(corpus: &Path) -> Store {
        let mut store = Store::default();
        store.add(HOSTS.as_bytes().to_vec());
        store.add(RESOLV.as_bytes().to_vec());
        store.add(OCI_LAYOUT.as_bytes().to_vec());
        store.add(VOLDATA_INDEX.as_bytes().to_vec());
        store.add_dir(&corpus.join("expected"));
        store.add_dir(&corpus.join("cases"));
        let blobs = corpus.join("cache/blobs/sha256");
        for entry in fs::read_dir(&blobs).expect("cache blobs").flatten() {
            let data = fs::read(entry.path()).expect("blob");
            if let Ok(stream) = crate::layer::open_layer("", &data[..]) {
                store.add_tar(stream);
            }
            store.add(data);
        }
        store
    }
}

/// One `listing.tsv` line.
struct Line {
    header: Header,
    sha256: String,
}

fn parse_listing(text: &str) -> Vec<Line> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            assert_eq!(f.len(), 12, "listing line {line:?}");
            let kind = match f[0] {
                "-" => EntryKind::Regular,
                "d" => EntryKind::Directory,
                "l" => EntryKind::Symlink,
                "h" => EntryKind::HardLink,
                "c" => EntryKind::Char,
                "b" => EntryKind::Block,
                "p" => EntryKind::Fifo,
                other => panic!("unknown type {other}"),
            };
            let mode = u32::from_str_radix(f[1], 8).expect("mode");
            let mut header = Header::new(f[6], kind, mode);
            header.uid = f[2].parse().expect("uid");
            header.gid = f[3].parse().expect("gid");
            header.size = f[4].parse().expect("size");
            header.mtime = f[5].parse().expect("mtime");
            header.link_name = f[7].to_string();
            header.pax.insert(PAX_SOURCE.into(), f[9].into());
            header.pax.insert(PAX_LOCATION.into(), f[10].into());
            for extra in f[11].split(';').filter(|e| !e.is_empty()) {
                let (key, value) = extra.split_once('=').expect("extra key=value");
                match key {
                    "uname" => header.uname = value.into(),
                    "gname" => header.gname = value.into(),
                    "dev" => {
                        let (major, minor) = value.split_once(',').expect("dev");
                        header.dev_major = major.parse().expect("major");
                        header.dev_minor = minor.parse().expect("minor");
                    }
                    // Records the writer must produce by itself.
                    "pax" => {}
                    other => panic!("unknown extra {other}"),
                }
            }
            Line {
                header,
                sha256: f[8].to_string(),
            }
        })
        .collect()
}

/// Adds the merged apk database LinuxKit writes after several init images: every database, each
/// followed by two newlines.
fn add_merged_apk_db(store: &mut Store, lines: &[Line]) {
    let databases: Vec<&Line> = lines
        .iter()
        .filter(|l| l.header.name == "lib/apk/db/installed" && l.header.pax[PAX_LOCATION] != "init")
        .collect();
    let mut merged = Vec::new();
    for line in databases {
        match store.0.get(&line.sha256) {
            Some(data) => merged.extend_from_slice(data),
            None => return,
        }
        merged.extend_from_slice(b"\n\n");
    }
    store.add(merged);
}

/// Counts and hashes what is written.
struct HashingWriter {
    hasher: Sha256,
    len: u64,
}

impl Write for HashingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.hasher.update(buf);
        self.len += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Rebuilds a case's tar; `Err` names the first content that the corpus does not provide.
fn rebuild(store: &Store, lines: &[Line]) -> Result<(String, u64), String> {
    let mut writer = TarWriter::new(HashingWriter {
        hasher: Sha256::new(),
        len: 0,
    });
    for line in lines {
        writer.write_header(&line.header).expect("header");
        if line.header.kind == EntryKind::Regular && line.header.size > 0 {
            let data = store
                .0
                .get(&line.sha256)
                .ok_or_else(|| format!("no content for {}", line.header.name))?;
            writer.write_data(data).expect("data");
        }
    }
    writer.finish().expect("finish");
    let out = writer.into_inner();
    Ok((hex::encode(out.hasher.finalize()), out.len))
}

#[test]
fn rebuilds_every_corpus_tar_byte_for_byte() {
    let Some(corpus) = corpus_dir() else {
        eprintln!("conformance corpus not found (set MOBY_CONFORMANCE); skipping");
        return;
    };
    let mut store = Store::build(&corpus);
    let mut cases: Vec<PathBuf> = fs::read_dir(corpus.join("expected"))
        .expect("expected dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("listing.tsv").is_file())
        .collect();
    cases.sort();
    let mut checked = Vec::new();
    let mut unresolved = Vec::new();
    for case in &cases {
        let name = case.file_name().unwrap_or_default().to_string_lossy().into_owned();
        let listing = fs::read_to_string(case.join("listing.tsv")).expect("listing");
        let summary: serde_json::Value =
            serde_json::from_slice(&fs::read(case.join("summary.json")).expect("summary")).expect("json");
        let lines = parse_listing(&listing);
        add_merged_apk_db(&mut store, &lines);
        match rebuild(&store, &lines) {
            Ok((sha, size)) => {
                assert_eq!(Some(size), summary["tar_size"].as_u64(), "{name}: tar size");
                assert_eq!(Some(sha.as_str()), summary["tar_sha256"].as_str(), "{name}: tar sha256");
                checked.push(name);
            }
            Err(missing) => unresolved.push(format!("{name}: {missing}")),
        }
    }
    eprintln!("byte-identical: {checked:?}; not rebuildable: {unresolved:?}");
    // The corpus provides every content, so every valid case must be rebuilt.
    assert!(unresolved.is_empty(), "{unresolved:?}");
    assert!(checked.len() >= 28, "{checked:?}");
    assert!(checked.iter().any(|c| c == "001-kernel-minimal"));
}
