//! Disk images that qemu cannot open as they are: GCE's `NAME.img.tar.gz` (`disk.raw` in a
//! gzip-compressed GNU tar, moby's and LinuxKit's `gcp` format), unpacked into the instance's
//! state directory, sparse, so that each instance boots its own copy.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use crate::machine::{BootMedia, DiskFormat};
use crate::VmError;

/// The member GCE images hold.
pub(crate) const GCE_DISK: &str = "disk.raw";

/// Whether `path` names a GCE image archive.
fn is_gce_archive(path: &Path) -> bool {
    path.to_str()
        .is_some_and(|p| p.ends_with(".tar.gz") || p.ends_with(".tgz"))
}

/// `media` itself, or, for a GCE image archive, its `disk.raw` unpacked into `state_dir`.
pub fn bootable(media: BootMedia, state_dir: &Path) -> Result<BootMedia, VmError> {
    let BootMedia::Disk { path, .. } = &media else {
        return Ok(media);
    };
    if !is_gce_archive(path) {
        return Ok(media);
    }
    std::fs::create_dir_all(state_dir).map_err(|source| VmError::Io {
        doing: "create",
        path: state_dir.to_path_buf(),
        source,
    })?;
    let disk = state_dir.join(GCE_DISK);
    unpack(path, &disk)?;
    Ok(BootMedia::Disk {
        path: disk,
        format: Some(DiskFormat::Raw),
    })
}

fn unpack(archive: &Path, disk: &PathBuf) -> Result<(), VmError> {
    let io_error = |doing: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| VmError::Io { doing, path, source }
    };
    let input = File::open(archive).map_err(io_error("open", archive))?;
    let mut gunzip = flate2::read::MultiGzDecoder::new(BufReader::with_capacity(1 << 20, input));
    let out = File::create(disk).map_err(io_error("create", disk))?;
    media::sparse_tar::extract(&mut gunzip, GCE_DISK, &out).map_err(|source| VmError::Unpack {
        archive: archive.to_path_buf(),
        source,
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::FileExt;

    #[test]
    fn gce_archives_unpack_into_the_state_dir() {
        let dir = tempfile::tempdir().unwrap();
        let raw = tempfile::tempfile().unwrap();
        raw.set_len(4 << 20).unwrap();
        raw.write_all_at(b"\x55\xaa", 510).unwrap();
        let member = media::sparse_tar::Member {
            name: GCE_DISK,
            mtime: 0,
            mode: 0o644,
            uid: 0,
            gid: 0,
            uname: "",
            gname: "",
        };
        let archive = dir.path().join("img.img.tar.gz");
        let mut gzip = flate2::write::GzEncoder::new(File::create(&archive).unwrap(), flate2::Compression::fast());
        media::sparse_tar::write(&raw, &member, &mut gzip).unwrap();
        gzip.finish().unwrap().flush().unwrap();

        let media = BootMedia::Disk {
            path: archive.clone(),
            format: None,
        };
        // Not there yet: a new instance's state directory is made as it starts.
        let state = dir.path().join("state");
        let got = bootable(media, &state).unwrap();
        assert_eq!(
            got,
            BootMedia::Disk {
                path: state.join("disk.raw"),
                format: Some(DiskFormat::Raw)
            }
        );
        let disk = std::fs::read(state.join("disk.raw")).unwrap();
        assert_eq!((disk.len(), &disk[510..512]), (4 << 20, &b"\x55\xaa"[..]));

        std::fs::write(&archive, b"not gzip").unwrap();
        let err = bootable(
            BootMedia::Disk {
                path: archive,
                format: None,
            },
            &state,
        )
        .unwrap_err();
        assert!(err.to_string().contains("img.img.tar.gz"), "{err}");

        let plain = BootMedia::Iso(dir.path().join("x.iso"));
        assert_eq!(bootable(plain.clone(), &state).unwrap(), plain);
    }
}
