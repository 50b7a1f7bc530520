//! A webhook signing secret as the server sealed it: opaque bytes, which the store keeps and
//! `switchboard-signing`'s `Sealer` seals and opens. It lives here, with the other values shared
//! by every layer, so that the store and the sealer agree on it without depending on each other.

use std::fmt;

/// A webhook signing secret as the core sealed (encrypted) it; never clear text. Its `Debug`
/// form is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedSecret(pub Vec<u8>);

impl fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealedSecret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        assert_eq!(format!("{:?}", SealedSecret(b"whsec_bytes".to_vec())), "SealedSecret(<redacted>)");
    }
}
