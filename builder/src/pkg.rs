//! Packages: `@pkg:DIR` references and their content-derived tags.
