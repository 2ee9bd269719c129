//! Traceroute/MTR in a topology this test builds and tears down itself: three network
//! namespaces (client, router, server) joined by veth pairs, addresses from the
//! documentation ranges 192.0.2.0/24 and 198.51.100.0/24, forwarding on in the router.
//! Our hops in ICMP, UDP and TCP modes are compared with `mtr --report` run in the same
//! client namespace. Skipped, saying so, without root, `ip netns` or mtr.

use std::net::IpAddr;
use std::process::Command;
use std::time::Duration;

use secumon_scan::{TraceMode, TraceOptions, TraceReport, trace};

/// The namespaces; dropping it deletes them (and their veth pairs), even after a failure.
struct Topology {
    client: String,
    router: String,
    server: String,
}

impl Drop for Topology {
    fn drop(&mut self) {
        for name in [&self.client, &self.router, &self.server] {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

fn ip(args: &str) -> bool {
    Command::new("ip").args(args.split_whitespace()).status().is_ok_and(|s| s.success())
}

fn build(tag: &str) -> Option<Topology> {
    let id = std::process::id() % 100_000;
    let topology = Topology {
        client: format!("sm-{tag}-c{id}"),
        router: format!("sm-{tag}-r{id}"),
        server: format!("sm-{tag}-s{id}"),
    };
    if !ip(&format!("netns add {}", topology.client)) {
        eprintln!("SKIPPED: cannot create network namespaces (needs root and iproute2)");
        return None;
    }
    let (c, r, s) = (&topology.client, &topology.router, &topology.server);
    let (ca, ra, rb, sb) =
        (format!("c{tag}{id}"), format!("ra{tag}{id}"), format!("rb{tag}{id}"), format!("s{tag}{id}"));
    let steps = [
        format!("netns add {r}"),
        format!("netns add {s}"),
        format!("link add {ca} type veth peer name {ra}"),
        format!("link set {ca} netns {c}"),
        format!("link set {ra} netns {r}"),
        format!("link add {sb} type veth peer name {rb}"),
        format!("link set {sb} netns {s}"),
        format!("link set {rb} netns {r}"),
        format!("-n {c} addr add 192.0.2.1/24 dev {ca}"),
        format!("-n {r} addr add 192.0.2.254/24 dev {ra}"),
        format!("-n {r} addr add 198.51.100.254/24 dev {rb}"),
        format!("-n {s} addr add 198.51.100.1/24 dev {sb}"),
        format!("-n {c} link set {ca} up"),
        format!("-n {r} link set {ra} up"),
        format!("-n {r} link set {rb} up"),
        format!("-n {s} link set {sb} up"),
        format!("-n {c} link set lo up"),
        format!("-n {r} link set lo up"),
        format!("-n {s} link set lo up"),
        format!("-n {c} route add default via 192.0.2.254"),
        format!("-n {s} route add default via 198.51.100.254"),
    ];
    for step in &steps {
        assert!(ip(step), "ip {step} failed");
    }
    for (namespace, setting) in [
        (r, "net.ipv4.ip_forward=1"),
        // No ICMP rate limit: every probe of every round gets its answer, for us and mtr alike.
        (r, "net.ipv4.icmp_ratelimit=0"),
        (s, "net.ipv4.icmp_ratelimit=0"),
    ] {
        let done = Command::new("ip").args(["netns", "exec", namespace, "sysctl", "-qw", setting]).status().unwrap();
        assert!(done.success(), "sysctl {setting} in {namespace}");
    }
    Some(topology)
}

/// Runs a trace from inside the namespace `name`, on a thread that entered it.
fn trace_in(name: &str, destination: IpAddr, options: TraceOptions) -> TraceReport {
    let path = format!("/run/netns/{name}");
    std::thread::spawn(move || {
        let namespace = std::fs::File::open(&path).unwrap();
        // SAFETY: setns on this thread only; the file descriptor is valid for the call.
        let entered = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&namespace), libc::CLONE_NEWNET) };
        assert_eq!(entered, 0, "setns: {}", std::io::Error::last_os_error());
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(trace(destination, &options)).unwrap()
    })
    .join()
    .unwrap()
}

/// Hop addresses and loss from `mtr --report`, run in the namespace.
fn mtr(namespace: &str, mode_args: &[&str], destination: &str) -> Vec<(String, f64)> {
    let output = Command::new("ip")
        .args(["netns", "exec", namespace, "mtr", "--report", "--report-cycles", "5", "--interval", "0.2", "--no-dns"])
        .args(mode_args)
        .arg(destination)
        .output()
        .unwrap();
    assert!(output.status.success(), "mtr: {}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8(output.stdout).unwrap();
    text.lines()
        .filter(|line| line.contains("|--"))
        .map(|line| {
            let fields: Vec<&str> = line.split("|--").nth(1).unwrap().split_whitespace().collect();
            (fields[0].to_string(), fields[1].trim_end_matches('%').parse().unwrap())
        })
        .collect()
}

fn ours(report: &TraceReport) -> Vec<(String, f64)> {
    report
        .hops
        .iter()
        .map(|hop| {
            let address = hop.addresses.first().map(|a| a.to_string()).unwrap_or_else(|| "???".into());
            (address, hop.loss_ratio * 100.0)
        })
        .collect()
}

fn mtr_available() -> bool {
    let found = Command::new("mtr").arg("--version").output().is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("SKIPPED: mtr is not installed (apt-get install mtr-tiny)");
    }
    found
}

#[test]
fn hops_match_mtr_in_icmp_udp_and_tcp_modes() {
    if !mtr_available() {
        return;
    }
    let Some(topology) = build("t") else { return };
    let destination: IpAddr = "198.51.100.1".parse().unwrap();
    let expected = vec![("192.0.2.254".to_string(), 0.0), ("198.51.100.1".to_string(), 0.0)];
    for (mode, mtr_args) in
        [(TraceMode::Icmp, vec![]), (TraceMode::Udp, vec!["-u"]), (TraceMode::Tcp, vec!["-T", "-P", "80"])]
    {
        let options = TraceOptions {
            mode,
            rounds: 5,
            max_hops: 8,
            interval: Duration::from_millis(50),
            port: if mode == TraceMode::Tcp { 80 } else { 33434 },
            ..TraceOptions::default()
        };
        let report = trace_in(&topology.client, destination, options);
        assert!(report.reached, "{mode:?}: {report:?}");
        let reference = mtr(&topology.client, &mtr_args, "198.51.100.1");
        assert_eq!(reference, expected, "mtr {mode:?} in our topology");
        assert_eq!(ours(&report), reference, "{mode:?}");
        for hop in &report.hops {
            assert_eq!((hop.sent, hop.received), (5, 5));
            let (best, avg, worst) = (hop.best_ms.unwrap(), hop.avg_ms.unwrap(), hop.worst_ms.unwrap());
            assert!(best <= avg && avg <= worst && worst < 1_000.0, "{hop:?}");
        }
    }
}

#[test]
fn an_unreachable_destination_is_never_reached() {
    let Some(topology) = build("u") else { return };
    // Nothing answers for 198.51.100.77: the router's ARP fails and the probes are lost.
    let options = TraceOptions {
        rounds: 2,
        max_hops: 3,
        timeout: Duration::from_millis(700),
        interval: Duration::from_millis(10),
        ..TraceOptions::default()
    };
    let report = trace_in(&topology.client, "198.51.100.77".parse().unwrap(), options);
    assert!(!report.reached);
    assert_eq!(report.hops.len(), 3, "every TTL up to max_hops is reported");
    assert_eq!(report.hops[0].addresses, vec!["192.0.2.254".parse::<IpAddr>().unwrap()]);
    assert_eq!(report.hops[2].loss_ratio, 1.0);
}
