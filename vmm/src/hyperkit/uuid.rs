//! Random (version 4) UUIDs for the VM's DMI UUID and vpnkit's UUID, and their parsing.

use std::fs::File;
use std::io::Read;

/// Formats 16 bytes as a version 4, RFC 4122 variant UUID (`xxxxxxxx-xxxx-4xxx-[89ab]xxx-xxxxxxxxxxxx`).
fn format_v4(mut bytes: [u8; 16]) -> String {
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// A new random UUID, from `/dev/urandom`.
pub fn new_uuid() -> std::io::Result<String> {
    let mut bytes = [0u8; 16];
    File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(format_v4(bytes))
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
        assert_eq!(format_v4([0xff; 16]), "ffffffff-ffff-4fff-bfff-ffffffffffff");
        assert_eq!(format_v4([0; 16]), "00000000-0000-4000-8000-000000000000");
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
