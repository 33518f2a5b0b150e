//! Throughput of the initrd compressor: the same ~200 MB of mixed text and binary data compressed
//! at several levels with 1 and 2 threads, printing wall MB/s, MB per CPU-second and the ratio.
//!
//! Run with `cargo bench -p builder --bench pgzip_throughput`; set `PGZIP_MB` to change the size
//! and `PGZIP_LEVELS` (e.g. `1,4,6`) to change the levels.

use std::io::{self, Write};
use std::time::Instant;

use builder::output::{PgzipOptions, PgzipWriter};

/// Counts bytes and throws them away.
struct Counter(u64);

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Deterministic data: runs of text-like words mixed with pseudo-random bytes, about 3:1 with gzip.
fn data(len: usize) -> Vec<u8> {
    const WORDS: [&[u8]; 8] = [
        b"kernel ",
        b"module ",
        b"\x00\x00\x00\x00",
        b"GLIBC_2.34 ",
        b"/usr/lib/",
        b"\x7fELF",
        b"return ",
        b"config ",
    ];
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        if state.is_multiple_of(4) {
            out.extend_from_slice(&state.to_le_bytes());
        } else {
            out.extend_from_slice(WORDS[(state >> 8) as usize % WORDS.len()]);
        }
    }
    out.truncate(len);
    out
}

/// User + system CPU seconds of this process (Linux).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn main() -> io::Result<()> {
    let mb: usize = std::env::var("PGZIP_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let levels: Vec<u32> = std::env::var("PGZIP_LEVELS")
        .unwrap_or_else(|_| "1,4,6".into())
        .split(',')
        .filter_map(|l| l.parse().ok())
        .collect();
    let input = data(mb << 20);
    for level in levels {
        for threads in [1, 2] {
            let (wall, cpu) = (Instant::now(), cpu_seconds());
            let mut writer = PgzipWriter::new(
                Counter(0),
                PgzipOptions {
                    level,
                    threads,
                    ..PgzipOptions::default()
                },
            )?;
            for chunk in input.chunks(256 * 1024) {
                writer.write_all(chunk)?;
            }
            let out = writer.finish()?.0;
            let (wall, cpu) = (wall.elapsed().as_secs_f64(), cpu_seconds() - cpu);
            println!(
                "level {level} threads {threads}: {:7.1} MB/s wall, {:7.1} MB per CPU-second, ratio {:.3}",
                mb as f64 / wall,
                mb as f64 / cpu.max(0.01),
                out as f64 / input.len() as f64
            );
        }
    }
    Ok(())
}
