//! The content digest of a resolved spec: `sha256:` over a canonical form of everything a build
//! reads, so that two resolutions with the same digest build the same image.
//!
//! The canonical form is JSON (written by `serde_json`, so its bytes depend only on the values):
//! the form's version, the target platform, the merged spec model (what the YAML means, not how
//! it is written: whitespace, comments, quoting and key order do not count), every image
//! reference with the digest it is pinned to (the platform's manifest for images unpacked as
//! filesystems, the index for `format: oci` volumes), and the digest of each host file a
//! `files[].source` copies.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::image::{sha256_digest, Platform};
use crate::spec::model::Moby;

/// The version of the canonical form: changing the form changes it, so that no digest of an
/// older form matches one of the new.
const FORM: u32 = 1;

/// What the digest covers.
#[derive(Serialize)]
pub(crate) struct Canonical<'a> {
    form: u32,
    platform: String,
    spec: &'a Moby,
    /// Reference (as written, expanded) → digest of the platform's manifest.
    images: &'a BTreeMap<String, String>,
    /// Reference → digest of the index a `format: oci` volume copies.
    oci_volumes: &'a BTreeMap<String, String>,
    /// Per `files` entry: the digest of the host file its `source` names, if it copies one.
    sources: &'a [Option<String>],
}

impl<'a> Canonical<'a> {
    /// The canonical form of `spec` built for `platform` from these images and host files.
    pub(crate) fn new(
        spec: &'a Moby,
        platform: &Platform,
        images: &'a BTreeMap<String, String>,
        oci_volumes: &'a BTreeMap<String, String>,
        sources: &'a [Option<String>],
    ) -> Canonical<'a> {
        Canonical {
            form: FORM,
            platform: platform.to_string(),
            spec,
            images,
            oci_volumes,
            sources,
        }
    }

    /// `sha256:<hex>` of the canonical form.
    pub(crate) fn digest(&self) -> Result<String, serde_json::Error> {
        Ok(sha256_digest(&serde_json::to_vec(self)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(spec: &Moby, platform: &str, images: &[(&str, &str)], sources: &[Option<String>]) -> String {
        let images: BTreeMap<String, String> = images.iter().map(|(r, d)| (r.to_string(), d.to_string())).collect();
        let platform = Platform::parse(platform).unwrap();
        Canonical::new(spec, &platform, &images, &BTreeMap::new(), sources)
            .digest()
            .unwrap()
    }

    #[test]
    fn every_part_of_the_form_counts() {
        let spec = Moby {
            init: vec!["example.org/init:1".into()],
            ..Moby::default()
        };
        let images = [("example.org/init:1", "sha256:aa")];
        let base = digest(&spec, "linux/amd64", &images, &[]);
        assert!(base.starts_with("sha256:") && base.len() == 71, "{base}");
        assert_eq!(digest(&spec, "linux/amd64", &images, &[]), base);
        assert_ne!(digest(&spec, "linux/arm64", &images, &[]), base);
        assert_ne!(
            digest(&spec, "linux/amd64", &[("example.org/init:1", "sha256:bb")], &[]),
            base
        );
        assert_ne!(digest(&spec, "linux/amd64", &images, &[Some("sha256:cc".into())]), base);
        let mut changed = spec.clone();
        changed.kernel.cmdline = "console=ttyS0".into();
        assert_ne!(digest(&changed, "linux/amd64", &images, &[]), base);
    }
}
