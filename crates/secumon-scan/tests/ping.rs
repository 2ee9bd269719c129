//! Ping round trips on loopback beside iputils' `ping` run at the same time: the same
//! shape (every echo answered, every round trip above zero, the smallest of the same
//! order as ping's), never the zeros a clock started after the send used to give.
//! Fails when ping is missing (`scripts/test` installs iputils-ping).

use std::net::IpAddr;
use std::process::Command;
use std::time::Duration;

use secumon_scan::ping;

/// Round trips in milliseconds from `ping -c COUNT`'s `time=` fields.
fn reference(address: &str, count: u32) -> Vec<f64> {
    let output = Command::new("ping")
        .args(["-n", "-c", &count.to_string(), "-i", "0.01", "-W", "1", address])
        .output()
        .expect("ping (iputils-ping) must be installed; scripts/test installs it");
    assert!(output.status.success(), "ping {address}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout)
        .split("time=")
        .skip(1)
        .map(|rest| rest.split_whitespace().next().unwrap().parse().unwrap())
        .collect()
}

#[tokio::test]
async fn loopback_round_trips_look_like_pings() {
    const COUNT: u32 = 20;
    for address in ["127.0.0.1", "::1"] {
        let theirs = reference(address, COUNT);
        let ip: IpAddr = address.parse().unwrap();
        let ours = ping(ip, COUNT, Duration::from_millis(10), Duration::from_secs(1)).await.unwrap();
        assert_eq!(theirs.len(), COUNT as usize, "ping {address}: {theirs:?}");
        assert_eq!(ours.received, COUNT, "{address}: {ours:?}");
        let rtts: Vec<f64> = ours.rtts_ms.iter().flatten().copied().collect();
        // ping's shape: no round trip of zero, however fast the link.
        assert!(theirs.iter().all(|t| *t > 0.0), "ping {address}: {theirs:?}");
        assert!(rtts.iter().all(|t| *t > 0.0), "ours {address}: {rtts:?}");
        let (our_min, their_min) = (ours.min_ms.unwrap(), theirs.iter().copied().fold(f64::INFINITY, f64::min));
        let their_max = theirs.iter().copied().fold(0.0, f64::max);
        assert!(our_min > 0.0 && our_min <= ours.avg_ms.unwrap() && ours.avg_ms.unwrap() <= ours.max_ms.unwrap());
        // Of the same order: our fastest echo is no slower than ping's slowest by an order
        // of magnitude (both from the kernel's receive timestamp).
        assert!(our_min <= their_max * 10.0, "{address}: ours {rtts:?}, ping {theirs:?} (min {their_min})");
        eprintln!(
            "{address}: ours min {our_min:.4} avg {:.4}; ping min {their_min:.4} max {their_max:.4}",
            ours.avg_ms.unwrap()
        );
    }
}
