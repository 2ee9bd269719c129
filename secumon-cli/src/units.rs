//! Values in tables read the way an operator says them: bytes in KiB/MiB/GiB, seconds as
//! ms or minutes, ratios as percentages, chosen from the metric name's unit suffix
//! (Prometheus naming: `_bytes`, `_seconds`, `_ratio`, optionally before `_total`).

/// `value` of `metric`, with its unit when the name says which.
pub fn human_value(metric: &str, value: f64) -> String {
    if !value.is_finite() {
        return value.to_string();
    }
    let base = metric.strip_suffix("_total").unwrap_or(metric);
    if let Some(rate) = base.strip_suffix("_per_second") {
        return format!("{}/s", human_value(rate, value));
    }
    if base.ends_with("_bytes") {
        bytes(value)
    } else if base.ends_with("_seconds") {
        seconds(value)
    } else if base.ends_with("_ratio") {
        format!("{:.1} %", value * 100.0)
    } else {
        plain(value)
    }
}

fn bytes(value: f64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut scaled = value;
    let mut unit = 0;
    while scaled.abs() >= 1024.0 && unit < UNITS.len() - 1 {
        scaled /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{scaled:.0} B") } else { format!("{scaled:.1} {}", UNITS[unit]) }
}

fn seconds(value: f64) -> String {
    match value.abs() {
        0.0 => "0 s".to_string(),
        v if v < 1e-3 => format!("{:.0} µs", value * 1e6),
        v if v < 1.0 => format!("{:.1} ms", value * 1e3),
        v if v < 120.0 => format!("{value:.2} s"),
        v if v < 7_200.0 => format!("{:.1} min", value / 60.0),
        v if v < 172_800.0 => format!("{:.1} h", value / 3_600.0),
        _ => format!("{:.1} d", value / 86_400.0),
    }
}

/// Large values in engineering form, small ones with enough digits to matter.
fn plain(value: f64) -> String {
    if value.abs() >= 1e6 && value.fract() == 0.0 {
        format!("{value:.0}")
    } else if value.abs() >= 1e6 {
        format!("{value:.3e}")
    } else {
        let text = format!("{value:.4}");
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::human_value;

    #[test]
    fn units_follow_the_metric_name() {
        assert_eq!(human_value("memory_used_bytes", 3.5 * 1024.0 * 1024.0 * 1024.0), "3.5 GiB");
        assert_eq!(human_value("memory_used_bytes", 512.0), "512 B");
        assert_eq!(human_value("disk_read_bytes_per_second", 1536.0), "1.5 KiB/s");
        assert_eq!(human_value("net_rx_bytes_total", 10.0 * 1024.0 * 1024.0), "10.0 MiB");
        assert_eq!(human_value("check_duration_seconds", 0.0123), "12.3 ms");
        assert_eq!(human_value("check_duration_seconds", 0.000_2), "200 µs");
        assert_eq!(human_value("uptime_seconds", 90_000.0), "25.0 h");
        assert_eq!(human_value("cpu_usage_ratio", 0.257), "25.7 %");
        assert_eq!(human_value("load1", 0.25), "0.25");
        assert_eq!(human_value("procs_total", 12_000_000.0), "12000000");
        assert_eq!(human_value("procs_total", 0.123456), "0.1235");
        assert_eq!(human_value("procs_total", 2.0), "2");
        assert_eq!(human_value("memory_used_bytes", f64::NAN), "NaN");
    }
}
