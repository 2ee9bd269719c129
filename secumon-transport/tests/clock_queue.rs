//! The receive time a sender's clock is measured against, when batches queue in the stream
//! behind a slow commit (a store outage): the service says how long each may have waited, so
//! a right clock is not read as behind by the wait. Client and server share this machine's
//! clock, so the true offset is 0 and must lie in every batch's measured interval.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use secumon_core::{ClockReading, IngestBatch, Labels, Sample};
use secumon_transport::{BatchSink, Peer, PushClient, PushClientConfig, SinkError, SinkOutcome};

mod common;

use common::{run_client, start_server};

/// Takes `stall` over the first batch's commit, as a store coming back would; records the
/// clock reading of every batch.
struct StallingSink {
    stall: Duration,
    readings: Mutex<Vec<(u64, ClockReading)>>,
}

#[async_trait]
impl BatchSink for StallingSink {
    async fn commit(&self, _peer: &Peer, batch: IngestBatch) -> Result<SinkOutcome, SinkError> {
        let first = {
            let mut readings = self.readings.lock().unwrap();
            readings.push((batch.sequence, batch.clock.expect("the client stamps its send time")));
            readings.len() == 1
        };
        if first {
            tokio::time::sleep(self.stall).await;
        }
        Ok(SinkOutcome::Committed)
    }
}

fn batch(n: u64) -> IngestBatch {
    IngestBatch {
        agent_id: "clock-agent".into(),
        host: "clock-host".into(),
        samples: vec![Sample::new("clock_marker", Labels::new(), secumon_core::now_ms(), n as f64)],
        ..Default::default()
    }
}

#[tokio::test]
async fn batches_read_late_say_how_long_they_may_have_waited() {
    let stall = Duration::from_millis(2_000);
    let sink = Arc::new(StallingSink { stall, readings: Mutex::default() });
    let (addr, stop_server, _server) = start_server(Arc::clone(&sink)).await;
    let spool = tempfile::tempdir().unwrap();
    let client = Arc::new(PushClient::open(PushClientConfig::new(format!("http://{addr}"), spool.path())).unwrap());
    let (stop, run) = run_client(&client);

    // The first batch stalls the stream; three more go on the wire behind it.
    client.enqueue(batch(1)).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while sink.readings.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the first batch never arrived");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for n in 2..=4 {
        client.enqueue(batch(n)).await.unwrap();
    }
    while client.stats().spool.acked_through < 4 {
        assert!(Instant::now() < deadline, "not all acknowledged: {:?}", client.stats());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Later batches arrive while the server listens again: nothing queued.
    tokio::time::sleep(Duration::from_millis(300)).await;
    client.enqueue(batch(5)).await.unwrap();
    while client.stats().spool.acked_through < 5 {
        assert!(Instant::now() < deadline, "batch 5 not acknowledged: {:?}", client.stats());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send_replace(true);
    let _ = run.await;
    stop_server.send_replace(true);

    let readings = sink.readings.lock().unwrap().clone();
    assert_eq!(readings.iter().map(|(sequence, _)| *sequence).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5]);
    let stall_ms = stall.as_millis() as i64;
    for (sequence, reading) in &readings {
        let measured = reading.offset_ms();
        let uncertainty = i64::from(reading.round_trip_ms) + 50;
        // The wait only makes the clock look behind: the truth (0) lies between the
        // measurement and the measurement plus the wait.
        assert!(
            measured - uncertainty <= 0 && 0 <= measured + i64::from(reading.queued_ms) + uncertainty,
            "batch {sequence}: measured {measured} ms, queued {} ms",
            reading.queued_ms
        );
        match sequence {
            1 | 5 => assert!(reading.queued_ms < 100, "batch {sequence} was awaited: {reading:?}"),
            _ => {
                // Read after the stall: they waited most of it, and without the bound they
                // look as far behind as they waited.
                assert!(measured < -(stall_ms / 2), "batch {sequence} measured {measured} ms");
                assert!(i64::from(reading.queued_ms) >= stall_ms / 2, "batch {sequence}: {reading:?}");
            }
        }
    }
}
