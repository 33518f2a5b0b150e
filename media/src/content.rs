//! [`Content`]: where the bytes of a file placed on a medium come from.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;

/// Bytes to copy onto a medium: a slice in memory, or a region of an open file (a kernel or an
/// initrd staged on disk, copied in chunks without being held in memory).
#[derive(Debug, Clone, Copy)]
pub enum Content<'a> {
    /// These bytes.
    Bytes(&'a [u8]),
    /// `len` bytes of `file` from `offset`.
    File {
        /// The file, read with positioned reads (its cursor is not used).
        file: &'a File,
        /// Where the content starts.
        offset: u64,
        /// How many bytes.
        len: u64,
    },
}

/// Chunk size of copies from files.
const CHUNK: usize = 1 << 20;

impl<'a> Content<'a> {
    /// The whole of `file`, as long as it is now.
    pub fn file(file: &'a File) -> io::Result<Content<'a>> {
        Ok(Content::File {
            file,
            offset: 0,
            len: file.metadata()?.len(),
        })
    }

    /// Length in bytes.
    pub fn len(&self) -> u64 {
        match self {
            Content::Bytes(bytes) => bytes.len() as u64,
            Content::File { len, .. } => *len,
        }
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Passes the bytes in order, in chunks of at most 1 MiB, to `each`.
    pub fn for_each_chunk(&self, mut each: impl FnMut(&[u8]) -> io::Result<()>) -> io::Result<()> {
        match *self {
            Content::Bytes(bytes) => bytes.chunks(CHUNK).try_for_each(each),
            Content::File { file, offset, len } => {
                let mut buf = vec![0u8; CHUNK.min(usize::try_from(len).unwrap_or(CHUNK))];
                let mut done = 0u64;
                while done < len {
                    let want = buf.len().min(usize::try_from(len - done).unwrap_or(usize::MAX));
                    let n = file.read_at(&mut buf[..want], offset + done)?;
                    if n == 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!("the file ended {} bytes before the end of the content", len - done),
                        ));
                    }
                    each(&buf[..n])?;
                    done += n as u64;
                }
                Ok(())
            }
        }
    }

    /// Copies the bytes to `out`.
    pub fn copy_to(&self, out: &mut dyn Write) -> io::Result<()> {
        self.for_each_chunk(|chunk| out.write_all(chunk))
    }

    /// Writes the bytes into `image` at `position`, with positioned writes.
    pub fn write_at(&self, image: &File, position: u64) -> io::Result<()> {
        let mut at = position;
        self.for_each_chunk(|chunk| {
            image.write_all_at(chunk, at)?;
            at += chunk.len() as u64;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn file_regions_copy_like_slices() {
        let mut file = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        file.write_all(&data).unwrap();
        let region = Content::File {
            file: &file,
            offset: 7,
            len: 2_500_000,
        };
        let mut copied = Vec::new();
        region.copy_to(&mut copied).unwrap();
        assert_eq!(copied, &data[7..2_500_007]);
        assert_eq!(Content::file(&file).unwrap().len(), 3_000_000);

        let image = tempfile::tempfile().unwrap();
        Content::Bytes(b"abc").write_at(&image, 5).unwrap();
        let mut back = Vec::new();
        (&image).read_to_end(&mut back).unwrap();
        assert_eq!(back, b"\0\0\0\0\0abc");
    }

    #[test]
    fn a_file_shorter_than_its_region_is_an_error() {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(b"short").unwrap();
        let region = Content::File {
            file: &file,
            offset: 0,
            len: 10,
        };
        let err = region.copy_to(&mut Vec::new()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }
}
