//! Redirects resolved as curl resolves them: a loopback HTTP server of our own answers the
//! first request with a `Location` from a table (relative paths with dot segments, a
//! query-only reference, a network-path reference, fragments, absolute URLs) and records
//! every request it gets; curl (`-L`) and the HTTP check each follow one redirect, and the
//! second request they send must be the same, and the one the table expects. Also checks
//! the `User-Agent` sent, default and set per check.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use secumon_scan::{DEFAULT_USER_AGENT, HttpCheck, run_check};

const START: &str = "/hop/deep/3";
const TIMEOUT: Duration = Duration::from_secs(10);

/// What the server saw: request target, `Host` and `User-Agent`.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    target: String,
    host: String,
    user_agent: String,
}

/// Answers `START` with a 307 to the current `location`, anything else with 200.
struct Server {
    port: u16,
    location: Arc<Mutex<String>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

fn serve() -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let location = Arc::new(Mutex::new(String::new()));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (answer, record) = (location.clone(), seen.clone());
    // The thread ends with the test process; it holds only a loopback listener.
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let target = line.split_whitespace().nth(1).unwrap_or_default().to_string();
            let (mut host, mut user_agent) = (String::new(), String::new());
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) == 0 || header.trim().is_empty() {
                    break;
                }
                if let Some((name, value)) = header.split_once(':') {
                    match name.to_ascii_lowercase().as_str() {
                        "host" => host = value.trim().to_string(),
                        "user-agent" => user_agent = value.trim().to_string(),
                        _ => {}
                    }
                }
            }
            let response = if target == START {
                format!(
                    "HTTP/1.1 307 Temporary Redirect\r\nLocation: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    answer.lock().unwrap()
                )
            } else {
                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok".to_string()
            };
            record.lock().unwrap().push(Seen { target, host, user_agent });
            let _ = stream.write_all(response.as_bytes());
        }
    });
    Server { port, location, seen }
}

/// The requests made after the first one, cleared for the next client.
fn followed(server: &Server) -> Vec<Seen> {
    let seen = std::mem::take(&mut *server.seen.lock().unwrap());
    assert_eq!(seen.first().map(|s| s.target.as_str()), Some(START), "{seen:?}");
    seen[1..].to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locations_resolve_as_curl_resolves_them() {
    let server = serve();
    let port = server.port;
    let origin = format!("127.0.0.1:{port}");
    // Location, then the request target expected next (on the same host unless named).
    let table = [
        ("../landing?via=307", "/hop/landing?via=307"),
        ("landing#part", "/hop/deep/landing"),
        ("?q=1", "/hop/deep/3?q=1"),
        ("./x/./y/../z", "/hop/deep/x/z"),
        ("..", "/hop/"),
        (".", "/hop/deep/"),
        ("../../../../top", "/top"),
        ("/abs/./a/../b?c=d", "/abs/b?c=d"),
        ("x;p?y=1", "/hop/deep/x;p?y=1"),
        (&*format!("//127.0.0.1:{port}/net/path"), "/net/path"),
        (&*format!("http://{origin}/full?u=1#f"), "/full?u=1"),
    ];
    for (location, expected) in table {
        *server.location.lock().unwrap() = location.to_string();
        let start = format!("http://{origin}{START}");
        let curl = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-L", "--max-redirs", "1", "-w", "%{url_effective}", &start])
            .output()
            .expect("curl must be installed");
        let by_curl = followed(&server);
        let check = HttpCheck { max_redirects: 1, ..HttpCheck::get("r", start.clone()) };
        let result = run_check(&check, TIMEOUT).await;
        let by_us = followed(&server);
        assert_eq!(by_curl.len(), 1, "curl followed {location:?} once: {by_curl:?}");
        assert_eq!(by_curl[0].target, expected, "curl, for {location:?}");
        let ours: Vec<_> = by_us.iter().map(|s| (s.target.clone(), s.host.clone())).collect();
        let curls: Vec<_> = by_curl.iter().map(|s| (s.target.clone(), s.host.clone())).collect();
        assert_eq!(ours, curls, "same request as curl for {location:?}: {}", result.details);
        assert_eq!(result.details["redirects"][0]["url"], start.as_str());
        let effective = String::from_utf8_lossy(&curl.stdout).to_string();
        assert_eq!(
            result.details["response"]["url"].as_str().unwrap().split('#').next().unwrap(),
            effective.split('#').next().unwrap(),
            "the URL reported, as curl's url_effective, for {location:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_agent_is_secumon_unless_set() {
    let server = serve();
    let url = format!("http://127.0.0.1:{}/ua", server.port);
    run_check(&HttpCheck::get("ua", url.clone()), TIMEOUT).await;
    run_check(&HttpCheck { user_agent: "Acme-Probe/2".into(), ..HttpCheck::get("ua", url.clone()) }, TIMEOUT).await;
    let header = HttpCheck { headers: vec![("user-agent".into(), "Header/1".into())], ..HttpCheck::get("ua", url) };
    run_check(&header, TIMEOUT).await;
    let seen: Vec<String> = server.seen.lock().unwrap().iter().map(|s| s.user_agent.clone()).collect();
    assert!(DEFAULT_USER_AGENT.starts_with("SecuMon/"), "{DEFAULT_USER_AGENT}");
    assert_eq!(seen, vec![DEFAULT_USER_AGENT.to_string(), "Acme-Probe/2".into(), "Header/1".into()]);
}
