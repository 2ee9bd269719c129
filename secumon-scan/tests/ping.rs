//! Ping round trips on loopback beside iputils' `ping` run at the same time: the same
//! shape (every echo answered, every round trip above zero, the smallest of the same
//! order as ping's), never the zeros a clock started after the send used to give.
//! The unprivileged path (ICMP datagram sockets) is run from a thread without CAP_NET_RAW
//! in a network namespace of ours that allows it. Fails when ping is missing
//! (`scripts/test` installs iputils-ping) or namespaces cannot be made (needs root).

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

/// Drops CAP_NET_RAW from the calling thread (Linux capabilities are per thread).
fn drop_net_raw() {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    const CAP_NET_RAW: u32 = 13;
    let mut header = Header { version: VERSION_3, pid: 0 };
    let mut data = [Data::default(); 2];
    // SAFETY: capget/capset with a v3 header and the two data words v3 expects.
    unsafe {
        assert_eq!(libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()), 0, "capget");
        data[0].effective &= !(1 << CAP_NET_RAW);
        data[0].permitted &= !(1 << CAP_NET_RAW);
        assert_eq!(libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()), 0, "capset");
    }
}

#[test]
fn unprivileged_datagram_sockets_time_round_trips_too() {
    let namespace = format!("sm-ping-{}", std::process::id());
    let ip = |args: &[&str]| Command::new("ip").args(args).status().is_ok_and(|s| s.success());
    assert!(ip(&["netns", "add", &namespace]), "ip netns add (needs root and iproute2)");
    struct Delete(String);
    impl Drop for Delete {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        }
    }
    let _delete = Delete(namespace.clone());
    assert!(ip(&["-n", &namespace, "link", "set", "lo", "up"]));
    // Per namespace: every group may open ICMP datagram sockets here.
    assert!(ip(&["netns", "exec", &namespace, "sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647"]));
    let path = format!("/run/netns/{namespace}");
    let stats = std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap();
        // SAFETY: setns on this thread only; the file descriptor is valid for the call.
        let entered = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) };
        assert_eq!(entered, 0, "setns: {}", std::io::Error::last_os_error());
        drop_net_raw();
        // SAFETY: a plain socket(2) call; the descriptor is closed right away when made.
        let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP) };
        if raw >= 0 {
            // SAFETY: our own descriptor.
            unsafe { libc::close(raw) };
        }
        assert!(raw < 0, "a raw socket must be refused without CAP_NET_RAW, or this tests nothing");
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        ["127.0.0.1", "::1"].map(|address| {
            let ip: IpAddr = address.parse().unwrap();
            runtime.block_on(ping(ip, 10, Duration::from_millis(5), Duration::from_secs(1))).unwrap()
        })
    })
    .join()
    .unwrap();
    for ours in stats {
        assert_eq!(ours.received, 10, "{ours:?}");
        assert!(ours.rtts_ms.iter().flatten().all(|t| *t > 0.0), "{ours:?}");
    }
}
