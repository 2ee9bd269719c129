//! systemd units through D-Bus (`org.freedesktop.systemd1.Manager.ListUnits`): every failed
//! unit plus the units named in the configuration. Without a system bus or systemd
//! (containers), the collector reports itself unavailable and asks again only every few
//! minutes.

use std::time::{Duration, Instant};

use secumon_core::{Labels, Sample};
use zbus::blocking::Connection;
use zbus::zvariant::OwnedObjectPath;

use crate::{CollectError, Collector};

/// Where the system bus listens unless `DBUS_SYSTEM_BUS_ADDRESS` says otherwise (D-Bus
/// specification).
const SYSTEM_BUS_SOCKET: &str = "/var/run/dbus/system_bus_socket";
/// How long to wait before asking an unavailable bus again.
const RETRY_UNAVAILABLE: Duration = Duration::from_secs(300);
/// The states a unit's `systemd_unit_state` series cover, one series each, 1 for the current.
const STATES: [&str; 5] = ["active", "activating", "deactivating", "inactive", "failed"];

/// One entry of ListUnits: name, description, load, active, sub state, followed, path,
/// job id, job type, job path.
type UnitEntry = (String, String, String, String, String, String, OwnedObjectPath, u32, String, OwnedObjectPath);

/// `systemd_unit_state{unit,state}` (1 for the unit's state, 0 for the others),
/// `systemd_unit_loaded{unit}`, `systemd_failed_units`.
pub struct ServiceCollector {
    watched: Vec<String>,
    /// D-Bus address; the system bus when `None`.
    address: Option<String>,
    /// The system bus's socket, looked for before zbus is asked to connect to it.
    system_socket: std::path::PathBuf,
    connection: Option<Connection>,
    unavailable_since: Option<Instant>,
    last_reason: String,
    connection_attempts: u64,
}

impl ServiceCollector {
    /// Reports every failed unit and the units in `watched` (`nginx.service`).
    pub fn new(watched: &[String]) -> Self {
        Self {
            watched: watched.to_vec(),
            address: None,
            system_socket: SYSTEM_BUS_SOCKET.into(),
            connection: None,
            unavailable_since: None,
            last_reason: String::new(),
            connection_attempts: 0,
        }
    }

    /// Talks to the bus at `address` instead of the system bus.
    pub fn with_address(mut self, address: impl Into<String>) -> Self {
        self.address = Some(address.into());
        self
    }

    fn unavailable(&mut self, reason: String) -> CollectError {
        self.connection = None;
        self.unavailable_since = Some(Instant::now());
        self.last_reason = reason.clone();
        CollectError::Unavailable { collector: "services", reason }
    }

    fn list_units(&mut self) -> Result<Vec<UnitEntry>, CollectError> {
        if self.unavailable_since.is_some_and(|since| since.elapsed() < RETRY_UNAVAILABLE) {
            return Err(CollectError::Unavailable { collector: "services", reason: self.last_reason.clone() });
        }
        // Without a system bus (containers, machines without systemd), zbus is not asked at
        // all: a connection attempt leaves its I/O threads behind, one of which wakes twice a
        // second for the rest of the agent's life.
        if self.connection.is_none()
            && self.address.is_none()
            && std::env::var_os("DBUS_SYSTEM_BUS_ADDRESS").is_none()
            && !self.system_socket.exists()
        {
            let reason = format!("no D-Bus system bus: {} does not exist", self.system_socket.display());
            return Err(self.unavailable(reason));
        }
        if self.connection.is_none() {
            self.connection_attempts += 1;
            let connected = match &self.address {
                Some(address) => zbus::blocking::connection::Builder::address(address.as_str()).and_then(|b| b.build()),
                None => Connection::system(),
            };
            match connected {
                Ok(connection) => self.connection = Some(connection),
                Err(error) => return Err(self.unavailable(format!("no D-Bus system bus: {error}"))),
            }
        }
        let Some(connection) = &self.connection else { unreachable!("connected above") };
        let reply = connection.call_method(
            Some("org.freedesktop.systemd1"),
            "/org/freedesktop/systemd1",
            Some("org.freedesktop.systemd1.Manager"),
            "ListUnits",
            &(),
        );
        match reply.and_then(|message| message.body().deserialize::<Vec<UnitEntry>>()) {
            Ok(units) => {
                self.unavailable_since = None;
                Ok(units)
            }
            Err(error) => Err(self.unavailable(format!("systemd does not answer on D-Bus: {error}"))),
        }
    }
}

impl Collector for ServiceCollector {
    fn name(&self) -> &'static str {
        "services"
    }

    fn collect(&mut self, timestamp_ms: i64, out: &mut Vec<Sample>) -> Result<(), CollectError> {
        let units = self.list_units()?;
        let mut failed = 0;
        for (name, _, load_state, active_state, ..) in &units {
            let is_failed = active_state == "failed";
            failed += u32::from(is_failed);
            if !is_failed && !self.watched.contains(name) {
                continue;
            }
            let unit = Labels::from([("unit".to_string(), name.clone())]);
            out.push(Sample::new("systemd_unit_loaded", unit.clone(), timestamp_ms, f64::from(load_state == "loaded")));
            for state in STATES {
                let mut labels = unit.clone();
                labels.insert("state".to_string(), state.to_string());
                out.push(Sample::new("systemd_unit_state", labels, timestamp_ms, f64::from(active_state == state)));
            }
        }
        // A watched unit systemd does not know is worth a series too: it is not running.
        for name in self.watched.iter().filter(|w| !units.iter().any(|u| &u.0 == *w)) {
            let unit = Labels::from([("unit".to_string(), name.clone())]);
            out.push(Sample::new("systemd_unit_loaded", unit, timestamp_ms, 0.0));
        }
        out.push(Sample::new("systemd_failed_units", Labels::new(), timestamp_ms, f64::from(failed)));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::process::{Child, Command, Stdio};

    use super::*;

    /// A stand-in for systemd's manager object on a private bus.
    struct FakeManager;

    fn entry(name: &str, load: &str, active: &str) -> UnitEntry {
        let root = OwnedObjectPath::try_from("/").unwrap();
        (
            name.into(),
            String::new(),
            load.into(),
            active.into(),
            "x".into(),
            String::new(),
            root.clone(),
            0,
            String::new(),
            root,
        )
    }

    #[zbus::interface(name = "org.freedesktop.systemd1.Manager")]
    impl FakeManager {
        fn list_units(&self) -> Vec<UnitEntry> {
            vec![
                entry("nginx.service", "loaded", "active"),
                entry("backup.service", "loaded", "failed"),
                entry("cron.service", "loaded", "active"),
            ]
        }
    }

    struct Bus(Child, String);

    impl Drop for Bus {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// A private dbus-daemon in a temporary directory, or `None` if it is not installed.
    fn private_bus(dir: &std::path::Path) -> Option<Bus> {
        let address = format!("unix:path={}", dir.join("bus").display());
        let child = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--nopidfile", &format!("--address={address}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        for _ in 0..100 {
            if dir.join("bus").exists() {
                return Some(Bus(child, address));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    fn value(samples: &[Sample], name: &str, unit: Option<&str>, state: Option<&str>) -> Option<f64> {
        samples
            .iter()
            .find(|s| {
                s.series.name == name
                    && unit.is_none_or(|u| s.series.labels["unit"] == u)
                    && state.is_none_or(|st| s.series.labels["state"] == st)
            })
            .map(|s| s.value)
    }

    #[test]
    fn reports_failed_and_watched_units_from_dbus() {
        let dir = tempfile::tempdir().unwrap();
        let Some(bus) = private_bus(dir.path()) else {
            secumon_core::testing::peer_missing("dbus-daemon is not installed");
            return;
        };
        let _systemd = zbus::blocking::connection::Builder::address(bus.1.as_str())
            .unwrap()
            .name("org.freedesktop.systemd1")
            .unwrap()
            .serve_at("/org/freedesktop/systemd1", FakeManager)
            .unwrap()
            .build()
            .unwrap();
        let watched = ["nginx.service".to_string(), "absent.service".to_string()];
        let mut collector = ServiceCollector::new(&watched).with_address(bus.1.clone());
        let mut samples = Vec::new();
        collector.collect(1, &mut samples).unwrap();
        assert_eq!(value(&samples, "systemd_failed_units", None, None), Some(1.0));
        assert_eq!(value(&samples, "systemd_unit_state", Some("backup.service"), Some("failed")), Some(1.0));
        assert_eq!(value(&samples, "systemd_unit_state", Some("backup.service"), Some("active")), Some(0.0));
        assert_eq!(value(&samples, "systemd_unit_state", Some("nginx.service"), Some("active")), Some(1.0));
        assert_eq!(value(&samples, "systemd_unit_loaded", Some("absent.service"), None), Some(0.0));
        assert_eq!(
            value(&samples, "systemd_unit_state", Some("cron.service"), None),
            None,
            "neither failed nor watched"
        );
    }

    #[test]
    fn without_a_bus_it_is_unavailable_and_does_not_retry_every_cycle() {
        let dir = tempfile::tempdir().unwrap();
        let address = format!("unix:path={}", dir.path().join("no-bus").display());
        let mut collector = ServiceCollector::new(&[]).with_address(address);
        let first = collector.collect(1, &mut Vec::new()).unwrap_err();
        assert!(matches!(first, CollectError::Unavailable { collector: "services", .. }), "{first}");
        for cycle in 2..10 {
            let again = collector.collect(cycle, &mut Vec::new()).unwrap_err();
            assert_eq!(again.to_string(), first.to_string());
        }
        assert_eq!(collector.connection_attempts, 1, "no new attempt inside the retry window");
    }

    #[test]
    fn without_a_system_bus_socket_zbus_is_not_asked() {
        if std::env::var_os("DBUS_SYSTEM_BUS_ADDRESS").is_some() {
            eprintln!("skipped: DBUS_SYSTEM_BUS_ADDRESS names the system bus here");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let mut collector = ServiceCollector::new(&[]);
        collector.system_socket = dir.path().join("system_bus_socket");
        let error = collector.collect(1, &mut Vec::new()).unwrap_err();
        assert!(matches!(error, CollectError::Unavailable { collector: "services", .. }), "{error}");
        assert!(error.to_string().contains("system_bus_socket does not exist"), "{error}");
        assert_eq!(collector.connection_attempts, 0);
        // Once there is a socket, the next attempt (after the usual wait) asks zbus.
        std::fs::write(&collector.system_socket, b"").unwrap();
        collector.unavailable_since = None;
        let error = collector.collect(2, &mut Vec::new()).unwrap_err();
        assert_eq!(collector.connection_attempts, 1, "{error}");
    }
}
