//! `moby build`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use builder::build::{build, BuildOptions};
use builder::image::{parse_mirror, Platform, Store};
use builder::output::{self, Format, OutputFile, SinkOptions, Tee};
use builder::pkg::Packages;
use builder::progress::Progress;
use builder::spec::{self, MetadataFormat, Source};
use builder::tar::EntrySink;

use crate::cli::BuildArgs;

/// The output name when the spec comes from stdin, as in LinuxKit.
const STDIN_NAME: &str = "moby";

pub fn run(args: BuildArgs, progress: Option<Arc<dyn Progress>>) -> Result<()> {
    // Flags first: a mistake in them is reported before any spec is read.
    let formats = formats(&args)?;
    let destination = destination(&args, &formats)?;
    let options = BuildOptions {
        cache_dir: args.cache.clone().unwrap_or_else(Store::default_dir),
        always_pull: args.pull,
        mirrors: args.mirrors.iter().map(|m| parse_mirror(m)).collect::<Result<_, _>>()?,
        platform: match &args.arch {
            Some(arch) => target_platform(arch)?,
            None => Platform::host(),
        },
        docker_config: args.docker_config.clone(),
        progress,
    };

    crate::remove_partial_outputs_on_signals()?;
    let sources = read_sources(&args.files)?;
    let moby = spec::load(&sources, Some(&Packages)).map_err(|errors| anyhow::anyhow!("invalid spec:\n{errors}"))?;
    if args.dry_run {
        return crate::print_text(spec::metadata(&moby, MetadataFormat::Yaml));
    }
    std::fs::create_dir_all(&destination.dir)
        .with_context(|| format!("cannot create output directory {}", destination.dir.display()))?;

    let mut sink_options = SinkOptions {
        output_file: destination.output_file.clone(),
        ..SinkOptions::default()
    };
    if let Some(level) = args.compression_level {
        sink_options.gzip.level = level;
    }
    let mut sinks = Vec::new();
    for format in &formats {
        let sink = output::sink_for(*format, &destination.dir, &destination.name, &sink_options)
            .with_context(|| format!("preparing the {format} output"))?;
        sinks.push(sink);
    }
    let mut sink: Box<dyn EntrySink + Send> = if sinks.len() == 1 {
        sinks.remove(0)
    } else {
        Box::new(Tee::new(sinks))
    };
    build(&moby, &options, sink.as_mut())?;
    Ok(())
}

/// The architectures LinuxKit builds images for, by their OCI names.
const ARCHITECTURES: [&str; 4] = ["amd64", "arm64", "riscv64", "s390x"];

/// The platform for `--arch` (OCI names, or the kernel's `x86_64` and `aarch64`).
fn target_platform(arch: &str) -> Result<Platform> {
    let platform = Platform::linux(arch);
    if !ARCHITECTURES.contains(&platform.architecture.as_str()) {
        bail!(
            "--arch {arch:?} is not an architecture LinuxKit builds images for: use one of {} (x86_64 and aarch64 are accepted too)",
            ARCHITECTURES.join(", ")
        );
    }
    Ok(platform)
}

/// Reads every spec file (or stdin for `-`), each at most `spec::MAX_SPEC_BYTES`.
fn read_sources(files: &[String]) -> Result<Vec<Source>> {
    files
        .iter()
        .map(|file| {
            if file == "-" {
                return Ok(Source::read("<stdin>", std::io::stdin().lock())?);
            }
            let opened = std::fs::File::open(file).with_context(|| format!("cannot read spec file {file}"))?;
            Ok(Source::read(file, opened)?)
        })
        .collect()
}

/// The formats to build: the flags', else `tar` when writing to `-o`, else `kernel+initrd`.
fn formats(args: &BuildArgs) -> Result<Vec<Format>> {
    let names: Vec<&str> = if args.format.is_empty() {
        vec![if args.output.is_some() { "tar" } else { "kernel+initrd" }]
    } else {
        args.format.iter().map(String::as_str).collect()
    };
    let mut formats = Vec::new();
    for name in names {
        let format: Format = name.parse()?;
        if !formats.contains(&format) {
            formats.push(format);
        }
    }
    Ok(formats)
}

/// Where the outputs go.
struct Destination {
    dir: PathBuf,
    name: String,
    output_file: Option<OutputFile>,
}

/// LinuxKit's naming: `-o` for one streamable format, else `DIR/NAME.tar`, `DIR/NAME-kernel`, ...
fn destination(args: &BuildArgs, formats: &[Format]) -> Result<Destination> {
    if let Some(output) = &args.output {
        if formats.len() > 1 {
            bail!(
                "-o writes a single output, but {} formats were asked for",
                formats.len()
            );
        }
        if args.name.is_some() || args.dir.is_some() {
            bail!("-o cannot be combined with --name or --dir");
        }
        if !formats[0].is_streamable() {
            bail!(
                "-o cannot be used with format {}: it writes several files; use --dir and --name",
                formats[0]
            );
        }
        return Ok(Destination {
            dir: PathBuf::from("."),
            name: STDIN_NAME.into(),
            output_file: Some(output_file(output)),
        });
    }
    let name = args.name.clone().unwrap_or_else(|| default_name(&args.files));
    output::check_name(&name).with_context(|| match (&args.name, args.files.last()) {
        (None, Some(file)) => format!("{file}: the outputs are named after it; give them a name with --name"),
        _ => "--name".to_string(),
    })?;
    let dir = args.dir.clone().unwrap_or_else(|| PathBuf::from("."));
    Ok(Destination {
        dir,
        name,
        output_file: None,
    })
}

/// The `-o` argument: `-` is standard output.
pub fn output_file(arg: &str) -> OutputFile {
    if arg == "-" {
        OutputFile::Stdout
    } else {
        OutputFile::Path(PathBuf::from(arg))
    }
}

/// The last spec file's name without its extension.
fn default_name(files: &[String]) -> String {
    match files.last().map(String::as_str) {
        None | Some("-") => STDIN_NAME.to_string(),
        Some(file) => Path::new(file)
            .file_stem()
            .map_or_else(|| STDIN_NAME.to_string(), |s| s.to_string_lossy().into_owned()),
    }
}
