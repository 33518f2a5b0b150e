//! File data: blocks read from the contents in the order of the inodes, compressed on as many
//! threads as the machine has, written in that same order (so the bytes do not depend on the
//! threads), with a fixed number of block buffers in flight.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex};

use flate2::{Compress, Compression, FlushCompress, Status};

use super::{SquashfsError, BLOCK_SIZE, COMPRESSION_LEVEL};
use crate::content::Content;
use crate::tree::{Kind, Tree};

/// A data block's size word: the block is stored uncompressed.
const UNCOMPRESSED_BLOCK: u32 = 1 << 24;
/// A file without a fragment.
const NO_FRAGMENT: u32 = 0xffff_ffff;
/// Block buffers in flight per compressing thread.
const BUFFERS_PER_THREAD: usize = 3;

/// Where a file's data went.
pub(super) struct Placed {
    /// Position of its first block (0 when it has none).
    pub(super) start: u64,
    /// Size words of its blocks (0 for a block of zeros, not stored).
    pub(super) blocks: Vec<u32>,
    /// Its fragment block, or [`NO_FRAGMENT`].
    pub(super) fragment: u32,
    /// Where in the fragment block its bytes start.
    pub(super) offset: u32,
    /// Bytes in blocks of zeros.
    pub(super) sparse: u64,
}

/// What [`write`] wrote.
pub(super) struct Data {
    /// For each node that is a regular file (by node id), where its data went.
    pub(super) files: Vec<Option<Placed>>,
    /// Position and size word of each fragment block.
    pub(super) fragments: Vec<(u64, u32)>,
    /// Where the data ends.
    pub(super) end: u64,
}

/// Writes the data of the regular files among `order` (each once) from `start`, compressing on
/// `threads` threads.
pub(super) fn write(
    tree: &Tree<'_>,
    order: &[usize],
    image: &File,
    start: u64,
    threads: usize,
) -> Result<Data, SquashfsError> {
    let threads = threads.max(1);
    let (free_tx, free_rx) = channel();
    for _ in 0..threads * BUFFERS_PER_THREAD {
        let _ = free_tx.send(Vec::with_capacity(BLOCK_SIZE as usize));
    }
    let (job_tx, job_rx) = sync_channel::<Block>(threads);
    // Shared by the compressing threads only, so that it closes when they all stop.
    let job_rx = Arc::new(Mutex::new(job_rx));
    let (done_tx, done_rx) = channel::<Block>();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let done_tx = done_tx.clone();
            let job_rx = Arc::clone(&job_rx);
            scope.spawn(move || compress_blocks(&job_rx, done_tx));
        }
        drop((done_tx, job_rx));
        let writer = scope.spawn(move || write_blocks(image, start, done_rx, free_tx));
        let mut producer = Producer {
            jobs: job_tx,
            free: free_rx,
            spare: None,
            next: 0,
            fragment: None,
            fragments: Vec::new(),
        };
        let nodes = tree.nodes();
        let mut files: Vec<Option<Placed>> = (0..nodes.len()).map(|_| None).collect();
        let produced = order.iter().try_for_each(|&id| {
            if let Kind::File(content) = &nodes[id].kind {
                files[id] = Some(producer.file(content, &nodes[id].path)?);
            }
            Ok(())
        });
        let produced = produced.and_then(|()| producer.flush_fragment());
        let fragment_seqs = std::mem::take(&mut producer.fragments);
        drop(producer);
        let written = writer.join().unwrap_or_else(|_| {
            Err(SquashfsError::Limit(
                "the thread writing data blocks panicked".to_string(),
            ))
        });
        // A failed write stops the producer too: report the write's error then.
        let (placed, end) = match (written, produced) {
            (Err(e), _) | (Ok(_), Err(e)) => return Err(e),
            (Ok(written), Ok(())) => written,
        };
        // The blocks were numbered as read: give each file its positions and size words.
        for file in files.iter_mut().flatten().filter(|file| !file.blocks.is_empty()) {
            let first = file.start as usize;
            file.start = placed.get(first).map_or(end, |(at, _)| *at);
            for (seq, word) in (first..).zip(file.blocks.iter_mut().filter(|word| **word != 0)) {
                *word = placed[seq].1;
            }
        }
        let fragments = fragment_seqs.into_iter().map(|seq| placed[seq]).collect();
        Ok(Data { files, fragments, end })
    })
}

/// A block on its way: read, compressed (or not), written.
struct Block {
    /// Its place in the order of the data.
    seq: usize,
    data: Vec<u8>,
    /// Its size word once compressed.
    word: u32,
}

/// Reads the files' data into blocks and numbers them; packs files smaller than a block into
/// fragment blocks.
struct Producer {
    jobs: SyncSender<Block>,
    /// Empty buffers that the writer gives back.
    free: Receiver<Vec<u8>>,
    /// A buffer taken and not used.
    spare: Option<Vec<u8>>,
    /// The next block's number.
    next: usize,
    /// The fragment block being filled.
    fragment: Option<Vec<u8>>,
    /// The numbers of the fragment blocks.
    fragments: Vec<usize>,
}

/// When a channel closes, the writer or a compressor stopped: its own error is reported.
fn stopped() -> SquashfsError {
    SquashfsError::Limit("writing data blocks stopped".to_string())
}

impl Producer {
    fn buffer(&mut self) -> Result<Vec<u8>, SquashfsError> {
        match self.spare.take() {
            Some(spare) => Ok(spare),
            None => self.free.recv().map_err(|_| stopped()),
        }
    }

    fn submit(&mut self, data: Vec<u8>) -> Result<usize, SquashfsError> {
        let seq = self.next;
        self.jobs.send(Block { seq, data, word: 0 }).map_err(|_| stopped())?;
        self.next += 1;
        Ok(seq)
    }

    /// Reads a file; its [`Placed`] has the number of its first block as `start` (0 without
    /// blocks) and 1 for each block that is written, to be replaced by positions and size words.
    fn file(&mut self, content: &Content, path: &str) -> Result<Placed, SquashfsError> {
        let size = content.len();
        let block_size = u64::from(BLOCK_SIZE);
        let read_error = |source| SquashfsError::Io {
            what: format!("reading /{path} ({size} bytes) for the squashfs image"),
            source,
        };
        let mut placed = Placed {
            start: 0,
            blocks: Vec::new(),
            fragment: NO_FRAGMENT,
            offset: 0,
            sparse: 0,
        };
        if size == 0 {
            return Ok(placed);
        }
        if size < block_size {
            let mut fragment = match self.fragment.take() {
                Some(fragment) if fragment.len() as u64 + size <= block_size => fragment,
                full => {
                    if let Some(full) = full {
                        let seq = self.submit(full)?;
                        self.fragments.push(seq);
                    }
                    self.buffer()?
                }
            };
            let offset = fragment.len();
            fragment.resize(offset + size as usize, 0);
            read_at(content, 0, &mut fragment[offset..]).map_err(read_error)?;
            self.fragment = Some(fragment);
            placed.fragment = u32::try_from(self.fragments.len())
                .ok()
                .filter(|n| *n < NO_FRAGMENT)
                .ok_or_else(|| SquashfsError::Limit("more than 2^32 - 1 fragment blocks".to_string()))?;
            placed.offset = offset as u32;
            return Ok(placed);
        }
        placed.start = self.next as u64;
        placed.blocks.reserve(size.div_ceil(block_size) as usize);
        let mut buffer = self.buffer()?;
        let mut at = 0;
        while at < size {
            let len = (size - at).min(block_size) as usize;
            buffer.resize(len, 0);
            read_at(content, at, &mut buffer).map_err(read_error)?;
            if buffer.iter().all(|&b| b == 0) {
                placed.blocks.push(0);
                placed.sparse += len as u64;
            } else {
                self.submit(buffer)?;
                placed.blocks.push(1);
                buffer = self.buffer()?;
            }
            at += len as u64;
        }
        self.spare = Some(buffer);
        Ok(placed)
    }

    fn flush_fragment(&mut self) -> Result<(), SquashfsError> {
        if let Some(fragment) = self.fragment.take() {
            let seq = self.submit(fragment)?;
            self.fragments.push(seq);
        }
        Ok(())
    }
}

/// A compressing thread: takes blocks until there are no more.
fn compress_blocks(jobs: &Mutex<Receiver<Block>>, done: Sender<Block>) {
    let mut compressor = Compressor::new();
    loop {
        let job = match jobs.lock() {
            Ok(jobs) => jobs.recv(),
            Err(_) => return,
        };
        let Ok(mut block) = job else {
            return;
        };
        block.word = if compressor.compress(&block.data) {
            std::mem::swap(&mut block.data, &mut compressor.out);
            block.data.len() as u32
        } else {
            block.data.len() as u32 | UNCOMPRESSED_BLOCK
        };
        if done.send(block).is_err() {
            return;
        }
    }
}

/// The writing thread: writes blocks in their order from `start`, gives their buffers back, and
/// returns each block's position and size word, and where the data ends.
fn write_blocks(
    image: &File,
    start: u64,
    done: Receiver<Block>,
    free: Sender<Vec<u8>>,
) -> Result<(Vec<(u64, u32)>, u64), SquashfsError> {
    let mut placed = Vec::new();
    let mut waiting = BTreeMap::new();
    let mut at = start;
    for block in done {
        waiting.insert(block.seq, block);
        while let Some(mut block) = waiting.remove(&placed.len()) {
            image
                .write_all_at(&block.data, at)
                .map_err(|source| SquashfsError::Io {
                    what: "writing the squashfs image".to_string(),
                    source,
                })?;
            placed.push((at, block.word));
            at += block.data.len() as u64;
            block.data.clear();
            let _ = free.send(block.data);
        }
    }
    Ok((placed, at))
}

/// zlib at [`COMPRESSION_LEVEL`], one stream per block.
pub(super) struct Compressor {
    zlib: Compress,
    /// The last block compressed.
    pub(super) out: Vec<u8>,
}

impl Compressor {
    pub(super) fn new() -> Compressor {
        Compressor {
            zlib: Compress::new(Compression::new(COMPRESSION_LEVEL), true),
            out: Vec::with_capacity(BLOCK_SIZE as usize),
        }
    }

    /// Compresses `raw` into `out`; whether that made it smaller.
    pub(super) fn compress(&mut self, raw: &[u8]) -> bool {
        self.zlib.reset();
        self.out.clear();
        self.out.reserve(raw.len());
        matches!(
            self.zlib.compress_vec(raw, &mut self.out, FlushCompress::Finish),
            Ok(Status::StreamEnd) if self.out.len() < raw.len()
        )
    }
}

/// Fills `buf` with the content's bytes from `at`.
fn read_at(content: &Content, at: u64, buf: &mut [u8]) -> io::Result<()> {
    match *content {
        Content::Bytes(bytes) => {
            let range = usize::try_from(at).ok().and_then(|at| bytes.get(at..at + buf.len()));
            buf.copy_from_slice(range.ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?);
            Ok(())
        }
        Content::File { file, offset, .. } => file.read_exact_at(buf, offset + at).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                io::Error::new(e.kind(), "the staged file ended before the content did")
            } else {
                e
            }
        }),
    }
}
