//! `config.json` and `runtime.json` generation, as LinuxKit generates them.
