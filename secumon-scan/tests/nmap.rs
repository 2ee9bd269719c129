//! Port scans against nmap on loopback, with listeners this test opens: the same state for
//! every port. Real DNS (dnsmasq), NTP (chronyd) and SNMP (snmpd with a community other than
//! `public`) servers on their well-known ports, in a network namespace of ours, must come out
//! as nmap sees them. Skipped, saying so, when nmap is not installed (`scripts/test` installs
//! it), except the well-known services test, which fails without its tools.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::process::Command;
use std::time::Duration;

use std::process::Child;

use secumon_scan::{PortList, PortState, scan_tcp, scan_udp};

fn nmap_available() -> bool {
    let found = Command::new("nmap").arg("--version").output().is_ok_and(|o| o.status.success());
    if !found {
        secumon_core::testing::peer_missing("nmap is not installed (apt-get install nmap)");
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

/// A network namespace and the daemons we start in it; dropping it stops them and deletes it.
struct Namespace {
    name: String,
    daemons: Vec<Child>,
    _dir: tempfile::TempDir,
}

impl Drop for Namespace {
    fn drop(&mut self) {
        for daemon in &mut self.daemons {
            let _ = daemon.kill();
            let _ = daemon.wait();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

impl Namespace {
    fn new() -> Self {
        let name = format!("sm-udp-{}", std::process::id());
        let created = Command::new("ip").args(["netns", "add", &name]).status().expect("ip (iproute2)");
        assert!(created.success(), "ip netns add {name} (needs root)");
        let namespace = Self { name, daemons: Vec::new(), _dir: tempfile::tempdir().unwrap() };
        let up = Command::new("ip").args(["-n", &namespace.name, "link", "set", "lo", "up"]).status().unwrap();
        assert!(up.success());
        namespace
    }

    fn start(&mut self, program: &str, args: &[&str]) {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.name, program])
            .args(args)
            .env("MIBS", "")
            .env("SNMP_PERSISTENT_DIR", self._dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        self.daemons.push(child);
    }

    fn file(&self, name: &str, text: &str) -> String {
        let path = self._dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_string_lossy().into_owned()
    }

    fn run(&self, program: &str, args: &[&str]) -> std::process::Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name, program])
            .args(args)
            .env("MIBS", "")
            .output()
            .unwrap_or_else(|e| panic!("{program}: {e}"))
    }
}

#[test]
fn well_known_udp_services_match_nmap() {
    assert!(nmap_available(), "nmap is needed (scripts/test installs it)");
    for daemon in ["/usr/sbin/dnsmasq", "/usr/sbin/chronyd", "/usr/sbin/snmpd"] {
        assert!(std::path::Path::new(daemon).exists(), "{daemon} is needed (scripts/test installs it)");
    }
    let mut namespace = Namespace::new();
    // An authoritative-only DNS server: nothing to forward to, one name of its own.
    namespace.start(
        "/usr/sbin/dnsmasq",
        &[
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--listen-address=127.0.0.1",
            "--user=root",
            "--pid-file",
            "--port=53",
            "--host-record=www.test.example,192.0.2.10",
        ],
    );
    // An NTP server that serves loopback clients and never touches the clock.
    let pid = namespace._dir.path().join("chronyd.pid");
    let chrony = namespace.file(
        "chrony.conf",
        &format!("allow 127.0.0.1\nlocal stratum 8\nport 123\ncmdport 0\npidfile {}\n", pid.display()),
    );
    namespace.start("/usr/sbin/chronyd", &["-d", "-x", "-u", "root", "-f", &chrony]);
    // An SNMP agent whose only community is not "public".
    let snmp = namespace.file("snmpd.conf", "rocommunity n0t-public 127.0.0.1\n");
    let snmp_pid = namespace._dir.path().join("snmpd.pid").to_string_lossy().into_owned();
    namespace
        .start("/usr/sbin/snmpd", &["-f", "-Lf", "/dev/null", "-C", "-c", &snmp, "-p", &snmp_pid, "udp:127.0.0.1:161"]);
    // Ready: each answers its own client.
    let ready = |program: &str, args: &[&str]| {
        (0..100).any(|_| {
            let ok = namespace.run(program, args).status.success();
            if !ok {
                std::thread::sleep(Duration::from_millis(100));
            }
            ok
        })
    };
    assert!(ready("dig", &["@127.0.0.1", "+tries=1", "+time=1", "www.test.example"]), "dnsmasq");
    assert!(ready("snmpget", &["-v2c", "-c", "n0t-public", "-t", "1", "-r", "0", "127.0.0.1", "1.3.6.1.2.1.1.3.0"]));
    assert!(ready("nmap", &["-sU", "-Pn", "-n", "-p", "123", "--max-retries", "1", "127.0.0.1"]));
    // The case at hand: the v2c "public" request alone gets nothing from this agent.
    let public =
        namespace.run("snmpget", &["-v2c", "-c", "public", "-t", "1", "-r", "0", "127.0.0.1", "1.3.6.1.2.1.1.1.0"]);
    assert!(!public.status.success(), "the agent must not answer the community public");

    // 5353 has nothing behind it: closed, for both.
    let ports = [53u16, 123, 161, 5353];
    let list = PortList::parse("53,123,161,5353").unwrap();
    let path = format!("/run/netns/{}", namespace.name);
    let report = std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap();
        // SAFETY: setns on this thread only; the file descriptor is valid for the call.
        let entered = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) };
        assert_eq!(entered, 0, "setns: {}", std::io::Error::last_os_error());
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(scan_udp(LOOPBACK.parse().unwrap(), &list, 4, Duration::from_millis(800)))
    })
    .join()
    .unwrap();
    let list: Vec<String> = ports.iter().map(u16::to_string).collect();
    let output =
        namespace.run("nmap", &["-sU", "-Pn", "-n", "--max-retries", "1", "-oX", "-", "-p", &list.join(","), LOOPBACK]);
    assert!(output.status.success(), "nmap: {}", String::from_utf8_lossy(&output.stderr));
    let xml = String::from_utf8(output.stdout).unwrap();
    let port = regex::Regex::new(r#"<port protocol="\w+" portid="(\d+)"><state state="([a-z|]+)""#).unwrap();
    let reference: BTreeMap<u16, String> =
        port.captures_iter(&xml).map(|c| (c[1].parse().unwrap(), c[2].to_string())).collect();
    assert_eq!(ours(&report.states), reference);
    assert_eq!(report.with_state(PortState::Open), vec![53, 123, 161], "{:?}", report.states);
}
