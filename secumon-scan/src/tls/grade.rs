//! The overall grade, from the findings.

use super::TlsReport;
use super::findings::FindingSeverity;

/// A: no warning; A+: and TLS 1.3 with forward secrecy only; B: one or two warnings;
/// C: more; F: anything critical.
pub(super) fn grade(report: &TlsReport) -> String {
    let count = |severity| report.findings.iter().filter(|f| f.severity == severity).count();
    let all_forward_secret = report.cipher_suites.values().flatten().all(|s| s.forward_secrecy);
    match (count(FindingSeverity::Critical), count(FindingSeverity::Warning)) {
        (1.., _) => "F",
        (0, 3..) => "C",
        (0, 1..=2) => "B",
        (0, 0) if report.protocols.get("TLSv1.3") == Some(&true) && all_forward_secret => "A+",
        (0, 0) => "A",
    }
    .to_string()
}
