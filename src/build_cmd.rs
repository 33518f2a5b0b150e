//! `moby build`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use builder::{
    build_outputs, resolve, BuildOptions, Cache, Format, HostPaths, MetadataFormat, OutputFile, Outputs, Packages,
    Platform, Progress, Source,
};

use crate::cli::BuildArgs;

/// The output name when the spec comes from stdin, as in LinuxKit.
const STDIN_NAME: &str = "moby";

pub fn run(args: BuildArgs, progress: Option<Arc<dyn Progress>>) -> Result<()> {
    // Flags first: a mistake in them is reported before any spec is read.
    let outputs = outputs(&args)?;
    let mut options = BuildOptions {
        cache_dir: args.cache.clone().unwrap_or_else(Cache::default_dir),
        always_pull: args.pull,
        mirrors: Vec::new(),
        platform: match &args.arch {
            Some(arch) => target_platform(arch)?,
            None => Platform::host(),
        },
        docker_config: args.docker_config.clone(),
        progress,
    };
    for mirror in &args.mirrors {
        options.add_mirror(mirror)?;
    }

    crate::remove_partial_outputs_on_signals()?;
    let sources = read_sources(&args.files)?;
    let spec = builder::load(&sources, host_paths()?, Some(&Packages))?;
    if args.dry_run {
        return crate::print_text(spec.metadata(MetadataFormat::Yaml));
    }
    let resolved = resolve(&spec, &options)?;
    build_outputs(&resolved, &outputs)?;
    Ok(())
}

/// LinuxKit's paths: relative spec paths are relative to where moby runs, `~/` is `$HOME`.
fn host_paths() -> Result<HostPaths> {
    let base_dir = std::env::current_dir().context("cannot find the current directory")?;
    let home_dir = std::env::var_os("HOME")
        .filter(|home| !home.is_empty())
        .map(PathBuf::from);
    Ok(HostPaths { base_dir, home_dir })
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

/// Reads every spec file (or stdin for `-`), each at most `builder::spec::MAX_SPEC_BYTES`.
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

/// LinuxKit's naming: `-o` for one streamable format, else `DIR/NAME.tar`, `DIR/NAME-kernel`, ...
fn outputs(args: &BuildArgs) -> Result<Outputs> {
    let formats = formats(args)?;
    let outputs = if let Some(output) = &args.output {
        let [format] = formats.as_slice() else {
            bail!(
                "-o writes a single output, but {} formats were asked for",
                formats.len()
            );
        };
        if args.name.is_some() || args.dir.is_some() {
            bail!("-o cannot be combined with --name or --dir");
        }
        if !format.is_streamable() {
            bail!("-o cannot be used with format {format}: only tar and docker stream into one file; {format} writes its files into --dir under --name (LinuxKit's names)");
        }
        Outputs::stream(*format, output_file(output))?
    } else {
        let name = args.name.clone().unwrap_or_else(|| default_name(&args.files));
        let dir = args.dir.clone().unwrap_or_else(|| PathBuf::from("."));
        Outputs::in_dir(dir, &name, &formats).with_context(|| match (&args.name, args.files.last()) {
            (None, Some(file)) => format!("{file}: the outputs are named after it; give them a name with --name"),
            _ => "--name".to_string(),
        })?
    };
    let outputs = match args.compression_level {
        Some(level) => outputs.with_compression_level(level),
        None => outputs,
    };
    Ok(match &args.size {
        Some(size) => outputs.with_disk_size(size).context("--size")?,
        None => outputs,
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
