//! API keys: how they are made, hashed and printed.
//!
//! A key is [`KEY_BYTES`] bytes from the operating system's CSPRNG, sent as
//! `tbk_` + unpadded base64url (47 characters). The server stores only the SHA-256 of
//! the whole token as sent ([`hash_key`]), in hex, in the access file.
//!
//! Why an unsalted, fast SHA-256 and not a password hash: a slow, salted hash
//! (argon2, bcrypt, scrypt) exists to make guessing a *low-entropy* secret expensive
//! after a leak. These keys are 256 random bits: no guessing is possible, salted or
//! not, and a leaked access file gives nothing usable. What argon2 would cost is
//! tens of milliseconds of CPU and memory per request (every call authenticates, and
//! the server has two cores), and a salt per caller would forbid finding the caller
//! by its hash: the server would have to try every caller's salt in turn. Option not
//! taken: argon2id, right for passwords that people choose, wrong for random keys.
//!
//! Looking the hash up in a `HashMap` is not constant-time, and need not be: timing
//! can at most tell an attacker something about the *hash* of their own guess, and
//! SHA-256's preimage resistance makes that worthless for finding a key.

use std::fmt;

use base64::Engine;
use ledger_core::domain::chain;
use rand::TryRngCore;
use sha2::{Digest, Sha256};

/// Random bytes in a key: 256 bits, beyond any brute force.
pub const KEY_BYTES: usize = 32;
/// What every key starts with, so a leaked key is recognisable (secret scanners,
/// logs) and a key is never confused with another system's token.
pub const KEY_PREFIX: &str = "tbk_";

/// The SHA-256 of an API key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyHash([u8; 32]);

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyHash({})", self.to_hex())
    }
}

/// Why a `key_sha256` is not a hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyHashError {
    #[error("has {0} characters; a SHA-256 in hex has 64 (copy the line `ledger-server keygen` printed)")]
    Length(usize),
    #[error("is not hexadecimal (0-9, a-f); copy the line `ledger-server keygen` printed, not the key itself")]
    NotHex,
}

impl KeyHash {
    /// Parse 64 hex digits (either case).
    pub fn from_hex(text: &str) -> Result<Self, KeyHashError> {
        let text = text.trim();
        if text.len() != 64 {
            return Err(KeyHashError::Length(text.chars().count()));
        }
        let bytes = chain::from_hex32(text).map_err(|_| KeyHashError::NotHex)?;
        Ok(Self(bytes))
    }

    pub fn to_hex(&self) -> String {
        chain::hex32(&self.0)
    }
}

/// The SHA-256 of `key` exactly as the client sends it (prefix included).
pub fn hash_key(key: &str) -> KeyHash {
    KeyHash(Sha256::digest(key.as_bytes()).into())
}

/// The operating system gave no random bytes.
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random source failed: {0}; no key was made, try again")]
pub struct RandomError(String);

/// A fresh random key: `tbk_` + base64url of [`KEY_BYTES`] bytes straight from the
/// OS CSPRNG (option not taken: the thread-local generator, a CSPRNG too, but one more
/// layer between the key and the kernel for no gain at one key per run).
pub fn generate_key() -> Result<String, RandomError> {
    let mut bytes = [0u8; KEY_BYTES];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| RandomError(e.to_string()))?;
    Ok(format!(
        "{KEY_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

/// What `ledger-server keygen` is asked for.
#[derive(Clone, Debug, Default)]
pub struct KeygenRequest {
    pub name: String,
    pub role: String,
    pub bank: Option<String>,
    pub merchant: Option<String>,
    pub regions: Vec<String>,
    pub organisations: Vec<String>,
    pub certificate_name: Option<String>,
}

/// A new key and the access file entry that admits it.
#[derive(Clone, Debug)]
pub struct Keygen {
    /// The key itself: shown once, stored nowhere.
    pub key: String,
    /// The `[[caller]]` table with the key's SHA-256.
    pub entry: String,
}

#[derive(Debug, thiserror::Error)]
pub enum KeygenError {
    #[error(transparent)]
    Random(#[from] RandomError),
    #[error("no key made: {0} (keygen flags: --bank, --merchant, --region, --organisation, --certificate-name)")]
    Invalid(#[from] super::AccessError),
}

/// Make a key for the caller `request` describes. The entry is checked by the same
/// validation the server runs on its access file, so what keygen prints loads.
pub fn keygen(request: &KeygenRequest) -> Result<Keygen, KeygenError> {
    let key = generate_key()?;
    let quote = |s: &str| toml::Value::String(s.to_owned()).to_string();
    let list = |v: &[String]| v.iter().map(|s| quote(s)).collect::<Vec<_>>().join(", ");
    let mut text = format!(
        "[[caller]]\nname = {}\nrole = {}\nkey_sha256 = {}\n",
        quote(&request.name),
        quote(&request.role),
        quote(&hash_key(&key).to_hex())
    );
    if let Some(bank) = &request.bank {
        text.push_str(&format!("bank = {}\n", quote(bank)));
    }
    if let Some(merchant) = &request.merchant {
        text.push_str(&format!("merchant = {}\n", quote(merchant)));
    }
    if !request.regions.is_empty() {
        text.push_str(&format!("regions = [{}]\n", list(&request.regions)));
    }
    if !request.organisations.is_empty() {
        text.push_str(&format!(
            "organisations = [{}]\n",
            list(&request.organisations)
        ));
    }
    if let Some(name) = &request.certificate_name {
        text.push_str(&format!("certificate_name = {}\n", quote(name)));
    }
    let access = super::Access::from_toml(&text)?;
    let entry = access
        .callers()
        .iter()
        .map(|c| c.to_toml())
        .collect::<String>();
    Ok(Keygen { key, entry })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_fresh_prefixed_and_hash_round_trips_through_hex() {
        let (a, b) = (generate_key().unwrap(), generate_key().unwrap());
        assert_ne!(a, b);
        assert!(a.starts_with(KEY_PREFIX));
        assert_eq!(a.len(), KEY_PREFIX.len() + 43);
        let h = hash_key(&a);
        assert_eq!(KeyHash::from_hex(&h.to_hex()), Ok(h));
        assert_eq!(KeyHash::from_hex(&h.to_hex().to_uppercase()), Ok(h));
        // The well-known SHA-256 of "abc".
        assert_eq!(
            hash_key("abc").to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(KeyHash::from_hex("ab"), Err(KeyHashError::Length(2)));
        // Multi-byte characters are not hex, and never index past the text.
        assert_eq!(
            KeyHash::from_hex(&"é".repeat(32)),
            Err(KeyHashError::NotHex)
        );
    }

    #[test]
    fn keygen_prints_an_entry_that_admits_its_key_and_refuses_what_the_server_would() {
        let made = keygen(&KeygenRequest {
            name: "bank-a".into(),
            role: "bank".into(),
            bank: Some("bank-a".into()),
            ..Default::default()
        })
        .unwrap();
        let access = super::super::Access::from_toml(&made.entry).unwrap();
        assert_eq!(
            access.by_key(&hash_key(&made.key)).map(|c| c.name.as_str()),
            Some("bank-a")
        );
        assert!(
            !made.entry.contains(&made.key),
            "the key itself is never in the entry"
        );
        let refused = keygen(&KeygenRequest {
            name: "bank-a".into(),
            role: "bank".into(),
            merchant: Some("m".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(refused.to_string().contains("merchant"), "{refused}");
    }
}
