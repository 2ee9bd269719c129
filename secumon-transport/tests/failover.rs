//! A push client given several endpoints (the gateways of a scale-out) fails over: a first
//! endpoint nobody listens on costs one backoff, and when the server it pushes to goes away
//! mid-stream it carries on with the next one, losing nothing.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use secumon_core::{IngestBatch, Labels, Sample};
use secumon_transport::{BatchSink, Peer, PushClient, PushClientConfig, SinkError, SinkOutcome};

mod common;

use common::{run_client, start_server};

#[derive(Default)]
struct MemorySink(Mutex<Vec<u64>>);

#[async_trait]
impl BatchSink for MemorySink {
    async fn commit(&self, _peer: &Peer, batch: IngestBatch) -> Result<SinkOutcome, SinkError> {
        self.0.lock().unwrap().push(batch.sequence);
        Ok(SinkOutcome::Committed)
    }
}

fn batch(n: u64) -> IngestBatch {
    IngestBatch {
        agent_id: "failover-agent".into(),
        host: "failover-host".into(),
        samples: vec![Sample::new("failover_marker", Labels::new(), secumon_core::now_ms(), n as f64)],
        ..Default::default()
    }
}

async fn acked(client: &PushClient, through: u64, within: Duration) {
    let deadline = Instant::now() + within;
    while client.stats().spool.acked_through < through {
        assert!(Instant::now() < deadline, "not acknowledged through {through}: {:?}", client.stats());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_client_moves_to_the_next_endpoint_when_one_is_down_or_goes_away() {
    let (first_sink, second_sink) = (Arc::new(MemorySink::default()), Arc::new(MemorySink::default()));
    let nobody = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let (first, stop_first, first_task) = start_server(Arc::clone(&first_sink)).await;
    let (second, _stop_second, _second_task) = start_server(Arc::clone(&second_sink)).await;

    let spool = tempfile::tempdir().unwrap();
    let mut config = PushClientConfig::new(format!("http://{nobody}"), spool.path());
    config.failover_endpoints = vec![first.to_string(), second.to_string()];
    config.backoff_max = Duration::from_millis(500);
    let client = Arc::new(PushClient::open(config).unwrap());
    let (stop, run) = run_client(&client);

    // Nobody at the first address: the second (`first`) takes the batches within a backoff.
    for n in 1..=10 {
        client.enqueue(batch(n)).await.unwrap();
    }
    acked(&client, 10, Duration::from_secs(5)).await;
    assert_eq!(*first_sink.0.lock().unwrap(), (1..=10).collect::<Vec<_>>());

    // It goes away mid-stream: the next one takes over within seconds.
    stop_first.send_replace(true);
    let _ = first_task.await;
    let lost_at = Instant::now();
    for n in 11..=20 {
        client.enqueue(batch(n)).await.unwrap();
    }
    acked(&client, 20, Duration::from_secs(10)).await;
    assert!(lost_at.elapsed() < Duration::from_secs(5), "took {:?} to fail over", lost_at.elapsed());
    let mut all: Vec<u64> = first_sink.0.lock().unwrap().clone();
    all.extend(second_sink.0.lock().unwrap().iter());
    all.sort_unstable();
    all.dedup();
    assert_eq!(all, (1..=20).collect::<Vec<_>>(), "every batch reached one of them");
    assert!(second_sink.0.lock().unwrap().contains(&20));
    assert!(client.stats().connections >= 2, "{:?}", client.stats());

    stop.send_replace(true);
    let _ = run.await;
}
