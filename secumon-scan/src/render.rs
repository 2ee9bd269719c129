//! Check results as an operator reads them: the tables and summaries `secumon scan` prints,
//! one layout per check type, from the result's details alone.

use std::fmt::Write as _;

use secumon_core::CheckResult;
use serde_json::Value;

fn ms(value: &Value) -> String {
    value.as_f64().map(|v| format!("{v:.2}")).unwrap_or_else(|| "-".into())
}

/// A readable report of a check result: what `secumon scan` prints.
pub fn render_text(result: &CheckResult) -> String {
    let d = &result.details;
    let mut out = String::new();
    if let Some(error) = d["error"].as_str() {
        let _ = writeln!(out, "{} {}: {error}", result.kind, result.target);
    } else {
        match result.kind.as_str() {
            "ping" => {
                let _ = writeln!(
                    out,
                    "PING {} ({}): {} sent, {} received, {:.1}% loss",
                    result.target,
                    d["address"].as_str().unwrap_or(""),
                    d["sent"],
                    d["received"],
                    d["loss_ratio"].as_f64().unwrap_or(0.0) * 100.0
                );
                let _ = writeln!(
                    out,
                    "rtt min/avg/max/stddev = {}/{}/{}/{} ms, jitter {} ms",
                    ms(&d["min_ms"]),
                    ms(&d["avg_ms"]),
                    ms(&d["max_ms"]),
                    ms(&d["stddev_ms"]),
                    ms(&d["jitter_ms"])
                );
            }
            "trace" => {
                let _ = writeln!(
                    out,
                    "{:>3}  {:<40}  {:>6}  {:>4}  {:>8}  {:>8}  {:>8}  {:>8}  {:>8}",
                    "HOP", "ADDRESS", "LOSS%", "SNT", "LAST", "AVG", "BEST", "WRST", "STDEV"
                );
                for hop in d["hops"].as_array().into_iter().flatten() {
                    let addresses: Vec<String> = hop["addresses"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|a| a.as_str().map(str::to_string))
                        .collect();
                    let names: Vec<&str> =
                        hop["names"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
                    let mut shown = if addresses.is_empty() { "???".to_string() } else { addresses.join(" ") };
                    if !names.is_empty() {
                        shown = format!("{} ({shown})", names.join(" "));
                    }
                    let _ = writeln!(
                        out,
                        "{:>3}  {:<40}  {:>6.1}  {:>4}  {:>8}  {:>8}  {:>8}  {:>8}  {:>8}",
                        hop["ttl"].as_u64().unwrap_or(0),
                        shown,
                        hop["loss_ratio"].as_f64().unwrap_or(0.0) * 100.0,
                        hop["sent"].as_u64().unwrap_or(0),
                        ms(&hop["last_ms"]),
                        ms(&hop["avg_ms"]),
                        ms(&hop["best_ms"]),
                        ms(&hop["worst_ms"]),
                        ms(&hop["stddev_ms"])
                    );
                }
                if d["reached"] == false {
                    let _ = writeln!(out, "destination not reached");
                }
            }
            "tcp" | "udp" => {
                let _ = writeln!(
                    out,
                    "{} scan of {} ({}): {} ports",
                    result.kind,
                    result.target,
                    d["address"].as_str().unwrap_or(""),
                    d["scanned"]
                );
                let _ = writeln!(out, "{:<8}  STATE", "PORT");
                if let Some(ports) = d["ports"].as_object() {
                    let mut listed: Vec<(u16, &str)> =
                        ports.iter().filter_map(|(p, s)| Some((p.parse().ok()?, s.as_str()?))).collect();
                    listed.sort();
                    for (port, state) in listed {
                        let _ = writeln!(out, "{:<8}  {state}", format!("{port}/{}", result.kind));
                    }
                }
                let counts: Vec<String> =
                    d["counts"].as_object().into_iter().flatten().map(|(state, n)| format!("{n} {state}")).collect();
                let _ = writeln!(out, "{}", counts.join(", "));
            }
            "http" => {
                let r = &d["response"];
                let _ = writeln!(
                    out,
                    "HTTP {} → {} from {}",
                    r["url"].as_str().unwrap_or(""),
                    r["status"],
                    r["address"].as_str().unwrap_or("")
                );
                for hop in d["redirects"].as_array().into_iter().flatten() {
                    let _ = writeln!(out, "  redirected: {} ({})", hop["url"].as_str().unwrap_or(""), hop["status"]);
                }
                let t = &r["timings"];
                let seconds = |v: &Value| v.as_f64().map(|s| format!("{:.1} ms", s * 1000.0)).unwrap_or_default();
                let _ = writeln!(
                    out,
                    "dns {}  connect {}  tls {}  first byte {}  total {}  ({} bytes)",
                    seconds(&t["dns"]),
                    seconds(&t["connect"]),
                    seconds(&t["tls"]),
                    seconds(&t["first_byte"]),
                    seconds(&t["total"]),
                    r["body_bytes"]
                );
                if r["tls"].is_object() {
                    let tls = &r["tls"];
                    let _ = writeln!(
                        out,
                        "tls {} {}; certificate {} from {}, expires in {:.0} days",
                        tls["version"].as_str().unwrap_or(""),
                        tls["cipher_suite"].as_str().unwrap_or(""),
                        tls["subject"].as_str().unwrap_or(""),
                        tls["issuer"].as_str().unwrap_or(""),
                        tls["days_to_expiry"].as_f64().unwrap_or(0.0)
                    );
                }
            }
            "tls" => render_tls(d, &mut out),
            "snmp" => {
                let mut rows: Vec<(String, String)> = Vec::new();
                for variable in d["variables"].as_array().into_iter().flatten() {
                    rows.push((variable["name"].as_str().unwrap_or("").to_string(), snmp_text(&variable["value"])));
                }
                for (name, value) in d.as_object().into_iter().flatten() {
                    if value.get("type").is_some() {
                        rows.push((name.clone(), snmp_text(value)));
                    }
                }
                for (name, value) in rows {
                    let _ = writeln!(out, "{name:<36}  {value}");
                }
                for interface in d["interfaces"].as_array().into_iter().flatten() {
                    let state = if interface["up"] == true { "up" } else { "down" };
                    let _ = writeln!(
                        out,
                        "interface {:<8} {:<16} {state}",
                        interface["index"].as_str().unwrap_or(""),
                        interface["name"].as_str().unwrap_or("")
                    );
                }
            }
            "dns" => {
                let _ = writeln!(out, "{:<24}  {:<9}  {:>6}  ANSWERS", "RESOLVER", "RCODE", "TTL");
                for answer in d["answers"].as_array().into_iter().flatten() {
                    let records: Vec<&str> =
                        answer["records"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
                    let _ = writeln!(
                        out,
                        "{:<24}  {:<9}  {:>6}  {}",
                        answer["resolver"].as_str().unwrap_or(""),
                        answer["rcode"].as_str().unwrap_or(""),
                        answer["ttl"].as_u64().map(|t| t.to_string()).unwrap_or_else(|| "-".into()),
                        records.join(", ")
                    );
                }
            }
            _ => {}
        }
        for finding in d["findings"].as_array().into_iter().flatten() {
            let _ = writeln!(
                out,
                "{:<8}  {}",
                finding["severity"].as_str().unwrap_or(""),
                finding["title"].as_str().unwrap_or("")
            );
        }
        for key in ["problems", "warnings"] {
            for line in d[key].as_array().into_iter().flatten().filter_map(Value::as_str) {
                let _ = writeln!(out, "{}: {line}", key.trim_end_matches('s'));
            }
        }
        if let Some(disagreeing) = d["disagreeing"].as_array().filter(|a| !a.is_empty()) {
            let list: Vec<&str> = disagreeing.iter().filter_map(Value::as_str).collect();
            let _ = writeln!(out, "disagree: {}", list.join(", "));
        }
    }
    let _ = writeln!(out, "status: {} ({:.1} ms)", result.status.as_str(), result.duration_us as f64 / 1000.0);
    out
}

/// `Counter64: 42`, `STRING: "lo"`.
fn snmp_text(value: &Value) -> String {
    let kind = value["type"].as_str().unwrap_or("");
    match &value["value"] {
        Value::String(text) => format!("{kind}: {text:?}"),
        Value::Null => kind.to_string(),
        other => format!("{kind}: {other}"),
    }
}

fn render_tls(d: &Value, out: &mut String) {
    let _ = writeln!(
        out,
        "TLS {} ({}), SNI {}",
        d["target"].as_str().unwrap_or(""),
        d["address"].as_str().unwrap_or(""),
        d["server_name"].as_str().unwrap_or("")
    );
    let protocols: Vec<String> = d["protocols"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(version, on)| format!("{version} {}", if on == true { "yes" } else { "no" }))
        .collect();
    let _ = writeln!(out, "protocols: {}", protocols.join(", "));
    for (version, suites) in d["cipher_suites"].as_object().into_iter().flatten() {
        let order = match d["server_preference"][version].as_bool() {
            Some(true) => "server's preference",
            Some(false) => "the server follows the client's order",
            None => "one suite",
        };
        let _ = writeln!(out, "{version} suites ({order}):");
        for suite in suites.as_array().into_iter().flatten() {
            let mut notes = Vec::new();
            if suite["forward_secrecy"] == false {
                notes.push("no forward secrecy".to_string());
            }
            if let Some(weakness) = suite["weakness"].as_str() {
                notes.push(weakness.to_string());
            }
            let notes = if notes.is_empty() { String::new() } else { format!("  ({})", notes.join(", ")) };
            let _ = writeln!(
                out,
                "  {}  {}{notes}",
                suite["code"].as_str().unwrap_or(""),
                suite["name"].as_str().unwrap_or("")
            );
        }
    }
    let groups: Vec<&str> = d["groups"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    if !groups.is_empty() {
        let _ = writeln!(out, "key exchange groups seen: {}", groups.join(", "));
    }
    for (depth, certificate) in d["chain"].as_array().into_iter().flatten().enumerate() {
        let _ = writeln!(
            out,
            "certificate {depth}: {}  issued by {}  {} {} bits, {}, expires in {:.0} days",
            certificate["subject"].as_str().unwrap_or(""),
            certificate["issuer"].as_str().unwrap_or(""),
            certificate["key_type"].as_str().unwrap_or(""),
            certificate["key_bits"],
            certificate["signature_algorithm"].as_str().unwrap_or(""),
            certificate["days_to_expiry"].as_f64().unwrap_or(0.0)
        );
    }
    if let Some(responder) = d["ocsp_responder"].as_object() {
        let answer = responder
            .get("status")
            .and_then(Value::as_str)
            .or_else(|| responder.get("error").and_then(Value::as_str))
            .unwrap_or("no answer");
        let _ = writeln!(
            out,
            "OCSP responder {}: {answer}",
            responder.get("responder").and_then(Value::as_str).unwrap_or("")
        );
    }
    let _ = writeln!(
        out,
        "chain: {}; OCSP stapled: {}; grade {}",
        d["chain_validation"].as_str().unwrap_or(""),
        if d["ocsp_stapled"] == true { "yes" } else { "no" },
        d["grade"].as_str().unwrap_or("")
    );
}

#[cfg(test)]
mod tests {
    use secumon_core::{CheckStatus, Labels, Sample};

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
}
