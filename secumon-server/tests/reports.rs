//! Reports end to end: a server seeded with known data (three hosts' samples with gaps,
//! probe checks, a TLS certificate about to expire, alerts fired, acknowledged and resolved
//! at known times, findings opened and fixed), then `GET /api/v1/reports` checked against
//! numbers worked out by hand; the same report rendered to PDF (pages rendered by
//! `pdftoppm`, numbers read back by `pdftotext`), to Excel (read back by openpyxl) and to
//! HTML. Then scheduled reports e-mailed through the e-mail channel to aiosmtpd, once per
//! period across a restart.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use reqwest::{Method, StatusCode};
use secumon_api::Report;
use secumon_core::{CheckResult, CheckStatus, Finding, FindingStatus, IngestBatch, Labels, Sample, Severity, now_ms};
use secumon_report::Format;
use secumon_server::{Server, ServerConfig};
use secumon_store::{AlertHistoryEntry, FindingsImport, Store};
use serde_json::{Value, json};

mod common;
use common::Raw;

const MINUTE: i64 = 60_000;
/// An alerts row: severity, fired, acknowledged, resolved, MTTA, MTTR.
type AlertRow<'a> = (&'a str, u64, u64, u64, Option<f64>, Option<f64>);
const DAY: i64 = 86_400_000;

fn python() -> Option<PathBuf> {
    let python = std::env::var_os("SECUMON_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/pyvenv/bin/python"));
    Command::new(&python)
        .args(["-c", "import openpyxl, aiosmtpd"])
        .status()
        .is_ok_and(|s| s.success())
        .then_some(python)
}

fn tool(name: &str) -> bool {
    Command::new(name).arg("-v").output().is_ok()
}

/// The peers this file needs, or why not (a failure under SECUMON_TEST_STRICT).
fn peers() -> Option<PathBuf> {
    if !tool("pdftotext") || !tool("pdftoppm") {
        secumon_core::testing::peer_missing("pdftotext and pdftoppm (poppler-utils) are not installed");
        return None;
    }
    let python = python();
    if python.is_none() {
        secumon_core::testing::peer_missing("python with openpyxl and aiosmtpd: run scripts/test, which installs them");
    }
    python
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// A host's heartbeat gauges at each minute of `minutes` from `from`.
fn host_batch(
    agent: &str,
    host: &str,
    from: i64,
    minutes: impl Iterator<Item = i64>,
    cpu: &[f64],
    fs: &[f64],
) -> IngestBatch {
    let mut samples = Vec::new();
    for (i, minute) in minutes.enumerate() {
        let ts = from + minute * MINUTE;
        samples.push(Sample::new("cpu_usage_ratio", Labels::new(), ts, cpu[i % cpu.len()]));
        samples.push(Sample::new("memory_used_ratio", Labels::new(), ts, 0.25));
        for (j, used) in fs.iter().enumerate() {
            let mount = labels(&[("mountpoint", ["/", "/data"][j])]);
            samples.push(Sample::new("filesystem_used_ratio", mount, ts, *used));
        }
    }
    IngestBatch { agent_id: agent.into(), sequence: 1, host: host.into(), samples, ..Default::default() }
}

fn run(id: &str, kind: &str, target: &str, status: CheckStatus, ts: i64, details: Value) -> CheckResult {
    CheckResult {
        check_id: id.into(),
        kind: kind.into(),
        target: target.into(),
        status,
        timestamp_ms: ts,
        duration_us: 1_000,
        details,
        samples: Vec::new(),
    }
}

fn transition(rule: &str, host: &str, severity: &str, from: &str, to: &str, at_ms: i64) -> AlertHistoryEntry {
    let record = json!({"kind": "transition", "rule": rule, "labels": alert_labels(rule, host), "from": from,
        "to": to, "at_ms": at_ms, "value": 1.0, "severity": severity, "annotations": {}, "channels": [],
        "silenced": false, "escalation_level": 0});
    AlertHistoryEntry { rule: rule.into(), at_ms, record: record.to_string() }
}

fn alert_labels(rule: &str, host: &str) -> Labels {
    labels(&[("alertname", rule), ("host", host)])
}

fn ack(rule: &str, host: &str, at_ms: i64) -> AlertHistoryEntry {
    let id = secumon_alert::alert_id(rule, &alert_labels(rule, host));
    let record = json!({"kind": "acknowledged", "rule": rule, "at_ms": at_ms, "alert": id, "by": "ops", "comment": ""});
    AlertHistoryEntry { rule: rule.into(), at_ms, record: record.to_string() }
}

fn finding(id: &str, severity: Severity, now: i64) -> Finding {
    Finding {
        id: id.into(),
        severity,
        asset: "web-1".into(),
        title: id.into(),
        description: String::new(),
        first_seen_ms: now,
        last_seen_ms: now,
        status: FindingStatus::Open,
    }
}

/// Seeds the period `[from, from + 1 day)` of the default tenant.
async fn seed(store: &Arc<dyn Store>, from: i64, now: i64) {
    // web-1: every minute but 144 (minutes 600-743): 1 296 of 1 440, 90 %. CPU 0.2/0.6
    // (mean 0.4), its fullest filesystem 0.7.
    let web =
        host_batch("a-web", "web-1", from, (0..1_440).filter(|m| !(600..744).contains(m)), &[0.2, 0.6], &[0.7, 0.2]);
    store.write_batch("default", &web).await.unwrap();
    // db-1: every minute, 100 %. CPU 0.8.
    let db = host_batch("a-db", "db-1", from, 0..1_440, &[0.8], &[0.5]);
    store.write_batch("default", &db).await.unwrap();
    // new-1: starts at minute 720, silent for minutes 800-871: 648 of 720, 90 %.
    let new = host_batch("a-new", "new-1", from, (720..1_440).filter(|m| !(800..872).contains(m)), &[0.1], &[0.3]);
    store.write_batch("default", &new).await.unwrap();
    // Another tenant's host is in no report of this one.
    let other = host_batch("a-acme", "acme-web", from, 0..10, &[0.99], &[0.99]);
    store.write_batch("acme", &other).await.unwrap();

    // probe-1: `site` ran 10 times in the period (7 ok, 2 critical, 1 warning) and once
    // before it; `tls-main`'s certificate expires 10 days after the period's end,
    // `tls-far`'s in 90 days.
    let end_s = (from + DAY) / 1_000;
    let cert =
        |days: i64, subject: &str| json!({"chain": [{"subject": subject, "not_after_unix": end_s + days * 86_400}]});
    let mut probe =
        IngestBatch { agent_id: "a-probe".into(), sequence: 1, host: "probe-1".into(), ..Default::default() };
    let statuses = [
        CheckStatus::Ok,
        CheckStatus::Ok,
        CheckStatus::Critical,
        CheckStatus::Ok,
        CheckStatus::Warning,
        CheckStatus::Ok,
        CheckStatus::Ok,
        CheckStatus::Critical,
        CheckStatus::Ok,
        CheckStatus::Ok,
    ];
    for (i, status) in statuses.into_iter().enumerate() {
        probe.check_results.push(run(
            "site",
            "http",
            "https://shop.test/",
            status,
            from + i as i64 * 60 * MINUTE,
            json!({}),
        ));
    }
    probe.check_results.push(run(
        "site",
        "http",
        "https://shop.test/",
        CheckStatus::Critical,
        from - MINUTE,
        json!({}),
    ));
    for i in 0..4 {
        let ts = from + i * 6 * 60 * MINUTE;
        probe.check_results.push(run(
            "tls-main",
            "tls",
            "shop.test:443",
            CheckStatus::Ok,
            ts,
            cert(10, "CN=shop.test"),
        ));
        probe.check_results.push(run("tls-far", "tls", "far.test:443", CheckStatus::Ok, ts, cert(90, "CN=far.test")));
    }
    store.write_batch("default", &probe).await.unwrap();

    // Alerts. critical: web-1 fired at minute 600, acked after 300 s, resolved after
    // 8 640 s; db-1 fired at minute 100, acked after 100 s, resolved after 1 000 s.
    // warning: db-1 fired at minute 200, resolved after 600 s, unacknowledged; fired again
    // at minute 300, acked after 60 s, never resolved. A firing before the period is not
    // counted. MTTA critical 200 s, warning 60 s, all 153.3 s; MTTR critical 4 820 s,
    // warning 600 s, all 3 413.3 s.
    let at = |minute: i64| from + minute * MINUTE;
    let history = vec![
        transition("HostDown", "db-1", "critical", "pending", "firing", at(100)),
        ack("HostDown", "db-1", at(100) + 100_000),
        transition("HostDown", "db-1", "critical", "firing", "resolved", at(100) + 1_000_000),
        transition("CpuHigh", "db-1", "warning", "pending", "firing", at(200)),
        transition("CpuHigh", "db-1", "warning", "firing", "resolved", at(200) + 600_000),
        transition("CpuHigh", "db-1", "warning", "resolved", "firing", at(300)),
        ack("CpuHigh", "db-1", at(300) + 60_000),
        transition("HostDown", "web-1", "critical", "pending", "firing", at(600)),
        ack("HostDown", "web-1", at(600) + 300_000),
        ack("HostDown", "web-1", at(600) + 400_000),
        transition("HostDown", "web-1", "critical", "firing", "resolved", at(600) + 8_640_000),
    ];
    store.append_alert_history("default", &history).await.unwrap();
    let before = vec![transition("Disk", "db-1", "info", "pending", "firing", from - 60 * MINUTE)];
    store.append_alert_history("default", &before).await.unwrap();

    // Findings: 7 imported, then a full scan that no longer lists one high: open are 2
    // critical, 2 high, 0 medium, 1 low, 1 info.
    let all = vec![
        finding("CVE-1", Severity::Critical, now),
        finding("CVE-2", Severity::Critical, now),
        finding("CVE-3", Severity::High, now),
        finding("CVE-4", Severity::High, now),
        finding("CVE-5", Severity::High, now),
        finding("CVE-6", Severity::Low, now),
        finding("CVE-7", Severity::Info, now),
    ];
    let import =
        |findings: Vec<Finding>, full_scan| FindingsImport { source: "test".into(), findings, full_scan, at_ms: now };
    store.import_findings("default", &import(all.clone(), false)).await.unwrap();
    let without_five: Vec<Finding> = all.into_iter().filter(|f| f.id != "CVE-5").collect();
    store.import_findings("default", &import(without_five, true)).await.unwrap();
}

/// Whitespace-separated words of `text` joined by single spaces: what a table row reads as.
fn words(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_has_the_hand_computed_numbers_in_json_pdf_xlsx_and_html() {
    let Some(python) = peers() else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(ServerConfig::loopback(dir.path().join("s.db"))).await.unwrap();
    server.accounts().create_tenant("acme").await.unwrap();
    let now = now_ms();
    // The period: the whole day that ended at the last full minute.
    let end = now - now % MINUTE;
    let from = end - DAY;
    seed(&server.store(), from, now).await;
    let api = Raw::new(&server);

    let (status, body) = api.call(Method::GET, &format!("/reports?period=1d&end_ms={end}"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let report: Report = serde_json::from_value(body).unwrap();
    assert_eq!(
        (report.tenant.as_str(), report.period.as_str(), report.from_ms, report.to_ms),
        ("default", "1d", from, end)
    );

    // Hosts, least available first (ties by name); the probe, which sent no heartbeat gauges
    // and first pushed after the period, is not listed.
    let hosts: Vec<(&str, u64, u64, f64)> = report
        .hosts
        .iter()
        .map(|h| (h.host.as_str(), h.reporting_buckets, h.expected_buckets, h.availability))
        .collect();
    assert_eq!(hosts, [("new-1", 648, 720, 0.9), ("web-1", 1_296, 1_440, 0.9), ("db-1", 1_440, 1_440, 1.0)]);
    assert!(report.hosts.iter().all(|h| h.bucket_ms == MINUTE));

    let checks: Vec<(&str, &str, u64, u64, f64)> = report
        .checks
        .iter()
        .map(|c| (c.check_id.as_str(), c.host.as_str(), c.runs, c.successes, c.availability))
        .collect();
    assert_eq!(
        checks,
        [("site", "probe-1", 10, 7, 0.7), ("tls-far", "probe-1", 4, 4, 1.0), ("tls-main", "probe-1", 4, 4, 1.0)]
    );

    let alerts: Vec<AlertRow> = report
        .alerts
        .by_severity
        .iter()
        .chain([&report.alerts.total])
        .map(|s| (s.severity.as_str(), s.fired, s.acknowledged, s.resolved, s.mtta_seconds, s.mttr_seconds))
        .collect();
    assert_eq!(
        alerts,
        [
            ("critical", 2, 2, 2, Some(200.0), Some(4_820.0)),
            ("warning", 2, 1, 1, Some(60.0), Some(600.0)),
            ("info", 0, 0, 0, None, None),
            ("all", 4, 3, 3, Some(460.0 / 3.0), Some(10_240.0 / 3.0)),
        ]
    );

    assert_eq!(report.certificates.len(), 1, "{:?}", report.certificates);
    let cert = &report.certificates[0];
    assert_eq!(
        (cert.check_id.as_str(), cert.subject.as_deref(), cert.days_left),
        ("tls-main", Some("CN=shop.test"), 10.0)
    );

    let findings: Vec<(&str, u64)> = report.findings.iter().map(|f| (f.severity.as_str(), f.open)).collect();
    assert_eq!(findings, [("critical", 2), ("high", 2), ("medium", 0), ("low", 1), ("info", 1)]);

    let top = |usage: &[secumon_api::HostUsage]| usage.iter().map(|u| (u.host.clone(), u.mean)).collect::<Vec<_>>();
    let rounded = |usage: &[secumon_api::HostUsage]| {
        usage.iter().map(|u| (u.host.clone(), (u.mean * 1e9).round() / 1e9)).collect::<Vec<_>>()
    };
    assert_eq!(rounded(&report.top_hosts.cpu), [("db-1".into(), 0.8), ("web-1".into(), 0.4), ("new-1".into(), 0.1)]);
    assert_eq!(top(&report.top_hosts.memory).len(), 3);
    assert_eq!(rounded(&report.top_hosts.disk), [("web-1".into(), 0.7), ("db-1".into(), 0.5), ("new-1".into(), 0.3)]);

    // Another tenant sees only its own host; a bad period is refused.
    let acme = secumon_api::Client::builder(&format!("http://{}", server.api_addr()))
        .tenant(Some("acme".into()))
        .build()
        .unwrap();
    let theirs = acme.report(&secumon_api::ReportQuery { period: Some("1d".into()), end_ms: Some(end) }).await.unwrap();
    assert_eq!(theirs.hosts.iter().map(|h| h.host.as_str()).collect::<Vec<_>>(), ["acme-web"]);
    assert!(theirs.checks.is_empty() && theirs.alerts.total.fired == 0 && theirs.findings.iter().all(|f| f.open == 0));
    for bad in ["period=0s", "period=soon", "period=500d", "end_ms=99999999999999999"] {
        let (status, body) = api.call(Method::GET, &format!("/reports?{bad}"), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }

    check_pdf(&report, dir.path());
    check_xlsx(&report, dir.path(), &python);
    let html = String::from_utf8(secumon_report::render(&report, Format::Html).unwrap()).unwrap();
    for number in ["90.00%", "70.00%", "200.0", "4820.0", "153.3", "3413.3"] {
        assert!(html.contains(&format!(">{number}</td>")), "HTML lacks {number}");
    }
    server.shutdown().await;
}

/// The PDF: every page renders to a non-empty image, and its text holds the report's rows.
fn check_pdf(report: &Report, dir: &Path) {
    let pdf = dir.join("report.pdf");
    std::fs::write(&pdf, secumon_report::render(report, Format::Pdf).unwrap()).unwrap();
    let info = Command::new("pdfinfo").arg(&pdf).output().unwrap();
    assert!(info.status.success(), "pdfinfo: {}", String::from_utf8_lossy(&info.stderr));
    let info = String::from_utf8_lossy(&info.stdout).into_owned();
    let pages: usize = info.lines().find_map(|l| l.strip_prefix("Pages:")).unwrap().trim().parse().unwrap();
    assert!(pages >= 2, "{info}");
    let rendered =
        Command::new("pdftoppm").args(["-r", "40", "-png"]).arg(&pdf).arg(dir.join("page")).output().unwrap();
    assert!(rendered.status.success(), "pdftoppm: {}", String::from_utf8_lossy(&rendered.stderr));
    let images: Vec<u64> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name().to_string_lossy().starts_with("page") && e.file_name().to_string_lossy().ends_with(".png")
        })
        .map(|e| e.metadata().unwrap().len())
        .collect();
    assert_eq!(images.len(), pages, "one image per page");
    assert!(images.iter().all(|size| *size > 1_000), "blank pages: {images:?}");

    let text = Command::new("pdftotext").args(["-layout"]).arg(&pdf).arg("-").output().unwrap();
    assert!(text.status.success());
    let text = words(&String::from_utf8_lossy(&text.stdout));
    for row in [
        "SecuMon report: default",
        "web-1 a-web 1296 1440 90.00%",
        "new-1 a-new 648 720 90.00%",
        "db-1 a-db 1440 1440 100.00%",
        "site http https://shop.test/ probe-1 10 7 70.00%",
        "critical 2 2 2 200.0 4820.0",
        "warning 2 1 1 60.0 600.0",
        "info 0 0 0 - -",
        "all 4 3 3 153.3 3413.3",
        "tls-main shop.test:443 probe-1 CN=shop.test",
        "critical 2",
        "high 2",
        "medium 0",
        "db-1 80.00%",
        "web-1 40.00%",
        "web-1 70.00%",
    ] {
        assert!(text.contains(row), "the PDF's text lacks {row:?}:\n{text}");
    }
    assert!(text.contains(&format!("{} 10.0", secumon_report::utc_text(report.certificates[0].not_after_ms))));
    assert!(!text.contains("tls-far shop"), "a certificate far from expiry is not listed");
}

/// The workbook read back by openpyxl: a sheet per section, numbers equal to the API's.
fn check_xlsx(report: &Report, dir: &Path, python: &Path) {
    let xlsx = dir.join("report.xlsx");
    std::fs::write(&xlsx, secumon_report::render(report, Format::Xlsx).unwrap()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/report_xlsx.py");
    let out = Command::new(python).arg(script).arg(&xlsx).output().unwrap();
    assert!(out.status.success(), "openpyxl: {}", String::from_utf8_lossy(&out.stderr));
    let book: Value = serde_json::from_slice(&out.stdout).unwrap();
    let sheets: Vec<&str> = book.as_object().unwrap().keys().map(String::as_str).collect();
    for sheet in [
        "Summary",
        "Host availability",
        "Check availability",
        "Alerts",
        "Certificates",
        "Findings",
        "Top hosts by CPU",
        "Top hosts by memory",
        "Top hosts by disk",
    ] {
        assert!(sheets.contains(&sheet), "no sheet {sheet}: {sheets:?}");
    }
    // Table rows start after the title, the note, a blank row and the heading.
    let rows = |sheet: &str| book[sheet].as_array().unwrap()[4..].to_vec();
    let hosts = rows("Host availability");
    assert_eq!(hosts.len(), report.hosts.len());
    for (row, host) in hosts.iter().zip(&report.hosts) {
        assert_eq!(row[0], host.host);
        assert_eq!(row[2].as_f64(), Some(host.reporting_buckets as f64));
        assert_eq!(row[3].as_f64(), Some(host.expected_buckets as f64));
        assert_eq!(row[4].as_f64(), Some(host.availability), "availability is the API's number");
    }
    let checks = rows("Check availability");
    for (row, check) in checks.iter().zip(&report.checks) {
        assert_eq!(
            (row[0].as_str(), row[4].as_f64(), row[5].as_f64(), row[6].as_f64()),
            (
                Some(check.check_id.as_str()),
                Some(check.runs as f64),
                Some(check.successes as f64),
                Some(check.availability)
            )
        );
    }
    let alerts = rows("Alerts");
    for (row, severity) in alerts.iter().zip(report.alerts.by_severity.iter().chain([&report.alerts.total])) {
        assert_eq!(row[0], severity.severity);
        assert_eq!(row[1].as_f64(), Some(severity.fired as f64));
        assert_eq!(row[4].as_f64(), severity.mtta_seconds, "MTTA of {}", severity.severity);
        assert_eq!(row[5].as_f64(), severity.mttr_seconds, "MTTR of {}", severity.severity);
    }
    let findings = rows("Findings");
    assert_eq!(
        findings.iter().map(|r| (r[0].as_str().unwrap().to_string(), r[1].as_f64().unwrap())).collect::<Vec<_>>(),
        report.findings.iter().map(|f| (f.severity.clone(), f.open as f64)).collect::<Vec<_>>()
    );
    let certificates = rows("Certificates");
    assert_eq!((certificates.len(), certificates[0][5].as_f64()), (1, Some(report.certificates[0].days_left)));
    let cpu = rows("Top hosts by CPU");
    assert_eq!(
        cpu.iter().map(|r| (r[0].as_str().unwrap().to_string(), r[1].as_f64().unwrap())).collect::<Vec<_>>(),
        report.top_hosts.cpu.iter().map(|u| (u.host.clone(), u.mean)).collect::<Vec<_>>()
    );
}

struct Smtp {
    child: Child,
    out: PathBuf,
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn smtp(python: &Path, out: &Path, port: u16) -> Smtp {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/report_smtp.py");
    let mut child =
        Command::new(python).arg(script).arg(port.to_string()).arg(out).stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "READY", "aiosmtpd did not start");
    Smtp { child, out: out.to_path_buf() }
}

/// The messages aiosmtpd received, oldest first.
fn received(smtp: &Smtp) -> Vec<(PathBuf, Value)> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(&smtp.out)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    names.sort();
    names.into_iter().map(|p| (p.clone(), serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_reports_are_emailed_once_per_period_across_restarts() {
    let Some(python) = peers() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mail_dir = dir.path().join("mail");
    std::fs::create_dir(&mail_dir).unwrap();
    // The relay is down at first.
    let port = free_port();
    let rules = secumon_alert::RuleFile::parse(
        &format!(
            "rules: []\nchannels:\n  mail: {{type: email, smtp_host: 127.0.0.1, smtp_port: {port}, security: none, \
             from: secumon@example.test, to: [ops@example.test]}}\n  hook: {{type: webhook, url: \"http://127.0.0.1:9/\"}}\n",
        ),
        "rules.yaml",
    )
    .unwrap();
    let config = || ServerConfig { alerting: Some(rules.clone()), ..ServerConfig::loopback(dir.path().join("s.db")) };
    let server = Server::start(config()).await.unwrap();
    let now = now_ms();
    let today = now - now.rem_euclid(DAY);
    seed(&server.store(), today - DAY, now).await;
    let api = Raw::new(&server);

    // Schedules are checked: the channel must be an e-mail channel, the format known.
    for (bad, word) in [
        (json!({"every": "daily", "channel": "hook"}), "e-mail channel"),
        (json!({"every": "daily", "channel": "nope"}), "e-mail channel"),
        (json!({"every": "hourly", "channel": "mail"}), "every"),
        (json!({"every": "daily", "format": "docx", "channel": "mail"}), "docx"),
        (json!({"every": "daily", "channel": "mail", "to": ["not-an-address"]}), "e-mail address"),
    ] {
        let (status, body) = api.call(Method::PUT, "/config", Some(json!({"reports": [bad]}))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(body["error"]["message"].as_str().unwrap().contains(word), "{body}");
    }
    let schedule =
        json!({"reports": [{"every": "daily", "format": "pdf", "channel": "mail", "to": ["boss@example.test"]}]});
    let (status, body) = api.call(Method::PUT, "/config", Some(schedule)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["reports"][0]["format"], "pdf");

    // While the relay is down nothing is sent, and the period is not marked as sent: once it
    // is up, yesterday's report goes out, once.
    assert_eq!(server.send_due_reports(now).await.unwrap(), 0);
    let sink = smtp(&python, &mail_dir, port);
    assert_eq!(server.send_due_reports(now).await.unwrap(), 1);
    assert_eq!(server.send_due_reports(now + 1_000).await.unwrap(), 0, "sent once per period");
    server.shutdown().await;
    // A restarted server knows it was sent; the next day's goes out once.
    let server = Server::start(config()).await.unwrap();
    assert_eq!(server.send_due_reports(now + 2_000).await.unwrap(), 0, "not again after a restart");
    assert_eq!(server.send_due_reports(now + DAY).await.unwrap(), 1);
    server.shutdown().await;

    let messages = received(&sink);
    assert_eq!(messages.len(), 2, "{messages:?}");
    let yesterday = secumon_report::utc_text(today - DAY)[..10].to_string();
    let (path, first) = &messages[0];
    assert_eq!(first["rcpt_tos"], json!(["boss@example.test"]));
    assert!(first["subject"].as_str().unwrap().contains(&yesterday), "{first}");
    assert!(first["text"].as_str().unwrap().contains("alerts fired: 4"), "{first}");
    let attachment = &first["attachments"][0];
    assert_eq!(attachment["content_type"], "application/pdf");
    let name = attachment["filename"].as_str().unwrap();
    assert_eq!(name, format!("secumon-report-default-{yesterday}.pdf"));
    let pdf = PathBuf::from(format!("{}-{name}", path.to_string_lossy().trim_end_matches(".json")));
    let text = Command::new("pdftotext").arg(&pdf).arg("-").output().unwrap();
    assert!(text.status.success(), "the attachment is a PDF");
    let text = words(&String::from_utf8_lossy(&text.stdout));
    assert!(text.contains("SecuMon report: default") && text.contains("90.00%"), "{text}");
    assert!(messages[1].1["subject"].as_str().unwrap().contains(&secumon_report::utc_text(today)[..10]));
}
