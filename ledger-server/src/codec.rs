//! The protobuf codec of every service this crate generates (`build.rs` names it with
//! tonic-build's `codec_path`): tonic's own `ProstCodec` in all but one answer.
//!
//! Why not tonic's codec as is: it answers a request that does not decode (a string
//! field that is not UTF-8, a truncated field) with `INTERNAL` and no `ErrorInfo`, and
//! `INTERNAL` tells a client "a bug; retry with the same request id" (ledger-rules.md,
//! Status codes) about a message that can never decode. Here it is `INVALID_ARGUMENT`,
//! reason `MESSAGE_MALFORMED`, from the one status function (`status.rs`), like every
//! other bad input. Encoding is tonic's, unchanged (`ProstCodec::raw_encoder`).
//!
//! The generated clients use this codec too (tonic-build has one path for both sides):
//! a response this crate's client cannot decode is then `INVALID_ARGUMENT` instead of
//! `INTERNAL`. Only the load generator and the tests use these clients, and both
//! report the status as they get it. Option not taken: generating the server and the
//! client in two passes with two codecs, two copies of every message type.

use std::marker::PhantomData;

use bytes::Buf;
use prost::Message;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder, ProstCodec};
use tonic::Status;

/// `ProstCodec`, but an undecodable message is bad input (module documentation).
#[derive(Debug, Clone)]
pub struct ProtoCodec<T, U> {
    _types: PhantomData<(T, U)>,
}

impl<T, U> Default for ProtoCodec<T, U> {
    fn default() -> Self {
        Self {
            _types: PhantomData,
        }
    }
}

impl<T, U> Codec for ProtoCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    /// tonic's own encoder (not exported by name, reached through `ProstCodec`).
    type Encoder = <ProstCodec<T, U> as Codec>::Encoder;
    type Decoder = ProtoDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(BufferSettings::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProtoDecoder { _type: PhantomData }
    }
}

/// Decodes `U`; a message that is not valid protobuf for `U` is `INVALID_ARGUMENT`.
#[derive(Debug, Clone, Default)]
pub struct ProtoDecoder<U> {
    _type: PhantomData<U>,
}

impl<U: Message + Default> Decoder for ProtoDecoder<U> {
    type Item = U;
    type Error = Status;

    /// From the message's bytes as one slice when they are (tonic buffers a message in
    /// one `BytesMut`, so they always are): prost then reads through `&[u8]`, whose
    /// every step is a pointer bump, instead of through `DecodeBuf` over `BytesMut`,
    /// where each varint and field advance goes through `BytesMut::advance`'s checks.
    /// That was ~1,300 instructions of a batched deposit's ~60,000 (callgrind,
    /// seventeenth session). The result is the same either way.
    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        let len = buf.remaining();
        let decoded = match buf.chunk() {
            whole if whole.len() == len => {
                let decoded = U::decode(whole);
                buf.advance(len);
                decoded
            }
            _ => U::decode(&mut *buf),
        };
        decoded
            .map(Some)
            .map_err(|e| crate::status::malformed_message_status(&e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;
    use tonic_types::StatusExt;

    #[test]
    fn a_message_that_does_not_decode_is_invalid_argument_with_error_info() {
        // Field 1 (request_id, a string) holding bytes that are not UTF-8.
        let bytes = [0x0a, 0x02, 0xff, 0xfe];
        let e = crate::pb::RegisterAccountRequest::decode(&bytes[..]).expect_err("not UTF-8");
        let status = crate::status::malformed_message_status(&e);
        assert_eq!(status.code(), Code::InvalidArgument);
        let info = status
            .get_details_error_info()
            .expect("an ErrorInfo detail");
        assert_eq!(
            (info.reason.as_str(), info.domain.as_str()),
            ("MESSAGE_MALFORMED", crate::status::ERROR_DOMAIN)
        );
    }
}
