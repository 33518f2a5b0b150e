//! Image references, normalised the way LinuxKit normalises them.
//!
//! LinuxKit expands `redis` to `docker.io/library/redis` and `foo/bar` to `docker.io/foo/bar`, but it
//! does not add `:latest`: the expanded string is what it records in `LINUXKIT.source` and in metadata
//! files. In the cache's `index.json` we name untagged images with `:latest` (as `linuxkit cache pull`
//! does); lookups also accept the bare name that `linuxkit build` writes.

use std::fmt;

/// A parsed, expanded image reference: `locator[:tag][@digest]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    /// `registry/repository`, e.g. `docker.io/library/alpine`.
    locator: String,
    /// Tag, if any.
    tag: Option<String>,
    /// Digest (`sha256:…`), if any.
    digest: Option<String>,
}

/// Why a string is not an image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// Empty string.
    #[error("empty image reference")]
    Empty,
    /// Contains a URL scheme, whitespace or other forbidden characters.
    #[error("invalid image reference {0:?}: {1}")]
    Invalid(String, &'static str),
}

/// Expands a user-written reference as LinuxKit's `util.ReferenceExpand` does (no tag is added).
pub fn expand(reference: &str) -> String {
    let parts: Vec<&str> = reference.split('/').collect();
    match parts.len() {
        1 => format!("docker.io/library/{reference}"),
        2 if !parts[0].contains('.') && !parts[0].contains(':') && parts[0] != "localhost" => {
            format!("docker.io/{reference}")
        }
        _ => reference.to_string(),
    }
}

impl Reference {
    /// Expands and parses a user-written reference.
    pub fn parse(reference: &str) -> Result<Reference, ReferenceError> {
        if reference.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let bad = |why| ReferenceError::Invalid(reference.to_string(), why);
        if reference.contains("://") {
            return Err(bad("a reference has no URL scheme"));
        }
        if reference.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("a reference contains no whitespace"));
        }
        let expanded = expand(reference);
        let (host, path) = match expanded.split_once('/') {
            Some((host, path)) => (host, path),
            None => (expanded.as_str(), ""),
        };
        if host.is_empty() {
            return Err(bad("a reference needs a registry host"));
        }
        // The object (tag and/or digest) starts at the first ':' or '@' of the path part.
        let (repo, object) = match path.find([':', '@']) {
            Some(i) => (&path[..i], &path[i..]),
            None => (path, ""),
        };
        if repo.is_empty() {
            return Err(bad("a reference needs a repository name"));
        }
        if repo.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
            return Err(bad("repository path components must not be empty, '.' or '..'"));
        }
        let (tag, digest) = match object.strip_prefix(':') {
            Some(rest) => match rest.split_once('@') {
                Some((tag, digest)) => (Some(tag), Some(digest)),
                None => (Some(rest), None),
            },
            None => (None, object.strip_prefix('@')),
        };
        if let Some(tag) = tag {
            if tag.is_empty() || tag.contains([':', '/']) {
                return Err(bad("a tag is non-empty and has no ':' or '/'"));
            }
        }
        if let Some(digest) = digest {
            let valid = digest.split_once(':').is_some_and(|(alg, hex)| {
                !alg.is_empty() && !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_alphanumeric())
            });
            if !valid {
                return Err(bad("a digest looks like sha256:<hex>"));
            }
        }
        Ok(Reference {
            locator: format!("{host}/{repo}"),
            tag: tag.map(str::to_string),
            digest: digest.map(str::to_string),
        })
    }

    /// Registry host, e.g. `docker.io` or `localhost:5000`.
    pub fn registry(&self) -> &str {
        self.locator.split_once('/').map_or(&self.locator[..], |(host, _)| host)
    }

    /// Repository path without the registry, e.g. `library/alpine`.
    pub fn repository(&self) -> &str {
        self.locator.split_once('/').map_or("", |(_, repo)| repo)
    }

    /// `registry/repository`.
    pub fn locator(&self) -> &str {
        &self.locator
    }

    /// The tag, if one was written.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if one was written.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// The name under which LinuxKit's cache stores this reference: untagged, digest-less references
    /// get `:latest`.
    pub fn cache_name(&self) -> String {
        if self.tag.is_none() && self.digest.is_none() {
            format!("{}:latest", self.locator)
        } else {
            self.to_string()
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.locator)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_like_linuxkit() {
        assert_eq!(expand("alpine"), "docker.io/library/alpine");
        assert_eq!(expand("linuxkit/init:v1"), "docker.io/linuxkit/init:v1");
        assert_eq!(expand("localhost/x"), "localhost/x");
        assert_eq!(expand("localhost:5000/x"), "localhost:5000/x");
        assert_eq!(expand("quay.io/a/b"), "quay.io/a/b");
    }

    #[test]
    fn parses_tags_and_digests() {
        let r = Reference::parse("localhost:5000/conformance/hello:v1@sha256:b1c8").unwrap();
        assert_eq!(r.registry(), "localhost:5000");
        assert_eq!(r.repository(), "conformance/hello");
        assert_eq!(r.tag(), Some("v1"));
        assert_eq!(r.digest(), Some("sha256:b1c8"));
        assert_eq!(r.to_string(), "localhost:5000/conformance/hello:v1@sha256:b1c8");
        let r = Reference::parse("alpine").unwrap();
        assert_eq!(r.to_string(), "docker.io/library/alpine");
        assert_eq!(r.cache_name(), "docker.io/library/alpine:latest");
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "http://x/y", "a b", "x/:tag", "reg/x:", "reg/x@nodigest"] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
