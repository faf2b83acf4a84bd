//! Identifiers a client sends (request ids, activity ids, categories, verifiers) and the
//! ids the ledger derives from them (event and transaction ids).
//!
//! Every client-supplied token is validated at the edge: 1 to N bytes of
//! `[A-Za-z0-9._:-]`. A small ASCII alphabet keeps ids printable in logs, safe in stream
//! names and identical on every backend; anything richer (names, notes) is free text
//! with its own limit.

use std::fmt;

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

use crate::log::EventId;

/// Longest client request id. UUIDs (36) and ULIDs (26) fit with room for a prefix such
/// as a platform name; 128 keeps the per-account request index small.
pub const REQUEST_ID_BYTES_MAX: usize = 128;
/// Longest activity id a platform may send (its own primary key, maybe prefixed).
pub const ACTIVITY_ID_BYTES_MAX: usize = 128;
/// Longest service category code (`elderly-care`, `river-patrol`, …).
pub const CATEGORY_BYTES_MAX: usize = 64;
/// Longest verifier id (the organisation staff member who verified the service).
pub const VERIFIER_ID_BYTES_MAX: usize = 64;
/// Longest purpose of a consent (`volunteer-loan`, `mortgage-discount`): a code the
/// platform and the bank agree on, not prose.
pub const PURPOSE_BYTES_MAX: usize = 64;
/// Longest free-text note (a reversal's reason, a spend's memo). Enough for a sentence
/// an auditor can read; not a document store.
pub const NOTE_CHARS_MAX: usize = 500;

/// Why a client-supplied identifier or text is not acceptable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("is empty; send 1 to {max} characters")]
    Empty { max: usize },
    /// Free text of spaces only (`Note`): nothing a person could read.
    #[error("holds only whitespace; send 1 to {max} characters of text (or, where the text is optional, none at all)")]
    Blank { max: usize },
    #[error("is {len} bytes; at most {max} are allowed")]
    TooLong { len: usize, max: usize },
    /// Free text is limited in characters, not bytes (`Note`).
    #[error("is {len} characters; at most {max} are allowed")]
    TooManyCharacters { len: usize, max: usize },
    /// A transaction or hold id: the ledger issues UUIDs.
    #[error("{text:?} is not a UUID; send the id as the ledger returned it, e.g. \"0b6f4c2e-8d1a-4f7b-9c3e-2a5d6e7f8091\"")]
    NotAUuid { text: String },
    #[error("may hold only ASCII letters, digits, '.', '_', ':' and '-'")]
    Characters,
    #[error("holds a control character")]
    ControlCharacter,
    #[error("starts with {prefix:?}, which is reserved for the ledger's own requests; choose another id")]
    Reserved { prefix: &'static str },
    #[error("holds ':', which the ledger reserves to scope request ids (a partner's `<account>:<id>`, its own `system:…`); choose an id without ':'")]
    ScopeSeparator,
    /// A request id's characters: a token's, less ':' ([`IdError::ScopeSeparator`]), so
    /// the message does not offer a character the next check refuses.
    #[error("may hold only ASCII letters, digits, '.', '_' and '-'")]
    RequestCharacters,
    /// `h` and 40 lowercase hex digits: the form a partner's request id too long to
    /// scope is replaced by (`<account>:h<hex>`), which a partner's own id of that
    /// form would otherwise collide with.
    #[error("has the form 'h' and 40 lowercase hex digits, which the ledger reserves for the hashed form of a partner's request ids too long to scope; choose another id")]
    HashedForm,
}

impl IdError {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Empty { .. } | Self::Blank { .. } => "ID_EMPTY",
            Self::TooLong { .. } | Self::TooManyCharacters { .. } => "ID_TOO_LONG",
            Self::NotAUuid { .. } => "FIELD_MALFORMED",
            Self::Characters | Self::RequestCharacters => "ID_CHARACTERS",
            Self::ControlCharacter => "TEXT_CONTROL_CHARACTER",
            Self::Reserved { .. } | Self::ScopeSeparator | Self::HashedForm => "ID_RESERVED",
        }
    }
}

/// Check a token: 1..=max bytes of `[A-Za-z0-9._:-]`.
pub fn validate_token(text: &str, max: usize) -> Result<(), IdError> {
    if text.is_empty() {
        return Err(IdError::Empty { max });
    }
    if text.len() > max {
        return Err(IdError::TooLong {
            len: text.len(),
            max,
        });
    }
    if !text.bytes().all(|b| TOKEN_BYTES[usize::from(b)]) {
        return Err(IdError::Characters);
    }
    Ok(())
}

/// `TOKEN_BYTES[b]`: byte `b` may appear in a token (`[A-Za-z0-9._:-]`). One load per
/// byte instead of four range tests: every id of every payload read is checked
/// (`deserialize_through_new`), ~7 per deposit.
const TOKEN_BYTES: [bool; 256] = {
    let mut allowed = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        allowed[b] = c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b':' | b'-');
        b += 1;
    }
    allowed
};

/// `Deserialize` for a text newtype through its `new`: a stored payload is held to
/// the rules it was written under, as its amounts are (`units.rs`), so a record no
/// writer of this ledger produced (an id of the wrong characters or length, a region
/// of five levels) is refused where it is read, with the rule it breaks, instead of
/// being folded into the read models, where such a value could only surface later as
/// a panic or a wrong figure. Serialisation stays the derived, transparent one.
/// The refusal is the rule's own message after the type's name (`AccountId is
/// empty; …`), or after `$prefix` for a type whose message names it already.
macro_rules! deserialize_through_new {
    ($name:ident) => {
        deserialize_through_new!($name, concat!(stringify!($name), " "));
    };
    ($name:ident, $prefix:expr) => {
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                // The text as the reader has it (borrowed from the payload when it
                // can be), checked and copied once by `new`. Option replaced: a
                // `CompactString` read first, then copied again by `new` (two copies
                // per id, seven ids per deposit).
                struct Text;
                impl serde::de::Visitor<'_> for Text {
                    type Value = $name;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str(concat!("a string (", stringify!($name), ")"))
                    }
                    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<$name, E> {
                        $name::new(v).map_err(|e| E::custom(format_args!("{}{e}", $prefix)))
                    }
                }
                d.deserialize_str(Text)
            }
        }
    };
}
pub(crate) use deserialize_through_new;

macro_rules! token_type {
    ($(#[$doc:meta])* $name:ident, $max:expr) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(CompactString);

        deserialize_through_new!($name);

        impl $name {
            pub fn new(text: impl AsRef<str>) -> Result<Self, IdError> {
                let text = text.as_ref();
                validate_token(text, $max)?;
                Ok(Self(CompactString::new(text)))
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
    };
}

token_type!(
    /// The client's id for one command; retries resend it (see `app` for the rules).
    RequestId,
    REQUEST_ID_BYTES_MAX
);
token_type!(
    /// The platform's id of the activity a service record belongs to.
    ActivityId,
    ACTIVITY_ID_BYTES_MAX
);
token_type!(
    /// A service category code such as `elderly-care`.
    Category,
    CATEGORY_BYTES_MAX
);
token_type!(
    /// Why a bank may read a volunteer's credit report (`volunteer-loan`): a consent is
    /// for one bank and one purpose, and an inquiry must name the same purpose.
    Purpose,
    PURPOSE_BYTES_MAX
);
token_type!(
    /// Who at the organisation verified the service.
    VerifierId,
    VERIFIER_ID_BYTES_MAX
);

/// Free text for people (a reason, a memo): 1..=[`NOTE_CHARS_MAX`] characters, no
/// control characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Note(String);

deserialize_through_new!(Note);

impl Note {
    pub fn new(text: impl Into<String>) -> Result<Self, IdError> {
        let text = text.into();
        let chars = text.chars().count();
        if chars == 0 {
            return Err(IdError::Empty {
                max: NOTE_CHARS_MAX,
            });
        }
        if chars > NOTE_CHARS_MAX {
            return Err(IdError::TooManyCharacters {
                len: chars,
                max: NOTE_CHARS_MAX,
            });
        }
        // Before the blank check: U+0085 is both, and a control character is the
        // more precise answer.
        if text.chars().any(char::is_control) {
            return Err(IdError::ControlCharacter);
        }
        if text.trim().is_empty() {
            return Err(IdError::Blank {
                max: NOTE_CHARS_MAX,
            });
        }
        Ok(Self(text))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A transaction's id: the id of the one event that records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TransactionId(pub uuid::Uuid);

impl TransactionId {
    pub fn parse(text: &str) -> Result<Self, IdError> {
        if text.is_empty() {
            return Err(IdError::Empty { max: 36 });
        }
        if text.len() > 36 {
            return Err(IdError::TooLong {
                len: text.len(),
                max: 36,
            });
        }
        uuid::Uuid::try_parse(text)
            .map(Self)
            .map_err(|_| IdError::NotAUuid {
                text: text.to_owned(),
            })
    }

    pub fn event_id(&self) -> EventId {
        EventId(self.0)
    }
}

impl From<EventId> for TransactionId {
    fn from(id: EventId) -> Self {
        Self(id.0)
    }
}

impl fmt::Display for TransactionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A deterministic RFC 4122 (version 8, "custom") UUID: the first 16 bytes of
/// BLAKE3(`domain` ‖ `name`), with the version and variant bits set.
///
/// Why derived rather than random: the event id of a command is derived from its request
/// id, so a retry of the same request produces the same event id and the log itself
/// refuses to hold two events for it, on whatever stream. Option not taken: UUID v5
/// (SHA-1), which would add a dependency for no gain.
pub fn derived_uuid(domain: &str, name: &str) -> uuid::Uuid {
    let hash = match concat_on_stack(domain.as_bytes(), name.as_bytes()) {
        // `blake3::hash` of the concatenation is the hash of the two parts in turn:
        // one call on the stack instead of a `Hasher` (~2 KiB of state, two updates
        // and a finalize), ~400 instructions less, and a batched deposit derives its
        // event id twice (the batch's ordering and the handler).
        Some((buf, len)) => blake3::hash(&buf[..len]),
        None => {
            let mut h = blake3::Hasher::new();
            h.update(domain.as_bytes());
            h.update(name.as_bytes());
            h.finalize()
        }
    };
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&hash.as_bytes()[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// Longest `domain ‖ name` [`derived_uuid`] hashes from the stack: every request id
/// ([`REQUEST_ID_BYTES_MAX`]) and receipt name fits after its domain.
const DERIVED_NAME_STACK_BYTES: usize = 256;

fn concat_on_stack(a: &[u8], b: &[u8]) -> Option<([u8; DERIVED_NAME_STACK_BYTES], usize)> {
    let len = a.len() + b.len();
    if len > DERIVED_NAME_STACK_BYTES {
        return None;
    }
    let mut buf = [0u8; DERIVED_NAME_STACK_BYTES];
    buf[..a.len()].copy_from_slice(a);
    buf[a.len()..len].copy_from_slice(b);
    Some((buf, len))
}

/// The event id of the transaction a request produces.
pub fn event_id_for_request(request: &RequestId) -> EventId {
    EventId(derived_uuid("timebank/request/", request.as_str()))
}

/// The event id of the receipt of `transaction` on `account`'s stream.
pub fn event_id_for_receipt(transaction: TransactionId, account: &str) -> EventId {
    EventId(derived_uuid(
        "timebank/receipt/",
        &format!("{transaction}/{account}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The byte table says what the rule says, for every byte.
    #[test]
    fn the_token_byte_table_is_the_token_rule() {
        for b in 0..=255u8 {
            let rule = b.is_ascii_alphanumeric() || b"._:-".contains(&b);
            assert_eq!(TOKEN_BYTES[usize::from(b)], rule, "byte {b:#04x}");
        }
    }

    /// Ids are held inline up to 24 bytes and on the heap beyond: both kinds read and
    /// write as the same JSON and postcard text as a `String` did, an escaped JSON
    /// string included (the one case serde hands over an owned, unescaped copy), and
    /// the rules still refuse what they refused.
    #[test]
    fn ids_of_any_length_read_and_write_as_their_text() {
        use crate::domain::account::AccountId;
        let short = "v-00012345";
        let long = "platform-a:volunteer-0123456789abcdef0123456789abcdef0123456789";
        assert!(long.len() > 24 && long.len() <= 64);
        for text in [short, long] {
            let id = AccountId::new(text).unwrap();
            assert_eq!(id.as_str(), text);
            let json = serde_json::to_string(&id).unwrap();
            assert_eq!(json, format!("\"{text}\""));
            assert_eq!(serde_json::from_str::<AccountId>(&json).unwrap(), id);
            let bytes = postcard::to_stdvec(&id).unwrap();
            assert_eq!(bytes, postcard::to_stdvec(text).unwrap());
            assert_eq!(postcard::from_bytes::<AccountId>(&bytes).unwrap(), id);
            let request = RequestId::new(text).unwrap();
            assert_eq!(serde_json::from_str::<RequestId>(&json).unwrap(), request);
        }
        assert_eq!(
            serde_json::from_str::<AccountId>(r#""v\u002d1""#).unwrap(),
            AccountId::new("v-1").unwrap()
        );
        assert!(serde_json::from_str::<AccountId>(r#""v 1""#).is_err());
        assert!(serde_json::from_str::<ActivityId>(&format!("\"{}\"", "a".repeat(200))).is_err());
    }

    #[test]
    fn tokens_are_validated() {
        assert!(RequestId::new("req-1:a_b.c").is_ok());
        assert_eq!(
            RequestId::new(""),
            Err(IdError::Empty {
                max: REQUEST_ID_BYTES_MAX
            })
        );
        assert!(matches!(
            RequestId::new("x".repeat(129)),
            Err(IdError::TooLong { .. })
        ));
        assert_eq!(RequestId::new("a b"), Err(IdError::Characters));
        assert_eq!(RequestId::new("é"), Err(IdError::Characters));
        // Spaces only (also no-break and ideographic ones) are blank, not empty: the
        // message then says what is wrong with what was sent (a platform's probe).
        for blank in ["  ", "\u{a0}", "\u{3000}"] {
            assert_eq!(
                Note::new(blank),
                Err(IdError::Blank {
                    max: NOTE_CHARS_MAX
                }),
                "{blank:?}"
            );
        }
        assert_eq!(Note::new("").unwrap_err().reason(), "ID_EMPTY");
        assert_eq!(Note::new("a\nb"), Err(IdError::ControlCharacter));
        // U+0085 is whitespace and a control character: the control character is
        // the answer.
        assert_eq!(Note::new("\u{85}"), Err(IdError::ControlCharacter));
        // Notes are counted in characters, and say so: 501 two-byte characters are
        // 1,002 bytes, and 500 of them are allowed.
        assert!(Note::new("é".repeat(NOTE_CHARS_MAX)).is_ok());
        let long = Note::new("é".repeat(NOTE_CHARS_MAX + 1)).unwrap_err();
        assert_eq!(
            long.to_string(),
            format!(
                "is {} characters; at most {NOTE_CHARS_MAX} are allowed",
                NOTE_CHARS_MAX + 1
            )
        );
        assert_eq!(long.reason(), "ID_TOO_LONG");
        // A transaction id of allowed characters that is no UUID is told so.
        for text in ["not-a-uuid", "1234", "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz"] {
            let e = TransactionId::parse(text).unwrap_err();
            assert_eq!(e.reason(), "FIELD_MALFORMED", "{text}");
            assert!(e.to_string().contains("is not a UUID"), "{text}: {e}");
        }
        assert!(Note::new("wrong volunteer").is_ok());
    }

    #[test]
    fn a_derived_id_is_the_hash_of_domain_then_name_however_long() {
        for len in [0, 1, 100, 239, 240, 241, 300, 1000] {
            let name = "n".repeat(len);
            let mut h = blake3::Hasher::new();
            h.update(b"timebank/request/");
            h.update(name.as_bytes());
            let mut bytes = [0u8; 16];
            bytes.copy_from_slice(&h.finalize().as_bytes()[..16]);
            assert_eq!(
                derived_uuid("timebank/request/", &name),
                uuid::Builder::from_custom_bytes(bytes).into_uuid(),
                "{len}"
            );
        }
    }

    #[test]
    fn derived_ids_are_stable_rfc4122_and_distinct() {
        let r = RequestId::new("r1").unwrap();
        let a = event_id_for_request(&r);
        assert_eq!(a, event_id_for_request(&r));
        assert_eq!(a.0.get_version_num(), 8);
        assert_eq!(a.0.get_variant(), uuid::Variant::RFC4122);
        assert_ne!(a, event_id_for_request(&RequestId::new("r2").unwrap()));
        let t = TransactionId::from(a);
        assert_ne!(event_id_for_receipt(t, "x"), event_id_for_receipt(t, "y"));
        assert_eq!(TransactionId::parse(&t.to_string()).unwrap(), t);
        assert!(TransactionId::parse("nope").is_err());
    }
}
