//! Layer blob decompression: gzip (also multi-member), zstd or none.

use std::io::{self, BufReader, Cursor, Read};

/// Input buffer in front of a decompressor: large reads keep the per-call overhead negligible.
const COMPRESSED_BUFFER: usize = 256 * 1024;

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip, possibly several members one after the other (pigz, `docker save`, concatenated blobs).
    Gzip,
    /// zstd, possibly several frames.
    Zstd,
}

/// Why a layer blob cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenLayerError {
    /// The media type names something that is not a tar layer we can decompress.
    #[error("unsupported layer media type {media_type:?}: {reason}")]
    UnsupportedMediaType {
        /// The media type from the manifest.
        media_type: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// Reading the first bytes of the blob failed.
    #[error("cannot read the layer blob: {0}")]
    Io(#[from] io::Error),
}

impl Compression {
    /// What a layer media type says about compression: `Ok(None)` when it says nothing useful (empty,
    /// `application/octet-stream`, unknown vendor types), an error for media types that are not
    /// decompressible tar layers. OCI (`...layer.v1.tar[+gzip|+zstd]`, nondistributable variants)
    /// and Docker v2 schema 2 (`...rootfs.diff.tar[.gzip]`, foreign variants) names are recognised,
    /// and any `+gzip`/`+zstd` suffix.
    pub fn from_media_type(media_type: &str) -> Result<Option<Compression>, OpenLayerError> {
        // Parameters (`; charset=...`) never change the compression.
        let essence = media_type.split(';').next().unwrap_or_default().trim();
        let essence = essence.to_ascii_lowercase();
        let unsupported = |reason| OpenLayerError::UnsupportedMediaType {
            media_type: media_type.to_string(),
            reason,
        };
        if essence.ends_with("+gzip") || essence.ends_with(".tar.gzip") {
            return Ok(Some(Compression::Gzip));
        }
        if essence.ends_with("+zstd") || essence.ends_with(".tar.zstd") {
            return Ok(Some(Compression::Zstd));
        }
        if essence.ends_with(".tar") || essence.ends_with(".v1.tar") {
            return Ok(Some(Compression::None));
        }
        for suffix in ["+bzip2", "+xz", "+lz4", "+lzma", ".tar.bz2", ".tar.xz"] {
            if essence.ends_with(suffix) {
                return Err(unsupported("only gzip, zstd and uncompressed layers are supported"));
            }
        }
        if essence.ends_with("+json") || essence.ends_with("+yaml") {
            return Err(unsupported("it is metadata, not a filesystem layer"));
        }
        Ok(None)
    }

    /// The compression that the first bytes of a blob announce (gzip `1f 8b`, zstd `28 b5 2f fd`).
    pub fn sniff(prefix: &[u8]) -> Compression {
        if prefix.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if prefix.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// Opens a layer blob as an uncompressed tar stream.
///
/// The magic bytes decide, as in go-containerregistry (which LinuxKit uses): registries and tools
/// often store a layer compressed differently from what its media type says, and the bytes never
/// lie. The media type is still checked, so that e.g. a bzip2 layer or an attestation blob is refused
/// by name instead of failing later as a corrupt tar; a disagreement is logged at debug level.
pub fn open_layer<'a, R: Read + Send + 'a>(
    media_type: &str,
    mut blob: R,
) -> Result<Box<dyn Read + Send + 'a>, OpenLayerError> {
    let declared = Compression::from_media_type(media_type)?;
    let mut magic = [0u8; 4];
    let peeked = read_up_to(&mut blob, &mut magic)?;
    let actual = Compression::sniff(&magic[..peeked]);
    if declared.is_some_and(|declared| declared != actual) {
        tracing::debug!(media_type, ?actual, "layer compression differs from its media type");
    }
    let stream = Cursor::new(magic).take(peeked as u64).chain(blob);
    Ok(match actual {
        Compression::None => Box::new(stream),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(BufReader::with_capacity(
            COMPRESSED_BUFFER,
            stream,
        ))),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(BufReader::with_capacity(
            COMPRESSED_BUFFER,
            stream,
        ))?),
    })
}

/// Reads until `buf` is full or the input ends; returns the number of bytes read.
fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    fn read_all(media_type: &str, blob: Vec<u8>) -> Vec<u8> {
        let mut out = Vec::new();
        open_layer(media_type, Cursor::new(blob))
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    /// A reader that hands out one byte per call, to exercise the magic-byte loop.
    struct Trickle(Cursor<Vec<u8>>);
    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(1);
            self.0.read(&mut buf[..n])
        }
    }

    #[test]
    fn media_types() {
        let cases = [
            ("application/vnd.oci.image.layer.v1.tar", Some(Compression::None)),
            ("application/vnd.oci.image.layer.v1.tar+gzip", Some(Compression::Gzip)),
            ("application/vnd.oci.image.layer.v1.tar+zstd", Some(Compression::Zstd)),
            (
                "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                Some(Compression::Gzip),
            ),
            (
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
                Some(Compression::Gzip),
            ),
            (
                "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                Some(Compression::Gzip),
            ),
            ("application/vnd.docker.image.rootfs.diff.tar", Some(Compression::None)),
            ("application/vnd.example.thing+zstd; x=y", Some(Compression::Zstd)),
            ("", None),
            ("application/octet-stream", None),
        ];
        for (media_type, want) in cases {
            assert_eq!(Compression::from_media_type(media_type).unwrap(), want, "{media_type}");
        }
        for refused in [
            "application/vnd.oci.image.layer.v1.tar+bzip2",
            "application/vnd.in-toto+json",
        ] {
            let err = Compression::from_media_type(refused).unwrap_err();
            assert!(err.to_string().contains(refused), "{err}");
        }
    }

    #[test]
    fn gzip_with_several_members() {
        let mut blob = gzip(b"first member, ");
        blob.extend(gzip(b"second member"));
        let out = read_all("application/vnd.oci.image.layer.v1.tar+gzip", blob);
        assert_eq!(out, b"first member, second member");
    }

    #[test]
    fn zstd_with_several_frames() {
        let mut blob = zstd::encode_all(&b"frame one "[..], 3).unwrap();
        blob.extend(zstd::encode_all(&b"frame two"[..], 3).unwrap());
        let out = read_all("application/vnd.oci.image.layer.v1.tar+zstd", blob);
        assert_eq!(out, b"frame one frame two");
    }

    #[test]
    fn bytes_win_over_the_media_type() {
        // Declared gzip but stored plain, and declared plain but stored gzip: both readable.
        assert_eq!(
            read_all("application/vnd.oci.image.layer.v1.tar+gzip", b"plain".to_vec()),
            b"plain"
        );
        assert_eq!(
            read_all("application/vnd.oci.image.layer.v1.tar", gzip(b"zipped")),
            b"zipped"
        );
        assert_eq!(read_all("", zstd::encode_all(&b"sniffed"[..], 1).unwrap()), b"sniffed");
    }

    #[test]
    fn short_and_empty_blobs_and_slow_readers() {
        assert_eq!(read_all("", Vec::new()), b"");
        assert_eq!(read_all("", b"ab".to_vec()), b"ab");
        let mut out = Vec::new();
        open_layer("", Trickle(Cursor::new(gzip(b"slow"))))
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, b"slow");
    }

    #[test]
    fn corrupt_gzip_is_a_read_error() {
        let mut blob = gzip(&[b'x'; 4096]);
        let middle = blob.len() / 2;
        blob[middle] ^= 0xff;
        let mut out = Vec::new();
        let result = open_layer("", Cursor::new(blob)).unwrap().read_to_end(&mut out);
        assert!(result.is_err());
    }
}
