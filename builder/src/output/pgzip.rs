//! A parallel gzip compressor that writes one standard gzip stream (the pigz technique).
//!
//! The input is cut into fixed-size chunks. Every chunk is compressed on its own as raw deflate,
//! primed with the last 32 KiB of the previous chunk as preset dictionary so that matches across
//! the boundary are still found. Every chunk but the last ends with a sync flush (an empty stored
//! block that leaves the stream byte-aligned and not final), so the compressed chunks concatenate
//! into one valid deflate stream. The CRC-32 of every chunk is computed next to its compression
//! and combined in order.
//!
//! Because a chunk's output depends only on its bytes, the previous chunk's tail, the level and
//! whether it is the last one, the output is the same for any number of threads and any way the
//! input is split into `write` calls.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};

use flate2::{Compress, Compression, Crc, FlushCompress, Status};

/// Size of the deflate window: the most a match can reach back, so the useful dictionary size.
const WINDOW: usize = 32 * 1024;
/// Default chunk size: big enough that sync-flush overhead (5 bytes) and the restart of the
/// Huffman statistics cost next to nothing, small enough to keep two cores busy on small inputs.
pub const DEFAULT_CHUNK_SIZE: usize = 1024 * 1024;
/// Default level. Measured with zlib-rs on 300 MB of /usr/lib (per CPU-second; two threads scale
/// almost linearly): level 6 gives 34.5% of the input at ~40 MB/s, level 4 gives 35.3% at
/// ~50-54 MB/s, level 2 gives 37.3% at ~70 MB/s, level 1 gives 44.3% at ~120 MB/s. In a whole
/// build the two cores also unpack layers and write the cpio: a warm kernel+initrd build of a
/// 619 MB image (scripts/bench/build.sh) ran at 61 MB/s with level 4, 78 MB/s with level 2 and
/// 108 MB/s with level 1. Level 1 keeps builds limited by compression at over 80 MB/s per core;
/// `moby build --compression-level` trades speed for size.
pub const DEFAULT_LEVEL: u32 = 1;
/// gzip's "unknown" operating system byte (what Go's writer uses too), so the output does not
/// depend on the build host.
const OS_UNKNOWN: u8 = 255;

/// How to compress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PgzipOptions {
    /// Compression level, 0 (store) to 9 (best).
    pub level: u32,
    /// Worker threads; 0 means one per available CPU. 1 compresses on the caller's thread.
    pub threads: usize,
    /// Bytes of input per independently compressed chunk (at least 32 KiB).
    pub chunk_size: usize,
}

impl Default for PgzipOptions {
    fn default() -> PgzipOptions {
        PgzipOptions {
            level: DEFAULT_LEVEL,
            threads: 0,
            chunk_size: DEFAULT_CHUNK_SIZE,
        }
    }
}

impl PgzipOptions {
    /// The thread count to use: `threads`, or the available parallelism when 0.
    pub fn effective_threads(&self) -> usize {
        if self.threads > 0 {
            return self.threads;
        }
        thread::available_parallelism().map_or(1, |n| n.get())
    }
}

/// The compressed form of one chunk plus the CRC of its input.
struct ChunkOutput {
    deflated: Vec<u8>,
    crc: Crc,
}

/// Work for one chunk.
struct Job {
    input: Arc<Vec<u8>>,
    /// The previous chunk, whose tail is the preset dictionary.
    previous: Option<Arc<Vec<u8>>>,
    last: bool,
    reply: SyncSender<io::Result<ChunkOutput>>,
}

/// Worker threads taking jobs from one shared queue.
struct Pool {
    jobs: Option<Sender<Job>>,
    workers: Vec<JoinHandle<()>>,
}

impl Pool {
    fn start(threads: usize, level: Compression) -> io::Result<Pool> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        let mut workers = Vec::with_capacity(threads);
        for index in 0..threads {
            let queue = Arc::clone(&queue);
            let worker = thread::Builder::new()
                .name(format!("pgzip-{index}"))
                .spawn(move || worker_loop(&queue, level))?;
            workers.push(worker);
        }
        Ok(Pool {
            jobs: Some(jobs),
            workers,
        })
    }

    fn submit(&self, job: Job) -> io::Result<()> {
        let jobs = self.jobs.as_ref().ok_or_else(worker_gone)?;
        jobs.send(job).map_err(|_| worker_gone())
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Closing the queue ends every worker once it is idle.
        self.jobs = None;
        for worker in self.workers.drain(..) {
            // A panicked worker has already reported through its dropped reply channel.
            let _ = worker.join();
        }
    }
}

fn worker_gone() -> io::Error {
    io::Error::other("a gzip compression thread stopped unexpectedly")
}

fn worker_loop(queue: &Mutex<Receiver<Job>>, level: Compression) {
    loop {
        // Hold the lock only while taking a job, not while compressing it.
        let job = match queue.lock() {
            Ok(receiver) => receiver.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        let previous = job.previous.as_deref().map(Vec::as_slice);
        let result = compress_chunk(level, &job.input, previous, job.last);
        // The writer may have given up (error or drop); nobody to tell then.
        let _ = job.reply.send(result);
    }
}

/// Compresses one chunk as raw deflate, primed with the tail of `previous`.
///
/// Every chunk gets a new compressor: a reset one still carries state from its earlier chunks
/// that changes the output (measured with zlib-rs: one thread and two threads gave different
/// streams for the same input), and with a pool which worker takes which chunk is a race.
fn compress_chunk(level: Compression, input: &[u8], previous: Option<&[u8]>, last: bool) -> io::Result<ChunkOutput> {
    let mut compressor = Compress::new(level, false);
    if let Some(previous) = previous {
        let tail = &previous[previous.len().saturating_sub(WINDOW)..];
        compressor
            .set_dictionary(tail)
            .map_err(|err| io::Error::other(format!("cannot set the deflate dictionary: {err}")))?;
    }
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    let mut deflated = Vec::with_capacity(input.len() / 2 + 1024);
    let mut consumed = 0usize;
    loop {
        if deflated.capacity() - deflated.len() < 256 {
            deflated.reserve(deflated.capacity().max(4096));
        }
        let before_in = compressor.total_in();
        let status = compressor
            .compress_vec(&input[consumed..], &mut deflated, flush)
            .map_err(|err| io::Error::other(format!("deflate failed: {err}")))?;
        // Cannot exceed the slice we passed in.
        consumed += (compressor.total_in() - before_in) as usize;
        let output_room_left = deflated.len() < deflated.capacity();
        let done = match status {
            Status::StreamEnd => true,
            // zlib finishes a flush only when it returns with output space to spare.
            Status::Ok | Status::BufError => !last && consumed == input.len() && output_room_left,
        };
        if done {
            break;
        }
    }
    let mut crc = Crc::new();
    crc.update(input);
    Ok(ChunkOutput { deflated, crc })
}

/// A `Write` that gzips everything written to it into `W`, compressing chunks in parallel.
///
/// Call [`PgzipWriter::finish`] to write the end of the stream; dropping the writer without it
/// leaves an incomplete stream.
pub struct PgzipWriter<W: Write> {
    inner: W,
    level: Compression,
    chunk_size: usize,
    /// Input not yet handed to a compressor.
    buffer: Vec<u8>,
    /// The most recently dispatched chunk: the next chunk's dictionary.
    previous: Option<Arc<Vec<u8>>>,
    crc: Crc,
    header_written: bool,
    /// `None` compresses on the caller's thread.
    pool: Option<Pool>,
    /// Results in stream order, oldest first.
    pending: VecDeque<Receiver<io::Result<ChunkOutput>>>,
    max_pending: usize,
}

impl<W: Write> PgzipWriter<W> {
    /// Starts a gzip stream on `inner` (threads are started here when `threads` > 1).
    pub fn new(inner: W, options: PgzipOptions) -> io::Result<PgzipWriter<W>> {
        if options.level > 9 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("gzip level {} is out of range; use 0 to 9", options.level),
            ));
        }
        let level = Compression::new(options.level);
        let threads = options.effective_threads();
        let pool = if threads > 1 {
            Some(Pool::start(threads, level)?)
        } else {
            None
        };
        let chunk_size = options.chunk_size.max(WINDOW);
        Ok(PgzipWriter {
            inner,
            level,
            chunk_size,
            buffer: Vec::with_capacity(chunk_size),
            previous: None,
            crc: Crc::new(),
            header_written: false,
            pool,
            pending: VecDeque::new(),
            // Two chunks per thread keep every worker busy while the writer waits for the oldest.
            max_pending: 2 * threads,
        })
    }

    /// Compresses what is left, writes the gzip trailer, flushes and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.dispatch(true)?;
        while !self.pending.is_empty() {
            self.collect_oldest()?;
        }
        let mut trailer = [0u8; 8];
        trailer[..4].copy_from_slice(&self.crc.sum().to_le_bytes());
        // ISIZE is the input length modulo 2^32 (RFC 1952).
        trailer[4..].copy_from_slice(&self.crc.amount().to_le_bytes());
        self.inner.write_all(&trailer)?;
        self.inner.flush()?;
        let PgzipWriter { inner, pool, .. } = self;
        // Stop the workers before handing the writer back.
        drop(pool);
        Ok(inner)
    }

    /// Hands the buffered input to a compressor; `last` ends the deflate stream.
    fn dispatch(&mut self, last: bool) -> io::Result<()> {
        let input = Arc::new(std::mem::replace(
            &mut self.buffer,
            if last {
                Vec::new()
            } else {
                Vec::with_capacity(self.chunk_size)
            },
        ));
        let previous = self.previous.replace(Arc::clone(&input));
        if let Some(pool) = &self.pool {
            let (reply, result) = mpsc::sync_channel(1);
            pool.submit(Job {
                input,
                previous,
                last,
                reply,
            })?;
            self.pending.push_back(result);
            while self.pending.len() > self.max_pending {
                self.collect_oldest()?;
            }
            Ok(())
        } else {
            let output = compress_chunk(self.level, &input, previous.as_deref().map(Vec::as_slice), last)?;
            self.emit(output)
        }
    }

    /// Waits for the oldest chunk in flight and writes it out.
    fn collect_oldest(&mut self) -> io::Result<()> {
        let Some(result) = self.pending.pop_front() else {
            return Ok(());
        };
        let output = result.recv().map_err(|_| worker_gone())??;
        self.emit(output)
    }

    /// Writes one compressed chunk (after the gzip header if it is the first).
    fn emit(&mut self, output: ChunkOutput) -> io::Result<()> {
        if !self.header_written {
            self.inner.write_all(&gzip_header(self.level))?;
            self.header_written = true;
        }
        self.inner.write_all(&output.deflated)?;
        self.crc.combine(&output.crc);
        Ok(())
    }
}

/// The 10-byte gzip header: no name, no mtime, fixed OS byte.
fn gzip_header(level: Compression) -> [u8; 10] {
    // XFL: 2 = best compression, 4 = fastest, as gzip sets it.
    let xfl = match level.level() {
        9 => 2,
        1 => 4,
        _ => 0,
    };
    [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, OS_UNKNOWN]
}

impl<W: Write> Write for PgzipWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut rest = data;
        while !rest.is_empty() {
            // A full buffer is dispatched only once more input proves it is not the last chunk.
            if self.buffer.len() == self.chunk_size {
                self.dispatch(false)?;
            }
            let take = rest.len().min(self.chunk_size - self.buffer.len());
            self.buffer.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
        }
        Ok(data.len())
    }

    /// Writes out the chunks already compressed; buffered input stays buffered (a gzip flush
    /// would change the output, and the stream must not depend on when callers flush).
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::process::{Command, Stdio};

    /// Mixed test data: text-like runs, repeats and pseudo-random bytes.
    fn sample(len: usize, seed: u64) -> Vec<u8> {
        let mut state = seed | 1;
        let mut out = Vec::with_capacity(len);
        let words: [&[u8]; 6] = [b"kernel ", b"initrd ", b"linuxkit ", b"\n", b"0000", b"/usr/lib/"];
        while out.len() < len {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            match state % 4 {
                0 => out.extend_from_slice(&state.to_le_bytes()),
                _ => out.extend_from_slice(words[(state >> 8) as usize % words.len()]),
            }
        }
        out.truncate(len);
        out
    }

    fn compress(data: &[u8], options: PgzipOptions, piece: usize) -> Vec<u8> {
        let mut writer = PgzipWriter::new(Vec::new(), options).unwrap();
        for part in data.chunks(piece.max(1)) {
            writer.write_all(part).unwrap();
        }
        writer.finish().unwrap()
    }

    fn gunzip(gz: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(gz).read_to_end(&mut out).unwrap();
        out
    }

    fn small_chunks(threads: usize) -> PgzipOptions {
        PgzipOptions {
            level: 6,
            threads,
            chunk_size: WINDOW,
        }
    }

    #[test]
    fn round_trips_at_chunk_boundaries() {
        for len in [0, 1, WINDOW - 1, WINDOW, WINDOW + 1, 5 * WINDOW + 123] {
            let data = sample(len, 7);
            for threads in [1, 3] {
                let gz = compress(&data, small_chunks(threads), 1000);
                assert_eq!(gunzip(&gz), data, "len {len}, threads {threads}");
            }
        }
    }

    #[test]
    fn output_does_not_depend_on_threads_or_write_sizes() {
        let data = sample(9 * WINDOW + 17, 11);
        let reference = compress(&data, small_chunks(1), data.len());
        assert_eq!(compress(&data, small_chunks(4), 4096), reference);
        assert_eq!(compress(&data, small_chunks(2), 7), reference);
        assert_eq!(compress(&data, small_chunks(0), 100_000), reference);
    }

    /// Machine code (this test binary) is input on which zlib-rs's output depended on what a
    /// reset compressor had compressed before: one thread and three gave different streams.
    #[test]
    fn output_does_not_depend_on_which_thread_compressed_a_chunk() {
        let mut data = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        data.truncate(1 << 20);
        let options = |threads| PgzipOptions {
            level: 1,
            threads,
            chunk_size: WINDOW,
        };
        let reference = compress(&data, options(1), data.len());
        for threads in [3, 2, 3] {
            assert!(
                compress(&data, options(threads), 65536) == reference,
                "{threads} threads"
            );
        }
    }

    #[test]
    fn every_level_round_trips() {
        let data = sample(3 * WINDOW + 5, 3);
        for level in 0..=9 {
            let options = PgzipOptions {
                level,
                ..small_chunks(2)
            };
            assert_eq!(gunzip(&compress(&data, options, 5000)), data, "level {level}");
        }
    }

    #[test]
    fn header_and_trailer_are_standard() {
        let data = sample(2 * WINDOW + 3, 5);
        let gz = compress(&data, small_chunks(2), 999);
        assert_eq!(gz[..10], [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]);
        let mut crc = Crc::new();
        crc.update(&data);
        let tail = &gz[gz.len() - 8..];
        assert_eq!(tail[..4], crc.sum().to_le_bytes());
        assert_eq!(tail[4..], (data.len() as u32).to_le_bytes());
        let fast = compress(
            &data,
            PgzipOptions {
                level: 1,
                ..small_chunks(1)
            },
            999,
        );
        assert_eq!(fast[8], 4);
    }

    #[test]
    fn dictionary_carries_matches_across_chunks() {
        // The same 16 KiB of noise over and over: only the first copy should cost anything, which
        // needs the previous chunk's tail as dictionary in every chunk.
        let block = sample(16 * 1024, 99)
            .iter()
            .enumerate()
            .map(|(i, b)| b.wrapping_mul(31).wrapping_add(i as u8))
            .collect::<Vec<u8>>();
        let data: Vec<u8> = block.iter().copied().cycle().take(16 * WINDOW).collect();
        let gz = compress(&data, small_chunks(2), 65536);
        assert_eq!(gunzip(&gz), data);
        // Without the dictionary every chunk would cost about a whole block again (16 x 16 KiB).
        assert!(gz.len() < 2 * block.len(), "compressed to {} bytes", gz.len());
    }

    #[test]
    fn gzip_tool_reads_the_stream() {
        let data = sample(4 * WINDOW + 77, 21);
        let gz = compress(&data, small_chunks(3), 3333);
        let mut child = Command::new("gzip")
            .arg("-dc")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("gzip must be installed to run this test");
        let mut stdin = child.stdin.take().unwrap();
        let feeder = std::thread::spawn(move || stdin.write_all(&gz));
        let output = child.wait_with_output().unwrap();
        feeder.join().unwrap().unwrap();
        assert!(output.status.success());
        assert_eq!(output.stdout, data);
    }

    #[test]
    fn level_above_nine_is_rejected() {
        let options = PgzipOptions {
            level: 10,
            ..PgzipOptions::default()
        };
        let err = PgzipWriter::new(Vec::new(), options).err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn dropping_without_finish_stops_the_workers() {
        let mut writer = PgzipWriter::new(Vec::new(), small_chunks(2)).unwrap();
        writer.write_all(&sample(10 * WINDOW, 1)).unwrap();
        drop(writer); // must not hang
    }

    #[test]
    fn write_errors_are_reported() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::other("disk full"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut writer = PgzipWriter::new(Broken, small_chunks(2)).unwrap();
        let result = writer
            .write_all(&sample(20 * WINDOW, 2))
            .and_then(|()| writer.finish().map(|_| ()));
        assert_eq!(result.unwrap_err().to_string(), "disk full");
    }
}
