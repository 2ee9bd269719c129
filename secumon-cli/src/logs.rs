//! `secumon logs HOST`: a host's stored log lines through the REST API, paged to the end of
//! the range (or the last `--limit`), then with `--follow` each new line as the live stream
//! delivers it, continuing from the last page's cursor so no line is missed or doubled.

use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use secumon_console::client::{ApiClient, ClientError};
use secumon_console::logs::{LogFilter, LogLine, Position};

use crate::api_client::emit;

/// Lines asked for per page (the API's largest page).
const PAGE: u32 = 5_000;

#[derive(clap::Args)]
pub struct LogsArgs {
    /// The host whose lines to print.
    host: String,
    /// Lines from this long ago (`1h`, `30m`) or from this time (RFC 3339, `2026-11-30T01:00:00Z`).
    #[arg(long)]
    since: Option<String>,
    /// Lines before this long ago or this time.
    #[arg(long)]
    until: Option<String>,
    /// Only lines of this source (a file path, or `journald`).
    #[arg(long)]
    source: Option<String>,
    /// Only lines matching this regular expression (Rust regex syntax), e.g. 'ERROR|WARN'.
    #[arg(long)]
    grep: Option<String>,
    /// Print only the last N lines of the range (default: every line of it).
    #[arg(long)]
    limit: Option<u32>,
    /// After the stored lines, keep printing new ones as they arrive (Ctrl-C ends).
    #[arg(long, short = 'f', conflicts_with = "until")]
    follow: bool,
    /// One JSON object per line (cursor, timestamp_ms, source, labels, line).
    #[arg(long)]
    json: bool,
    /// Server REST address.
    #[arg(long, default_value = "http://127.0.0.1:8080", env = "SECUMON_SERVER")]
    server: String,
}

/// `1h` before now, or an RFC 3339 time, as ms since 1970.
fn instant_ms(text: &str, now: SystemTime) -> anyhow::Result<i64> {
    let at = match humantime::parse_duration(text) {
        Ok(ago) => now.checked_sub(ago).unwrap_or(UNIX_EPOCH),
        Err(_) => humantime::parse_rfc3339_weak(text)
            .with_context(|| format!("`{text}` is neither a duration (1h, 30m) nor a time (2026-11-30T01:00:00Z)"))?,
    };
    Ok(at.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0))
}

fn print(lines: &[LogLine], json: bool) -> anyhow::Result<()> {
    let mut out = String::new();
    for line in lines {
        if json {
            out.push_str(&serde_json::to_string(line)?);
        } else {
            let at = UNIX_EPOCH + Duration::from_millis(line.timestamp_ms.max(0) as u64);
            out.push_str(&format!("{} {} {}", humantime::format_rfc3339_millis(at), line.source, line.line));
        }
        out.push('\n');
    }
    emit(&out).context("cannot write to stdout")
}

/// A refusal (bad regex, unknown cursor, forbidden) is the caller's to fix: said on stderr,
/// exit code 2, as the other commands do.
fn refused(error: ClientError) -> anyhow::Result<ExitCode> {
    match error {
        // Refused on the stream, or by the REST API (with any status, as before the typed client).
        ClientError::Refused(message) => {
            eprintln!("secumon: {message}");
            Ok(ExitCode::from(2))
        }
        ClientError::Api(secumon_api::ClientError::Refused(refusal)) => {
            eprintln!("secumon: {}", refusal.message);
            Ok(ExitCode::from(2))
        }
        other => Err(other.into()),
    }
}

pub async fn run(args: LogsArgs, token: Option<String>) -> anyhow::Result<ExitCode> {
    let now = SystemTime::now();
    let filter = LogFilter {
        since_ms: args.since.as_deref().map(|t| instant_ms(t, now)).transpose()?,
        until_ms: args.until.as_deref().map(|t| instant_ms(t, now)).transpose()?,
        source: args.source.clone(),
        contains: None,
        regex: args.grep.clone(),
    };
    if args.limit == Some(0) {
        bail!("--limit must be at least 1");
    }
    let api = ApiClient::new(&args.server, token)?;
    // Where following starts: after the newest line printed (or examined).
    let mut newest: Option<String> = None;
    match args.limit {
        // The last N: page back from the end of the range, print oldest first.
        Some(limit) => {
            let mut lines: Vec<LogLine> = Vec::new();
            let mut position = Position::Newest;
            let mut first = true;
            while lines.len() < limit as usize {
                let want = (limit as usize - lines.len()).min(PAGE as usize) as u32;
                let page = match api.log_page(&args.host, &filter, &position, want).await {
                    Ok(page) => page,
                    Err(error) => return refused(error),
                };
                if first {
                    newest = page.next_cursor.clone();
                    first = false;
                }
                let mut older = page.logs;
                older.extend(lines);
                lines = older;
                match page.prev_cursor {
                    Some(cursor) if page.more => position = Position::Before(cursor),
                    _ => break,
                }
            }
            print(&lines, args.json)?;
        }
        // Everything in range: page forward from its start.
        None => {
            let mut position = Position::Oldest;
            loop {
                let page = match api.log_page(&args.host, &filter, &position, PAGE).await {
                    Ok(page) => page,
                    Err(error) => return refused(error),
                };
                print(&page.logs, args.json)?;
                newest = page.next_cursor.or(newest);
                match &newest {
                    Some(cursor) if page.more => position = Position::After(cursor.clone()),
                    _ => break,
                }
            }
        }
    }
    if !args.follow {
        return Ok(ExitCode::SUCCESS);
    }
    // Nothing stored in range yet: follow from the range's start rather than from "now",
    // so a line stored between the last page and the subscription is not missed.
    let filter = LogFilter { since_ms: Some(filter.since_ms.unwrap_or(0)), until_ms: None, ..filter };
    let mut follower = match api.follow_logs(&args.host, &filter, newest.as_deref()).await {
        Ok(follower) => follower,
        Err(error) => return refused(error),
    };
    loop {
        match follower.next_lines().await {
            Ok(lines) => print(&lines, args.json)?,
            Err(error) => return refused(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_a_duration_or_a_time() {
        let now = UNIX_EPOCH + Duration::from_secs(10_000);
        assert_eq!(instant_ms("1h", now).unwrap(), 6_400_000);
        assert_eq!(instant_ms("1970-01-01T00:00:05Z", now).unwrap(), 5_000);
        let error = instant_ms("yesterday-ish", now).unwrap_err().to_string();
        assert!(error.contains("neither a duration"), "{error}");
    }
}
