//! DNS checks against two dnsmasq servers on loopback that serve different data for one
//! zone: every record type compared with `dig` on the same server, expected answers, and
//! a propagation check that says which resolver disagrees. TXT records of several strings
//! and servers that answer REFUSED (no upstream for the name) or SERVFAIL (DNSSEC
//! validation against an unsigned upstream) are compared with dig exactly. Skipped, saying
//! so, without dnsmasq or dig (`scripts/test` installs both), except the TXT/rcode test,
//! which fails without them.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::os::unix::ffi::OsStringExt;
use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use secumon_core::CheckStatus;
use secumon_scan::{DnsCheck, RECORD_TYPES, TxtString, dns_query, record_type, run_check};

struct Dnsmasq(Child, SocketAddr);

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A domain name in DNS wire format, as hex, for dnsmasq's `--dns-rr`.
fn wire_name(name: &str) -> String {
    let mut hex = String::new();
    for label in name.trim_end_matches('.').split('.') {
        hex.push_str(&format!("{:02x}", label.len()));
        hex.extend(label.bytes().map(|b| format!("{b:02x}")));
    }
    hex + "00"
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// dnsmasq answering for test.example, with `www` at `www_address`; another port when the
/// chosen one was taken meanwhile (dnsmasq then exits).
fn start_dnsmasq(www_address: &str) -> Dnsmasq {
    for _ in 0..5 {
        if let Some(server) = try_dnsmasq(www_address) {
            return server;
        }
    }
    panic!("dnsmasq did not start");
}

fn try_dnsmasq(www_address: &str) -> Option<Dnsmasq> {
    let port = free_udp_port();
    let soa = format!(
        "{}{}{}",
        wire_name("ns1.test.example"),
        wire_name("hostmaster.test.example"),
        "000000070000384000000e1000093a8000000e10" // serial 7, refresh, retry, expire, minimum
    );
    let caa = format!("0005{}{}", hex("issue"), hex("letsencrypt.org"));
    let child = Command::new("/usr/sbin/dnsmasq")
        .args([
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--listen-address=127.0.0.1",
            "--user=root",
            "--pid-file",
            &format!("--port={port}"),
            &format!("--host-record=www.test.example,{www_address},2001:db8::10"),
            "--cname=alias.test.example,www.test.example",
            "--mx-host=test.example,mail.test.example,10",
            "--txt-record=test.example,v=spf1 -all",
            // A name that does not exist (NXDOMAIN), rather than one dnsmasq refuses.
            "--address=/old.test.example/",
            &format!("--dns-rr=test.example,2,{}", wire_name("ns1.test.example")),
            &format!("--dns-rr=test.example,6,{soa}"),
            &format!("--dns-rr=test.example,257,{caa}"),
        ])
        .spawn()
        .unwrap();
    let mut server = Dnsmasq(child, SocketAddr::from(([127, 0, 0, 1], port)));
    // Ready once it answers, as long as it is ours that runs.
    for _ in 0..100 {
        if server.0.try_wait().ok().flatten().is_some() {
            return None;
        }
        if !dig(server.1, "www.test.example", "A").is_empty() {
            return server.0.try_wait().ok().flatten().is_none().then_some(server);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

fn hex(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

fn tools_available() -> bool {
    let found = Path::new("/usr/sbin/dnsmasq").exists() && Command::new("dig").arg("-v").output().is_ok();
    if !found {
        secumon_core::testing::peer_missing("dnsmasq or dig missing (apt-get install dnsmasq bind9-dnsutils)");
    }
    found
}

/// dig's answer section for a question, one record per line, sorted.
fn dig(server: SocketAddr, name: &str, record_type: &str) -> Vec<String> {
    let output = Command::new("dig")
        .args([
            &format!("@{}", server.ip()),
            "-p",
            &server.port().to_string(),
            "+short",
            "+norecurse",
            name,
            record_type,
        ])
        .output()
        .unwrap();
    let mut lines: Vec<String> = String::from_utf8(output.stdout).unwrap().lines().map(str::to_string).collect();
    lines.sort();
    lines
}

/// dig quotes TXT and CAA values; presentation details aside, the data must agree.
fn comparable(record: &str) -> String {
    record.replace('"', "").to_lowercase()
}

#[tokio::test]
async fn every_record_type_agrees_with_dig() {
    if !tools_available() {
        return;
    }
    let server = start_dnsmasq("192.0.2.10");
    let questions = [
        ("www.test.example", "A"),
        ("www.test.example", "AAAA"),
        ("alias.test.example", "CNAME"),
        ("test.example", "MX"),
        ("test.example", "TXT"),
        ("test.example", "NS"),
        ("test.example", "SOA"),
        ("test.example", "CAA"),
    ];
    assert_eq!(questions.len(), RECORD_TYPES.len());
    for (name, kind) in questions {
        let answer = dns_query(Some(server.1), name, record_type(kind).unwrap(), Duration::from_secs(2)).await;
        assert_eq!(answer.rcode, "NOERROR", "{name} {kind}: {answer:?}");
        let reference = dig(server.1, name, kind);
        assert!(!reference.is_empty(), "dig found nothing for {name} {kind}");
        let ours: Vec<String> = answer.records.iter().map(|r| comparable(r)).collect();
        let theirs: Vec<String> = reference.iter().map(|r| comparable(r)).collect();
        assert_eq!(ours, theirs, "{name} {kind}");
    }
    let missing =
        dns_query(Some(server.1), "nope.test.example", record_type("A").unwrap(), Duration::from_secs(2)).await;
    assert!(missing.records.is_empty() && missing.rcode != "NOERROR", "{missing:?}");
}

#[tokio::test]
async fn expectations_and_propagation() {
    if !tools_available() {
        return;
    }
    let (old, new_a, new_b) = (start_dnsmasq("192.0.2.20"), start_dnsmasq("192.0.2.10"), start_dnsmasq("192.0.2.10"));
    let a = record_type("A").unwrap();

    let exact = DnsCheck {
        resolvers: vec![new_a.1],
        expect: vec!["192.0.2.10".into()],
        ..DnsCheck::new("www", "www.test.example", a)
    };
    assert_eq!(run_check(&exact, Duration::from_secs(5)).await.status, CheckStatus::Ok);
    let wrong = DnsCheck { resolvers: vec![old.1], ..exact.clone() };
    let result = run_check(&wrong, Duration::from_secs(5)).await;
    assert_eq!(result.status, CheckStatus::Critical);
    assert_eq!(result.details["answers"][0]["records"][0], "192.0.2.20");

    let mx = DnsCheck {
        resolvers: vec![new_a.1],
        expect: vec!["10 mail.test.example".into()],
        ..DnsCheck::new("mx", "test.example", record_type("MX").unwrap())
    };
    assert_eq!(run_check(&mx, Duration::from_secs(5)).await.status, CheckStatus::Ok, "names compare fully qualified");

    // Propagation: two resolvers have the new address, one still the old.
    let propagation =
        DnsCheck { resolvers: vec![new_a.1, old.1, new_b.1], ..DnsCheck::new("prop", "www.test.example", a) };
    let result = run_check(&propagation, Duration::from_secs(5)).await;
    assert_eq!(result.status, CheckStatus::Warning);
    assert_eq!(result.details["disagreeing"], serde_json::json!([old.1.to_string()]));
    assert_eq!(result.details["agreeing"].as_array().unwrap().len(), 2);
    let ratio = result.samples.iter().find(|s| s.series.name == "dns_resolvers_agreeing_ratio").unwrap();
    assert!((ratio.value - 2.0 / 3.0).abs() < 1e-9);

    // A resolver that does not answer makes the check unknown only when none answers.
    let silent = SocketAddr::from(([127, 0, 0, 1], free_udp_port()));
    let unreachable = DnsCheck {
        resolvers: vec![silent],
        timeout: Duration::from_millis(300),
        ..DnsCheck::new("x", "www.test.example", a)
    };
    assert_eq!(run_check(&unreachable, Duration::from_secs(5)).await.status, CheckStatus::Unknown);
    let expect_gone = DnsCheck {
        resolvers: vec![new_a.1],
        expect: vec!["NXDOMAIN".into()],
        ..DnsCheck::new("gone", "old.test.example", a)
    };
    assert_eq!(run_check(&expect_gone, Duration::from_secs(5)).await.status, CheckStatus::Ok);
}

/// dnsmasq with only `args` beyond the basics, ready once dig gets any answer for `probe`.
/// (Arguments as bytes: a TXT string need not be UTF-8, and dnsmasq serves it as given.)
fn dnsmasq_with(args: &[OsString], probe: &str) -> Dnsmasq {
    for _ in 0..5 {
        let port = free_udp_port();
        let child = Command::new("/usr/sbin/dnsmasq")
            .args([
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                "--listen-address=127.0.0.1",
                "--user=root",
                "--pid-file",
                &format!("--port={port}"),
            ])
            .args(args)
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("dnsmasq must be installed (scripts/test installs it)");
        let mut server = Dnsmasq(child, SocketAddr::from(([127, 0, 0, 1], port)));
        for _ in 0..60 {
            if server.0.try_wait().ok().flatten().is_some() {
                break;
            }
            if dig_status(server.1, probe, "A").is_some() {
                return server;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    panic!("dnsmasq {args:?} did not start");
}

/// The status dig reports (`NOERROR`, `REFUSED`...), `None` when nothing answered.
fn dig_status(server: SocketAddr, name: &str, record_type: &str) -> Option<String> {
    let output = Command::new("dig")
        .args([
            &format!("@{}", server.ip()),
            "-p",
            &server.port().to_string(),
            "+tries=1",
            "+time=2",
            name,
            record_type,
        ])
        .output()
        .expect("dig must be installed (scripts/test installs bind9-dnsutils)");
    let text = String::from_utf8_lossy(&output.stdout);
    let status = text.split("status: ").nth(1)?;
    Some(status.split(',').next()?.to_string())
}

#[tokio::test]
async fn txt_strings_and_response_codes_agree_with_dig() {
    // Two servers with the same TXT records, one of several strings (one with quotes in it).
    // And a record of raw bytes: UTF-8 text with a backslash, and a string that is not UTF-8.
    let txt = [
        "--txt-record=multi.test.example,first string,second \"quoted\" string,third".into(),
        "--txt-record=multi.test.example,v=spf1 -all".into(),
        OsString::from_vec(b"--txt-record=bytes.test.example,d\xc3\xa9j\xc3\xa0 vu \\o/,\xfe:\xff".to_vec()),
    ];
    let (a, b) = (dnsmasq_with(&txt, "multi.test.example"), dnsmasq_with(&txt, "multi.test.example"));
    // One with nothing for the name and nowhere to forward it: REFUSED.
    let refusing = dnsmasq_with(&[], "multi.test.example");
    // One that validates DNSSEC against an unsigned upstream: SERVFAIL.
    let upstream = dnsmasq_with(&["--address=/signed.example/192.0.2.1".into()], "www.signed.example");
    let validating = dnsmasq_with(
        &[
            "--dnssec".into(),
            "--trust-anchor=.,20326,8,2,E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D".into(),
            format!("--server=127.0.0.1#{}", upstream.1.port()).into(),
        ],
        "www.signed.example",
    );
    let txt_type = record_type("TXT").unwrap();

    let answer = dns_query(Some(a.1), "multi.test.example", txt_type, Duration::from_secs(2)).await;
    let reference = dig(a.1, "multi.test.example", "TXT");
    assert!(reference.iter().any(|r| r.matches("\" \"").count() == 2), "dig: {reference:?}");
    assert_eq!(answer.records, reference, "TXT strings as dig shows them");
    let strings: Vec<usize> = answer.txt.iter().map(Vec::len).collect();
    assert_eq!(strings, vec![3, 1], "{answer:?}");
    // The JSON's list holds the strings themselves, not dig's escaped forms.
    let text = |s: &str| TxtString::Text(s.to_string());
    assert_eq!(
        answer.txt,
        [vec![text("first string"), text("second \"quoted\" string"), text("third")], vec![text("v=spf1 -all")]]
    );
    let answer = dns_query(Some(a.1), "bytes.test.example", txt_type, Duration::from_secs(2)).await;
    assert_eq!(answer.records, dig(a.1, "bytes.test.example", "TXT"), "escaped as dig escapes them");
    assert_eq!(answer.records, [r#""d\195\169j\195\160 vu \\o/" "\254:\255""#]);
    assert_eq!(answer.txt, [vec![text("déjà vu \\o/"), TxtString::Bytes { hex: "fe3aff".into() }]]);

    // Response codes as dig reports them, never an empty answer.
    for (server, name, kind) in [
        (refusing.1, "multi.test.example", "TXT"),
        (validating.1, "www.signed.example", "A"),
        (a.1, "multi.test.example", "TXT"),
    ] {
        let ours = dns_query(Some(server), name, record_type(kind).unwrap(), Duration::from_secs(3)).await;
        let theirs = dig_status(server, name, kind).expect("dig got an answer");
        assert_eq!(ours.rcode, theirs, "{name} {kind} at {server}: {ours:?}");
    }
    assert_eq!(dig_status(refusing.1, "multi.test.example", "TXT").as_deref(), Some("REFUSED"));
    assert_eq!(dig_status(validating.1, "www.signed.example", "A").as_deref(), Some("SERVFAIL"));

    // One resolver that refuses: not ok, with its code, and not "disagreeing" data.
    let single = DnsCheck { resolvers: vec![refusing.1], ..DnsCheck::new("t", "multi.test.example", txt_type) };
    let result = run_check(&single, Duration::from_secs(5)).await;
    assert_eq!(result.status, CheckStatus::Critical, "{}", result.details);
    assert_eq!(result.details["answers"][0]["rcode"], "REFUSED");
    assert_eq!(result.details["disagreeing"], serde_json::json!([]));
    assert!(result.details["problems"][0].as_str().unwrap().contains("REFUSED"), "{}", result.details);

    // Propagation: two agree, one fails; an expectation written without quotes is one string.
    let propagation =
        DnsCheck { resolvers: vec![a.1, refusing.1, b.1], ..DnsCheck::new("p", "multi.test.example", txt_type) };
    let result = run_check(&propagation, Duration::from_secs(5)).await;
    assert_eq!(result.status, CheckStatus::Warning, "{}", result.details);
    assert_eq!(result.details["agreeing"].as_array().unwrap().len(), 2);
    assert_eq!(result.details["disagreeing"], serde_json::json!([]));
    let expected = DnsCheck {
        resolvers: vec![a.1],
        expect: vec!["v=spf1 -all".into(), reference.iter().find(|r| r.contains("first")).unwrap().clone()],
        ..DnsCheck::new("e", "multi.test.example", txt_type)
    };
    assert_eq!(run_check(&expected, Duration::from_secs(5)).await.status, CheckStatus::Ok);
    let joined_wrongly = DnsCheck {
        expect: vec!["v=spf1 -all".into(), "first stringsecond \"quoted\" stringthird".into()],
        ..expected.clone()
    };
    assert_eq!(run_check(&joined_wrongly, Duration::from_secs(5)).await.status, CheckStatus::Critical);
}
