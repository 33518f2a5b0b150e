//! Spec problems with their positions: what `load` and `parse_label` report.

use std::fmt;

/// Why a spec file could not be read (before any parsing).
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file is larger than the limit (or endless).
    #[error("{name}: the spec is larger than {limit} bytes, the most moby reads; put large contents in files of their own and name them with `source:`")]
    TooLarge {
        /// The source name.
        name: String,
        /// [`super::MAX_SPEC_BYTES`].
        limit: u64,
    },
    /// The file is not UTF-8 text.
    #[error("{name}: the spec is not UTF-8 text (invalid byte at offset {offset})")]
    NotUtf8 {
        /// The source name.
        name: String,
        /// The offset of the first invalid byte.
        offset: usize,
    },
    /// Reading failed.
    #[error("cannot read the spec {name}: {source}")]
    Io {
        /// The source name.
        name: String,
        /// The error.
        source: std::io::Error,
    },
}

/// What kind of problem a [`SpecError`] is, which tells the caller how LinuxKit would have reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The text is not YAML (or is YAML that LinuxKit's decoder rejects: duplicate keys, bad tags).
    Syntax,
    /// The document does not match LinuxKit's JSON schema (unknown key, wrong type, missing field).
    Schema,
    /// The document matches the schema but LinuxKit's typed decoding rejects it: an integer out of
    /// range for its field, a top level that is not a mapping, a mapping key that is not a string.
    Decode,
    /// The document decodes but a value is unusable (bad capability, duplicate service, ...).
    Semantic,
}

/// One problem in a spec file or image label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    /// The source name (a path as given, `<stdin>`, or `label` for an image label).
    pub file: String,
    /// 1-based line of the offending text; 0 when the source has no useful position (labels).
    pub line: usize,
    /// 1-based column of the offending text; 0 when `line` is 0.
    pub column: usize,
    /// Where in the document, e.g. `onboot[2].capabilities[1]`; empty for the document itself.
    pub path: String,
    /// What is wrong and, where we can tell, what to write instead.
    pub message: String,
    /// Which kind of problem this is.
    pub kind: ErrorKind,
    /// How LinuxKit words this problem, where it has an equivalent: for schema problems the lines of
    /// its validation report without their `- ` (`kernel: Additional property modules is not
    /// allowed`; an `anyOf` failure gives two), for other problems the text of its error
    /// (`duplicate service name: web`). Empty when LinuxKit has no equivalent message.
    pub linuxkit: Vec<String>,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.file)?;
        if self.line > 0 {
            write!(f, "{}:{}:", self.line, self.column)?;
        }
        if !self.path.is_empty() {
            write!(f, " {}:", self.path)?;
        }
        write!(f, " {}", self.message)
    }
}

/// A non-empty list of spec problems, sorted by source and position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecErrors {
    errors: Vec<SpecError>,
}

impl SpecErrors {
    /// Wraps a list of problems; `None` when there are none.
    pub fn from_vec(errors: Vec<SpecError>) -> Option<SpecErrors> {
        (!errors.is_empty()).then_some(SpecErrors { errors })
    }

    /// The problems, in the order they are displayed.
    pub fn errors(&self) -> &[SpecError] {
        &self.errors
    }

    /// Consumes the list.
    pub fn into_vec(self) -> Vec<SpecError> {
        self.errors
    }

    /// How many problems there are (at least one).
    pub fn len(&self) -> usize {
        self.errors.len()
    }

    /// Always false: a `SpecErrors` holds at least one problem.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// Renames the source of every problem, e.g. to say which image a label came from.
    pub fn with_file(mut self, file: &str) -> SpecErrors {
        for error in &mut self.errors {
            error.file = file.to_string();
        }
        self
    }

    /// True when every problem is a schema problem, which LinuxKit reports as one validation report.
    pub fn all_schema(&self) -> bool {
        self.errors.iter().all(|e| e.kind == ErrorKind::Schema)
    }
}

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SpecErrors {}

impl IntoIterator for SpecErrors {
    type Item = SpecError;
    type IntoIter = std::vec::IntoIter<SpecError>;

    fn into_iter(self) -> Self::IntoIter {
        self.errors.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(line: usize, path: &str) -> SpecError {
        SpecError {
            file: "linuxkit.yml".into(),
            line,
            column: if line > 0 { 5 } else { 0 },
            path: path.into(),
            message: "unknown field (did you mean \"capabilities\"?)".into(),
            kind: ErrorKind::Schema,
            linuxkit: Vec::new(),
        }
    }

    #[test]
    fn display_is_one_line_per_error() {
        let errors = SpecErrors::from_vec(vec![error(8, "onboot[0].capabilites"), error(9, "")]).unwrap();
        assert_eq!(
            errors.to_string(),
            "linuxkit.yml:8:5: onboot[0].capabilites: unknown field (did you mean \"capabilities\"?)\n\
             linuxkit.yml:9:5: unknown field (did you mean \"capabilities\"?)"
        );
    }

    #[test]
    fn labels_have_no_position() {
        let errors = SpecErrors::from_vec(vec![error(0, "capabilities")])
            .unwrap()
            .with_file("label");
        assert_eq!(
            errors.to_string(),
            "label: capabilities: unknown field (did you mean \"capabilities\"?)"
        );
        assert!(SpecErrors::from_vec(Vec::new()).is_none());
    }
}
