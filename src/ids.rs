//! Identifiers of the spec's section 1: partition and snapshot ids, chunk ids.

use std::fmt;

/// Longest id the spec's alphabet allows: one leading character and up to 127 more.
pub(crate) const MAX_ID_LEN: usize = 128;

/// Why a partition or snapshot id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("id is empty")]
    Empty,
    #[error("id is {0} bytes long, more than {MAX_ID_LEN}")]
    TooLong(usize),
    #[error("id must start with a letter or digit")]
    BadFirst,
    #[error("id has a character outside [A-Za-z0-9._-] at byte {0}")]
    BadChar(usize),
}

/// Checks `[A-Za-z0-9][A-Za-z0-9._-]{0,127}`.
pub fn check_id(s: &str) -> Result<(), IdError> {
    let bytes = s.as_bytes();
    let Some(first) = bytes.first() else {
        return Err(IdError::Empty);
    };
    if bytes.len() > MAX_ID_LEN {
        return Err(IdError::TooLong(bytes.len()));
    }
    if !first.is_ascii_alphanumeric() {
        return Err(IdError::BadFirst);
    }
    match bytes.iter().position(|&b| !is_id_byte(b)) {
        Some(at) => Err(IdError::BadChar(at)),
        None => Ok(()),
    }
}

pub(crate) fn is_id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
}

macro_rules! text_id {
    ($name:ident, $what:literal) => {
        #[doc = concat!("A validated ", $what, " id.")]
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            pub fn parse(s: &str) -> Result<Self, IdError> {
                check_id(s)?;
                Ok(Self(s.to_owned()))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::parse(s)
            }
        }
    };
}

text_id!(PartitionId, "partition");
text_id!(SnapshotId, "snapshot");

/// A chunk id: the SHA-256 of the chunk's content.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChunkId(pub [u8; 32]);

/// splitmix64's finaliser: a bijection with good avalanche. The one mixer of the project: the
/// filter derives its hashes from it, the test kits their deterministic ids.
pub fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl ChunkId {
    /// Parses exactly 64 lowercase hex digits, the form used in object names.
    pub fn from_hex(s: &str) -> Option<Self> {
        Self::from_hex_bytes(s.as_bytes())
    }

    /// [`ChunkId::from_hex`] over raw bytes (a file name, say).
    /// Runs once per listed chunk: `const_hex` decodes and checks the digits with SIMD, and
    /// the case check is a branch-free pass the compiler vectorises.
    pub(crate) fn from_hex_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != 64 || bytes.iter().fold(false, |upper, b| upper | b.is_ascii_uppercase()) {
            return None;
        }
        let mut id = [0u8; 32];
        const_hex::decode_to_slice(bytes, &mut id).ok()?;
        Some(Self(id))
    }

    pub fn to_hex(&self) -> String {
        const_hex::encode(self.0)
    }
}

impl fmt::Debug for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChunkId({})", self.to_hex())
    }
}

impl fmt::Display for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_the_alphabet() {
        assert!(check_id("a").is_ok());
        assert!(check_id("snap-0007.v2_x").is_ok());
        assert!(check_id(&"a".repeat(128)).is_ok());
        assert_eq!(check_id(&"a".repeat(129)), Err(IdError::TooLong(129)));
        assert_eq!(check_id(""), Err(IdError::Empty));
        assert_eq!(check_id("-a"), Err(IdError::BadFirst));
        assert_eq!(check_id(".."), Err(IdError::BadFirst));
        assert_eq!(check_id("a/b"), Err(IdError::BadChar(1)));
        assert_eq!(check_id("a%2e"), Err(IdError::BadChar(1)));
        assert_eq!(check_id("aé"), Err(IdError::BadChar(1)));
        assert_eq!(check_id("a\0"), Err(IdError::BadChar(1)));
    }

    #[test]
    fn chunk_hex_is_strict() {
        let hex = "ab".repeat(32);
        assert_eq!(ChunkId::from_hex(&hex).map(|c| c.to_hex()), Some(hex.clone()));
        assert!(ChunkId::from_hex(&hex.to_uppercase()).is_none());
        assert!(ChunkId::from_hex(&hex[..62]).is_none());
        assert!(ChunkId::from_hex(&format!("{hex}0")).is_none());
        assert!(ChunkId::from_hex(&format!("0x{}", &hex[..62])).is_none(), "a 0x prefix is not a digit");
    }

    /// The rule, spelled out: exactly 64 digits of `[0-9a-f]`.
    fn is_chunk_hex(bytes: &[u8]) -> bool {
        bytes.len() == 64 && bytes.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    }

    proptest::proptest! {
        /// Valid names with a few characters replaced and the length sometimes changed.
        #[test]
        fn chunk_hex_accepts_exactly_lowercase_digits(
            digits in proptest::collection::vec(proptest::sample::select(b"0123456789abcdef".to_vec()), 64),
            edits in proptest::collection::vec((0..64usize, proptest::sample::select(b"09afAFgxX/.\0 ".to_vec())), 0..3),
            length in proptest::sample::select(vec![62usize, 63, 64, 64, 64, 64, 65]),
        ) {
            let mut raw = digits;
            for (at, c) in edits {
                raw[at] = c;
            }
            raw.resize(length, b'a');
            let parsed = ChunkId::from_hex_bytes(&raw);
            proptest::prop_assert_eq!(parsed.is_some(), is_chunk_hex(&raw));
            if let Some(id) = parsed {
                proptest::prop_assert_eq!(id.to_hex().into_bytes(), raw);
            }
        }

        #[test]
        fn chunk_hex_round_trips(id: [u8; 32]) {
            proptest::prop_assert_eq!(ChunkId::from_hex(&ChunkId(id).to_hex()), Some(ChunkId(id)));
        }
    }
}
