//! The guest's architecture.

use std::fmt;
use std::str::FromStr;

/// Guest architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Arch {
    /// x86_64 (`qemu-system-x86_64`, machine q35).
    X86_64,
    /// aarch64 (`qemu-system-aarch64`, machine virt).
    Aarch64,
}

impl Arch {
    /// The architecture of this host, if qemu supports it here.
    pub fn host() -> Option<Arch> {
        match std::env::consts::ARCH {
            "x86_64" => Some(Arch::X86_64),
            "aarch64" => Some(Arch::Aarch64),
            _ => None,
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        })
    }
}

impl FromStr for Arch {
    type Err = UnknownArch;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "x86_64" | "amd64" => Ok(Arch::X86_64),
            "aarch64" | "arm64" => Ok(Arch::Aarch64),
            _ => Err(UnknownArch(s.to_string())),
        }
    }
}

/// An architecture name that is neither x86_64 nor aarch64.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported architecture {0:?}: use x86_64 or aarch64")]
pub struct UnknownArch(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arch_names() {
        assert_eq!("amd64".parse::<Arch>().unwrap(), Arch::X86_64);
        assert_eq!("x86_64".parse::<Arch>().unwrap(), Arch::X86_64);
        assert_eq!("aarch64".parse::<Arch>().unwrap(), Arch::Aarch64);
        assert_eq!("arm64".parse::<Arch>().unwrap(), Arch::Aarch64);
        assert_eq!("s390x".parse::<Arch>(), Err(UnknownArch("s390x".into())));
        assert_eq!(Arch::Aarch64.to_string(), "aarch64");
    }
}
