//! Scheduled reports: each tenant's `reports` settings (`PUT /api/v1/config`) name how often
//! (daily, weekly, monthly), in which format and through which e-mail channel of the rules
//! file. Once a period has ended, its report is computed ([`crate::report::build`]),
//! rendered ([`secumon_report`]) and sent as an attachment.
//!
//! Once per period, across restarts and across server processes: before sending, a record
//! `(report_sent, SCHEDULE/PERIOD)` is inserted, which only one caller can do; a failed
//! sending deletes it again so a later pass retries. (A process killed between the insert and
//! the sending loses that one report rather than sending it twice.)

use std::collections::BTreeMap;
use std::sync::Arc;

use secumon_alert::{ChannelConfig, EmailAttachment};
use secumon_api::{ReportSchedule, TenantConfig};
use secumon_report::Format;
use secumon_store::Store;

use crate::report;

/// Where the "sent" marks are kept.
const SENT_KIND: &str = "report_sent";
/// How often the schedules are looked at.
pub const CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(60);
const DAY_MS: i64 = 86_400_000;

/// Why a schedule is refused, or a report could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    /// The schedule names something unknown.
    #[error("reports[{index}]: {reason}")]
    Invalid {
        /// Its position in `reports`.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] secumon_store::StoreError),
    /// The report could not be computed.
    #[error(transparent)]
    Report(#[from] report::ReportError),
    /// The report could not be rendered.
    #[error(transparent)]
    Render(#[from] secumon_report::RenderError),
    /// The e-mail could not be sent.
    #[error("sending the report through channel {channel:?}: {reason}")]
    Send {
        /// The channel.
        channel: String,
        /// Why.
        reason: String,
    },
}

/// How often a report goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Every {
    /// The previous UTC day.
    Daily,
    /// The previous week, Monday 00:00 UTC to Monday.
    Weekly,
    /// The previous calendar month (UTC).
    Monthly,
}

impl Every {
    fn parse(text: &str) -> Option<Self> {
        match text {
            "daily" => Some(Self::Daily),
            "weekly" => Some(Self::Weekly),
            "monthly" => Some(Self::Monthly),
            _ => None,
        }
    }

    /// The last period that ended by `now_ms`: `(from_ms, to_ms, name)`, the name unique per
    /// period (`2026-12-07`, `week-2026-11-30`, `2026-11`).
    pub fn last_period(self, now_ms: i64) -> (i64, i64, String) {
        let today = now_ms.div_euclid(DAY_MS);
        match self {
            Every::Daily => {
                let from = today - 1;
                (from * DAY_MS, today * DAY_MS, date(from))
            }
            Every::Weekly => {
                // 1970-01-05 (day 4) was a Monday.
                let monday = (today - 4).div_euclid(7) * 7 + 4;
                let from = monday - 7;
                (from * DAY_MS, monday * DAY_MS, format!("week-{}", date(from)))
            }
            Every::Monthly => {
                let first = calendar(today).replace_day(1).unwrap_or(time::Date::MIN);
                let previous = first.previous_day().and_then(|d| d.replace_day(1).ok()).unwrap_or(first);
                let name = format!("{:04}-{:02}", previous.year(), u8::from(previous.month()));
                (day_number(previous) * DAY_MS, day_number(first) * DAY_MS, name)
            }
        }
    }
}

/// Julian day of 1970-01-01.
const UNIX_EPOCH_JULIAN_DAY: i64 = 2_440_588;

/// The calendar date of a day count since 1970-01-01.
fn calendar(days: i64) -> time::Date {
    let julian = i32::try_from(days + UNIX_EPOCH_JULIAN_DAY).unwrap_or(i32::MAX);
    time::Date::from_julian_day(julian).unwrap_or(time::Date::MAX)
}

/// Days since 1970-01-01 of a calendar date.
fn day_number(date: time::Date) -> i64 {
    i64::from(date.to_julian_day()) - UNIX_EPOCH_JULIAN_DAY
}

fn date(days: i64) -> String {
    let date = calendar(days);
    format!("{:04}-{:02}-{:02}", date.year(), u8::from(date.month()), date.day())
}

/// Sends tenants' scheduled reports through the rules file's e-mail channels.
pub struct ReportScheduler {
    store: Arc<dyn Store>,
    channels: BTreeMap<String, ChannelConfig>,
}

impl ReportScheduler {
    /// A scheduler over `channels` (the rules file's, credentials opened).
    pub fn new(store: Arc<dyn Store>, channels: BTreeMap<String, ChannelConfig>) -> Self {
        Self { store, channels }
    }

    /// Whether `schedules` of `tenant` name known periods, formats and e-mail channels open
    /// to the tenant.
    pub fn validate(&self, tenant: &str, schedules: &[ReportSchedule]) -> Result<(), ScheduleError> {
        for (index, schedule) in schedules.iter().enumerate() {
            let invalid = |reason: String| ScheduleError::Invalid { index, reason };
            Every::parse(&schedule.every).ok_or_else(|| {
                invalid(format!("`every` must be daily, weekly or monthly, got {:?}", schedule.every))
            })?;
            schedule.format.parse::<Format>().map_err(|e| invalid(e.to_string()))?;
            match self.channels.get(&schedule.channel) {
                Some(channel @ ChannelConfig::Email { .. }) if channel.open_to(tenant) => {}
                _ => {
                    let emails: Vec<&String> = self
                        .channels
                        .iter()
                        .filter(|(_, c)| matches!(c, ChannelConfig::Email { .. }) && c.open_to(tenant))
                        .map(|(name, _)| name)
                        .collect();
                    return Err(invalid(format!(
                        "no e-mail channel {:?} open to this tenant (e-mail channels: {emails:?})",
                        schedule.channel
                    )));
                }
            }
            if let Some(bad) = schedule.to.iter().find(|to| !to.contains('@') || to.len() > 320) {
                return Err(invalid(format!("{bad:?} is not an e-mail address")));
            }
        }
        Ok(())
    }

    /// Sends every report of `tenants` whose period has ended by `now_ms` and was not sent
    /// yet; returns how many were sent. A failure is logged and retried on the next pass.
    pub async fn run_due(&self, tenants: &[String], now_ms: i64) -> usize {
        let mut sent = 0;
        for tenant in tenants {
            let schedules = match self.schedules(tenant).await {
                Ok(schedules) => schedules,
                Err(error) => {
                    tracing::error!(%error, %tenant, "cannot read the tenant's report schedules");
                    continue;
                }
            };
            for schedule in schedules {
                match self.send_if_due(tenant, &schedule, now_ms).await {
                    Ok(true) => sent += 1,
                    Ok(false) => {}
                    Err(error) => tracing::error!(%error, %tenant, channel = %schedule.channel, "scheduled report"),
                }
            }
        }
        sent
    }

    async fn schedules(&self, tenant: &str) -> Result<Vec<ReportSchedule>, ScheduleError> {
        let Some(body) = self.store.get_record(tenant, "config", "tenant").await? else { return Ok(Vec::new()) };
        let config: TenantConfig = serde_json::from_str(&body)
            .map_err(|e| ScheduleError::Invalid { index: 0, reason: format!("stored settings unreadable: {e}") })?;
        Ok(config.reports)
    }

    async fn send_if_due(&self, tenant: &str, schedule: &ReportSchedule, now_ms: i64) -> Result<bool, ScheduleError> {
        let invalid = |reason: String| ScheduleError::Invalid { index: 0, reason };
        let every = Every::parse(&schedule.every).ok_or_else(|| invalid(format!("every {:?}", schedule.every)))?;
        let format: Format = schedule.format.parse()?;
        let (from_ms, to_ms, period) = every.last_period(now_ms);
        // One mark per schedule (its settings) and period.
        let id =
            format!("{}/{}/{}/{}/{period}", schedule.every, schedule.format, schedule.channel, schedule.to.join(","));
        let mark = serde_json::json!({"claimed_ms": now_ms}).to_string();
        if !self.store.insert_record(tenant, SENT_KIND, &id, &mark).await? {
            return Ok(false);
        }
        match self.send(tenant, schedule, format, &period, from_ms, to_ms, now_ms).await {
            Ok(()) => {
                let done = serde_json::json!({"claimed_ms": now_ms, "sent_ms": secumon_core::now_ms()}).to_string();
                self.store.put_record(tenant, SENT_KIND, &id, &done).await?;
                tracing::info!(%tenant, %period, channel = %schedule.channel, "scheduled report sent");
                Ok(true)
            }
            Err(error) => {
                // Free the period for the next pass.
                if let Err(undo) = self.store.delete_record(tenant, SENT_KIND, &id).await {
                    tracing::error!(error = %undo, %tenant, %period, "cannot release a failed report's mark");
                }
                Err(error)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn send(
        &self,
        tenant: &str,
        schedule: &ReportSchedule,
        format: Format,
        period: &str,
        from_ms: i64,
        to_ms: i64,
        now_ms: i64,
    ) -> Result<(), ScheduleError> {
        let failed = |reason: String| ScheduleError::Send { channel: schedule.channel.clone(), reason };
        let channel = self
            .channels
            .get(&schedule.channel)
            .filter(|c| c.open_to(tenant))
            .ok_or_else(|| failed("no such e-mail channel open to the tenant".into()))?;
        let email = channel.email().map_err(|e| failed(e.to_string()))?.ok_or_else(|| failed("not e-mail".into()))?;
        let report = report::build(&*self.store, tenant, period, to_ms - from_ms, to_ms, now_ms).await?;
        let bytes = secumon_report::render(&report, format)?;
        let subject = format!("SecuMon {} report for {tenant}: {period}", schedule.every);
        let text = format!(
            "The SecuMon report of tenant {tenant} for {period} ({} to {} UTC) is attached as {}.\n\nHosts: {}, \
             checks: {}, alerts fired: {}, open findings: {}, certificates expiring within 30 days: {}.\n",
            secumon_report::utc_text(from_ms),
            secumon_report::utc_text(to_ms),
            format.as_str().to_uppercase(),
            report.hosts.len(),
            report.checks.len(),
            report.alerts.total.fired,
            report.findings.iter().map(|f| f.open).sum::<u64>(),
            report.certificates.len(),
        );
        let attachment = EmailAttachment {
            file_name: secumon_report::file_name(&report, format),
            content_type: format.mime_type(),
            bytes,
        };
        email.send_file(&schedule.to, &subject, &text, attachment).await.map_err(|e| failed(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-09 (a Wednesday) 13:00 UTC.
    const NOW: i64 = 1_796_821_200_000;

    #[test]
    fn periods_are_the_last_whole_day_week_and_month_in_utc() {
        assert_eq!(secumon_report::utc_text(NOW), "2026-12-09 13:00");
        let (from, to, name) = Every::Daily.last_period(NOW);
        assert_eq!(
            (secumon_report::utc_text(from), secumon_report::utc_text(to), name.as_str()),
            ("2026-12-08 00:00".into(), "2026-12-09 00:00".into(), "2026-12-08")
        );
        let (from, to, name) = Every::Weekly.last_period(NOW);
        assert_eq!(
            (secumon_report::utc_text(from), secumon_report::utc_text(to), name.as_str()),
            ("2026-11-30 00:00".into(), "2026-12-07 00:00".into(), "week-2026-11-30")
        );
        let (from, to, name) = Every::Monthly.last_period(NOW);
        assert_eq!(
            (secumon_report::utc_text(from), secumon_report::utc_text(to), name.as_str()),
            ("2026-11-01 00:00".into(), "2026-12-01 00:00".into(), "2026-11")
        );
        let january = day_number(time::Date::from_calendar_date(2027, time::Month::January, 15).unwrap()) * DAY_MS;
        assert_eq!(Every::Monthly.last_period(january).2, "2026-12");
    }
}
