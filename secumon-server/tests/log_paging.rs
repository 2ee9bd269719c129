//! Reading logs back in full (issue 25, item 3), against a real server fed by a real push
//! client over gRPC: every line of 12 000 from two sources comes back once by paging, time
//! ranges and regex filters hold, a bad regex is a 400 that says why, and the live stream
//! follows a host's lines from a page's cursor with no gap and no duplicate at the seam.

use std::collections::HashSet;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use secumon_core::{IngestBatch, LogRecord, now_ms};
use secumon_server::{Server, ServerConfig};
use secumon_transport::{PushClient, PushClientConfig};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const HOST: &str = "web-1";

/// Line `i`: two sources taking turns, every tenth an ERROR, four lines per millisecond.
fn line(i: usize, base_ms: i64) -> LogRecord {
    LogRecord {
        timestamp_ms: base_ms + (i / 4) as i64,
        source: if i.is_multiple_of(2) { "/var/log/app.log".into() } else { "/var/log/auth.log".into() },
        labels: Default::default(),
        line: format!("{} request {i} done", if i.is_multiple_of(10) { "ERROR" } else { "INFO" }),
    }
}

struct Agent {
    client: PushClient,
    sequence: u64,
}

impl Agent {
    fn start(server: &Server, dir: &std::path::Path) -> Self {
        let client =
            PushClient::open(PushClientConfig::new(server.grpc_addr().to_string(), dir.join("spool"))).unwrap();
        let runner = client.clone();
        tokio::spawn(async move { runner.run(std::future::pending()).await });
        Self { client, sequence: 0 }
    }

    async fn push(&mut self, logs: Vec<LogRecord>) {
        self.sequence += 1;
        let batch = IngestBatch {
            agent_id: "agent-1".into(),
            sequence: self.sequence,
            host: HOST.into(),
            created_at_ms: now_ms(),
            logs,
            ..Default::default()
        };
        self.client.enqueue(batch).await.unwrap();
    }

    /// Waits until the server has acknowledged everything pushed.
    async fn settle(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while self.client.stats().committed + self.client.stats().duplicates < self.sequence {
            assert!(tokio::time::Instant::now() < deadline, "batches not acknowledged: {:?}", self.client.stats());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn get(server: &Server, query: &str) -> (reqwest::StatusCode, Value) {
    let url = format!("http://{}/api/v1/logs/hosts/{HOST}?{query}", server.api_addr());
    let response = reqwest::get(url).await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

fn lines(page: &Value) -> Vec<String> {
    page["logs"].as_array().unwrap().iter().map(|l| l["line"].as_str().unwrap().to_string()).collect()
}

/// Every line of `query`, paging forward by `next_cursor` while `more`.
async fn page_all(server: &Server, query: &str) -> (Vec<String>, usize) {
    let (mut all, mut pages) = (Vec::new(), 0);
    let mut url = query.to_string();
    loop {
        let (status, page) = get(server, &url).await;
        assert_eq!(status, 200, "{page}");
        pages += 1;
        assert!(page["logs"].as_array().unwrap().len() <= 5_000);
        all.extend(lines(&page));
        if !page["more"].as_bool().unwrap() {
            return (all, pages);
        }
        url = format!("{query}&after={}", page["next_cursor"].as_str().unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twelve_thousand_lines_page_back_whole_by_range_source_and_regex() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(ServerConfig::loopback(dir.path().join("s.db"))).await.unwrap();
    let mut agent = Agent::start(&server, dir.path());
    let base = now_ms() - 600_000;
    let all: Vec<LogRecord> = (0..12_000).map(|i| line(i, base)).collect();
    for chunk in all.chunks(1_000) {
        agent.push(chunk.to_vec()).await;
    }
    agent.settle().await;
    let text = |records: &mut dyn Iterator<Item = &LogRecord>| records.map(|r| r.line.clone()).collect::<Vec<_>>();

    // The whole range, at the largest page and at an asked-for larger one (held to 5 000).
    let (paged, pages) = page_all(&server, "since_ms=0&limit=9000").await;
    assert_eq!(pages, 3);
    assert_eq!(paged.len(), 12_000, "no line lost");
    assert_eq!(paged.iter().collect::<HashSet<_>>().len(), 12_000, "no line twice");
    assert_eq!(paged, text(&mut all.iter()), "in time order");

    // A time range, one source, a regex, and all three with small pages.
    let (since, until) = (base + 500, base + 1_500);
    let (ranged, _) = page_all(&server, &format!("since_ms={since}&until_ms={until}&limit=333")).await;
    assert_eq!(ranged, text(&mut all.iter().filter(|r| (since..until).contains(&r.timestamp_ms))));
    assert_eq!(ranged.len(), 4_000);
    let (auth, _) = page_all(&server, "since_ms=0&source=/var/log/auth.log&limit=5000").await;
    assert_eq!(auth, text(&mut all.iter().filter(|r| r.source == "/var/log/auth.log")));
    let (errors, _) = page_all(&server, "since_ms=0&regex=%5EERROR%20request%20%5Cd*0%20&limit=100").await;
    assert_eq!(errors.len(), 1_200);
    assert_eq!(errors, text(&mut all.iter().filter(|r| r.line.starts_with("ERROR"))));
    let (few, _) =
        page_all(&server, &format!("since_ms={since}&until_ms={until}&source=/var/log/app.log&contains=ERROR&limit=7"))
            .await;
    let want = text(&mut all.iter().filter(|r| {
        (since..until).contains(&r.timestamp_ms) && r.source == "/var/log/app.log" && r.line.contains("ERROR")
    }));
    assert_eq!(few, want);
    assert_eq!(few.len(), 400);

    // Without paging parameters: the latest lines, oldest first, as before paging existed.
    let (_, latest) = get(&server, "").await;
    assert_eq!(lines(&latest), text(&mut all[11_900..].iter()));
    // ... and paging back from there reaches the first line.
    let mut back = lines(&latest);
    let mut before = latest["prev_cursor"].as_str().unwrap().to_string();
    loop {
        let (_, page) = get(&server, &format!("before={before}&limit=5000")).await;
        let mut older = lines(&page);
        older.extend(back);
        back = older;
        if !page["more"].as_bool().unwrap() {
            break;
        }
        before = page["prev_cursor"].as_str().unwrap().to_string();
    }
    assert_eq!(back, text(&mut all.iter()));

    // Refused with a 400 that names the problem.
    for (query, says) in [
        ("regex=(unclosed", "invalid regex"),
        ("regex=a%7B1000%7D%7B1000%7D", "invalid regex"),
        ("after=zz", "malformed log cursor"),
        ("contains=a&regex=b", "not both"),
    ] {
        let (status, body) = get(&server, query).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["error"]["code"], "bad_request");
        assert!(body["error"]["message"].as_str().unwrap().contains(says), "{query}: {body}");
    }
    server.shutdown().await;
}

async fn next(socket: &mut Socket, wait: Duration) -> Option<Value> {
    loop {
        match tokio::time::timeout(wait, socket.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => return Some(serde_json::from_str(&text).unwrap()),
            Ok(Some(Ok(Message::Close(_)) | Err(_))) | Ok(None) | Err(_) => return None,
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// Log lines that arrive on `socket` within `wait` of each other, up to `want`.
async fn followed(socket: &mut Socket, want: usize) -> Vec<String> {
    let mut got = Vec::new();
    while got.len() < want {
        let Some(message) = next(socket, Duration::from_secs(10)).await else { break };
        match message["type"].as_str() {
            Some("logs") => got.extend(lines(&message)),
            Some("error") => panic!("{message}"),
            _ => {}
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_continues_a_page_without_gap_or_duplicate_and_sees_new_lines() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(ServerConfig::loopback(dir.path().join("s.db"))).await.unwrap();
    let mut agent = Agent::start(&server, dir.path());
    let base = now_ms() - 60_000;
    agent.push((0..50).map(|i| line(i, base)).collect()).await;
    agent.settle().await;
    let (_, page) = get(&server, "since_ms=0").await;
    assert_eq!(lines(&page).len(), 50);
    let cursor = page["next_cursor"].as_str().unwrap().to_string();

    // Lines that land between the page and the subscription: the seam.
    agent.push((50..60).map(|i| line(i, base)).collect()).await;
    agent.settle().await;

    let url = format!("ws://{}/api/v1/stream", server.api_addr());
    let (mut all, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let (mut errors, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    for (socket, follow) in [
        (&mut all, json!({"host": HOST, "after": cursor})),
        (&mut errors, json!({"host": HOST, "after": cursor, "regex": "^ERROR"})),
    ] {
        assert_eq!(next(socket, Duration::from_secs(5)).await.unwrap()["type"], "subscribed");
        socket.send(Message::text(json!({"subscribe": {"alerts": false, "logs": follow}}).to_string())).await.unwrap();
        assert_eq!(next(socket, Duration::from_secs(5)).await.unwrap()["type"], "subscribed");
    }
    let want = |range: std::ops::Range<usize>| range.map(|i| line(i, base).line).collect::<Vec<_>>();
    assert_eq!(followed(&mut all, 10).await, want(50..60), "the seam: each line once");
    assert_eq!(followed(&mut errors, 1).await, vec![line(50, base).line]);

    // A line written after the follow started arrives; nothing else does.
    agent.push((60..75).map(|i| LogRecord { timestamp_ms: now_ms(), ..line(i, base) }).collect()).await;
    assert_eq!(followed(&mut all, 15).await, want(60..75));
    assert_eq!(followed(&mut errors, 2).await, vec![line(60, base).line, line(70, base).line]);
    assert!(next(&mut all, Duration::from_millis(500)).await.is_none(), "no duplicate after the new lines");

    // A follow with a bad regex is refused on the socket, naming the problem.
    all.send(Message::text(json!({"subscribe": {"logs": {"host": HOST, "regex": "(x"}}}).to_string())).await.unwrap();
    let refused = next(&mut all, Duration::from_secs(5)).await.unwrap();
    assert_eq!(refused["code"], "bad_request", "{refused}");
    assert!(refused["message"].as_str().unwrap().contains("invalid regex"), "{refused}");
    server.shutdown().await;
}
