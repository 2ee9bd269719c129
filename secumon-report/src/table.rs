//! The report as sections of tables and bar charts: what every renderer draws, so the
//! formats cannot disagree on a column, a row or how a number is written.

use secumon_api::{Report, SeverityAlerts};

/// One value of a table, typed so a spreadsheet gets numbers and a page gets text.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// Text as it is.
    Text(String),
    /// A whole count.
    Count(u64),
    /// A ratio 0 to 1, shown as a percentage with two decimals.
    Ratio(f64),
    /// A number of seconds with one decimal; absent shows `-`.
    Seconds(Option<f64>),
    /// A number of days with one decimal.
    Days(f64),
    /// A time, Unix ms, shown in UTC.
    Time(i64),
}

impl Cell {
    /// The value as every format writes it in text.
    pub fn text(&self) -> String {
        match self {
            Cell::Text(text) => text.clone(),
            Cell::Count(n) => n.to_string(),
            Cell::Ratio(r) => format!("{:.2}%", r * 100.0),
            Cell::Seconds(Some(s)) => format!("{s:.1}"),
            Cell::Seconds(None) => "-".into(),
            Cell::Days(d) => format!("{d:.1}"),
            Cell::Time(ms) => utc_text(*ms),
        }
    }

    /// Whether the value is a number (right-aligned on a page).
    pub fn is_numeric(&self) -> bool {
        !matches!(self, Cell::Text(_) | Cell::Time(_))
    }
}

/// Bars, one per label, for a section's chart.
#[derive(Debug, Clone, PartialEq)]
pub struct BarChart {
    /// What the bars measure.
    pub title: String,
    /// `(label, value, colour as RGB 0-1)`.
    pub bars: Vec<(String, f64, [f32; 3])>,
    /// Values are ratios (bars scale to 100 %, labels are percentages).
    pub ratios: bool,
}

impl BarChart {
    /// The value the longest bar stands for: 1 for ratios, else the largest value (at least 1).
    pub fn scale(&self) -> f64 {
        if self.ratios { 1.0 } else { self.bars.iter().map(|b| b.1).fold(1.0, f64::max) }
    }

    /// A bar's value as text.
    pub fn value_text(&self, value: f64) -> String {
        if self.ratios { Cell::Ratio(value).text() } else { Cell::Count(value.round() as u64).text() }
    }
}

/// One part of the report: a titled table, maybe with a chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Section {
    /// The section's title (also the workbook sheet's name, at most 31 characters).
    pub title: &'static str,
    /// What it shows, in a sentence.
    pub note: String,
    /// Column headings.
    pub columns: Vec<&'static str>,
    /// Rows of cells, as many as columns each.
    pub rows: Vec<Vec<Cell>>,
    /// A chart drawn above the table.
    pub chart: Option<BarChart>,
}

const RED: [f32; 3] = [0.80, 0.15, 0.15];
const ORANGE: [f32; 3] = [0.93, 0.55, 0.10];
const YELLOW: [f32; 3] = [0.85, 0.75, 0.10];
const BLUE: [f32; 3] = [0.20, 0.45, 0.75];
const GREY: [f32; 3] = [0.55, 0.55, 0.55];

/// A severity's colour in charts.
fn colour(severity: &str) -> [f32; 3] {
    match severity {
        "critical" => RED,
        "high" | "warning" => ORANGE,
        "medium" => YELLOW,
        "low" | "info" => BLUE,
        _ => GREY,
    }
}

fn alert_row(row: &SeverityAlerts) -> Vec<Cell> {
    vec![
        Cell::Text(row.severity.clone()),
        Cell::Count(row.fired),
        Cell::Count(row.acknowledged),
        Cell::Count(row.resolved),
        Cell::Seconds(row.mtta_seconds),
        Cell::Seconds(row.mttr_seconds),
    ]
}

fn usage_section(title: &'static str, metric: &str, hosts: &[secumon_api::HostUsage]) -> Section {
    Section {
        title,
        note: format!("Mean of {metric} over the period, highest first."),
        columns: vec!["Host", "Mean usage"],
        rows: hosts.iter().map(|h| vec![Cell::Text(h.host.clone()), Cell::Ratio(h.mean)]).collect(),
        chart: (!hosts.is_empty()).then(|| BarChart {
            title: format!("{title}: mean usage"),
            bars: hosts.iter().map(|h| (h.host.clone(), h.mean, BLUE)).collect(),
            ratios: true,
        }),
    }
}

/// The report's sections in order: summary, host and check availability, alerts,
/// certificates, findings, top hosts by CPU, memory and disk.
pub fn sections(report: &Report) -> Vec<Section> {
    let summary = Section {
        title: "Summary",
        note: format!("Tenant {} over {}.", report.tenant, report.period),
        columns: vec!["Item", "Value"],
        rows: vec![
            vec![Cell::Text("Tenant".into()), Cell::Text(report.tenant.clone())],
            vec![Cell::Text("Period".into()), Cell::Text(report.period.clone())],
            vec![Cell::Text("From (UTC)".into()), Cell::Time(report.from_ms)],
            vec![Cell::Text("To (UTC)".into()), Cell::Time(report.to_ms)],
            vec![Cell::Text("Generated (UTC)".into()), Cell::Time(report.generated_ms)],
            vec![Cell::Text("Hosts".into()), Cell::Count(report.hosts.len() as u64)],
            vec![Cell::Text("Checks".into()), Cell::Count(report.checks.len() as u64)],
            vec![Cell::Text("Alerts fired".into()), Cell::Count(report.alerts.total.fired)],
            vec![Cell::Text("Open findings".into()), Cell::Count(report.findings.iter().map(|f| f.open).sum())],
            vec![Cell::Text("Certificates expiring".into()), Cell::Count(report.certificates.len() as u64)],
        ],
        chart: None,
    };
    let hosts = Section {
        title: "Host availability",
        note: "Share of the period's buckets (from the host's first sample on) in which the host sent samples.".into(),
        columns: vec!["Host", "Agent", "Reporting", "Expected", "Availability"],
        rows: report
            .hosts
            .iter()
            .map(|h| {
                vec![
                    Cell::Text(h.host.clone()),
                    Cell::Text(h.agent_id.clone()),
                    Cell::Count(h.reporting_buckets),
                    Cell::Count(h.expected_buckets),
                    Cell::Ratio(h.availability),
                ]
            })
            .collect(),
        chart: None,
    };
    let checks = Section {
        title: "Check availability",
        note: "Runs with status ok over all runs within the period.".into(),
        columns: vec!["Check", "Kind", "Target", "Probe", "Runs", "Successes", "Availability"],
        rows: report
            .checks
            .iter()
            .map(|c| {
                vec![
                    Cell::Text(c.check_id.clone()),
                    Cell::Text(c.kind.clone()),
                    Cell::Text(c.target.clone()),
                    Cell::Text(c.host.clone()),
                    Cell::Count(c.runs),
                    Cell::Count(c.successes),
                    Cell::Ratio(c.availability),
                ]
            })
            .collect(),
        chart: None,
    };
    let mut alert_rows: Vec<Vec<Cell>> = report.alerts.by_severity.iter().map(alert_row).collect();
    alert_rows.push(alert_row(&report.alerts.total));
    let alerts = Section {
        title: "Alerts",
        note: "Alerts that fired within the period. MTTA = mean(acknowledged - fired), MTTR = mean(resolved - fired), \
               in seconds."
            .into(),
        columns: vec!["Severity", "Fired", "Acknowledged", "Resolved", "MTTA (s)", "MTTR (s)"],
        rows: alert_rows,
        chart: Some(BarChart {
            title: "Alerts fired by severity".into(),
            bars: report
                .alerts
                .by_severity
                .iter()
                .map(|s| (s.severity.clone(), s.fired as f64, colour(&s.severity)))
                .collect(),
            ratios: false,
        }),
    };
    let certificates = Section {
        title: "Certificates",
        note: "Certificates seen by TLS and HTTPS checks that expire within 30 days of the period's end.".into(),
        columns: vec!["Check", "Target", "Probe", "Subject", "Expires (UTC)", "Days left"],
        rows: report
            .certificates
            .iter()
            .map(|c| {
                vec![
                    Cell::Text(c.check_id.clone()),
                    Cell::Text(c.target.clone()),
                    Cell::Text(c.host.clone()),
                    Cell::Text(c.subject.clone().unwrap_or_default()),
                    Cell::Time(c.not_after_ms),
                    Cell::Days(c.days_left),
                ]
            })
            .collect(),
        chart: None,
    };
    let findings = Section {
        title: "Findings",
        note: "Open vulnerability findings by severity.".into(),
        columns: vec!["Severity", "Open"],
        rows: report.findings.iter().map(|f| vec![Cell::Text(f.severity.clone()), Cell::Count(f.open)]).collect(),
        chart: Some(BarChart {
            title: "Open findings by severity".into(),
            bars: report.findings.iter().map(|f| (f.severity.clone(), f.open as f64, colour(&f.severity))).collect(),
            ratios: false,
        }),
    };
    vec![
        summary,
        hosts,
        checks,
        alerts,
        certificates,
        findings,
        usage_section("Top hosts by CPU", "cpu_usage_ratio", &report.top_hosts.cpu),
        usage_section("Top hosts by memory", "memory_used_ratio", &report.top_hosts.memory),
        usage_section("Top hosts by disk", "filesystem_used_ratio (fullest filesystem)", &report.top_hosts.disk),
    ]
}

/// `ms` (Unix ms) as `YYYY-MM-DD HH:MM` in UTC.
pub fn utc_text(ms: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1_000)) {
        Ok(t) => format!("{:04}-{:02}-{:02} {:02}:{:02}", t.year(), u8::from(t.month()), t.day(), t.hour(), t.minute()),
        Err(_) => format!("{ms} ms"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_calendar_dates() {
        assert_eq!(utc_text(0), "1970-01-01 00:00");
        assert_eq!(utc_text(1_700_000_000_000), "2023-11-14 22:13");
        assert_eq!(utc_text(951_782_400_000), "2000-02-29 00:00");
    }

    #[test]
    fn cells_write_ratios_as_percentages_and_missing_means_as_a_dash() {
        assert_eq!(Cell::Ratio(1_380.0 / 1_440.0).text(), "95.83%");
        assert_eq!(Cell::Seconds(None).text(), "-");
        assert_eq!(Cell::Seconds(Some(150.04)).text(), "150.0");
    }

    #[test]
    fn every_row_has_a_cell_per_column() {
        for section in sections(&crate::tests::sample()) {
            assert!(section.title.len() <= 31, "{}", section.title);
            assert!(section.rows.iter().all(|r| r.len() == section.columns.len()), "{}", section.title);
        }
    }
}
