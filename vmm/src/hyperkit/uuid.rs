//! Random (version 4) UUIDs for the VM's DMI UUID and vpnkit's UUID, and their parsing.

/// A new random (version 4) UUID, from `/dev/urandom`.
pub fn new_uuid() -> std::io::Result<String> {
    crate::random::uuid_v4()
}

/// Parses a UUID in the 8-4-4-4-12 hex form (any case, surrounding white space ignored) and
/// returns it in lower case, as vpnkit and hyperkit print it. `None` if it is not one.
pub fn parse_uuid(text: &str) -> Option<String> {
    let text = text.trim();
    let groups: Vec<&str> = text.split('-').collect();
    let shape = [8, 4, 4, 4, 12];
    let ok = groups.len() == shape.len()
        && groups
            .iter()
            .zip(shape)
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()));
    ok.then(|| text.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_bits_and_shape() {
        let a = new_uuid().unwrap();
        assert_eq!(parse_uuid(&a).as_deref(), Some(a.as_str()));
        assert_ne!(a, new_uuid().unwrap());
    }

    #[test]
    fn parsing() {
        assert_eq!(
            parse_uuid(" 0123ABCD-89ab-cdef-0123-456789ABCDEF\n").as_deref(),
            Some("0123abcd-89ab-cdef-0123-456789abcdef")
        );
        assert_eq!(parse_uuid("0123abcd89abcdef0123456789abcdef"), None);
        assert_eq!(parse_uuid("0123abcd-89ab-cdef-0123-456789abcdeg"), None);
        assert_eq!(parse_uuid(""), None);
    }
}
