//! Pulsar's four codecs, decoded as Pulsar's Java client writes them, each
//! into exactly the size the message's metadata states and no more: the
//! size is checked against the caller's ceiling before anything is
//! allocated, so a message cannot make sluice allocate more by claiming it.

use magnetar::proto::pb::CompressionType;

/// `payload` decompressed with `codec` into the `expected` bytes its
/// metadata states, at most `ceiling`.
pub(crate) fn decompress(
    codec: CompressionType,
    payload: &[u8],
    expected: usize,
    ceiling: usize,
) -> Result<Vec<u8>, String> {
    if expected > ceiling {
        return Err(format!(
            "it states {expected} bytes inflated, more than {ceiling}"
        ));
    }
    let out = match codec {
        CompressionType::None => payload.to_vec(),
        // The block format, without a header: the size is the metadata's.
        CompressionType::Lz4 => {
            lz4_flex::block::decompress(payload, expected).map_err(|e| format!("lz4: {e}"))?
        }
        CompressionType::Zlib => zlib(payload, expected)?,
        CompressionType::Zstd => {
            zstd::bulk::decompress(payload, expected).map_err(|e| format!("zstd: {e}"))?
        }
        CompressionType::Snappy => {
            let stated = snap::raw::decompress_len(payload).map_err(|e| format!("snappy: {e}"))?;
            if stated != expected {
                return Err(format!(
                    "snappy: {stated} bytes where the metadata says {expected}"
                ));
            }
            let mut out = vec![0; expected];
            let n = snap::raw::Decoder::new()
                .decompress(payload, &mut out)
                .map_err(|e| format!("snappy: {e}"))?;
            out.truncate(n);
            out
        }
    };
    if out.len() == expected {
        Ok(out)
    } else {
        Err(format!(
            "{} bytes where the metadata says {expected}",
            out.len()
        ))
    }
}

/// A ZLIB stream's first `expected` bytes. Pulsar's Java producers flush
/// the stream (SYNC_FLUSH) and never finish it, and their consumers read
/// as many bytes as the metadata says: so does this.
fn zlib(payload: &[u8], expected: usize) -> Result<Vec<u8>, String> {
    let mut stream = flate2::Decompress::new(true);
    let mut out = Vec::with_capacity(expected);
    while out.len() < expected {
        let (read, written) = (stream.total_in(), out.len());
        let consumed = usize::try_from(read).unwrap_or(usize::MAX);
        let status = stream
            .decompress_vec(
                payload.get(consumed..).unwrap_or_default(),
                &mut out,
                flate2::FlushDecompress::Sync,
            )
            .map_err(|e| format!("zlib: {e}"))?;
        if status == flate2::Status::StreamEnd
            || (stream.total_in() == read && out.len() == written)
        {
            break;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use magnetar::runtime_tokio as rt;

    const CODECS: [CompressionType; 4] = [
        CompressionType::Lz4,
        CompressionType::Zlib,
        CompressionType::Zstd,
        CompressionType::Snappy,
    ];

    fn text() -> Vec<u8> {
        b"{\"id\":1,\"v\":\"a row, as rows are: repetitive\"}".repeat(100)
    }

    #[test]
    fn each_codec_round_trips_with_the_stated_size() {
        let text = text();
        for codec in CODECS {
            let packed = rt::compress::compress(rt::compress::kind_from_pb(codec), &text).unwrap();
            assert_eq!(
                decompress(codec, &packed, text.len(), 1 << 20),
                Ok(text.clone()),
                "{codec:?}"
            );
            assert!(
                decompress(codec, &packed, text.len() + 1, 1 << 20).is_err(),
                "{codec:?}: a stated size one too large"
            );
            // A ZLIB stream is read up to the stated size, as Java reads it.
            if codec != CompressionType::Zlib {
                assert!(
                    decompress(codec, &packed, text.len() - 1, 1 << 20).is_err(),
                    "{codec:?}: a stated size one too small"
                );
            }
        }
    }

    #[test]
    fn a_size_past_the_ceiling_is_refused_before_decoding() {
        for codec in CODECS {
            let e = decompress(codec, b"anything", 4 << 30, 5 << 20).unwrap_err();
            assert!(e.contains("more than 5242880"), "{e}");
        }
    }

    #[test]
    fn corrupt_input_is_an_error_not_a_panic() {
        for codec in CODECS {
            for junk in [&[][..], &[0xff; 7], &[0x00, 0x10, 0xff, 0x7f, 0x01]] {
                assert!(
                    decompress(codec, junk, 64, 1 << 20).is_err(),
                    "{codec:?} {junk:?}"
                );
            }
        }
    }

    #[test]
    fn a_zlib_stream_flushed_and_not_finished_reads_as_java_reads_it() {
        use std::io::Write as _;
        let text = text();
        let mut encoder =
            flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(&text).unwrap();
        encoder.flush().unwrap();
        let flushed = encoder.get_ref().clone();
        assert_eq!(
            decompress(CompressionType::Zlib, &flushed, text.len(), 1 << 20),
            Ok(text.clone())
        );
        let finished = encoder.finish().unwrap();
        assert_eq!(
            decompress(CompressionType::Zlib, &finished, text.len(), 1 << 20),
            Ok(text)
        );
    }
}
