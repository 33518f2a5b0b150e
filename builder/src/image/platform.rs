//! OCI platforms (`os/architecture[/variant]`) and how an index entry is chosen for one.

use std::fmt;

use super::ImageError;

/// An OCI platform such as `linux/amd64` or `linux/arm/v7`.
///
/// Architectures are stored with OCI (Go) names: [`Platform::parse`] and [`Platform::host`] map
/// `x86_64` to `amd64`, `aarch64` to `arm64` and so on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Platform {
    /// Operating system, e.g. `linux`.
    pub os: String,
    /// Architecture with its OCI name, e.g. `amd64`, `arm64`, `riscv64`.
    pub architecture: String,
    /// CPU variant, e.g. `v7` for `arm`; `None` when not given.
    pub variant: Option<String>,
}

impl Platform {
    /// A platform from its parts; the architecture is mapped to its OCI name.
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        Platform {
            os: os.to_string(),
            architecture: oci_architecture(architecture).to_string(),
            variant: variant.filter(|v| !v.is_empty()).map(str::to_string),
        }
    }

    /// `linux/<architecture>` without a variant.
    pub fn linux(architecture: &str) -> Platform {
        Platform::new("linux", architecture, None)
    }

    /// Parses `os/architecture[/variant]`, e.g. `linux/arm64/v8` (as LinuxKit's `platforms:` field).
    pub fn parse(text: &str) -> Result<Platform, ImageError> {
        let invalid = |why: &str| ImageError::InvalidPlatform {
            platform: text.to_string(),
            reason: why.to_string(),
        };
        // Go's v1.ParsePlatform allows an `:osversion` suffix; it plays no part in Linux images.
        let main = text.split_once(':').map_or(text, |(main, _)| main);
        let parts: Vec<&str> = main.split('/').collect();
        if parts.len() < 2 || parts.len() > 3 {
            return Err(invalid("expected os/architecture or os/architecture/variant"));
        }
        if parts.iter().any(|p| p.is_empty() || p.contains(char::is_whitespace)) {
            return Err(invalid("empty or blank component"));
        }
        Ok(Platform::new(parts[0], parts[1], parts.get(2).copied()))
    }

    /// The platform of the machine we run on, always with OS `linux` (images are Linux images).
    pub fn host() -> Platform {
        let arch = match std::env::consts::ARCH {
            // Rust names the 64-bit PowerPC target family "powerpc64" for both byte orders; Linux
            // images only exist for the little-endian one.
            "powerpc64" => "ppc64le",
            other => other,
        };
        Platform::linux(arch)
    }

    /// The variant used for comparisons: `arm64` means `v8` and `arm` means `v7` unless another
    /// variant is given, as containerd normalises them.
    fn effective_variant(&self) -> Option<&str> {
        normalized_variant(&self.architecture, self.variant.as_deref())
    }

    /// Whether an index entry's platform satisfies this (requested) platform: same OS and
    /// architecture, and the same variant when both name one (after normalisation).
    pub fn matches(&self, candidate: &Platform) -> bool {
        if self.os != candidate.os || self.architecture != candidate.architecture {
            return false;
        }
        match (self.variant.as_ref(), candidate.variant.as_ref()) {
            // Either side unspecific: LinuxKit matches on OS and architecture only.
            (None, _) | (_, None) => true,
            _ => self.effective_variant() == candidate.effective_variant(),
        }
    }

    /// Whether the variants agree exactly after normalisation (used to prefer the best entry).
    fn matches_exactly(&self, candidate: &Platform) -> bool {
        self.os == candidate.os
            && self.architecture == candidate.architecture
            && self.effective_variant() == candidate.effective_variant()
    }

    /// Picks the entry for this platform among `(index, platform)` candidates: an exact variant
    /// match first, otherwise the first entry that [`Platform::matches`].
    pub(crate) fn select<'a, I>(&self, candidates: I) -> Option<usize>
    where
        I: IntoIterator<Item = (usize, &'a Platform)> + Clone,
    {
        candidates
            .clone()
            .into_iter()
            .find(|(_, p)| self.matches_exactly(p))
            .or_else(|| candidates.into_iter().find(|(_, p)| self.matches(p)))
            .map(|(i, _)| i)
    }
}

impl Default for Platform {
    fn default() -> Self {
        Platform::host()
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

/// Maps uname/Rust/Debian architecture names to the OCI (Go) ones; unknown names pass through.
pub fn oci_architecture(arch: &str) -> &str {
    match arch {
        "x86_64" | "x86-64" | "x64" => "amd64",
        "aarch64" | "armv8" => "arm64",
        "armhf" | "armel" | "armv7l" | "armv6l" => "arm",
        "i386" | "i486" | "i586" | "i686" | "x86" => "386",
        "powerpc64le" | "ppc64el" => "ppc64le",
        "riscv64gc" => "riscv64",
        other => other,
    }
}

fn normalized_variant<'a>(arch: &str, variant: Option<&'a str>) -> Option<&'a str> {
    match (arch, variant) {
        ("arm64", None | Some("v8") | Some("8")) => Some("v8"),
        ("arm", None | Some("7")) => Some("v7"),
        ("arm", Some("6")) => Some("v6"),
        (_, v) => v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_maps_architecture_names() {
        let p = Platform::parse("linux/arm64/v8").unwrap();
        assert_eq!(p, Platform::new("linux", "arm64", Some("v8")));
        assert_eq!(p.to_string(), "linux/arm64/v8");
        assert_eq!(Platform::parse("linux/x86_64").unwrap(), Platform::linux("amd64"));
        assert_eq!(Platform::parse("linux/aarch64").unwrap().architecture, "arm64");
        for bad in ["linux", "", "linux/", "/amd64", "a/b/c/d", "linux/ amd64"] {
            assert!(Platform::parse(bad).is_err(), "{bad:?} must be rejected");
        }
    }

    #[test]
    fn host_uses_oci_names() {
        let host = Platform::host();
        assert_eq!(host.os, "linux");
        assert_ne!(host.architecture, "x86_64");
        assert_ne!(host.architecture, "aarch64");
        #[cfg(target_arch = "x86_64")]
        assert_eq!(host, Platform::linux("amd64"));
    }

    #[test]
    fn arm64_without_variant_is_v8() {
        let want = Platform::linux("arm64");
        assert!(want.matches(&Platform::new("linux", "arm64", Some("v8"))));
        assert!(Platform::parse("linux/arm64/v8")
            .unwrap()
            .matches(&Platform::linux("arm64")));
        assert!(!want.matches(&Platform::linux("amd64")));
        assert!(!Platform::new("linux", "arm", Some("v7")).matches(&Platform::new("linux", "arm", Some("v6"))));
    }

    #[test]
    fn select_prefers_exact_variant() {
        let entries = [
            Platform::new("linux", "arm", Some("v6")),
            Platform::linux("amd64"),
            Platform::new("linux", "arm", Some("v7")),
        ];
        let candidates = entries.iter().enumerate();
        let want = Platform::new("linux", "arm", Some("v7"));
        assert_eq!(want.select(candidates.clone()), Some(2));
        // `arm` without a variant means v7, as in containerd.
        assert_eq!(Platform::linux("arm").select(candidates.clone()), Some(2));
        assert_eq!(
            Platform::new("linux", "arm", Some("v6")).select(candidates.clone()),
            Some(0)
        );
        assert_eq!(Platform::linux("amd64").select(candidates.clone()), Some(1));
        assert_eq!(Platform::linux("riscv64").select(candidates), None);
    }
}
