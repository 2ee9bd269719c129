//! ICMP echo (surge-ping), IPv4 and IPv6: `count` echoes `interval` apart, each waiting up
//! to `timeout`; loss ratio, min/avg/max/stddev round trip and jitter (mean difference
//! between consecutive round trips, as RFC 3550 smooths it, unsmoothed). A raw socket when
//! privileged, the unprivileged ICMP datagram socket otherwise.

use std::net::IpAddr;
use std::time::Duration;

use async_trait::async_trait;
use secumon_core::{CheckStatus, Labels};
use serde::Serialize;
use surge_ping::{Client, Config, ICMP, PingIdentifier, PingSequence, SurgeError};

use crate::check::{Check, CheckError, Outcome, resolve};

/// What a series of echoes found.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PingStats {
    pub address: IpAddr,
    pub sent: u32,
    pub received: u32,
    pub loss_ratio: f64,
    /// Round trips in milliseconds; `None` when nothing came back.
    pub min_ms: Option<f64>,
    pub avg_ms: Option<f64>,
    pub max_ms: Option<f64>,
    pub stddev_ms: Option<f64>,
    pub jitter_ms: Option<f64>,
    /// Each echo's round trip, `None` for a lost one.
    pub rtts_ms: Vec<Option<f64>>,
}

impl PingStats {
    pub fn from_rtts(address: IpAddr, rtts_ms: Vec<Option<f64>>) -> Self {
        let got: Vec<f64> = rtts_ms.iter().flatten().copied().collect();
        let sent = rtts_ms.len() as u32;
        let received = got.len() as u32;
        let n = got.len() as f64;
        let avg = (!got.is_empty()).then(|| got.iter().sum::<f64>() / n);
        let stddev = avg.map(|avg| (got.iter().map(|r| (r - avg).powi(2)).sum::<f64>() / n).sqrt());
        let jitter =
            (got.len() > 1).then(|| got.windows(2).map(|pair| (pair[1] - pair[0]).abs()).sum::<f64>() / (n - 1.0));
        Self {
            address,
            sent,
            received,
            loss_ratio: if sent == 0 { 0.0 } else { f64::from(sent - received) / f64::from(sent) },
            min_ms: got.iter().copied().reduce(f64::min),
            avg_ms: avg,
            max_ms: got.iter().copied().reduce(f64::max),
            stddev_ms: stddev,
            jitter_ms: jitter,
            rtts_ms,
        }
    }
}

/// Opens an ICMP client for the address family: raw socket first, then the datagram one.
pub(crate) fn icmp_client(address: IpAddr, ttl: Option<u32>) -> Result<Client, CheckError> {
    let kind = if address.is_ipv4() { ICMP::V4 } else { ICMP::V6 };
    let mut builder = Config::builder().kind(kind).sock_type_hint(socket2::Type::RAW);
    if let Some(ttl) = ttl {
        builder = builder.ttl(ttl);
    }
    Client::new(&builder.build()).map_err(|error| {
        if error.kind() == std::io::ErrorKind::PermissionDenied {
            CheckError::Other(format!(
                "ICMP is not allowed for this process ({error}): run it with CAP_NET_RAW \
                 (setcap cap_net_raw+ep on the binary) or allow unprivileged ICMP for its group \
                 (sysctl net.ipv4.ping_group_range=\"0 2147483647\")"
            ))
        } else {
            CheckError::Io(error)
        }
    })
}

/// Sends `count` echoes to `address`.
pub async fn ping(address: IpAddr, count: u32, interval: Duration, timeout: Duration) -> Result<PingStats, CheckError> {
    let client = icmp_client(address, None)?;
    let mut pinger = client.pinger(address, PingIdentifier(fastrand::u16(..))).await;
    pinger.timeout(timeout);
    let payload = [0u8; 56];
    let mut rtts = Vec::with_capacity(count as usize);
    for seq in 0..count {
        if seq > 0 {
            tokio::time::sleep(interval).await;
        }
        match pinger.ping(PingSequence(seq as u16), &payload).await {
            Ok((_, rtt)) => rtts.push(Some(rtt.as_secs_f64() * 1000.0)),
            Err(SurgeError::Timeout { .. }) => rtts.push(None),
            Err(SurgeError::IOError(error)) if error.kind() == std::io::ErrorKind::PermissionDenied => {
                return Err(CheckError::Other(format!("ICMP send refused: {error}")));
            }
            Err(error) => {
                tracing::debug!(%address, %error, "echo failed");
                rtts.push(None);
            }
        }
    }
    Ok(PingStats::from_rtts(address, rtts))
}

/// A ping check: critical when every echo is lost, warning above `warn_loss` or
/// `warn_rtt`.
#[derive(Debug, Clone)]
pub struct PingCheck {
    pub id: String,
    pub host: String,
    pub count: u32,
    pub interval: Duration,
    pub timeout: Duration,
    pub warn_loss: f64,
    pub warn_rtt: Option<Duration>,
}

impl PingCheck {
    pub fn new(id: impl Into<String>, host: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            host: host.into(),
            count: 5,
            interval: Duration::from_millis(200),
            timeout: Duration::from_secs(1),
            warn_loss: 0.2,
            warn_rtt: None,
        }
    }
}

#[async_trait]
impl Check for PingCheck {
    fn id(&self) -> &str {
        &self.id
    }

    fn kind(&self) -> &'static str {
        "ping"
    }

    fn target(&self) -> String {
        self.host.clone()
    }

    async fn execute(&self) -> Result<Outcome, CheckError> {
        let address = resolve(&self.host).await?[0];
        let stats = ping(address, self.count, self.interval, self.timeout).await?;
        let slow = self.warn_rtt.zip(stats.avg_ms).is_some_and(|(limit, avg)| avg > limit.as_secs_f64() * 1000.0);
        let status = if stats.received == 0 {
            CheckStatus::Critical
        } else if stats.loss_ratio > self.warn_loss || slow {
            CheckStatus::Warning
        } else {
            CheckStatus::Ok
        };
        let mut outcome = Outcome::new(status, serde_json::to_value(&stats).unwrap_or_default()).sample(
            "ping_loss_ratio",
            Labels::new(),
            stats.loss_ratio,
        );
        for (name, value) in [
            ("ping_rtt_min_seconds", stats.min_ms),
            ("ping_rtt_avg_seconds", stats.avg_ms),
            ("ping_rtt_max_seconds", stats.max_ms),
            ("ping_rtt_stddev_seconds", stats.stddev_ms),
            ("ping_jitter_seconds", stats.jitter_ms),
        ] {
            if let Some(ms) = value {
                outcome = outcome.sample(name, Labels::new(), ms / 1000.0);
            }
        }
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics_from_round_trips() {
        let stats = PingStats::from_rtts("192.0.2.1".parse().unwrap(), vec![Some(10.0), None, Some(14.0), Some(12.0)]);
        assert_eq!((stats.sent, stats.received, stats.loss_ratio), (4, 3, 0.25));
        assert_eq!((stats.min_ms, stats.avg_ms, stats.max_ms), (Some(10.0), Some(12.0), Some(14.0)));
        assert!((stats.stddev_ms.unwrap() - (8.0f64 / 3.0).sqrt()).abs() < 1e-9);
        assert_eq!(stats.jitter_ms, Some(3.0), "(|14-10| + |12-14|) / 2");
        let lost = PingStats::from_rtts("192.0.2.1".parse().unwrap(), vec![None, None]);
        assert_eq!((lost.loss_ratio, lost.avg_ms, lost.jitter_ms), (1.0, None, None));
    }

    #[tokio::test]
    async fn loopback_answers_on_ipv4_and_ipv6() {
        for host in ["127.0.0.1", "::1"] {
            let check = PingCheck { count: 3, interval: Duration::from_millis(20), ..PingCheck::new("lo", host) };
            let result = crate::run_check(&check, Duration::from_secs(10)).await;
            assert_eq!(result.status, CheckStatus::Ok, "{host}: {}", result.details);
            assert_eq!(result.details["received"], 3);
            assert!(result.samples.iter().any(|s| s.series.name == "ping_rtt_avg_seconds"));
        }
    }
}
