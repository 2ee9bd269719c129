//! The server's ingest hot path, piece by piece: decoding and validating a wire batch,
//! committing it to the embedded SQLite store through the `Store` trait (one transaction per
//! batch, durable on return), and the chunk codec that compaction and queries run.
//! Batches look like an agent's: 5 000 samples over 500 series.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use prost::Message;
use secumon_core::{IngestBatch, Labels, Sample, proto};
use secumon_store::{SqliteStore, Store};

const SERIES: usize = 500;
const SAMPLES_PER_SERIES: usize = 10;
const T0: i64 = 1_700_000_000_000;

fn host_batch(agent: usize, sequence: u64) -> IngestBatch {
    let mut samples = Vec::with_capacity(SERIES * SAMPLES_PER_SERIES);
    for series in 0..SERIES {
        let labels = Labels::from([
            ("device".to_string(), format!("dev{}", series % 20)),
            ("core".to_string(), (series % 8).to_string()),
        ]);
        let name = format!("metric_{}_bytes", series / 20);
        for i in 0..SAMPLES_PER_SERIES {
            let ts = T0 + sequence as i64 * 10_000 + i as i64 * 1_000;
            // Gauge-like decimals, as real host metrics are.
            let value = 1_000.0 + (series as f64 * 7.3 + i as f64 * 0.37).sin() * 250.0;
            samples.push(Sample::new(name.clone(), labels.clone(), ts, value));
        }
    }
    IngestBatch {
        agent_id: format!("agent-{agent}"),
        sequence,
        host: format!("host-{agent}"),
        created_at_ms: T0,
        samples,
        ..Default::default()
    }
}

fn decode_and_validate(c: &mut Criterion) {
    let wire = host_batch(0, 1).to_proto().encode_to_vec();
    let mut group = c.benchmark_group("wire");
    group.throughput(Throughput::Elements((SERIES * SAMPLES_PER_SERIES) as u64));
    group.bench_function("decode_validate_5000_samples", |b| {
        b.iter(|| {
            let batch = proto::Batch::decode(black_box(wire.as_slice())).expect("decodes");
            IngestBatch::from_proto(batch).expect("valid")
        })
    });
    group.finish();
}

fn sqlite_write_batch(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = runtime.block_on(SqliteStore::open(&dir.path().join("bench.db"))).expect("store");
    let mut sequence = 0;
    let mut group = c.benchmark_group("sqlite");
    group.throughput(Throughput::Elements((SERIES * SAMPLES_PER_SERIES) as u64));
    group.sample_size(30);
    group.bench_function("write_batch_5000_samples", |b| {
        b.to_async(&runtime).iter_batched(
            || {
                sequence += 1;
                host_batch(0, sequence)
            },
            |batch| {
                let store = &store;
                async move { store.write_batch("default", &batch).await.expect("written") }
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// A host gauge as agents report it: a slow random walk with two decimals, every 10 s.
fn gauge_points(n: usize) -> (Vec<i64>, Vec<f64>) {
    let mut value = 37.5_f64;
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let values = (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            value = (value + (state % 200) as f64 / 100.0 - 1.0).clamp(0.0, 100.0);
            (value * 100.0).round() / 100.0
        })
        .collect();
    ((0..n as i64).map(|i| T0 + i * 10_000).collect(), values)
}

fn chunk_codec(c: &mut Criterion) {
    use secumon_store::codec::{Effort, decode_chunk, encode_chunk};
    let mut group = c.benchmark_group("codec");
    for n in [32, 120, 720, 8_192] {
        let (timestamps, values) = gauge_points(n);
        group.throughput(Throughput::Elements(n as u64));
        for effort in [Effort::Fast, Effort::Best] {
            let size = encode_chunk(&timestamps, &values, effort).len();
            eprintln!("codec: {n} samples, {effort:?}: {size} bytes ({:.2} B/sample)", size as f64 / n as f64);
            group.bench_function(format!("encode_{effort:?}_{n}"), |b| {
                b.iter(|| encode_chunk(black_box(&timestamps), black_box(&values), effort))
            });
        }
        let chunk = encode_chunk(&timestamps, &values, Effort::Best);
        group.bench_function(format!("decode_{n}"), |b| b.iter(|| decode_chunk(black_box(&chunk)).expect("decodes")));
    }
    group.finish();
}

criterion_group!(benches, decode_and_validate, sqlite_write_batch, chunk_codec);
criterion_main!(benches);
