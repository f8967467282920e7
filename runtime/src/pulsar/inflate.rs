//! Compressed batches, inflated before the client sees them.
//!
//! A producer with compression on compresses a batch whole: the entry's
//! payload is the codec's output of every message's single-message metadata
//! and body together. magnetar splits a batch into its messages before it
//! decompresses anything, so it finds none in such an entry. sluice rewrites
//! the broker's `MESSAGE` frame on its way to the client instead: the payload
//! inflated, the metadata saying it is no longer compressed, the checksum
//! made again over the new bytes (decision 0019).
//!
//! Every compressed message is inflated here, batched or not, so that one
//! decoder reads them all ([`super::codecs`]): magnetar's own, for a message
//! on its own, takes a ZLIB stream only when it is finished, and Pulsar's
//! Java producers flush theirs without finishing it. A message in chunks is
//! compressed as one, and inflated only once whole: its chunks go on
//! compressed, their metadata saying so in [`CHUNKS_COMPRESSED`] instead, and
//! the consumer inflates the message it reassembles. That property is taken
//! off any other message, so a producer cannot set it. An encrypted message
//! is left alone. A frame that fails its own checksum, does not inflate, or
//! would inflate past the largest frame the client takes goes on unchanged;
//! the consumer's idle check then says why it is unreadable (decision 0012).

use std::borrow::Cow;

use bytes::BufMut;
use magnetar::proto::frame::{MAGIC_BROKER_ENTRY_METADATA, MAGIC_CRC32C, MAX_FRAME_SIZE};
use magnetar::proto::pb;
use prost::Message as _;

use super::codecs;

/// The property that carries a chunked message's codec and inflated size
/// (`<codec number>:<bytes>`) past the client, for the consumer.
pub(crate) const CHUNKS_COMPRESSED: &str = "sluice.chunks-compressed";

/// A frame's first field, the size of the rest.
const SIZE: usize = 4;

/// How a frame that should be inflated could not be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The codec failed, or the output is not the size the metadata says.
    Corrupt(String),
    /// Inflated, the frame would be larger than the client takes.
    TooLarge(usize),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Corrupt(e) => write!(f, "it does not decompress: {e}"),
            Self::TooLarge(n) => write!(
                f,
                "it inflates to {n} bytes, more than the {MAX_FRAME_SIZE} bytes sluice's \
                 Pulsar client takes in one frame"
            ),
        }
    }
}

/// The parts of a frame that carries a message.
struct Parts<'a> {
    /// The size field, the command's size and the command, as received.
    head: &'a [u8],
    /// The broker-entry metadata prelude, as received (often empty).
    prelude: &'a [u8],
    /// What the checksum covers: the metadata's size, the metadata and the
    /// payload.
    checked: &'a [u8],
    checksum: u32,
}

/// Split `frame` (one whole frame, size field included) into its parts;
/// `None` for a frame with no payload or one this does not understand,
/// which goes on as it is.
fn parts(frame: &[u8]) -> Option<Parts<'_>> {
    let be32 = |at: usize| -> Option<u32> {
        Some(u32::from_be_bytes(frame.get(at..at + 4)?.try_into().ok()?))
    };
    let be16 = |at: usize| -> Option<u16> {
        Some(u16::from_be_bytes(frame.get(at..at + 2)?.try_into().ok()?))
    };
    let command_end = (SIZE + 4).checked_add(usize::try_from(be32(SIZE)?).ok()?)?;
    if command_end >= frame.len() {
        return None;
    }
    let mut at = command_end;
    if be16(at)? == MAGIC_BROKER_ENTRY_METADATA {
        at = (at + 6).checked_add(usize::try_from(be32(at + 2)?).ok()?)?;
    }
    if be16(at)? != MAGIC_CRC32C {
        return None;
    }
    Some(Parts {
        head: &frame[..command_end],
        prelude: &frame[command_end..at],
        checksum: be32(at + 2)?,
        checked: frame.get(at + 6..)?,
    })
}

/// `frame` with its message inflated: `Ok(None)` when it needs no change,
/// `Err` when it needs one that cannot be made.
pub(crate) fn inflate(frame: &[u8]) -> Result<Option<Vec<u8>>, Refused> {
    let Some(parts) = parts(frame) else {
        return Ok(None);
    };
    let Some(meta_size) = parts
        .checked
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_be_bytes)
        .and_then(|n| usize::try_from(n).ok())
    else {
        return Ok(None);
    };
    let Some(meta_bytes) = parts.checked.get(4..4 + meta_size) else {
        return Ok(None);
    };
    let Ok(mut meta) = pb::MessageMetadata::decode(meta_bytes) else {
        return Ok(None);
    };
    let payload = &parts.checked[4 + meta_size..];
    let marked = meta.properties.iter().any(|p| p.key == CHUNKS_COMPRESSED);
    meta.properties.retain(|p| p.key != CHUNKS_COMPRESSED);
    let codec = meta
        .compression
        .filter(|c| *c != pb::CompressionType::None as i32 && meta.encryption_keys.is_empty());
    if codec.is_none() && !marked {
        return Ok(None);
    }
    if crc32c::crc32c(parts.checked) != parts.checksum {
        // Not ours to judge, nor to make valid: the client refuses it.
        return Ok(None);
    }
    let expected =
        usize::try_from(meta.uncompressed_size.unwrap_or_default()).unwrap_or(usize::MAX);
    let payload = match codec {
        None if marked => Cow::Borrowed(payload),
        None => return Ok(None),
        Some(codec) if meta.num_chunks_from_msg.is_some_and(|n| n > 1) => {
            meta.properties.push(pb::KeyValue {
                key: CHUNKS_COMPRESSED.to_owned(),
                value: format!("{codec}:{expected}"),
            });
            Cow::Borrowed(payload)
        }
        Some(codec) => {
            let codec = pb::CompressionType::try_from(codec)
                .map_err(|_| Refused::Corrupt(format!("an unknown codec {codec}")))?;
            let overhead = parts.head.len() + parts.prelude.len() + 10 + meta_size;
            if overhead.saturating_add(expected) > MAX_FRAME_SIZE + SIZE {
                return Err(Refused::TooLarge(expected));
            }
            Cow::Owned(
                codecs::decompress(codec, payload, expected, MAX_FRAME_SIZE)
                    .map_err(Refused::Corrupt)?,
            )
        }
    };
    meta.compression = None;
    meta.uncompressed_size = None;
    let meta_bytes = meta.encode_to_vec();
    let meta_len = u32::try_from(meta_bytes.len()).map_err(|_| Refused::TooLarge(usize::MAX))?;
    let total = parts.head.len() + parts.prelude.len() + 10 + meta_bytes.len() + payload.len();
    if total > MAX_FRAME_SIZE + SIZE {
        return Err(Refused::TooLarge(payload.len()));
    }
    let mut out = Vec::with_capacity(total);
    out.put_u32(u32::try_from(total - SIZE).map_err(|_| Refused::TooLarge(total))?);
    out.put_slice(&parts.head[SIZE..]);
    out.put_slice(parts.prelude);
    out.put_u16(MAGIC_CRC32C);
    let checksum = crc32c::crc32c(&meta_len.to_be_bytes());
    let checksum = crc32c::crc32c_append(checksum, &meta_bytes);
    out.put_u32(crc32c::crc32c_append(checksum, &payload));
    out.put_u32(meta_len);
    out.put_slice(&meta_bytes);
    out.put_slice(&payload);
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use magnetar::proto::frame::decode_one;
    use magnetar::runtime_tokio as rt;

    /// A broker's MESSAGE frame for a batch of `bodies`, compressed with
    /// `codec`, with a broker-entry prelude when asked.
    fn batch_frame(codec: pb::CompressionType, bodies: &[&[u8]], prelude: bool) -> Vec<u8> {
        let mut batch = BytesMut::new();
        for (i, body) in bodies.iter().enumerate() {
            let single = pb::SingleMessageMetadata {
                payload_size: i32::try_from(body.len()).unwrap(),
                partition_key: Some(format!("k{i}")),
                ..Default::default()
            }
            .encode_to_vec();
            batch.put_u32(u32::try_from(single.len()).unwrap());
            batch.put_slice(&single);
            batch.put_slice(body);
        }
        let payload =
            rt::compress::compress(rt::compress::kind_from_pb(codec), &batch).expect("compress");
        let meta = pb::MessageMetadata {
            producer_name: "p".into(),
            sequence_id: 7,
            publish_time: 1,
            num_messages_in_batch: Some(i32::try_from(bodies.len()).unwrap()),
            compression: (codec != pb::CompressionType::None).then_some(codec as i32),
            uncompressed_size: Some(u32::try_from(batch.len()).unwrap()),
            ..Default::default()
        };
        frame(&meta, &payload, prelude)
    }

    /// A broker's MESSAGE frame carrying `meta` and `payload`.
    fn frame(meta: &pb::MessageMetadata, payload: &[u8], prelude: bool) -> Vec<u8> {
        let meta = meta.encode_to_vec();
        let command = pb::BaseCommand {
            r#type: pb::base_command::Type::Message as i32,
            message: Some(pb::CommandMessage {
                consumer_id: 3,
                message_id: pb::MessageIdData {
                    ledger_id: 10,
                    entry_id: 20,
                    ..Default::default()
                },
                ..Default::default()
            }),
            ..Default::default()
        }
        .encode_to_vec();
        let mut checked = BytesMut::new();
        checked.put_u32(u32::try_from(meta.len()).unwrap());
        checked.put_slice(&meta);
        checked.put_slice(payload);
        let mut rest = BytesMut::new();
        rest.put_u32(u32::try_from(command.len()).unwrap());
        rest.put_slice(&command);
        if prelude {
            let bem = pb::BrokerEntryMetadata {
                index: Some(99),
                ..Default::default()
            }
            .encode_to_vec();
            rest.put_u16(MAGIC_BROKER_ENTRY_METADATA);
            rest.put_u32(u32::try_from(bem.len()).unwrap());
            rest.put_slice(&bem);
        }
        rest.put_u16(MAGIC_CRC32C);
        rest.put_u32(crc32c::crc32c(&checked));
        rest.put_slice(&checked);
        let mut frame = BytesMut::new();
        frame.put_u32(u32::try_from(rest.len()).unwrap());
        frame.put_slice(&rest);
        frame.to_vec()
    }

    /// The messages of a batch frame as the client parses it.
    fn messages(frame: &[u8]) -> (pb::MessageMetadata, Vec<(String, Vec<u8>)>, bool) {
        let mut bytes = bytes::Bytes::copy_from_slice(frame);
        let decoded = decode_one(&mut bytes).expect("the client parses the frame");
        assert!(bytes.is_empty());
        let payload = decoded.payload.expect("a payload");
        let mut body = payload.body.clone();
        let mut out = Vec::new();
        use bytes::Buf as _;
        for _ in 0..payload.metadata.num_messages_in_batch.unwrap_or(1) {
            let size = body.get_u32() as usize;
            let single = pb::SingleMessageMetadata::decode(body.split_to(size)).expect("single");
            let data = body.split_to(usize::try_from(single.payload_size).unwrap());
            out.push((single.partition_key.unwrap_or_default(), data.to_vec()));
        }
        assert!(body.is_empty());
        (
            payload.metadata,
            out,
            payload.broker_entry_metadata.is_some(),
        )
    }

    #[test]
    fn a_compressed_batch_inflates_to_what_the_client_splits_with_every_codec() {
        let bodies: [&[u8]; 3] = [b"{\"id\":1}", b"", &[7u8; 3000]];
        for codec in [
            pb::CompressionType::Lz4,
            pb::CompressionType::Zlib,
            pb::CompressionType::Zstd,
            pb::CompressionType::Snappy,
        ] {
            for prelude in [false, true] {
                let frame = batch_frame(codec, &bodies, prelude);
                let inflated = inflate(&frame).expect("inflates").expect("changed");
                let (meta, got, kept_prelude) = messages(&inflated);
                assert_eq!(meta.compression, None, "{codec:?}");
                assert_eq!(meta.sequence_id, 7);
                assert_eq!(meta.num_messages_in_batch, Some(3));
                assert_eq!(kept_prelude, prelude);
                let want: Vec<(String, Vec<u8>)> = bodies
                    .iter()
                    .enumerate()
                    .map(|(i, b)| (format!("k{i}"), b.to_vec()))
                    .collect();
                assert_eq!(got, want, "{codec:?}");
            }
        }
    }

    #[test]
    fn what_the_client_reads_itself_goes_on_unchanged() {
        let plain = batch_frame(pb::CompressionType::None, &[b"a", b"b"], false);
        assert_eq!(inflate(&plain), Ok(None), "not compressed");
        let command_only = [0u8, 0, 0, 6, 0, 0, 0, 2, 8, 18];
        assert_eq!(inflate(&command_only), Ok(None));
    }

    /// The metadata and payload of a frame, as the client parses it.
    fn message(frame: &[u8]) -> (pb::MessageMetadata, Vec<u8>) {
        let mut bytes = bytes::Bytes::copy_from_slice(frame);
        let payload = decode_one(&mut bytes).unwrap().payload.unwrap();
        (payload.metadata, payload.body.to_vec())
    }

    #[test]
    fn a_chunk_goes_on_compressed_with_its_codec_in_a_property() {
        let meta = pb::MessageMetadata {
            producer_name: "p".into(),
            compression: Some(pb::CompressionType::Zstd as i32),
            uncompressed_size: Some(10_000_000),
            num_chunks_from_msg: Some(3),
            chunk_id: Some(1),
            ..Default::default()
        };
        let chunk = frame(&meta, b"part of a zstd frame", false);
        let (meta, body) = message(&inflate(&chunk).unwrap().unwrap());
        assert_eq!(meta.compression, None);
        assert_eq!(body, b"part of a zstd frame");
        let marks: Vec<_> = meta
            .properties
            .iter()
            .filter(|p| p.key == CHUNKS_COMPRESSED)
            .map(|p| p.value.as_str())
            .collect();
        assert_eq!(marks, ["3:10000000"]);
    }

    #[test]
    fn a_producer_cannot_set_the_chunk_codec_property() {
        let meta = pb::MessageMetadata {
            producer_name: "p".into(),
            properties: vec![
                pb::KeyValue {
                    key: CHUNKS_COMPRESSED.into(),
                    value: "1:999999".into(),
                },
                pb::KeyValue {
                    key: "kept".into(),
                    value: "1".into(),
                },
            ],
            ..Default::default()
        };
        let plain = frame(&meta, b"{}", true);
        let (meta, body) = message(&inflate(&plain).unwrap().unwrap());
        assert_eq!(body, b"{}");
        let keys: Vec<_> = meta.properties.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["kept"]);
    }

    #[test]
    fn a_frame_failing_its_checksum_is_left_for_the_client_to_refuse() {
        let mut frame = batch_frame(pb::CompressionType::Zstd, &[b"a", b"b"], false);
        let last = frame.len() - 1;
        frame[last] ^= 1;
        assert_eq!(inflate(&frame), Ok(None));
    }

    #[test]
    fn a_batch_that_would_inflate_past_a_frame_is_refused_before_inflating() {
        let mut frame = batch_frame(pb::CompressionType::Lz4, &[b"a", b"b"], false);
        // Claim a larger uncompressed size, and make the checksum match it.
        let parts = parts(&frame).unwrap();
        let meta_size = u32::from_be_bytes(parts.checked[..4].try_into().unwrap()) as usize;
        let mut meta = pb::MessageMetadata::decode(&parts.checked[4..4 + meta_size]).unwrap();
        meta.uncompressed_size = Some(64 << 20);
        let payload = parts.checked[4 + meta_size..].to_vec();
        let head = parts.head.to_vec();
        let meta = meta.encode_to_vec();
        let mut checked = Vec::new();
        checked.extend_from_slice(&u32::try_from(meta.len()).unwrap().to_be_bytes());
        checked.extend_from_slice(&meta);
        checked.extend_from_slice(&payload);
        frame = head;
        frame.extend_from_slice(&MAGIC_CRC32C.to_be_bytes());
        frame.extend_from_slice(&crc32c::crc32c(&checked).to_be_bytes());
        frame.extend_from_slice(&checked);
        let size = u32::try_from(frame.len() - SIZE).unwrap().to_be_bytes();
        frame[..SIZE].copy_from_slice(&size);
        assert_eq!(inflate(&frame), Err(Refused::TooLarge(64 << 20)));
    }

    #[test]
    fn a_batch_that_does_not_decompress_is_refused() {
        let frame = batch_frame(pb::CompressionType::Snappy, &[b"a", b"b"], false);
        let parts = parts(&frame).unwrap();
        let meta_size = u32::from_be_bytes(parts.checked[..4].try_into().unwrap()) as usize;
        let mut checked = parts.checked[..4 + meta_size].to_vec();
        checked.extend_from_slice(&[0xff; 16]);
        let mut corrupt = parts.head.to_vec();
        corrupt.extend_from_slice(&MAGIC_CRC32C.to_be_bytes());
        corrupt.extend_from_slice(&crc32c::crc32c(&checked).to_be_bytes());
        corrupt.extend_from_slice(&checked);
        let size = u32::try_from(corrupt.len() - SIZE).unwrap().to_be_bytes();
        corrupt[..SIZE].copy_from_slice(&size);
        assert!(matches!(inflate(&corrupt), Err(Refused::Corrupt(_))));
    }
}
