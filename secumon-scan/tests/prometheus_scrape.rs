//! The `prometheus` check against a loopback exporter of our own that serves pages written
//! for each case: relabelling (allow-list, prefix, SecuMon's own label names), the series
//! cap, label values too long to store, and the scrapes that must fail whole (an HTTP error,
//! a page that does not parse). Against a real node_exporter and SecuMon's own `/metrics`,
//! secumon-agent/tests/prometheus_scrape.rs.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::time::Duration;

use secumon_core::{CheckResult, CheckStatus};
use secumon_scan::{CheckDetails, CheckSpec, run_check};

/// Serves `status` and `page` to every request, on a loopback port.
fn exporter(status: u16, page: String) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // The thread ends with the test process; it holds only a loopback listener.
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let mut stream = reader.into_inner();
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
                page.len()
            );
        }
    });
    port
}

async fn scrape(port: u16, extra: &str) -> CheckResult {
    let json = format!("{{\"type\": \"prometheus\", \"url\": \"http://127.0.0.1:{port}/metrics\"{extra}}}");
    let spec: CheckSpec = serde_json::from_str(&json).unwrap();
    run_check(&*spec.build("app").unwrap(), Duration::from_secs(10)).await
}

fn names(result: &CheckResult) -> Vec<String> {
    result.samples.iter().map(|s| s.series.name.clone()).collect()
}

const PAGE: &str = "# HELP app_requests_total Requests.\n# TYPE app_requests_total counter\n\
app_requests_total{code=\"200\",host=\"web-1\",kind=\"api\"} 10\napp_requests_total{code=\"500\"} 2\n\
app_up 1\napp_up_total 4\nprocess_open_fds 12\n";

#[tokio::test]
async fn kept_samples_are_relabelled_and_the_allow_list_matches_whole_names() {
    let port = exporter(200, PAGE.into());
    let result = scrape(port, r#", "prefix": "scraped_", "allow": ["app_.*_total", "app_up"]"#).await;
    assert_eq!(result.status, CheckStatus::Ok, "{}", result.details);
    assert_eq!(
        names(&result),
        ["scraped_app_requests_total", "scraped_app_requests_total", "scraped_app_up", "scraped_app_up_total"]
    );
    let first = &result.samples[0];
    assert_eq!(first.value, 10.0);
    // SecuMon's own label names are the check's and the server's: kept aside.
    assert_eq!(first.series.labels["exported_host"], "web-1");
    assert_eq!(first.series.labels["exported_kind"], "api");
    assert!(!first.series.labels.contains_key("host"));
    let Ok(CheckDetails::Prometheus(details)) = CheckDetails::from_result(&result) else {
        panic!("{}", result.details)
    };
    assert_eq!((details.samples_scraped, details.samples_kept, details.samples_not_allowed), (5, 4, 1));
    // Stored, each sample carries the check's labels too.
    let stored = result.metric_samples();
    let up = stored.iter().find(|s| s.series.name == "scraped_app_up").unwrap();
    assert_eq!((up.series.labels["check"].as_str(), up.series.labels["kind"].as_str()), ("app", "prometheus"));
}

#[tokio::test]
async fn past_the_cap_or_with_a_label_too_long_samples_are_left_out_with_a_warning() {
    let long = "x".repeat(5_000);
    let port = exporter(200, format!("{PAGE}app_info{{version=\"{long}\"}} 1\n"));
    let result = scrape(port, "").await;
    assert_eq!(result.status, CheckStatus::Warning, "{}", result.details);
    assert_eq!(result.samples.len(), 5, "all but the long label");
    let capped = scrape(port, r#", "max_series": 2"#).await;
    assert_eq!(capped.status, CheckStatus::Warning);
    assert_eq!(names(&capped), ["app_requests_total", "app_requests_total"]);
    assert!(capped.details["warnings"][0].as_str().unwrap().contains("4 samples left out"), "{}", capped.details);
}

#[tokio::test]
async fn an_http_error_or_a_page_that_does_not_parse_fails_the_scrape_and_keeps_nothing() {
    let failing = scrape(exporter(503, PAGE.into()), "").await;
    assert_eq!(failing.status, CheckStatus::Critical);
    assert!(failing.samples.is_empty());
    assert!(failing.details["problems"][0].as_str().unwrap().contains("HTTP 503"), "{}", failing.details);
    let broken = scrape(exporter(200, format!("{PAGE}app_half{{a=\"b\" 1\n")), "").await;
    assert_eq!(broken.status, CheckStatus::Critical);
    assert!(broken.samples.is_empty(), "none of the page, not half of it");
    let problem = broken.details["problems"][0].as_str().unwrap();
    assert!(problem.contains("line 8"), "{problem}");
    // Nothing listens: the target is down.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let down = scrape(port, "").await;
    assert_ne!(down.status, CheckStatus::Ok);
}

#[test]
fn bad_settings_are_refused_naming_the_key() {
    for (extra, key) in
        [(r#""prefix": "9x""#, "prefix"), (r#""allow": ["("]"#, "allow"), (r#""max_series": 0"#, "max_series")]
    {
        let json = format!("{{\"type\": \"prometheus\", \"url\": \"http://127.0.0.1:1/metrics\", {extra}}}");
        let spec: CheckSpec = serde_json::from_str(&json).unwrap();
        let error = spec.build("app").err().unwrap().to_string();
        assert!(error.contains(key), "{extra}: {error}");
    }
}
