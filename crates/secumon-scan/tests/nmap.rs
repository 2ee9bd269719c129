//! Port scans against nmap on loopback, with listeners this test opens: the same state for
//! every port. Skipped, saying so, when nmap is not installed (`scripts/test` installs it).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::process::Command;
use std::time::Duration;

use secumon_scan::{PortList, PortState, scan_tcp, scan_udp};

fn nmap_available() -> bool {
    let found = Command::new("nmap").arg("--version").output().is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("SKIPPED: nmap is not installed (apt-get install nmap)");
    }
    found
}

/// Ports and states from nmap's XML report.
fn nmap(args: &[&str], ports: &[u16]) -> BTreeMap<u16, String> {
    let list: Vec<String> = ports.iter().map(u16::to_string).collect();
    let output = Command::new("nmap")
        .args(args)
        .args(["-Pn", "-n", "-T4", "-oX", "-", "-p", &list.join(","), "127.0.0.1"])
        .output()
        .unwrap();
    assert!(output.status.success(), "nmap failed: {}", String::from_utf8_lossy(&output.stderr));
    let xml = String::from_utf8(output.stdout).unwrap();
    let port = regex::Regex::new(r#"<port protocol="\w+" portid="(\d+)"><state state="([a-z|]+)""#).unwrap();
    port.captures_iter(&xml).map(|c| (c[1].parse().unwrap(), c[2].to_string())).collect()
}

fn ours(states: &BTreeMap<u16, PortState>) -> BTreeMap<u16, String> {
    states.iter().map(|(p, s)| (*p, s.as_str().to_string())).collect()
}

/// A loopback port nothing listens on.
fn free_port(udp: bool) -> u16 {
    if udp {
        std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    } else {
        std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    }
}

const LOOPBACK: &str = "127.0.0.1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_states_match_nmap() {
    if !nmap_available() {
        return;
    }
    let mut listeners = Vec::new();
    for _ in 0..3 {
        listeners.push(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    let mut ports: Vec<u16> = listeners.iter().map(|l| l.local_addr().unwrap().port()).collect();
    ports.extend((0..3).map(|_| free_port(false)));
    ports.sort_unstable();
    let list = PortList::parse(&ports.iter().map(u16::to_string).collect::<Vec<_>>().join(",")).unwrap();
    let address: IpAddr = LOOPBACK.parse().unwrap();

    let report = scan_tcp(address, &list, 100, Duration::from_secs(1)).await;
    let reference = tokio::task::spawn_blocking(move || nmap(&["-sT"], &ports)).await.unwrap();
    assert_eq!(ours(&report.states), reference);
    assert_eq!(report.with_state(PortState::Open).len(), 3);
    assert_eq!(report.with_state(PortState::Closed).len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_states_match_nmap() {
    if !nmap_available() {
        return;
    }
    // One service that answers, one that never does, two ports with nothing behind them.
    let answering = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut ports = vec![answering.local_addr().unwrap().port(), silent.local_addr().unwrap().port()];
    tokio::spawn(async move {
        let mut buffer = [0u8; 1500];
        while let Ok((_, from)) = answering.recv_from(&mut buffer).await {
            let _ = answering.send_to(b"pong", from).await;
        }
    });
    ports.extend((0..2).map(|_| free_port(true)));
    ports.sort_unstable();
    let list = PortList::parse(&ports.iter().map(u16::to_string).collect::<Vec<_>>().join(",")).unwrap();
    let address: IpAddr = LOOPBACK.parse().unwrap();

    let report = scan_udp(address, &list, 10, Duration::from_millis(500)).await;
    let reference = tokio::task::spawn_blocking(move || nmap(&["-sU", "--max-retries", "1"], &ports)).await.unwrap();
    assert_eq!(ours(&report.states), reference);
    assert_eq!(report.with_state(PortState::Open).len(), 1);
    assert_eq!(report.with_state(PortState::OpenFiltered).len(), 1);
    assert_eq!(report.with_state(PortState::Closed).len(), 2);
    drop(silent);
}
