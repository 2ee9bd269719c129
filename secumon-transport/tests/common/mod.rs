//! What the transport's integration tests share: a plaintext ingest server on loopback
//! around a test's sink, and a push client running until told to stop.

use std::net::SocketAddr;
use std::sync::Arc;

use secumon_transport::{BatchSink, IngestService, PushClient};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;

/// A plaintext ingest server on a free port storing into `sink`; sending `true` stops it.
pub async fn start_server<S: BatchSink + 'static>(sink: Arc<S>) -> (SocketAddr, watch::Sender<bool>, JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopping) = watch::channel(false);
    let router =
        tonic::transport::Server::builder().add_service(IngestService::new(sink, stopping.clone()).into_server());
    let mut stopped = stopping;
    let task = tokio::spawn(async move {
        let _ = router
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async move {
                let _ = stopped.wait_for(|s| *s).await;
            })
            .await;
    });
    (addr, stop, task)
}

/// Runs `client` until `true` is sent on the returned sender.
pub fn run_client(client: &Arc<PushClient>) -> (watch::Sender<bool>, JoinHandle<()>) {
    let (stop, mut stopped) = watch::channel(false);
    let runner = Arc::clone(client);
    let task = tokio::spawn(async move {
        runner
            .run(async move {
                let _ = stopped.wait_for(|s| *s).await;
            })
            .await
    });
    (stop, task)
}
