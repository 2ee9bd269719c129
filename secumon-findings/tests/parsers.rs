//! Every parser on a realistic report kept in `tests/reports` (written for these tests),
//! format detection, and malformed or truncated reports failing whole with a position.

use secumon_core::Severity;
use secumon_findings::parse;

fn report(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/reports/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn summary(name: &str) -> (&'static str, Vec<(String, Severity, String)>) {
    let parsed = parse(&report(name), name, None).unwrap();
    (parsed.format, parsed.findings.into_iter().map(|f| (f.id, f.severity, f.asset)).collect())
}

#[test]
fn trivy() {
    let (format, findings) = summary("trivy.json");
    assert_eq!(format, "trivy");
    let image = "registry.example.com/shop/web:1.4.2".to_string();
    assert_eq!(
        findings,
        vec![
            ("CVE-2024-6387:openssh-client".into(), Severity::High, image.clone()),
            ("CVE-2024-3094:liblzma5".into(), Severity::Critical, image.clone()),
            ("CVE-2023-4039:libgcc-s1".into(), Severity::Low, image.clone()),
            ("GHSA-9c47-m6qq-7p4h:json5".into(), Severity::High, image),
        ]
    );
    let parsed = parse(&report("trivy.json"), "trivy.json", Some("trivy")).unwrap();
    assert!(parsed.findings[1].description.contains("fixed in 5.6.1+really5.4.5-1"));
    assert!(parsed.findings[2].description.contains("no fix yet"));
}

#[test]
fn nuclei() {
    let (format, findings) = summary("nuclei.jsonl");
    assert_eq!(format, "nuclei");
    assert_eq!(
        findings,
        vec![
            ("tls-version@shop.example.com:443".into(), Severity::Info, "shop.example.com".into()),
            (
                "exposed-git-config@https://shop.example.com/.git/config".into(),
                Severity::Medium,
                "https://shop.example.com".into()
            ),
            (
                "CVE-2021-44228@https://pay.example.com/api/login".into(),
                Severity::Critical,
                "https://pay.example.com".into()
            ),
        ]
    );
}

#[test]
fn sarif() {
    let (format, findings) = summary("sarif.json");
    assert_eq!(format, "sarif");
    let repo = "git.example.com/shop/api".to_string();
    assert_eq!(
        findings,
        vec![
            ("sql-injection@src/orders.py".into(), Severity::Critical, repo.clone()),
            ("weak-hash@src/auth.py".into(), Severity::High, repo.clone()),
            ("todo-comment@src/debug.py".into(), Severity::Low, repo),
        ]
    );
}

#[test]
fn secumon() {
    let (format, findings) = summary("secumon.json");
    assert_eq!(format, "secumon");
    assert_eq!(findings[0], ("open-redis".into(), Severity::Critical, "cache-1".into()));
    assert_eq!(findings.len(), 2);
}

#[test]
fn bad_reports_name_file_and_position() {
    let truncated = &report("trivy.json")[..700];
    let error = parse(truncated, "trivy.json", None).unwrap_err();
    assert_eq!(error.origin, "trivy.json");
    assert!(error.line > 1, "{error}");

    let lines = report("nuclei.jsonl").replacen("\"host\":\"https://pay.example.com\"", "\"host\":42", 1);
    let error = parse(&lines, "scan.jsonl", Some("nuclei")).unwrap_err().to_string();
    assert!(error.starts_with("scan.jsonl:4:"), "the fourth line is the bad one: {error}");

    let wrong_type = r#"{"findings": [{"id": "x", "severity": "high", "asset": 7, "title": "t"}]}"#;
    assert!(parse(wrong_type, "own.json", None).unwrap_err().to_string().starts_with("own.json:1:"));
    assert!(parse("hello", "notes.txt", None).unwrap_err().to_string().contains("give --format"));
    assert!(parse("{}", "x.json", Some("nessus")).unwrap_err().to_string().contains("unknown format"));
    let old = r#"{"version": "2.0.0", "runs": []}"#;
    assert!(parse(old, "old.sarif", Some("sarif")).unwrap_err().to_string().contains("2.1.0"));
}
