//! Check results as an operator reads them: the tables and summaries `secumon scan` prints,
//! one layout per check type, from the result's details alone.

use std::fmt::Write as _;

use secumon_core::CheckResult;

use crate::details::CheckDetails;
#[cfg(feature = "snmp")]
use crate::snmp::SnmpValue;
#[cfg(feature = "tls")]
use crate::tls::TlsReport;

fn ms(value: Option<f64>) -> String {
    value.map(|v| format!("{v:.2}")).unwrap_or_else(|| "-".into())
}

/// A readable report of a check result: what `secumon scan` prints.
pub fn render_text(result: &CheckResult) -> String {
    let mut out = String::new();
    match CheckDetails::from_result(result) {
        Ok(CheckDetails::Error { error }) => {
            let _ = writeln!(out, "{} {}: {error}", result.kind, result.target);
        }
        Ok(details) => render_details(result, &details, &mut out),
        Err(error) => {
            let _ = writeln!(out, "{} {}: unreadable details: {error}", result.kind, result.target);
        }
    }
    let _ = writeln!(out, "status: {} ({:.1} ms)", result.status.as_str(), result.duration_us as f64 / 1000.0);
    out
}

/// The kind's own layout, then the problems and warnings every kind may have.
fn render_details(result: &CheckResult, details: &CheckDetails, out: &mut String) {
    let none: &[String] = &[];
    // (problems, warnings, resolvers disagreeing), printed after the kind's own layout.
    let mut notes = (none, none, none);
    match details {
        CheckDetails::Ping(d) => {
            let _ = writeln!(
                out,
                "PING {} ({}): {} sent, {} received, {:.1}% loss",
                result.target,
                d.address,
                d.sent,
                d.received,
                d.loss_ratio * 100.0
            );
            let _ = writeln!(
                out,
                "rtt min/avg/max/stddev = {}/{}/{}/{} ms, jitter {} ms",
                ms(d.min_ms),
                ms(d.avg_ms),
                ms(d.max_ms),
                ms(d.stddev_ms),
                ms(d.jitter_ms)
            );
        }
        #[cfg(feature = "trace")]
        CheckDetails::Trace(d) => {
            let _ = writeln!(
                out,
                "{:>3}  {:<40}  {:>6}  {:>4}  {:>8}  {:>8}  {:>8}  {:>8}  {:>8}",
                "HOP", "ADDRESS", "LOSS%", "SNT", "LAST", "AVG", "BEST", "WRST", "STDEV"
            );
            for hop in &d.report.hops {
                let addresses: Vec<String> = hop.addresses.iter().map(ToString::to_string).collect();
                let mut shown = if addresses.is_empty() { "???".to_string() } else { addresses.join(" ") };
                if !hop.names.is_empty() {
                    shown = format!("{} ({shown})", hop.names.join(" "));
                }
                let _ = writeln!(
                    out,
                    "{:>3}  {:<40}  {:>6.1}  {:>4}  {:>8}  {:>8}  {:>8}  {:>8}  {:>8}",
                    hop.ttl,
                    shown,
                    hop.loss_ratio * 100.0,
                    hop.sent,
                    ms(hop.last_ms),
                    ms(hop.avg_ms),
                    ms(hop.best_ms),
                    ms(hop.worst_ms),
                    ms(hop.stddev_ms)
                );
            }
            if !d.report.reached {
                let _ = writeln!(out, "destination not reached");
            }
            notes.0 = &d.problems;
        }
        CheckDetails::Tcp(d) | CheckDetails::Udp(d) => {
            let _ = writeln!(out, "{} scan of {} ({}): {} ports", result.kind, result.target, d.address, d.scanned);
            let _ = writeln!(out, "{:<8}  STATE", "PORT");
            for (port, state) in &d.ports {
                let _ = writeln!(out, "{:<8}  {}", format!("{port}/{}", result.kind), state.as_str());
            }
            let counts: Vec<String> = d.counts.iter().map(|(state, n)| format!("{n} {state}")).collect();
            let _ = writeln!(out, "{}", counts.join(", "));
            notes.0 = &d.problems;
        }
        #[cfg(feature = "http")]
        CheckDetails::Http(d) => {
            let r = &d.response;
            let _ = writeln!(out, "HTTP {} → {} from {}", r.url, r.status, r.address);
            for hop in &d.redirects {
                let _ = writeln!(out, "  redirected: {} ({})", hop.url, hop.status);
            }
            let t = &r.timings;
            let seconds = |s: f64| format!("{:.1} ms", s * 1000.0);
            let _ = writeln!(
                out,
                "dns {}  connect {}  tls {}  first byte {}  total {}  ({} bytes)",
                seconds(t.dns),
                seconds(t.connect),
                seconds(t.tls),
                seconds(t.first_byte),
                seconds(t.total),
                r.body_bytes
            );
            if let Some(tls) = &r.tls {
                let _ = writeln!(
                    out,
                    "tls {} {}; certificate {} from {}, expires in {:.0} days",
                    tls.version, tls.cipher_suite, tls.subject, tls.issuer, tls.days_to_expiry
                );
            }
            (notes.0, notes.1) = (&d.problems, &d.warnings);
        }
        #[cfg(feature = "http")]
        CheckDetails::Prometheus(d) => {
            let _ = writeln!(
                out,
                "SCRAPE {} → {} in {:.1} ms: {} samples, {} kept, {} not allowed, {} dropped",
                d.url,
                d.status,
                d.duration_seconds * 1000.0,
                d.samples_scraped,
                d.samples_kept,
                d.samples_not_allowed,
                d.samples_dropped
            );
            (notes.0, notes.1) = (&d.problems, &d.warnings);
        }
        #[cfg(feature = "tls")]
        CheckDetails::Tls(report) => render_tls(report, out),
        #[cfg(feature = "snmp")]
        CheckDetails::Snmp(d) => {
            use crate::snmp::SnmpDetails;
            match d {
                SnmpDetails::Walk { variables } => {
                    for variable in variables {
                        let _ = writeln!(out, "{:<36}  {}", variable.name, snmp_text(&variable.value));
                    }
                }
                SnmpDetails::Get(got) => {
                    for (name, value) in &got.values {
                        let _ = writeln!(out, "{name:<36}  {}", snmp_text(value));
                    }
                    for interface in got.interfaces.iter().flatten() {
                        let state = if interface.up { "up" } else { "down" };
                        let _ = writeln!(out, "interface {:<8} {:<16} {state}", interface.index, interface.name);
                    }
                    notes.0 = &got.problems;
                }
            }
        }
        #[cfg(feature = "dns")]
        CheckDetails::Dns(d) => {
            let _ = writeln!(out, "{:<24}  {:<9}  {:>6}  ANSWERS", "RESOLVER", "RCODE", "TTL");
            for answer in &d.answers {
                let _ = writeln!(
                    out,
                    "{:<24}  {:<9}  {:>6}  {}",
                    answer.resolver,
                    answer.rcode,
                    answer.ttl.map(|t| t.to_string()).unwrap_or_else(|| "-".into()),
                    answer.records.join(", ")
                );
            }
            (notes.0, notes.2) = (&d.problems, &d.disagreeing);
        }
        CheckDetails::Error { .. } | CheckDetails::Custom(_) => {}
    }
    let (problems, warnings, disagreeing) = notes;
    for line in problems {
        let _ = writeln!(out, "problem: {line}");
    }
    for line in warnings {
        let _ = writeln!(out, "warning: {line}");
    }
    if !disagreeing.is_empty() {
        let _ = writeln!(out, "disagree: {}", disagreeing.join(", "));
    }
}

/// `Counter64: 42`, `STRING: "lo"`.
#[cfg(feature = "snmp")]
fn snmp_text(value: &SnmpValue) -> String {
    let kind = value.type_name();
    match value {
        SnmpValue::String(text)
        | SnmpValue::HexString(text)
        | SnmpValue::Oid(text)
        | SnmpValue::IpAddress(text)
        | SnmpValue::Opaque(text)
        | SnmpValue::Other(text) => format!("{kind}: {text:?}"),
        SnmpValue::Integer(n) => format!("{kind}: {n}"),
        SnmpValue::Counter32(n) | SnmpValue::Gauge32(n) | SnmpValue::TimeTicks(n) => format!("{kind}: {n}"),
        SnmpValue::Counter64(n) => format!("{kind}: {n}"),
        SnmpValue::Null | SnmpValue::NoSuchObject | SnmpValue::NoSuchInstance | SnmpValue::EndOfMibView => {
            kind.to_string()
        }
    }
}

#[cfg(feature = "tls")]
fn render_tls(d: &TlsReport, out: &mut String) {
    let _ = writeln!(out, "TLS {} ({}), SNI {}", d.target, d.address, d.server_name);
    let protocols: Vec<String> =
        d.protocols.iter().map(|(version, on)| format!("{version} {}", if *on { "yes" } else { "no" })).collect();
    let _ = writeln!(out, "protocols: {}", protocols.join(", "));
    for (version, suites) in &d.cipher_suites {
        let order = match d.server_preference.get(version) {
            Some(true) => "server's preference",
            Some(false) => "the server follows the client's order",
            None => "one suite",
        };
        let _ = writeln!(out, "{version} suites ({order}):");
        for suite in suites {
            let mut notes = Vec::new();
            if !suite.forward_secrecy {
                notes.push("no forward secrecy".to_string());
            }
            if let Some(weakness) = &suite.weakness {
                notes.push(weakness.clone());
            }
            let notes = if notes.is_empty() { String::new() } else { format!("  ({})", notes.join(", ")) };
            let _ = writeln!(out, "  {}  {}{notes}", suite.code, suite.name);
        }
    }
    if !d.groups.is_empty() {
        let _ = writeln!(out, "key exchange groups seen: {}", d.groups.join(", "));
    }
    for (depth, certificate) in d.chain.iter().enumerate() {
        let _ = writeln!(
            out,
            "certificate {depth}: {}  issued by {}  {} {} bits, {}, expires in {:.0} days",
            certificate.subject,
            certificate.issuer,
            certificate.key_type,
            certificate.key_bits,
            certificate.signature_algorithm,
            certificate.days_to_expiry
        );
    }
    if let Some(responder) = &d.ocsp_responder {
        let answer =
            responder.status.as_ref().map(|s| s.as_str()).or(responder.error.as_deref()).unwrap_or("no answer");
        let _ = writeln!(out, "OCSP responder {}: {answer}", responder.responder.as_deref().unwrap_or(""));
    }
    let _ = writeln!(
        out,
        "chain: {}; OCSP stapled: {}; grade {}",
        d.chain_validation,
        if d.ocsp_stapled { "yes" } else { "no" },
        d.grade
    );
    for finding in &d.findings {
        let _ = writeln!(out, "{:<8}  {}", finding.severity.as_str(), finding.title);
    }
}

#[cfg(test)]
mod tests {
    use secumon_core::{CheckStatus, Labels, Sample};
    use serde_json::Value;

    use super::*;

    fn result(kind: &str, status: CheckStatus, details: Value) -> CheckResult {
        CheckResult {
            check_id: "c".into(),
            kind: kind.into(),
            target: "t".into(),
            status,
            timestamp_ms: 0,
            duration_us: 1_500,
            details,
            samples: vec![Sample::new("x", Labels::new(), 0, 1.0)],
        }
    }

    #[test]
    fn renders_ports_and_errors() {
        let ports = result(
            "tcp",
            CheckStatus::Critical,
            serde_json::json!({"address": "127.0.0.1", "scanned": 3, "ports": {"443": "open", "22": "open"},
                "counts": {"closed": 1, "open": 2}, "problems": ["8080/tcp expected open, is closed"]}),
        );
        assert_eq!(
            render_text(&ports),
            "tcp scan of t (127.0.0.1): 3 ports\nPORT      STATE\n22/tcp    open\n443/tcp   open\n1 closed, 2 open\n\
             problem: 8080/tcp expected open, is closed\nstatus: critical (1.5 ms)\n"
        );
        let failed = result("ping", CheckStatus::Unknown, serde_json::json!({"error": "cannot resolve t"}));
        assert_eq!(render_text(&failed), "ping t: cannot resolve t\nstatus: unknown (1.5 ms)\n");
    }
    #[test]
    fn renders_pings_and_unreadable_details() {
        let ping = result(
            "ping",
            CheckStatus::Ok,
            serde_json::json!({"address": "192.0.2.1", "sent": 4, "received": 2, "loss_ratio": 0.5, "min_ms": 10.0,
                "avg_ms": 12.0, "max_ms": 14.0, "stddev_ms": 2.0, "jitter_ms": null, "rtts_ms": [10.0, null, 14.0, null]}),
        );
        assert_eq!(
            render_text(&ping),
            "PING t (192.0.2.1): 4 sent, 2 received, 50.0% loss\n\
             rtt min/avg/max/stddev = 10.00/12.00/14.00/2.00 ms, jitter - ms\nstatus: ok (1.5 ms)\n"
        );
        let broken = result("ping", CheckStatus::Ok, serde_json::json!({"sent": "four"}));
        assert!(render_text(&broken).starts_with("ping t: unreadable details: "), "{}", render_text(&broken));
    }

    #[cfg(feature = "snmp")]
    #[test]
    fn renders_snmp_gets() {
        let snmp = result(
            "snmp",
            CheckStatus::Warning,
            serde_json::json!({"sysName.0": {"type": "string", "value": "probe"},
                "sysUpTime.0": {"type": "timeticks", "value": 42}, "sysContact.0": {"type": "nosuchobject"},
                "interfaces": [{"index": "2", "name": "eth0", "up": false}],
                "problems": ["sysContact.0: no such object"]}),
        );
        assert_eq!(
            render_text(&snmp),
            "sysContact.0                          nosuchobject\nsysName.0                             string: \"probe\"\n\
             sysUpTime.0                           timeticks: 42\ninterface 2        eth0             down\n\
             problem: sysContact.0: no such object\nstatus: warning (1.5 ms)\n"
        );
    }
}
