//! Traceroute/MTR in a topology this test builds and tears down itself: three network
//! namespaces (client, router, server) joined by veth pairs, addresses from the
//! documentation ranges 192.0.2.0/24 and 198.51.100.0/24, forwarding on in the router.
//! Our hops in ICMP, UDP and TCP modes are compared with `mtr --report` run in the same
//! client namespace. A router that rejects traffic (`unreachable`, `prohibit` and `throw`
//! routes) ends the path where mtr ends it, with the code `ping` names. Skipped, saying so,
//! without root, `ip netns` or mtr, except the rejection test, which fails without them.

use std::net::IpAddr;
use std::process::Command;
use std::time::Duration;

use secumon_core::CheckStatus;
use secumon_scan::{TraceCheck, TraceMode, TraceOptions, TraceReport, run_check, trace};

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
        secumon_core::testing::peer_missing("cannot create network namespaces (needs root and iproute2)");
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
        secumon_core::testing::peer_missing("mtr is not installed (apt-get install mtr-tiny)");
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

/// Runs a whole trace check from inside the namespace `name`.
fn check_in(name: &str, check: TraceCheck) -> secumon_core::CheckResult {
    let path = format!("/run/netns/{name}");
    std::thread::spawn(move || {
        let namespace = std::fs::File::open(&path).unwrap();
        // SAFETY: setns on this thread only; the file descriptor is valid for the call.
        let entered = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&namespace), libc::CLONE_NEWNET) };
        assert_eq!(entered, 0, "setns: {}", std::io::Error::last_os_error());
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(run_check(&check, Duration::from_secs(20)))
    })
    .join()
    .unwrap()
}

/// Who answered `ping -c 1` and with which ICMP unreachable code, from ping's own words.
fn ping_unreachable(namespace: &str, destination: &str) -> (String, u8) {
    let output = Command::new("ip")
        .args(["netns", "exec", namespace, "ping", "-n", "-c", "1", "-W", "1", destination])
        .output()
        .expect("ping (iputils-ping) must be installed");
    let text = String::from_utf8_lossy(&output.stdout);
    // iputils' texts for the codes its pr_icmph() prints.
    let codes = [("Destination Net Unreachable", 0), ("Destination Host Unreachable", 1), ("Packet filtered", 13)];
    let line = text.lines().find(|l| l.starts_with("From ")).unwrap_or_else(|| panic!("ping saw no error: {text}"));
    let from = line.split_whitespace().nth(1).unwrap().to_string();
    let code = codes.iter().find(|(words, _)| line.contains(words)).unwrap_or_else(|| panic!("{line}")).1;
    (from, code)
}

#[test]
fn a_router_that_rejects_ends_the_path_like_mtr() {
    assert!(mtr_available(), "mtr is needed (scripts/test installs mtr-tiny)");
    let topology = build("x").expect("network namespaces are needed (root and iproute2)");
    let (c, r) = (&topology.client, &topology.router);
    // Three ways the router rejects traffic it has a route for, each on its own destination.
    for route in ["unreachable 203.0.113.0/25", "prohibit 198.51.100.1/32", "throw 203.0.113.128/25"] {
        assert!(ip(&format!("-n {r} route add {route}")), "route {route}");
    }
    // The kernel limits these errors per source address (net.ipv4.route.error_cost/burst,
    // not per namespace): each tool's run gets a fresh client address, so every one of them
    // sees the first hops answered. Loss is left out of the comparison for the same reason.
    let mut next_source = 10u8;
    let mut fresh_source = || {
        next_source += 1;
        let (address, device) = (format!("192.0.2.{next_source}"), format!("cx{}", std::process::id() % 100_000));
        assert!(ip(&format!("-n {c} addr add {address}/24 dev {device}")));
        assert!(ip(&format!("-n {c} route replace default via 192.0.2.254 src {address}")));
    };
    let addresses = |hops: Vec<(String, f64)>| hops.into_iter().map(|(a, _)| a).collect::<Vec<_>>();
    for (destination, mtr_args, mode) in [
        ("203.0.113.9", vec![], TraceMode::Icmp),
        ("198.51.100.1", vec!["-u"], TraceMode::Udp),
        ("198.51.100.1", vec!["-T", "-P", "80"], TraceMode::Tcp),
        ("203.0.113.200", vec![], TraceMode::Icmp),
    ] {
        let options = TraceOptions {
            mode,
            rounds: 2,
            max_hops: 4,
            interval: Duration::from_millis(50),
            timeout: Duration::from_millis(800),
            port: if mode == TraceMode::Tcp { 80 } else { 33434 },
            ..TraceOptions::default()
        };
        fresh_source();
        let report = trace_in(c, destination.parse().unwrap(), options.clone());
        fresh_source();
        let reference = mtr(c, &mtr_args, destination);
        assert_eq!(addresses(ours(&report)), addresses(reference), "{destination} {mode:?}: {report:?}");
        assert!(!report.reached, "{destination} {mode:?}: a router's unreachable is not the destination");
        fresh_source();
        let (from, code) = ping_unreachable(c, destination);
        let unreachable = report.unreachable.as_ref().unwrap_or_else(|| panic!("{report:?}"));
        assert_eq!((unreachable.from.to_string(), unreachable.code), (from, code), "{destination} {mode:?}");
        assert_eq!(usize::from(unreachable.ttl), report.hops.len());

        // Even when max_hops stops at that router, the check is not ok and says why.
        let check = TraceCheck {
            id: "t".into(),
            host: destination.into(),
            options: TraceOptions { max_hops: 1, ..options },
            warn_loss: 0.5,
        };
        fresh_source();
        let result = check_in(c, check);
        assert_eq!(result.status, CheckStatus::Critical, "{}", result.details);
        assert_eq!(result.details["reached"], false);
        let problem = result.details["problems"][0].as_str().unwrap().to_string();
        assert!(problem.contains(unreachable.reason) && problem.contains("192.0.2.254"), "{problem}");
    }
}
