//! SNMP against Debian's snmpd on a loopback port, with a v2c community and a v3 user
//! (SHA authentication, AES privacy): gets and walks compared with snmpget/snmpwalk, v1
//! GETNEXT walks, v3, the interface check's counters and rates, and a wrong community
//! failing within its timeout. Octet strings and OIDs are compared exactly with snmpwalk
//! on an snmpd in a network namespace of ours whose interfaces have MAC addresses we chose.
//! Skipped, saying so, without snmpd or the snmp tools, except the exact-values test, which
//! fails without them.

use std::net::SocketAddr;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use secumon_core::CheckStatus;
use secumon_scan::snmp::oid_for;
use secumon_scan::{CheckSpec, Credentials, SnmpCheck, SnmpClient, SnmpValue, run_check};

/// The daemon, its address, and its directory (removed on drop).
struct Snmpd(Child, SocketAddr, #[allow(dead_code)] tempfile::TempDir);

impl Drop for Snmpd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start() -> Option<Snmpd> {
    let tools =
        std::path::Path::new("/usr/sbin/snmpd").exists() && Command::new("snmpget").arg("--version").output().is_ok();
    if !tools {
        secumon_core::testing::peer_missing("snmpd or snmpget missing (apt-get install snmpd snmp)");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = dir.path().join("snmpd.conf");
    std::fs::write(
        &config,
        "rocommunity public 127.0.0.1\nrouser secuser priv\n\
         createUser secuser SHA \"authpass123\" AES \"privpass123\"\n\
         sysLocation SecuMon lab\nsysContact ops@example.com\n",
    )
    .unwrap();
    let child = Command::new("/usr/sbin/snmpd")
        .env("SNMP_PERSISTENT_DIR", dir.path())
        .env("MIBS", "")
        .args(["-f", "-Lf", "/dev/null", "-C", "-c"])
        .arg(&config)
        .arg("-p")
        .arg(dir.path().join("pid"))
        .arg(format!("udp:127.0.0.1:{port}"))
        .spawn()
        .unwrap();
    let mut server = Snmpd(child, SocketAddr::from(([127, 0, 0, 1], port)), dir);
    for _ in 0..100 {
        // A port another test took meanwhile makes ours exit: start again on another.
        if server.0.try_wait().ok().flatten().is_some() {
            return start();
        }
        if !net_snmp(&server, "snmpget", &["-v2c", "-c", "public"], "1.3.6.1.2.1.1.5.0").is_empty() {
            return Some(server);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("snmpd did not answer on port {port}");
}

/// `(oid, type, value)` lines from snmpget/snmpwalk with numeric OIDs.
fn net_snmp(server: &Snmpd, tool: &str, auth: &[&str], oid: &str) -> Vec<(String, String, String)> {
    let output = Command::new(tool)
        .env("MIBS", "")
        .args(auth)
        .args(["-On", "-t", "1", "-r", "0"])
        .arg(server.1.to_string())
        .arg(oid)
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let (oid, rest) = line.split_once(" = ")?;
            let (kind, value) = rest.split_once(": ").unwrap_or((rest, ""));
            Some((oid.trim_start_matches('.').to_string(), kind.to_string(), value.trim_matches('"').to_string()))
        })
        .collect()
}

/// Our value in net-snmp's terms: its type name and printed value.
fn as_net_snmp(value: &SnmpValue) -> (String, String) {
    match value {
        SnmpValue::Integer(n) => ("INTEGER".into(), n.to_string()),
        SnmpValue::String(s) => ("STRING".into(), s.clone()),
        // net-snmp's `Hex-STRING: 5A 6F C3 AB` (its trailing space trimmed).
        SnmpValue::HexString(h) => ("Hex-STRING".into(), h.to_uppercase().replace(':', " ")),
        SnmpValue::Oid(o) => ("OID".into(), format!(".{o}")),
        SnmpValue::Counter32(n) => ("Counter32".into(), n.to_string()),
        SnmpValue::Gauge32(n) => ("Gauge32".into(), n.to_string()),
        SnmpValue::Counter64(n) => ("Counter64".into(), n.to_string()),
        SnmpValue::TimeTicks(n) => ("Timeticks".into(), n.to_string()),
        SnmpValue::IpAddress(a) => ("IpAddress".into(), a.clone()),
        other => (format!("{other:?}"), String::new()),
    }
}

/// Compares a walk: same OIDs in order, same types, same values except ones that move.
fn assert_same(ours: &[(String, SnmpValue)], theirs: &[(String, String, String)], moving: &[&str]) {
    let our_oids: Vec<&str> = ours.iter().map(|(o, _)| o.as_str()).collect();
    let their_oids: Vec<&str> = theirs.iter().map(|(o, _, _)| o.as_str()).collect();
    assert_eq!(our_oids, their_oids);
    for ((oid, value), (_, kind, text)) in ours.iter().zip(theirs) {
        let (our_kind, our_text) = as_net_snmp(value);
        assert_eq!(our_kind, *kind, "{oid}");
        if !moving.iter().any(|m| oid.starts_with(m)) && our_kind != "Timeticks" {
            assert_eq!(our_text, *text, "{oid}");
        }
    }
}

const V2C: &[&str] = &["-v2c", "-c", "public"];

#[tokio::test]
async fn gets_and_walks_match_net_snmp() {
    let Some(server) = start() else { return };
    let community = Credentials::V2c { community: "public".into() };
    let mut client = SnmpClient::connect(server.1, &community, Duration::from_secs(2)).await.unwrap();

    let names = ["sysDescr.0", "sysName.0", "sysLocation.0", "sysContact.0"];
    let oids: Vec<String> = names.iter().map(|n| oid_for(n).unwrap()).collect();
    let got = client.get(&oids).await.unwrap();
    for ((oid, value), name) in got.iter().zip(names) {
        let theirs = net_snmp(&server, "snmpget", V2C, oid);
        assert_same(&[(oid.clone(), value.clone())], &theirs, &[]);
        assert!(matches!(value, SnmpValue::String(_)), "{name}");
    }
    assert_eq!(got[2].1, SnmpValue::String("SecuMon lab".into()));

    // The whole system group by GETBULK, the interfaces' status by GETNEXT (v1).
    let system = client.walk("1.3.6.1.2.1.1", true).await.unwrap();
    assert!(system.len() > 8, "{system:?}");
    assert_same(&system, &net_snmp(&server, "snmpwalk", V2C, "1.3.6.1.2.1.1"), &[]);
    // The same walk as a check built from its spec (what `secumon scan snmp --walk` runs).
    let spec: CheckSpec = serde_json::from_value(serde_json::json!({
        "type": "snmp", "host": server.1.ip().to_string(), "port": server.1.port(), "oids": ["1.3.6.1.2.1.1"], "walk": true,
    }))
    .unwrap();
    let walked = run_check(spec.build("walk").unwrap().as_ref(), Duration::from_secs(10)).await;
    let variables = walked.details["variables"].as_array().cloned().unwrap_or_default();
    let walked_oids: Vec<&str> = variables.iter().filter_map(|v| v["oid"].as_str()).collect();
    let system_oids: Vec<&str> = system.iter().map(|(oid, _)| oid.as_str()).collect();
    assert_eq!(walked_oids, system_oids, "{:?}", walked.details);
    let v1 = Credentials::V1 { community: "public".into() };
    let mut client_v1 = SnmpClient::connect(server.1, &v1, Duration::from_secs(2)).await.unwrap();
    let status = client_v1.walk(&oid_for("ifOperStatus").unwrap(), true).await.unwrap();
    assert_same(&status, &net_snmp(&server, "snmpwalk", &["-v1", "-c", "public"], "1.3.6.1.2.1.2.2.1.8"), &[]);
    let names = client.walk(&oid_for("ifName").unwrap(), true).await.unwrap();
    assert!(names.iter().any(|(_, v)| *v == SnmpValue::String("lo".into())), "{names:?}");
    // Traffic counters move between the two walks: same OIDs and types.
    let octets = client.walk(&oid_for("ifHCInOctets").unwrap(), true).await.unwrap();
    assert_same(&octets, &net_snmp(&server, "snmpwalk", V2C, "1.3.6.1.2.1.31.1.1.1.6"), &["1.3.6.1.2.1.31"]);
}

#[tokio::test]
async fn v3_with_authentication_and_privacy() {
    let Some(server) = start() else { return };
    let user = Credentials::V3 {
        user: "secuser".into(),
        auth_protocol: "SHA".into(),
        auth_password: "authpass123".into(),
        privacy: Some(("AES".into(), "privpass123".into())),
    };
    let mut client = SnmpClient::connect(server.1, &user, Duration::from_secs(2)).await.unwrap();
    let oid = oid_for("sysLocation.0").unwrap();
    let ours = client.get(std::slice::from_ref(&oid)).await.unwrap();
    let auth =
        ["-v3", "-u", "secuser", "-l", "authPriv", "-a", "SHA", "-A", "authpass123", "-x", "AES", "-X", "privpass123"];
    assert_same(&ours, &net_snmp(&server, "snmpget", &auth, &oid), &[]);

    let wrong = Credentials::V3 {
        user: "secuser".into(),
        auth_protocol: "SHA".into(),
        auth_password: "not-the-password".into(),
        privacy: Some(("AES".into(), "privpass123".into())),
    };
    let started = Instant::now();
    let failed = match SnmpClient::connect(server.1, &wrong, Duration::from_millis(500)).await {
        Err(error) => Some(error),
        Ok(mut client) => client.get(std::slice::from_ref(&oid)).await.err(),
    };
    assert!(failed.is_some(), "a wrong password must not read anything");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn interface_check_reports_counters_then_rates() {
    let Some(server) = start() else { return };
    let mut check = SnmpCheck::new("switch", "127.0.0.1", Credentials::V2c { community: "public".into() });
    check.port = server.1.port();
    check.oids = vec!["sysUpTime.0".into(), "sysName.0".into()];
    check.interfaces = true;
    let first = run_check(&check, Duration::from_secs(10)).await;
    assert_eq!(first.status, CheckStatus::Ok, "{}", first.details);
    let lo = |name: &str, result: &secumon_core::CheckResult| {
        result
            .samples
            .iter()
            .any(|s| s.series.name == name && s.series.labels.get("interface").map(String::as_str) == Some("lo"))
    };
    assert!(lo("snmp_if_receive_bytes_total", &first));
    assert!(lo("snmp_if_oper_up", &first));
    assert!(!lo("snmp_if_receive_bytes_per_second", &first), "no rate from one reading");
    assert!(first.samples.iter().any(|s| s.series.name == "snmp_value" && s.series.labels["oid"] == "sysUpTime.0"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = run_check(&check, Duration::from_secs(10)).await;
    assert!(lo("snmp_if_receive_bytes_per_second", &second), "{:?}", second.samples);

    // A wrong community gets no answer: unknown, within the timeout.
    let mut wrong = SnmpCheck::new("switch", "127.0.0.1", Credentials::V2c { community: "nope".into() });
    wrong.port = server.1.port();
    wrong.timeout = Duration::from_millis(300);
    let started = Instant::now();
    let result = run_check(&wrong, Duration::from_secs(5)).await;
    assert_eq!(result.status, CheckStatus::Unknown);
    assert!(result.details["error"].as_str().unwrap().contains("timed out"), "{}", result.details);
    assert!(started.elapsed() < Duration::from_secs(2));
}

/// A network namespace with a veth pair whose MAC addresses we choose, and snmpd in it on
/// its loopback; dropping it stops snmpd and deletes the namespace.
struct SnmpdInNamespace {
    namespace: String,
    daemon: Option<Child>,
    address: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for SnmpdInNamespace {
    fn drop(&mut self) {
        if let Some(mut daemon) = self.daemon.take() {
            let _ = daemon.kill();
            let _ = daemon.wait();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.namespace]).status();
    }
}

fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status().expect("ip (iproute2) must be installed");
    assert!(status.success(), "ip {args:?}");
}

fn snmpd_in_namespace(macs: [&str; 2]) -> SnmpdInNamespace {
    assert!(std::path::Path::new("/usr/sbin/snmpd").exists(), "snmpd must be installed (scripts/test installs it)");
    let namespace = format!("sm-snmp-{}", std::process::id());
    let dir = tempfile::tempdir().unwrap();
    ip(&["netns", "add", &namespace]);
    let mut server = SnmpdInNamespace {
        namespace: namespace.clone(),
        daemon: None,
        address: SocketAddr::from(([127, 0, 0, 1], 1161)),
        _dir: dir,
    };
    let n = namespace.as_str();
    ip(&["-n", n, "link", "set", "lo", "up"]);
    ip(&["-n", n, "link", "add", "smx0", "type", "veth", "peer", "name", "smx1"]);
    for (device, mac) in ["smx0", "smx1"].into_iter().zip(macs) {
        ip(&["-n", n, "link", "set", device, "address", mac]);
        ip(&["-n", n, "link", "set", device, "up"]);
    }
    let dir = server._dir.path();
    let config = dir.join("snmpd.conf");
    // A contact in UTF-8 beyond ASCII (snmpget: Hex-STRING), a name with a tab (STRING); each
    // at most 16 bytes, which snmpwalk prints in hex on one line.
    std::fs::write(
        &config,
        "rocommunity public 127.0.0.1\nsysLocation Rack 4, row B\nsysContact Zoë Müller\nsysName core\tsw ~1\n",
    )
    .unwrap();
    let daemon = Command::new("ip")
        .args(["netns", "exec", n, "/usr/sbin/snmpd", "-f", "-Lf", "/dev/null", "-C", "-c"])
        .arg(&config)
        .arg("-p")
        .arg(dir.join("pid"))
        .arg(format!("udp:{}", server.address))
        .env("SNMP_PERSISTENT_DIR", dir)
        .env("MIBS", "")
        .spawn()
        .unwrap();
    server.daemon = Some(daemon);
    for _ in 0..100 {
        if !walk_in(&server, &["-Ox"], "1.3.6.1.2.1.1.6").is_empty() {
            return server;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("snmpd did not answer in {n}");
}

/// snmpwalk run in the namespace: `(oid, type, value)` as net-snmp prints them.
fn walk_in(server: &SnmpdInNamespace, options: &[&str], oid: &str) -> Vec<(String, String, String)> {
    let output = Command::new("ip")
        .args(["netns", "exec", &server.namespace, "snmpwalk", "-v2c", "-c", "public", "-On", "-t", "1", "-r", "0"])
        .args(options)
        .arg(server.address.to_string())
        .arg(oid)
        .env("MIBS", "")
        .output()
        .expect("snmpwalk must be installed (scripts/test installs snmp)");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let (oid, rest) = line.split_once(" = ")?;
            // An empty string prints as `""`, without a type.
            let (kind, value) = rest.split_once(": ").unwrap_or(("STRING", rest));
            Some((
                oid.trim_start_matches('.').to_string(),
                kind.to_string(),
                value.trim().trim_matches('"').to_string(),
            ))
        })
        .collect()
}

/// Our walks of `roots`, from a thread inside the namespace.
fn our_walks(server: &SnmpdInNamespace, roots: &[&str]) -> Vec<Vec<(String, SnmpValue)>> {
    let path = format!("/run/netns/{}", server.namespace);
    let (address, roots): (SocketAddr, Vec<String>) = (server.address, roots.iter().map(|r| r.to_string()).collect());
    std::thread::spawn(move || {
        let namespace = std::fs::File::open(&path).unwrap();
        // SAFETY: setns on this thread only; the file descriptor is valid for the call.
        let entered = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&namespace), libc::CLONE_NEWNET) };
        assert_eq!(entered, 0, "setns: {}", std::io::Error::last_os_error());
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let community = Credentials::V2c { community: "public".into() };
            let mut client = SnmpClient::connect(address, &community, Duration::from_secs(2)).await.unwrap();
            let mut walks = Vec::new();
            for root in roots {
                walks.push(client.walk(&oid_for(&root).unwrap(), true).await.unwrap());
            }
            walks
        })
    })
    .join()
    .unwrap()
}

/// `52:54:00:ab:cd:ef` or net-snmp's `52 54 00 AB CD EF` to bytes.
fn hex_bytes(text: &str) -> Vec<u8> {
    text.split([':', ' ']).filter(|p| !p.is_empty()).map(|p| u8::from_str_radix(p, 16).unwrap()).collect()
}

#[test]
fn octet_strings_and_oids_are_exact_like_snmpget() {
    // One MAC address with bytes that are not text, one whose bytes happen to spell "BCDEFG".
    let server = snmpd_in_namespace(["52:54:00:ab:cd:ef", "42:43:44:45:46:47"]);
    let roots =
        ["ifPhysAddress", "ifDescr", "1.3.6.1.2.1.2.2.1.22", "sysObjectID", "sysLocation", "sysContact", "sysName"];
    let walks = our_walks(&server, &roots);
    let [macs, descriptions, specific, object_id, location, contact, name] = walks.try_into().unwrap();

    // Every octet string's bytes as net-snmp reads them (-Ox: all in hex).
    let theirs = walk_in(&server, &["-Ox"], "1.3.6.1.2.1.2.2.1.6");
    assert_eq!(macs.len(), theirs.len());
    assert_eq!(theirs.len(), 3, "lo and our veth pair: {theirs:?}");
    for ((oid, value), (their_oid, _, their_hex)) in macs.iter().zip(&theirs) {
        assert_eq!(oid, their_oid);
        let SnmpValue::HexString(hex) = value else { panic!("{oid}: a MAC address is hex, got {value:?}") };
        assert_eq!(hex_bytes(hex), hex_bytes(their_hex), "{oid}");
    }
    let shown: Vec<&SnmpValue> = macs.iter().map(|(_, v)| v).collect();
    assert!(shown.contains(&&SnmpValue::HexString("52:54:00:ab:cd:ef".into())), "{shown:?}");
    assert!(shown.contains(&&SnmpValue::HexString("42:43:44:45:46:47".into())), "{shown:?}");

    // Text stays text, exactly as snmpwalk prints it.
    assert_same(&descriptions, &walk_in(&server, &[], "1.3.6.1.2.1.2.2.1.2"), &[]);
    assert_same(&location, &walk_in(&server, &[], "1.3.6.1.2.1.1.6"), &[]);
    assert_eq!(location[0].1, SnmpValue::String("Rack 4, row B".into()));
    // UTF-8 beyond ASCII is hex, as snmpget shows it; a tab is white space, so text.
    let their_contact = walk_in(&server, &[], "1.3.6.1.2.1.1.4");
    assert_eq!(their_contact[0].1, "Hex-STRING", "{their_contact:?}");
    assert_same(&contact, &their_contact, &[]);
    assert_eq!(contact[0].1, SnmpValue::HexString("5a:6f:c3:ab:20:4d:c3:bc:6c:6c:65:72".into()));
    assert_same(&name, &walk_in(&server, &[], "1.3.6.1.2.1.1.5"), &[]);
    assert_eq!(name[0].1, SnmpValue::String("core\tsw ~1".into()));
    // OIDs arc by arc: ifSpecific is zeroDotZero.
    assert_same(&specific, &walk_in(&server, &[], "1.3.6.1.2.1.2.2.1.22"), &[]);
    assert!(specific.iter().all(|(_, v)| *v == SnmpValue::Oid("0.0".into())), "{specific:?}");
    assert_same(&object_id, &walk_in(&server, &[], "1.3.6.1.2.1.1.2"), &[]);

    // The JSON keeps the type.
    let json = serde_json::to_value(&macs[2].1).unwrap();
    assert_eq!(json["type"], "hex-string", "{json}");
}
