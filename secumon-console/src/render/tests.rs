//! Render tests: each view drawn into a `TestBackend` and read back as text.

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::style::Color;

use super::*;

use crate::app::{AlertRow, FindingRow, HostDetail, HostRow, OverviewLine, Range, Snapshot};

fn screen(app: &App, width: u16, height: u16) -> String {
    drawn_screen(app, width, height).0
}

/// The screen's cells, and where it drew what a click can pick.
fn drawn_buffer(app: &App, width: u16, height: u16) -> (Buffer, Drawn) {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    let mut drawn = Drawn::default();
    terminal.draw(|frame| drawn = render(app, frame)).unwrap();
    (terminal.backend().buffer().clone(), drawn)
}

/// The screen as text, and where it drew what a click can pick.
fn drawn_screen(app: &App, width: u16, height: u16) -> (String, Drawn) {
    let (buffer, drawn) = drawn_buffer(app, width, height);
    let text = (0..height)
        .map(|y| (0..width).map(|x| buffer[(x, y)].symbol().to_string()).collect::<String>().trim_end().to_string())
        .collect::<Vec<_>>()
        .join("\n");
    (text, drawn)
}

fn app() -> App {
    let mut app = App::new("http://127.0.0.1:8080");
    app.now_ms = 1_000_000;
    app.connected = true;
    app.status = "connected to http://127.0.0.1:8080".into();
    app.data = Snapshot {
        hosts: vec![
            HostRow {
                tenant: "default".into(),
                agent_id: "agent-web-1".into(),
                labels: [("env".to_string(), "prod".to_string())].into(),
                host: "web-1".into(),
                kind: "agent".into(),
                status: "online".into(),
                cpu: Some(0.423),
                memory: Some(0.61),
                disk: Some(0.9),
                last_seen_ms: 990_000,
                firing: 1,
                clock_offset_ms: Some(7_203_000),
                clock_corrected: true,
                refused_reason: None,
            },
            HostRow { host: "db-1".into(), status: "offline".into(), last_seen_ms: 100_000, ..Default::default() },
        ],
        alerts: vec![AlertRow {
            id: "a1".into(),
            rule: "DiskFull".into(),
            state: "firing".into(),
            severity: "critical".into(),
            labels: [("host".to_string(), "web-1".to_string())].into(),
            since_ms: 880_000,
            value: 0.9,
            acknowledged: None,
            annotations: [("summary".to_string(), "/var at 97%".to_string())].into(),
        }],
        checks: vec![crate::app::CheckRow {
            host: "probe-paris".into(),
            result: crate::app::CheckRun {
                check_id: "shop".into(),
                kind: "http".into(),
                target: "https://shop.example".into(),
                status: "warning".into(),
                timestamp_ms: 995_000,
                duration_us: 120_000,
                details: serde_json::json!({"response": {"status": 200, "timings": {"total": 0.12},
                    "tls": {"days_to_expiry": 9.6}}, "warnings": ["certificate expires in 10 days"]}),
            },
            latency: vec![0.1, 0.2, 0.8],
        }],
        findings: vec![FindingRow {
            id: "CVE-2024-3094".into(),
            severity: "critical".into(),
            asset: "web-1".into(),
            title: "xz backdoor".into(),
            status: "open".into(),
        }],
    };
    app
}

#[test]
fn overview_lists_hosts_with_gauges() {
    let text = screen(&app(), 80, 24);
    let web = text.lines().find(|l| l.contains("web-1")).unwrap();
    assert!(web.contains("online") && web.contains("42.3%") && web.contains("61.0%") && web.contains("90.0%"), "{web}");
    assert!(web.contains("10s ago"), "{web}");
    assert!(text.lines().find(|l| l.contains("db-1")).unwrap().contains("15m ago"));
    assert!(text.lines().last().unwrap().contains("connected to http://127.0.0.1:8080"));
    assert!(text.contains("Hosts (2, by alerts)"), "{text}");
    assert_eq!(web.split_whitespace().nth(1), Some("+2h00m"), "the clock offset beside the host: {web}");
    let db = text.lines().find(|l| l.contains("db-1")).unwrap();
    assert_eq!(db.split_whitespace().nth(1), Some("-"), "not measured: {db}");
}

#[test]
fn clock_offsets_read_at_a_glance() {
    assert_eq!(clock_offset(None), "-");
    assert_eq!(clock_offset(Some(-999)), "ok");
    assert_eq!(clock_offset(Some(3_040)), "+3.0s");
    assert_eq!(clock_offset(Some(-754_000)), "-12m");
    assert_eq!(clock_offset(Some(-7_500_000)), "-2h05m");
}

/// The foreground colour of the first cell of `needle` on an 80×24 screen.
fn colour_on_80x24(buffer: &ratatui::buffer::Buffer, needle: &str) -> Color {
    let y = (0..24)
        .find(|&y| (0..80).map(|x| buffer[(x, y)].symbol()).collect::<String>().contains(needle))
        .unwrap_or_else(|| panic!("{needle} not on screen"));
    let row: String = (0..80).map(|x| buffer[(x, y)].symbol()).collect();
    let x = row.find(needle).unwrap() as u16;
    buffer[(x, y)].fg
}

#[test]
fn a_corrected_clock_is_red_a_small_offset_yellow() {
    let mut app = app();
    app.data.hosts[1].clock_offset_ms = Some(3_000);
    let (buffer, _) = drawn_buffer(&app, 80, 24);
    let colour_of = |needle: &str| colour_on_80x24(&buffer, needle);
    assert_eq!(colour_of("+2h00m"), Color::Red);
    assert_eq!(colour_of("+3.0s"), Color::Yellow);
}

#[test]
fn an_idle_script_is_grey_and_not_counted_down() {
    let mut app = app();
    app.data.hosts.push(HostRow {
        host: "nas-backup".into(),
        kind: "script".into(),
        status: "idle".into(),
        last_seen_ms: 100_000,
        ..Default::default()
    });
    let (buffer, _) = drawn_buffer(&app, 80, 24);
    let colour_of = |needle: &str| colour_on_80x24(&buffer, needle);
    assert_eq!(colour_of("idle"), Color::DarkGray);
    assert_eq!(colour_of("offline"), Color::Red);
    // Grouped, the header counts db-1 down, not the script.
    app.group_by = Some("tenant".into());
    let down: Vec<(String, usize, usize)> = app
        .overview_lines()
        .into_iter()
        .filter_map(|line| match line {
            OverviewLine::Group(g) => Some((g.name, g.hosts, g.down)),
            OverviewLine::Host(_) => None,
        })
        .collect();
    assert_eq!(down, vec![("default".to_string(), 1, 0), (String::new(), 2, 1)]);
}

#[test]
fn alerts_findings_host_and_help_views() {
    let mut state = app();
    state.view = View::Alerts;
    let text = screen(&state, 80, 24);
    assert!(
        text.lines().any(|l| l.contains("critical")
            && l.contains("firing")
            && l.contains("DiskFull")
            && l.contains("host=web-1")),
        "{text}"
    );
    let wide = screen(&state, 140, 24);
    assert!(wide.lines().any(|l| l.contains("DiskFull") && l.contains("/var at 97%")), "the summary: {wide}");
    state.data.alerts[0].acknowledged = Some(crate::app::Acknowledged { by: "alice".into(), comment: String::new() });
    assert!(screen(&state, 80, 24).contains("ack by alice"));
    state.silences = Some((
        vec![crate::app::SilenceRow {
            id: "9c1d2e3f4a5b6c7d".into(),
            matchers: [("host".to_string(), "web-1".to_string())].into(),
            ends_ms: state.now_ms + 5_400_000,
            created_by: "alice".into(),
            comment: "maintenance".into(),
        }],
        0,
    ));
    let text = screen(&state, 100, 24);
    assert!(
        text.lines().any(|l| l.contains("9c1d2e3f4a5b6c7d") && l.contains("1h30m left") && l.contains("host=web-1")),
        "{text}"
    );
    state.silences = None;

    state.view = View::Checks;
    let text = screen(&state, 140, 24);
    let line = text.lines().find(|l| l.contains("shop")).unwrap();
    assert!(line.contains("▁▂█"), "{line}");
    assert!(
        line.contains("warning") && line.contains("probe-paris") && line.contains("HTTP 200 in 120 ms, cert 10 days"),
        "{line}"
    );
    state.check_detail = true;
    assert!(screen(&state, 120, 24).contains("certificate expires in 10 days"));
    state.check_detail = false;

    state.view = View::Findings;
    let text = screen(&state, 80, 24);
    assert!(text.lines().any(|l| l.contains("CVE-2024-3094") && l.contains("xz backdoor")), "{text}");

    state.view = View::Host;
    state.host = Some(HostDetail {
        host: "web-1".into(),
        range: Some(Range::Hour),
        cpu: vec![(0, 0.2), (60_000, 0.5)],
        memory: vec![(0, 0.6)],
        load: vec![],
        cpu_cores: vec![("0".into(), vec![(0, 0.1), (60_000, 0.3)]), ("1".into(), vec![(0, 0.5), (60_000, 0.7)])],
        disk: vec![("read".into(), vec![(60_000, 2_500_000.0)]), ("write".into(), vec![])],
        network: vec![],
        failed_units: vec!["backup.service".into()],
        containers: (2, 3),
        filesystems: vec![("/".into(), 0.91), ("/data".into(), 0.4)],
        processes: vec![("postgres".into(), 0.35)],
        logs: vec!["sshd[1]: Accepted publickey for ops".into()],
    });
    let text = screen(&state, 120, 44);
    assert!(!text.contains("batches refused"), "{text}");
    let mut refused = state.clone();
    refused.data.hosts[0].status = "refused".into();
    refused.data.hosts[0].refused_reason = Some("sample is more than 3600000 ms in the future".into());
    let shown = screen(&refused, 120, 44);
    assert!(shown.contains("batches refused: sample is more") && shown.contains("in the future"), "{shown}");
    assert!(text.contains("CPU % per core: 0 30%, 1 70%"), "{text}");
    assert!(text.contains("Disk I/O: read 2.5 MB/s"), "{text}");
    assert!(text.contains("failed units: backup.service") && text.contains("containers up: 2 of 3"), "{text}");
    assert!(text.lines().any(|l| l.contains("/data") && l.contains("40.0%")), "{text}");
    assert!(text.lines().any(|l| l.contains("postgres") && l.contains("35.0%")), "{text}");
    assert!(text.contains("Memory %: 60.00%") && text.contains("Load: no data"), "{text}");
    assert!(text.contains("Accepted publickey") && text.contains("range ([ ]): 15m <1h> 24h 7d"), "{text}");
    // The log panel scrolled back into an older page, filtered by text.
    let mut paged = state.clone();
    paged.logs = crate::app::LogPanel {
        filter: "sshd".into(),
        lines: Some((0..40).map(|i| format!("/var/log/auth.log sshd[{i}]: session {i}")).collect()),
        scroll: 10,
        more: true,
        ..Default::default()
    };
    let text = screen(&paged, 120, 44);
    assert!(text.contains("logs holding \"sshd\" (10 back)"), "{text}");
    // Six rows, four inside the border: the lines 26-29, 10 back from the newest (39).
    for i in 26..30 {
        assert!(text.contains(&format!("sshd[{i}]: session {i}")), "{i}: {text}");
    }
    assert!(!text.contains("sshd[30]") && !text.contains("sshd[25]"), "{text}");
    assert!(!text.contains("Accepted publickey"), "the panel's own pages replace the latest lines");
    // The tab bar numbers the views 1-5; no digit may mean a range on this screen.
    assert!(text.contains("3 Checks"), "{text}");
    assert!(!text.contains("2 1h") && !text.contains("3 24h"), "{text}");

    state.help = true;
    let help = screen(&state, 80, 24);
    assert!(help.contains("Help — any key closes"));
    assert!(help.contains("[ ]         chart range shorter / longer (Host)"), "{help}");
    assert!(!help.contains("1-4"), "{help}");
}

#[test]
fn sparklines_scale_to_their_range() {
    assert_eq!(sparkline(&[1.0, 2.0, 3.0], 10), "▁▅█");
    assert_eq!(sparkline(&[5.0, 5.0], 10), "▁▁");
    assert_eq!(sparkline(&[1.0, 2.0, 3.0, 4.0], 2), "▁█", "the latest values");
    assert_eq!(sparkline(&[], 5), "");
}

#[test]
fn empty_server_tiny_terminal_and_disconnection_do_not_panic() {
    let mut empty = App::new("http://127.0.0.1:8080");
    assert!(screen(&empty, 80, 24).contains("No host has reported yet."));
    for view in View::TABS {
        empty.view = view;
        for (w, h) in [(80, 24), (20, 5), (1, 1), (200, 60)] {
            screen(&empty, w, h);
        }
    }
    let mut lost = app();
    lost.connected = false;
    let mut live = app();
    live.live = true;
    assert!(screen(&live, 80, 24).lines().last().unwrap().contains("(live)"), "the status bar says updates are live");
    assert!(screen(&app(), 80, 24).lines().last().unwrap().contains("(polling)"));
    lost.status = "cannot reach http://127.0.0.1:8080; retrying".into();
    assert!(screen(&lost, 80, 24).contains("retrying"));
    assert!(screen(&lost, 80, 24).contains("web-1"), "the last data stays on screen");
}

/// The line of `text` holding `needle`, and its index.
fn line_with<'a>(text: &'a str, needle: &str) -> Option<(usize, &'a str)> {
    text.lines().enumerate().find(|(_, l)| l.contains(needle))
}

#[test]
fn a_thousand_hosts_in_a_160_by_45_pane_the_last_one_reachable_and_clickable() {
    use crate::app::Event;
    use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    let mut app = App::new("http://127.0.0.1:8080");
    app.connected = true;
    app.page_rows = 45 - 5;
    app.update(Event::Data(crate::app::tests::fleet(1000)));
    let text = screen(&app, 160, 45);
    assert!(text.contains("Hosts (1000, by alerts)"), "{text}");
    assert!(text.contains("host-0000"), "most firing first, then by name: {text}");
    app.update(Event::Key(KeyEvent::new(KeyCode::End, KeyModifiers::NONE)));
    let (text, drawn) = drawn_screen(&app, 160, 45);
    app.drawn = drawn;
    // Most firing first, then by name: host-0999 (none firing) is the last line.
    let (y, last) = line_with(&text, "host-0999").expect("the last line in the order is drawn");
    assert_eq!(y, 42, "at the table's bottom, over the border and status: {text}");
    assert!(last.contains("online"), "{last}");
    // The line drawn at a row is the one a click there selects.
    let (y, drawn) = line_with(&text, "host-0980").unwrap();
    app.update(Event::Click { column: 3, row: y as u16 });
    let picked = match &app.overview_lines()[app.selected] {
        crate::app::OverviewLine::Host(h) => h.host.clone(),
        other => panic!("{other:?}"),
    };
    assert!(drawn.contains(&picked), "{drawn} / {picked}");
    let text = screen(&app, 160, 45);
    assert_eq!(line_with(&text, "host-0980").map(|(y2, _)| y2), Some(y), "a click does not scroll");
}

#[test]
fn group_headers_carry_their_counts() {
    use crate::app::Event;
    use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    let mut app = App::new("http://127.0.0.1:8080");
    app.page_rows = 40;
    app.update(Event::Data(crate::app::tests::fleet(1000)));
    app.update(Event::Key(KeyEvent::new(KeyCode::Char('g'), KeyModifiers::NONE)));
    let text = screen(&app, 160, 45);
    assert!(text.contains("Hosts (1000, by alerts, 4 groups by client"), "{text}");
    let (_, acme) = line_with(&text, "client acme").expect("a header");
    let down = (0..1000).filter(|i| i % 4 == 0 && i % 7 == 0).count();
    let firing = (0..1000).filter(|i| i % 4 == 0 && i % 11 == 0).count();
    assert!(acme.contains("▾ client acme · 250 hosts"), "{acme}");
    assert!(acme.contains(&format!("{down} down")), "{acme}");
    assert_eq!(acme.split_whitespace().nth_back(1), Some(firing.to_string().as_str()), "{acme}");
    // Folded, with the jump key to the next group.
    app.update(Event::Key(KeyEvent::new(KeyCode::Char(' '), KeyModifiers::NONE)));
    app.update(Event::Key(KeyEvent::new(KeyCode::Char('}'), KeyModifiers::NONE)));
    let text = screen(&app, 160, 45);
    let (y_acme, acme) = line_with(&text, "client acme").unwrap();
    let (y_globex, _) = line_with(&text, "client globex").unwrap();
    assert!(acme.contains("▸"), "{acme}");
    assert_eq!(y_globex, y_acme + 1, "nothing under a folded header: {text}");
    app.update(Event::Key(KeyEvent::new(KeyCode::End, KeyModifiers::NONE)));
    let text = screen(&app, 160, 45);
    assert!(text.contains("(no client) · 250 hosts") || text.contains("host-0999"), "{text}");
    assert!(line_with(&text, "host-0999").is_some(), "the last host, under the unlabelled group: {text}");
}

#[test]
fn a_long_alert_list_follows_the_selection_and_clicks_pick_the_line_drawn() {
    use crate::app::Event;
    use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    let mut app = app();
    let alert = app.data.alerts[0].clone();
    app.data.alerts =
        (0..60).map(|i| AlertRow { id: format!("a{i}"), rule: format!("Rule{i:02}"), ..alert.clone() }).collect();
    app.view = View::Alerts;
    app.page_rows = 24 - 5;
    app.update(Event::Key(KeyEvent::new(KeyCode::End, KeyModifiers::NONE)));
    assert_eq!(app.selected, 59);
    let (text, drawn) = drawn_screen(&app, 100, 24);
    let (y, last) = line_with(&text, "Rule59").expect("the selected alert is on screen");
    assert_eq!(y, 21, "on the table's last line: {text}");
    assert!(!text.contains("Rule00"), "the first ones scrolled away: {text}");
    app.drawn = drawn;
    let (y, line) = line_with(&text, "Rule50").unwrap();
    app.update(Event::Click { column: 5, row: y as u16 });
    assert_eq!(app.data.alerts[app.selected].rule, "Rule50", "{line} / {last}");
    let text = screen(&app, 100, 24);
    assert_eq!(line_with(&text, "Rule50").map(|(y2, _)| y2), Some(y), "a click does not scroll");
    // Under a pop-up, a click picks nothing.
    app.silences = Some((Vec::new(), 0));
    let (_, drawn) = drawn_screen(&app, 100, 24);
    assert_eq!(drawn, Drawn::default());
    app.drawn = drawn;
    app.update(Event::Click { column: 5, row: 4 });
    assert_eq!(app.data.alerts[app.selected].rule, "Rule50");
}

#[test]
fn tabs_are_clicked_where_they_are_drawn() {
    let (text, drawn) = drawn_screen(&app(), 80, 24);
    let bar = text.lines().next().unwrap();
    for (area, view) in &drawn.tabs {
        let cells: String = bar.chars().skip(usize::from(area.x)).take(usize::from(area.width)).collect();
        assert_eq!(
            cells.trim(),
            format!("{} {}", View::TABS.iter().position(|v| v == view).unwrap() + 1, view.title())
        );
    }
    assert_eq!(drawn.tabs.len(), View::TABS.len());
}
