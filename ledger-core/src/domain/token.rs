//! Redemption tokens: what a volunteer's app shows the merchant as a QR code.
//!
//! A token says "volunteer V may redeem up to P points, until T, once" and is signed by
//! the ledger, so a merchant's till cannot forge or alter one and the ledger needs no
//! table of issued tokens: issuing is stateless, and single use is enforced when the
//! token is spent (the hold records the token's id on the volunteer's stream, and a
//! second hold with the same id is refused, `TOKEN_ALREADY_USED`).
//!
//! Format: `tbr1.` ‖ base64url(claims JSON) ‖ `.` ‖ base64url(MAC), no padding, where
//! MAC = BLAKE3 keyed hash (32-byte server key) of the prefix and the claims. BLAKE3's
//! keyed mode is a PRF/MAC by design, and BLAKE3 is already the ledger's hash. Options
//! not taken: JWTs (a parser with algorithm negotiation for a token only this server
//! reads); public-key signatures (merchants never verify tokens themselves, the ledger
//! does).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::account::AccountId;
use super::units::Points;

/// Version prefix of every token this build issues.
pub const TOKEN_PREFIX: &str = "tbr1";
/// Longest token text accepted: claims of the longest account id and amount fit in
/// ~250 bytes; 512 refuses junk before any decoding.
pub const TOKEN_BYTES_MAX: usize = 512;

/// The server's secret token key (32 bytes).
#[derive(Clone)]
pub struct TokenKey([u8; 32]);

impl TokenKey {
    pub fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    fn mac(&self, signed: &[u8]) -> [u8; 32] {
        *blake3::keyed_hash(&self.0, signed).as_bytes()
    }
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(…)")
    }
}

/// What a token grants.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedemptionClaims {
    /// Unique per token: single use is enforced on it.
    pub id: uuid::Uuid,
    pub volunteer: AccountId,
    pub points_max: Points,
    #[serde(with = "crate::domain::serde_time::utc")]
    pub expires_at: DateTime<Utc>,
}

/// Why a token text is not a token this server issued.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("is not a redemption token issued by this ledger (malformed, altered or signed with another key); ask the volunteer to show a fresh one")]
    Invalid,
}

impl RedemptionClaims {
    /// The signed token text.
    pub fn sign(&self, key: &TokenKey) -> String {
        let claims = serde_json::to_vec(self).expect("claims always serialise");
        let signed = format!("{TOKEN_PREFIX}.{}", URL_SAFE_NO_PAD.encode(claims));
        let mac = key.mac(signed.as_bytes());
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(mac))
    }

    /// The claims of `text` if this server signed it with `key`. Says nothing about
    /// expiry or use: those are rules of the ledger, checked against its clock and the
    /// volunteer's stream.
    pub fn verify(text: &str, key: &TokenKey) -> Result<Self, TokenError> {
        let (signed, claims, mac) = parts(text)?;
        let mac = URL_SAFE_NO_PAD
            .decode(mac)
            .map_err(|_| TokenError::Invalid)?;
        let expected = key.mac(signed.as_bytes());
        // Constant-time comparison: blake3::Hash's Eq is constant time.
        let given: [u8; 32] = mac.try_into().map_err(|_| TokenError::Invalid)?;
        if blake3::Hash::from(given) != blake3::Hash::from(expected) {
            return Err(TokenError::Invalid);
        }
        read_claims(claims)
    }

    /// The claims `text` states, **without** checking its signature. Only for
    /// recognising the retry of a request this server already decided on a token
    /// that verified then (the key replaced since): the retry's command must equal
    /// the recorded one to the digest, claims included, and gets the recorded answer,
    /// so unverified claims can never decide anything new.
    pub fn claims_unverified(text: &str) -> Option<Self> {
        let (_, claims, _) = parts(text).ok()?;
        read_claims(claims).ok()
    }
}

/// A token's signed part (`prefix.claims`), its encoded claims and its MAC, as
/// texts; the prefix checked.
fn parts(text: &str) -> Result<(&str, &str, &str), TokenError> {
    if text.len() > TOKEN_BYTES_MAX {
        return Err(TokenError::Invalid);
    }
    let (signed, mac) = text.rsplit_once('.').ok_or(TokenError::Invalid)?;
    match signed.split_once('.') {
        Some((TOKEN_PREFIX, claims)) => Ok((signed, claims, mac)),
        _ => Err(TokenError::Invalid),
    }
}

fn read_claims(encoded: &str) -> Result<RedemptionClaims, TokenError> {
    let claims = URL_SAFE_NO_PAD
        .decode(encoded)
        .map_err(|_| TokenError::Invalid)?;
    serde_json::from_slice(&claims).map_err(|_| TokenError::Invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> RedemptionClaims {
        RedemptionClaims {
            id: uuid::Uuid::from_u128(7),
            volunteer: AccountId::new("v-1").unwrap(),
            points_max: Points::parse("50").unwrap(),
            expires_at: "2026-11-20T12:05:00Z".parse().unwrap(),
        }
    }

    #[test]
    fn a_signed_token_verifies_with_its_key_only() {
        let key = TokenKey::new([1; 32]);
        let text = claims().sign(&key);
        assert!(text.starts_with("tbr1."));
        assert_eq!(RedemptionClaims::verify(&text, &key), Ok(claims()));
        assert_eq!(
            RedemptionClaims::verify(&text, &TokenKey::new([2; 32])),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn unverified_claims_are_read_from_any_key_but_not_from_malformed_text() {
        let text = claims().sign(&TokenKey::new([2; 32]));
        assert_eq!(RedemptionClaims::claims_unverified(&text), Some(claims()));
        assert_eq!(RedemptionClaims::claims_unverified("tbr.x.y"), None);
        assert_eq!(
            RedemptionClaims::claims_unverified(&text.replacen(TOKEN_PREFIX, "xyz", 1)),
            None
        );
    }

    #[test]
    fn an_altered_or_malformed_token_is_invalid() {
        let key = TokenKey::new([1; 32]);
        let text = claims().sign(&key);
        let mut other = claims();
        other.points_max = Points::parse("5000").unwrap();
        let forged_claims = other.sign(&TokenKey::new([9; 32]));
        // The claims of one token with the MAC of another.
        let (_, mac) = text.rsplit_once('.').unwrap();
        let (signed, _) = forged_claims.rsplit_once('.').unwrap();
        for bad in [
            format!("{signed}.{mac}"),
            String::new(),
            "tbr1".into(),
            "tbr1..".into(),
            text.replace("tbr1.", "tbr2."),
            format!("{text}x"),
            "x".repeat(TOKEN_BYTES_MAX + 1),
        ] {
            assert_eq!(
                RedemptionClaims::verify(&bad, &key),
                Err(TokenError::Invalid),
                "{bad}"
            );
        }
    }
}
