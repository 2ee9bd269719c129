//! Prometheus' text exposition format (0.0.4, as `/metrics` pages serve it; OpenMetrics'
//! `# EOF` is accepted): the samples of a page, each with its labels and optional timestamp.
//! Comments (`# HELP`, `# TYPE`) are skipped; histograms and summaries are their plain
//! `_bucket`, `_sum`, `_count` and quantile lines. A line that does not parse fails the whole
//! page, as it fails a Prometheus scrape: half a page would misreport.

use crate::Labels;

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct ExposedSample {
    /// The metric name.
    pub name: String,
    /// Its labels.
    pub labels: Labels,
    /// The value (`NaN`, `+Inf` and `-Inf` included).
    pub value: f64,
    /// The line's own timestamp, milliseconds since 1970, when it has one.
    pub timestamp_ms: Option<i64>,
}

/// A line that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct ExpositionError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub reason: String,
}

/// Every sample of `text`, in page order.
pub fn parse(text: &str) -> Result<Vec<ExposedSample>, ExpositionError> {
    let mut samples = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        samples.push(parse_line(line).map_err(|reason| ExpositionError { line: index + 1, reason })?);
    }
    Ok(samples)
}

fn parse_line(line: &str) -> Result<ExposedSample, String> {
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace()).unwrap_or(line.len());
    let name = &line[..name_end];
    if !crate::batch::is_valid_metric_name(name) {
        return Err(format!("{name:?} is not a metric name"));
    }
    let mut rest = line[name_end..].trim_start();
    let mut labels = Labels::new();
    if let Some(inside) = rest.strip_prefix('{') {
        rest = parse_labels(inside, &mut labels)?;
    }
    let mut fields = rest.split_whitespace();
    let value = fields.next().ok_or_else(|| format!("{name} has no value"))?;
    let value = parse_value(value).ok_or_else(|| format!("{name}: {value:?} is not a number"))?;
    let timestamp_ms = match fields.next() {
        None => None,
        Some(ts) => Some(ts.parse::<i64>().map_err(|_| format!("{name}: {ts:?} is not a timestamp in milliseconds"))?),
    };
    if let Some(extra) = fields.next() {
        return Err(format!("{name}: unexpected {extra:?} after the timestamp"));
    }
    Ok(ExposedSample { name: name.to_string(), labels, value, timestamp_ms })
}

/// Reads `name="value",…}` into `labels`; returns what follows the closing brace.
fn parse_labels<'a>(mut rest: &'a str, labels: &mut Labels) -> Result<&'a str, String> {
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix('}') {
            return Ok(after);
        }
        let (name, after) = rest.split_once('=').ok_or("a label without `=`")?;
        let name = name.trim();
        if !crate::batch::is_valid_label_name(name) {
            return Err(format!("{name:?} is not a label name"));
        }
        let after =
            after.trim_start().strip_prefix('"').ok_or_else(|| format!("label {name}'s value is not quoted"))?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err(format!("label {name}'s value is not closed")),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, escaped @ ('\\' | '"'))) => value.push(escaped),
                    Some((_, other)) => {
                        value.push('\\');
                        value.push(other);
                    }
                    None => return Err(format!("label {name}'s value is not closed")),
                },
                Some((_, c)) => value.push(c),
            }
        };
        if labels.insert(name.to_string(), value).is_some() {
            return Err(format!("label {name} appears twice"));
        }
        rest = after[end + 1..].trim_start();
        rest = match rest.strip_prefix(',') {
            Some(after_comma) => after_comma,
            None if rest.starts_with('}') => rest,
            None => return Err("the label set is not closed with `}`".into()),
        };
    }
}

/// Go's float syntax as Prometheus writes it, `+Inf`, `-Inf` and `NaN` included.
fn parse_value(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        other => other.parse().ok().filter(|v: &f64| v.is_finite()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_with_comments_escapes_timestamps_and_special_values() {
        let page = "# HELP http_requests_total Requests.\n# TYPE http_requests_total counter\n\
                    http_requests_total{method=\"post\",code=\"200\"} 1027 1395066363000\n\
                    http_requests_total{ method = \"get\" , code=\"400\", } 3\n\n\
                    msdos_file_access_time_seconds{path=\"C:\\\\DIR\\\\FILE.TXT\",error=\"Cannot find file:\\n\\\"FILE.TXT\\\"\"} 1.458255915e9\n\
                    rpc_duration_seconds_bucket{le=\"+Inf\"} 144320\nweird NaN\nlow -Inf\nup 1\n# EOF\n";
        let samples = parse(page).unwrap();
        assert_eq!(samples.len(), 7);
        assert_eq!(samples[0].labels["code"], "200");
        assert_eq!((samples[0].value, samples[0].timestamp_ms), (1027.0, Some(1_395_066_363_000)));
        assert_eq!((samples[1].labels["method"].as_str(), samples[1].timestamp_ms), ("get", None));
        assert_eq!(samples[2].labels["path"], "C:\\DIR\\FILE.TXT");
        assert_eq!(samples[2].labels["error"], "Cannot find file:\n\"FILE.TXT\"");
        assert_eq!(samples[3].labels["le"], "+Inf");
        assert!(samples[4].value.is_nan());
        assert_eq!(samples[5].value, f64::NEG_INFINITY);
        assert_eq!((samples[6].name.as_str(), samples[6].value), ("up", 1.0));
    }

    #[test]
    fn a_bad_line_fails_the_page_naming_it() {
        for (page, line, says) in [
            ("up 1\nup{a=\"b\" 1\n", 2, "not closed"),
            ("up one\n", 1, "not a number"),
            ("up{a=b} 1\n", 1, "not quoted"),
            ("up{a=\"1\",a=\"2\"} 1\n", 1, "twice"),
            ("up 1 2 3\n", 1, "unexpected"),
            ("9up 1\n", 1, "not a metric name"),
            ("up\n", 1, "no value"),
        ] {
            let error = parse(page).unwrap_err();
            assert_eq!(error.line, line, "{page:?}: {error}");
            assert!(error.reason.contains(says), "{page:?}: {error}");
        }
    }
}
