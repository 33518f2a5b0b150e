//! Throughput of the layer path on one core: gunzip (or zstd) + tar parse + flatten + Go-compatible
//! tar write to /dev/null, over a generated ~300 MB layer with a realistic mix of file sizes.
//!
//! Run with `cargo bench -p builder --bench layer_throughput`; set `LAYER_MB` to change the size.

use std::fs::File;
use std::io::{self, BufWriter, Cursor, Read, Write};
use std::time::Instant;

use builder::layer::{flatten, open_layer, LayerSource};
use builder::{EntryKind, EntrySink, Header, TarReader, TarWriter};

/// A small xorshift generator, so the layer is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Text-like content that gzip compresses about 3:1, like binaries and libraries do.
fn fill(rng: &mut Rng, out: &mut Vec<u8>, len: usize) {
    const WORDS: [&[u8]; 16] = [
        b"lib",
        b"\x00\x00\x00\x00",
        b"main",
        b"\x7fELF",
        b"init",
        b"GLIBC_2.34",
        b"memcpy",
        b"\x48\x89\xe5",
        b"config",
        b"/usr/lib/",
        b"error: ",
        b"\xff\xff",
        b"return",
        b"static",
        b"0123456789",
        b"\n",
    ];
    let target = out.len() + len;
    while out.len() < target {
        let r = rng.next();
        if r.is_multiple_of(4) {
            out.extend_from_slice(&r.to_le_bytes()[..3]);
        } else {
            out.extend_from_slice(WORDS[(r >> 8) as usize % WORDS.len()]);
        }
    }
    out.truncate(target);
}

/// Generates an uncompressed layer tar of about `total` bytes.
fn generate(total: usize) -> io::Result<(Vec<u8>, usize)> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut writer = TarWriter::new(Vec::with_capacity(total + total / 8));
    let mut data = Vec::new();
    let mut written = 0;
    let mut entries: usize = 0;
    while written < total {
        let dir = format!("usr/lib/pkg{:04}", entries / 50);
        if entries.is_multiple_of(50) {
            writer.write_header(&Header::new(format!("{dir}/"), EntryKind::Directory, 0o755))?;
        }
        // Mostly small files, some medium, a few large: roughly a distribution's shape (mean ~35 kB).
        let size = match rng.next() % 100 {
            0..=79 => (rng.next() % 4_096) as usize,
            80..=98 => (rng.next() % 131_072) as usize,
            _ => (rng.next() % 4_194_304) as usize,
        };
        data.clear();
        fill(&mut rng, &mut data, size);
        let mut header = Header::new(format!("{dir}/file{entries}.so"), EntryKind::Regular, 0o644);
        header.size = size as u64;
        writer.write_header(&header)?;
        writer.write_data(&data)?;
        written += size + 512;
        entries += 1;
    }
    writer.finish()?;
    Ok((writer.into_inner(), entries))
}

/// CPU time of this thread in seconds (Linux, from /proc; 0 elsewhere), so that the figure does not
/// depend on other processes competing for the core.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/thread-self/stat") else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15 overall.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Clock ticks are 100 per second on every mainstream Linux configuration.
    (ticks(11) + ticks(12)) / 100.0
}

fn mb_per_s(bytes: usize, seconds: f64) -> f64 {
    bytes as f64 / 1e6 / seconds
}

/// Reads a stream to the end in chunks of `buf`'s size.
fn drain(mut reader: impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut total = 0;
    loop {
        let n = reader.read(buf)?;
        if n == 0 {
            return Ok(total);
        }
        total += n;
    }
}

/// Parses a tar stream, reading every entry's data.
fn parse_only(stream: impl Read) -> io::Result<usize> {
    let mut reader = TarReader::new(stream);
    let mut buf = vec![0u8; 256 * 1024];
    let mut entries = 0;
    while reader.next_header().map_err(io::Error::other)?.is_some() {
        drain(&mut reader, &mut buf)?;
        entries += 1;
    }
    Ok(entries)
}

/// The full path: decompress, parse, flatten, write a LinuxKit tar to /dev/null.
fn full_path(blob: &[u8], media_type: &str) -> Result<usize, Box<dyn std::error::Error>> {
    let mut sink = TarWriter::new(BufWriter::with_capacity(1 << 20, File::create("/dev/null")?));
    let mut buf = vec![0u8; 256 * 1024];
    let mut entries = 0;
    let layers = vec![LayerSource::new("sha256:bench", media_type, Cursor::new(blob))];
    flatten(layers, "bench/image:1", |header: &Header, data: &mut dyn Read| {
        let mut header = header.clone();
        header.name = format!("containers/services/bench/lower/{}", header.name);
        header.set_origin("bench/image:1", "services[0]");
        sink.write_header(&header)?;
        loop {
            let n = data.read(&mut buf)?;
            if n == 0 {
                break;
            }
            sink.write_data(&buf[..n])?;
        }
        entries += 1;
        Ok::<(), io::Error>(())
    })?;
    sink.finish()?;
    Ok(entries)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mb: usize = std::env::var("LAYER_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let (tar, entries) = generate(mb * 1_000_000)?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    gz.write_all(&tar)?;
    let gz = gz.finish()?;
    let zst = zstd::encode_all(&tar[..], 3)?;
    println!(
        "layer: {:.1} MB uncompressed, {entries} files, gzip {:.1} MB, zstd {:.1} MB",
        tar.len() as f64 / 1e6,
        gz.len() as f64 / 1e6,
        zst.len() as f64 / 1e6
    );

    for (label, blob, media_type) in [
        ("gzip", &gz, "application/vnd.oci.image.layer.v1.tar+gzip"),
        ("zstd", &zst, "application/vnd.oci.image.layer.v1.tar+zstd"),
        ("none", &tar, "application/vnd.oci.image.layer.v1.tar"),
    ] {
        let start = Instant::now();
        let cpu = cpu_seconds();
        let emitted = full_path(blob, media_type)?;
        let seconds = start.elapsed().as_secs_f64();
        let cpu = cpu_seconds() - cpu;
        println!(
            "{label}: decompress+parse+flatten+write {:7.1} MB/s wall, {:7.1} MB/s per CPU second \
             of uncompressed tar ({emitted} entries, {seconds:.2} s wall, {cpu:.2} s CPU)",
            mb_per_s(tar.len(), seconds),
            mb_per_s(tar.len(), cpu),
        );
    }
    let start = Instant::now();
    let n = drain(
        open_layer("application/vnd.oci.image.layer.v1.tar+gzip", &gz[..])?,
        &mut vec![0u8; 1 << 20],
    )?;
    println!(
        "gunzip only:                      {:7.1} MB/s",
        mb_per_s(n, start.elapsed().as_secs_f64())
    );

    let start = Instant::now();
    parse_only(&tar[..])?;
    println!(
        "tar parse only (uncompressed):    {:7.1} MB/s",
        mb_per_s(tar.len(), start.elapsed().as_secs_f64())
    );

    Ok(())
}
