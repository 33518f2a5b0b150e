//! The local OCI image-layout cache and registry pulls.
