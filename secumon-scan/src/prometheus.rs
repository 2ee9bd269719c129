//! `prometheus` checks: scrape an exporter's `/metrics` page (node_exporter, an
//! application's, SecuMon's own) and keep its samples as the check's series, so an agent or a
//! probe brings exporters into SecuMon without a Prometheus in between.
//!
//! Relabelling is by name: `allow` (regular expressions, whole-name matches) chooses the
//! metrics kept, `prefix` is put before their names. A scraped label that SecuMon sets itself
//! (`check`, `kind`, `target`, `host`, `tenant`) is kept as `exported_<name>`, as Prometheus
//! does for a clash with a target's labels. Samples are stamped with the scrape's time (the
//! page's own timestamps are not used). A page that does not parse, a status other than 200
//! or a page over 10 MiB fails the scrape (critical) and keeps nothing; more series than
//! `max_series` keeps the first ones and warns.

use std::collections::BTreeMap;
use std::path::PathBuf;

use async_trait::async_trait;
use regex::Regex;
use secumon_core::batch::MAX_LABEL_VALUE_LEN;
use secumon_core::{CheckStatus, Labels};
use serde::{Deserialize, Serialize};

use crate::check::{Check, CheckError, Outcome};
use crate::http::{HttpCheck, request};
use crate::spec::required;

/// Series kept per scrape unless a check says otherwise.
pub const DEFAULT_MAX_SERIES: usize = 10_000;
/// Labels SecuMon sets on a check's series; a scraped label of that name is renamed.
const OWN_LABELS: [&str; 5] = ["check", "kind", "target", "host", "tenant"];

/// A scrape of one exporter.
#[derive(Debug, Clone)]
pub struct PrometheusCheck {
    /// The check's name in the configuration.
    pub id: String,
    /// The request (URL, headers, CA file).
    pub http: HttpCheck,
    /// Put before every kept metric's name.
    pub prefix: String,
    /// Metric names kept (whole-name matches); empty keeps all.
    pub allow: Vec<Regex>,
    /// Most series kept per scrape.
    pub max_series: usize,
}

/// A `prometheus` check as configured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct PrometheusSpec {
    /// The page to scrape (`http://127.0.0.1:9100/metrics`).
    pub url: Option<String>,
    /// Put before every kept metric's name (`app_`).
    pub prefix: Option<String>,
    /// Regular expressions; a metric is kept when one matches its whole name. All when unset.
    pub allow: Option<Vec<String>>,
    /// Most series kept per scrape (10 000).
    pub max_series: Option<usize>,
    /// Request headers (`Authorization: Bearer …` for a protected exporter).
    pub headers: Option<BTreeMap<String, String>>,
    /// A PEM file of CAs to trust instead of the system's, for `https://`.
    pub ca_file: Option<PathBuf>,
}

impl PrometheusSpec {
    pub(crate) fn build(self, id: String, kind: &str) -> Result<Box<dyn Check>, CheckError> {
        let url = required(self.url, kind, "url")?;
        let prefix = self.prefix.unwrap_or_default();
        if !prefix.is_empty() && !secumon_core::batch::is_valid_metric_name(&prefix) {
            return Err(CheckError::Invalid(format!(
                "`prefix` {prefix:?} must be letters, digits, `_` or `:`, not starting with a digit"
            )));
        }
        let allow = self
            .allow
            .unwrap_or_default()
            .iter()
            .map(|pattern| {
                Regex::new(&format!("^(?:{pattern})$"))
                    .map_err(|e| CheckError::Invalid(format!("`allow` {pattern:?}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let max_series = self.max_series.unwrap_or(DEFAULT_MAX_SERIES);
        if max_series == 0 {
            return Err(CheckError::Invalid("`max_series` must be at least 1".into()));
        }
        let mut http = HttpCheck::get(id.clone(), url);
        http.headers = self.headers.unwrap_or_default().into_iter().collect();
        if !http.headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("accept")) {
            // The text format, which every exporter serves.
            http.headers.push(("Accept".into(), "text/plain;version=0.0.4;q=1,*/*;q=0.1".into()));
        }
        http.ca_file = self.ca_file;
        http.max_redirects = 0;
        Ok(Box::new(PrometheusCheck { id, http, prefix, allow, max_series }))
    }
}

/// What a scrape found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ScrapeDetails {
    /// The page scraped.
    pub url: String,
    /// Its HTTP status.
    pub status: u16,
    /// Seconds the scrape took, request to body read.
    pub duration_seconds: f64,
    /// Samples on the page.
    pub samples_scraped: usize,
    /// Samples kept (allowed, within `max_series`).
    pub samples_kept: usize,
    /// Samples left out by `allow`.
    pub samples_not_allowed: usize,
    /// Samples left out past `max_series`, or with a label value too long to store.
    pub samples_dropped: usize,
    /// What failed the scrape.
    pub problems: Vec<String>,
    /// What it warns of.
    pub warnings: Vec<String>,
}

#[async_trait]
impl Check for PrometheusCheck {
    fn id(&self) -> &str {
        &self.id
    }

    fn kind(&self) -> &'static str {
        "prometheus"
    }

    fn target(&self) -> String {
        self.http.url.clone()
    }

    async fn execute(&self) -> Result<Outcome, CheckError> {
        let response = request(&self.http, &self.http.url).await?;
        let mut details = ScrapeDetails {
            url: self.http.url.clone(),
            status: response.status,
            duration_seconds: response.timings.total,
            samples_scraped: 0,
            samples_kept: 0,
            samples_not_allowed: 0,
            samples_dropped: 0,
            problems: Vec::new(),
            warnings: Vec::new(),
        };
        if response.status != 200 {
            details.problems.push(format!("the exporter answered HTTP {}", response.status));
        } else if response.body_truncated {
            details.problems.push("the page is longer than 10 MiB".into());
        }
        let page = match std::str::from_utf8(&response.body) {
            Ok(page) => page,
            Err(error) => {
                details.problems.push(format!("the page is not UTF-8: {error}"));
                ""
            }
        };
        let exposed = match secumon_core::exposition::parse(page) {
            Ok(exposed) if details.problems.is_empty() => exposed,
            Ok(_) => Vec::new(),
            Err(error) => {
                details.problems.push(format!("the page does not parse: {error}"));
                Vec::new()
            }
        };
        details.samples_scraped = exposed.len();
        let mut kept = Vec::new();
        for sample in exposed {
            if !self.allow.is_empty() && !self.allow.iter().any(|re| re.is_match(&sample.name)) {
                details.samples_not_allowed += 1;
                continue;
            }
            if kept.len() == self.max_series || sample.labels.values().any(|v| v.len() > MAX_LABEL_VALUE_LEN) {
                details.samples_dropped += 1;
                continue;
            }
            kept.push((format!("{}{}", self.prefix, sample.name), relabelled(sample.labels), sample.value));
        }
        details.samples_kept = kept.len();
        if details.samples_dropped > 0 {
            details.warnings.push(format!(
                "{} samples left out (more than {} series, or a label value over {MAX_LABEL_VALUE_LEN} bytes)",
                details.samples_dropped, self.max_series
            ));
        }
        let status = if !details.problems.is_empty() {
            CheckStatus::Critical
        } else if !details.warnings.is_empty() {
            CheckStatus::Warning
        } else {
            CheckStatus::Ok
        };
        let mut outcome = Outcome::new(status, details);
        outcome.samples = kept;
        Ok(outcome)
    }
}

/// The scraped labels, those SecuMon sets itself renamed `exported_<name>`.
fn relabelled(labels: Labels) -> Labels {
    labels
        .into_iter()
        .map(|(name, value)| match OWN_LABELS.contains(&name.as_str()) {
            true => (format!("exported_{name}"), value),
            false => (name, value),
        })
        .collect()
}
