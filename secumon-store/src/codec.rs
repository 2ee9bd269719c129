//! Byte formats of the sample store: the write-ahead record of one batch (plain, so the
//! hot path spends no time compressing) and the compressed per-series chunk (pco, for the
//! long run). Both are lossless: NaN payloads and ±Inf come back bit for bit.

use pco::standalone::{simple_compress, simple_decompress};
use pco::{ChunkConfig, DeltaSpec, ModeSpec};

use crate::query::Summary;

/// Bytes of one sample in a write-ahead record: series id u32, timestamp i64, value bits u64.
const WAL_SAMPLE_BYTES: usize = 20;

/// Bytes that do not decode.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// A write-ahead record's length is not a multiple of a sample's (20 bytes).
    #[error("write-ahead record of {0} bytes is not a whole number of samples")]
    TornRecord(usize),
    /// A chunk's streams are malformed, or hold different numbers of timestamps and values.
    #[error("chunk is corrupt: {0}")]
    Chunk(String),
}

/// One sample of a series, by the series' id.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct WalSample {
    pub series_id: u32,
    pub timestamp_ms: i64,
    pub value: f64,
}

/// A write-ahead record: each sample as series id, timestamp and value bits, little endian.
pub(crate) fn encode_wal(samples: &[WalSample]) -> Vec<u8> {
    let mut out = Vec::with_capacity(samples.len() * WAL_SAMPLE_BYTES);
    for s in samples {
        out.extend_from_slice(&s.series_id.to_le_bytes());
        out.extend_from_slice(&s.timestamp_ms.to_le_bytes());
        out.extend_from_slice(&s.value.to_bits().to_le_bytes());
    }
    out
}

/// The samples of a write-ahead record; an error when it is torn.
pub(crate) fn decode_wal(bytes: &[u8]) -> Result<Vec<WalSample>, CodecError> {
    if !bytes.len().is_multiple_of(WAL_SAMPLE_BYTES) {
        return Err(CodecError::TornRecord(bytes.len()));
    }
    Ok(bytes
        .chunks_exact(WAL_SAMPLE_BYTES)
        .map(|b| WalSample {
            series_id: u32::from_le_bytes(b[0..4].try_into().expect("4 bytes")),
            timestamp_ms: i64::from_le_bytes(b[4..12].try_into().expect("8 bytes")),
            value: f64::from_bits(u64::from_le_bytes(b[12..20].try_into().expect("8 bytes"))),
        })
        .collect())
}

/// How hard a chunk is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effort {
    /// For the short-lived chunks compaction writes from the head: pco's fixed cost per
    /// chunk dominates small chunks, so skip its searches (about 5x faster, 2-3x bigger).
    Fast,
    /// For merged chunks that stay until retention: the smallest output.
    Best,
}

/// Compresses one series' samples (time-ordered, one value per timestamp) into a chunk:
/// the timestamps' pco stream, length-prefixed, then the values' pco stream.
pub fn encode_chunk(timestamps: &[i64], values: &[f64], effort: Effort) -> Vec<u8> {
    debug_assert_eq!(timestamps.len(), values.len());
    let config = match effort {
        Effort::Best => ChunkConfig::default(),
        Effort::Fast => ChunkConfig::default()
            .with_compression_level(4)
            .with_mode_spec(ModeSpec::Classic)
            .with_delta_spec(DeltaSpec::TryConsecutive(1)),
    };
    // pco only fails on invalid configs; the default one is valid.
    let ts = simple_compress(timestamps, &config).expect("pco compresses i64 with the default config");
    let vs = simple_compress(values, &config).expect("pco compresses f64 with the default config");
    let mut out = Vec::with_capacity(4 + ts.len() + vs.len());
    out.extend_from_slice(&(ts.len() as u32).to_le_bytes());
    out.extend_from_slice(&ts);
    out.extend_from_slice(&vs);
    out
}

/// The timestamps and values of a chunk [`encode_chunk`] made; an error when it is corrupt.
pub fn decode_chunk(bytes: &[u8]) -> Result<(Vec<i64>, Vec<f64>), CodecError> {
    let corrupt = |e: &dyn std::fmt::Display| CodecError::Chunk(e.to_string());
    let len_bytes: [u8; 4] = bytes.get(..4).and_then(|b| b.try_into().ok()).ok_or_else(|| corrupt(&"too short"))?;
    let ts_len = u32::from_le_bytes(len_bytes) as usize;
    let ts_bytes = bytes.get(4..4 + ts_len).ok_or_else(|| corrupt(&"timestamp stream cut short"))?;
    let timestamps = simple_decompress::<i64>(ts_bytes).map_err(|e| corrupt(&e))?;
    let values = simple_decompress::<f64>(&bytes[4 + ts_len..]).map_err(|e| corrupt(&e))?;
    if timestamps.len() != values.len() {
        return Err(corrupt(&format!("{} timestamps but {} values", timestamps.len(), values.len())));
    }
    Ok((timestamps, values))
}

/// Compresses rollup summaries (bucket-ordered) into a block: their count, then one
/// length-prefixed pco stream per field (bucket, min, max, sum, count, last timestamp,
/// last), so a window's 5-minute or hourly rollups take one row and a few bytes a bucket.
pub(crate) fn encode_summaries(summaries: &[(i64, Summary)]) -> Vec<u8> {
    let config = ChunkConfig::default();
    let ints = |f: &dyn Fn(&(i64, Summary)) -> i64| -> Vec<u8> {
        let column: Vec<i64> = summaries.iter().map(f).collect();
        simple_compress(&column, &config).expect("pco compresses i64 with the default config")
    };
    let reals = |f: &dyn Fn(&(i64, Summary)) -> f64| -> Vec<u8> {
        let column: Vec<f64> = summaries.iter().map(f).collect();
        simple_compress(&column, &config).expect("pco compresses f64 with the default config")
    };
    let streams = [
        ints(&|s| s.0),
        reals(&|s| s.1.min),
        reals(&|s| s.1.max),
        reals(&|s| s.1.sum),
        ints(&|s| s.1.count as i64),
        ints(&|s| s.1.last_ts),
        reals(&|s| s.1.last),
    ];
    let mut out = Vec::with_capacity(4 + streams.iter().map(|s| s.len() + 4).sum::<usize>());
    out.extend_from_slice(&(summaries.len() as u32).to_le_bytes());
    for stream in streams {
        out.extend_from_slice(&(stream.len() as u32).to_le_bytes());
        out.extend_from_slice(&stream);
    }
    out
}

/// The summaries of a block [`encode_summaries`] made; an error when it is corrupt.
pub(crate) fn decode_summaries(bytes: &[u8]) -> Result<Vec<(i64, Summary)>, CodecError> {
    let corrupt = |e: &dyn std::fmt::Display| CodecError::Chunk(format!("rollup block: {e}"));
    let mut rest = bytes;
    let mut take = |n: usize| -> Result<&[u8], CodecError> {
        if rest.len() < n {
            return Err(corrupt(&"cut short"));
        }
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Ok(head)
    };
    let word = |b: &[u8]| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize;
    let count = word(take(4)?);
    let mut streams = Vec::with_capacity(7);
    for _ in 0..7 {
        let len = word(take(4)?);
        streams.push(take(len)?);
    }
    let ints = |b: &[u8]| simple_decompress::<i64>(b).map_err(|e| corrupt(&e));
    let reals = |b: &[u8]| simple_decompress::<f64>(b).map_err(|e| corrupt(&e));
    let (buckets, mins, maxs, sums) = (ints(streams[0])?, reals(streams[1])?, reals(streams[2])?, reals(streams[3])?);
    let (counts, last_ts, lasts) = (ints(streams[4])?, ints(streams[5])?, reals(streams[6])?);
    if [buckets.len(), mins.len(), maxs.len(), sums.len(), counts.len(), last_ts.len(), lasts.len()]
        .iter()
        .any(|len| *len != count)
    {
        return Err(corrupt(&"fields of different lengths"));
    }
    Ok((0..count)
        .map(|i| {
            let summary = Summary {
                min: mins[i],
                max: maxs[i],
                sum: sums[i],
                count: counts[i] as u64,
                last_ts: last_ts[i],
                last: lasts[i],
            };
            (buckets[i], summary)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wal_round_trips_special_values() {
        let samples = vec![
            WalSample { series_id: 7, timestamp_ms: -5, value: f64::NAN },
            WalSample { series_id: u32::MAX, timestamp_ms: i64::MAX, value: f64::NEG_INFINITY },
        ];
        let back = decode_wal(&encode_wal(&samples)).unwrap();
        assert_eq!(back[0].value.to_bits(), f64::NAN.to_bits());
        assert_eq!(back[1], samples[1]);
        assert!(matches!(decode_wal(&[0; 21]), Err(CodecError::TornRecord(21))));
    }

    #[test]
    fn chunk_round_trips_bit_for_bit_and_compresses_gauges() {
        let timestamps: Vec<i64> = (0..720).map(|i| 1_700_000_000_000 + i * 10_000).collect();
        let mut values: Vec<f64> = (0..720).map(|i| ((i % 37) as f64 * 0.25 + 12.5).round() / 100.0).collect();
        values[3] = f64::NAN;
        values[4] = f64::INFINITY;
        values[5] = -0.0;
        let chunk = encode_chunk(&timestamps, &values, Effort::Best);
        let (ts, vs) = decode_chunk(&chunk).unwrap();
        assert_eq!(ts, timestamps);
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&vs), bits(&values));
        assert!(chunk.len() < 720 * 2, "{} bytes for 720 samples", chunk.len());
    }

    #[test]
    fn rollup_blocks_round_trip_bit_for_bit() {
        let summaries: Vec<(i64, Summary)> = (0..24)
            .map(|i| {
                let mut s = Summary::of(i * 300_000 + 10, i as f64 * 0.5);
                s.merge(&Summary::of(i * 300_000 + 20, if i == 3 { f64::NAN } else { -(i as f64) }));
                (i * 300_000, s)
            })
            .collect();
        let back = decode_summaries(&encode_summaries(&summaries)).unwrap();
        let bits = |v: &[(i64, Summary)]| {
            v.iter()
                .map(|(b, s)| {
                    (*b, s.min.to_bits(), s.max.to_bits(), s.sum.to_bits(), s.count, s.last_ts, s.last.to_bits())
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(bits(&back), bits(&summaries));
        assert!(decode_summaries(&encode_summaries(&[])).unwrap().is_empty());
        let block = encode_summaries(&summaries);
        for cut in [0, 3, 9, block.len() - 1] {
            assert!(decode_summaries(&block[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn corrupt_chunks_are_errors_not_panics() {
        let chunk = encode_chunk(&[1, 2, 3], &[1.0, 2.0, 3.0], Effort::Fast);
        for cut in [0, 3, 5, chunk.len() - 1] {
            assert!(decode_chunk(&chunk[..cut]).is_err(), "cut at {cut}");
        }
    }
}
