//! The operator console: `secumon console`. [`app`] holds the state and turns events into
//! state and commands, [`render`] draws the state (a pure function), [`client`] talks to
//! the server; [`run`] wires them to a terminal. The server is polled every two seconds;
//! when it goes away the last data stays on screen and the status bar says so until it
//! comes back.

#![warn(missing_docs)]

pub mod app;
pub mod client;
pub mod logs;
pub mod render;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ratatui::crossterm::event::{self, Event as TerminalEvent, KeyEventKind, MouseButton, MouseEvent, MouseEventKind};
use tokio::sync::{Notify, mpsc};

use app::{App, Command, Event};
use client::ApiClient;

/// How often the data is fetched again.
const REFRESH: Duration = Duration::from_secs(2);
/// A full fetch while the live stream is up, in case an event was missed (with 10 000
/// hosts a full fetch is the console's main cost to the server).
const LIVE_FALLBACK: Duration = Duration::from_secs(60);
/// Host values from the stream are handed to the state at most this often (thousands of
/// agents push every few seconds; each hand-over may redraw).
const LIVE_BATCH: Duration = Duration::from_millis(500);
/// Refreshes at most this often however busy the live stream is.
const MIN_GAP: Duration = Duration::from_millis(500);

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Runs the console on this terminal until the operator quits.
pub async fn run(server: &str, token: Option<String>, user: &str, tenant: Option<String>) -> std::io::Result<()> {
    let mut terminal = ratatui::init();
    let _ = ratatui::crossterm::execute!(std::io::stdout(), ratatui::crossterm::event::EnableMouseCapture);
    let result = drive(&mut terminal, server, token, user, tenant).await;
    let _ = ratatui::crossterm::execute!(std::io::stdout(), ratatui::crossterm::event::DisableMouseCapture);
    ratatui::restore();
    result
}

async fn drive(
    terminal: &mut ratatui::DefaultTerminal,
    server: &str,
    token: Option<String>,
    user: &str,
    tenant: Option<String>,
) -> std::io::Result<()> {
    let client = ApiClient::new(server, token).map_err(std::io::Error::other)?;
    client.set_tenant(tenant.clone());
    let (events, mut incoming) = mpsc::unbounded_channel::<Event>();

    // Keys come from a blocking read on a thread of their own.
    let keys = events.clone();
    std::thread::spawn(move || {
        while let Ok(read) = event::read() {
            let event = match read {
                TerminalEvent::Key(key) if key.kind == KeyEventKind::Press => Event::Key(key),
                TerminalEvent::Mouse(MouseEvent {
                    kind: MouseEventKind::Down(MouseButton::Left), column, row, ..
                }) => Event::Click { column, row },
                TerminalEvent::Resize(..) => Event::Resize,
                _ => continue,
            };
            if keys.send(event).is_err() {
                return;
            }
        }
    });

    // Everything is fetched at start, on `r`, on a tenant switch and every REFRESH while the
    // live stream is down (LIVE_FALLBACK while it is up); the stream's alert and check
    // changes fetch only those lists, and its host values update their rows in place.
    let refresh_now = Arc::new(Notify::new());
    let activity_now = Arc::new(Notify::new());
    let live = Arc::new(AtomicBool::new(false));
    let (refresher, poller, wake, activity, following) =
        (client.clone(), events.clone(), refresh_now.clone(), activity_now.clone(), live.clone());
    tokio::spawn(async move {
        let mut full = true;
        loop {
            let event = if full {
                refresher.snapshot().await.map(Event::Data)
            } else {
                refresher.activity().await.map(Event::Activity)
            };
            let event = event.unwrap_or_else(|error| Event::Failed(error.to_string()));
            if poller.send(event).is_err() {
                return;
            }
            let interval = if following.load(Ordering::Relaxed) { LIVE_FALLBACK } else { REFRESH };
            full = tokio::select! {
                _ = tokio::time::sleep(interval) => true,
                _ = wake.notified() => true,
                _ = activity.notified() => {
                    tokio::time::sleep(MIN_GAP).await;
                    false
                }
            };
        }
    });

    // The live stream: host values gathered and handed over every LIVE_BATCH, activity
    // wakes the refresher; reconnects when the server comes back.
    let (streamer, announcer, wake, activity) =
        (client.clone(), events.clone(), refresh_now.clone(), activity_now.clone());
    tokio::spawn(async move {
        let mut backoff = Duration::from_secs(1);
        loop {
            let mut tenant_changes = streamer.tenant_changes();
            if let Ok(mut stream) = streamer.live().await {
                backoff = Duration::from_secs(1);
                live.store(true, Ordering::Relaxed);
                if announcer.send(Event::Live(true)).is_err() {
                    return;
                }
                // What was missed while the stream was down.
                wake.notify_one();
                let mut gathered: Vec<app::LiveHost> = Vec::new();
                let mut tick = tokio::time::interval(LIVE_BATCH);
                loop {
                    tokio::select! {
                        change = stream.next_change() => match change {
                            Ok(client::Change::Host(host)) => gathered.push(host),
                            Ok(client::Change::Activity) => activity.notify_one(),
                            Err(_) => break,
                        },
                        _ = tick.tick() => {
                            if !gathered.is_empty() && announcer.send(Event::LiveHosts(std::mem::take(&mut gathered))).is_err() {
                                return;
                            }
                        }
                        // Another tenant: its own stream.
                        _ = tenant_changes.changed() => break,
                    }
                }
                live.store(false, Ordering::Relaxed);
                if announcer.send(Event::Live(false)).is_err() {
                    return;
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    });

    // A super-admin may switch tenants; for anyone else the list is refused and stays empty.
    let (lister, announcer) = (client.clone(), events.clone());
    tokio::spawn(async move {
        if let Ok(tenants) = lister.tenants().await {
            let _ = announcer.send(Event::Tenants(tenants));
        }
    });

    let mut app = App::new(server);
    app.tenant = tenant;
    // What is on screen: an event that changes nothing (a refresh bringing the same data)
    // draws nothing, unless the "ago" columns are a second old.
    let mut shown: Option<App> = None;
    let mut resized = false;
    loop {
        app.now_ms = now_ms();
        // Table lines under the tabs, the border and the header, above the border and status.
        app.page_rows = usize::from(terminal.size()?.height.saturating_sub(5));
        // Compared as if drawn at the same moment, without copying 10 000 hosts to do it.
        let unchanged = shown.as_ref().is_some_and(|s| {
            let now = std::mem::replace(&mut app.now_ms, s.now_ms);
            let same = now - s.now_ms < 1_000 && app == *s;
            app.now_ms = now;
            same
        });
        if resized || !unchanged {
            let mut drawn = render::Drawn::default();
            terminal.draw(|frame| drawn = render::render(&app, frame))?;
            app.drawn = drawn;
            shown = Some(app.clone());
        }
        // Events that came together (a held key, keys pasted or sent at once) are applied
        // together and drawn once.
        let Some(first) = incoming.recv().await else { return Ok(()) };
        let mut pending = vec![first];
        while pending.len() < 1_024
            && let Ok(event) = incoming.try_recv()
        {
            pending.push(event);
        }
        resized = pending.iter().any(|e| matches!(e, Event::Resize));
        for event in pending {
            match app.update(event) {
                Some(Command::Quit) => return Ok(()),
                Some(Command::Refresh) => refresh_now.notify_one(),
                Some(Command::Silence { matchers, duration }) => {
                    let (client, user) = (client.clone(), user.to_string());
                    answer(&events, async move {
                        client.silence(&matchers, &duration, &user).await?;
                        Ok(Event::Done(format!("silenced for {duration}")))
                    });
                }
                Some(Command::LoadSilences) => {
                    let client = client.clone();
                    answer(&events, async move {
                        let rows = client.silences().await?;
                        Ok(Event::Silences { status: format!("{} silence(s) in force", rows.len()), rows })
                    });
                }
                Some(Command::ExpireSilence(id)) => {
                    let client = client.clone();
                    answer(&events, async move {
                        client.expire_silence(&id).await?;
                        let rows = client.silences().await?;
                        Ok(Event::Silences { rows, status: format!("silence {id} expired") })
                    });
                }
                Some(Command::LoadRuleHistory(rule)) => {
                    let client = client.clone();
                    answer(&events, async move {
                        let lines = client.rule_history(&rule, now_ms()).await?;
                        Ok(Event::RuleHistory { rule, lines })
                    });
                }
                Some(Command::AllTenants(all)) => {
                    client.set_all_tenants(all);
                    refresh_now.notify_one();
                }
                Some(Command::SwitchTenant(tenant)) => {
                    client.set_tenant(tenant);
                    refresh_now.notify_one();
                }
                Some(Command::LoadHost { host, range }) => {
                    let client = client.clone();
                    answer(&events, async move { Ok(Event::Host(client.host(&host, range).await?)) });
                }
                Some(Command::LoadLogs { host, contains, before }) => {
                    let client = client.clone();
                    answer(&events, async move {
                        let filter = logs::LogFilter { contains, ..Default::default() };
                        let older = before.is_some();
                        let position = before.map_or(logs::Position::Newest, logs::Position::Before);
                        let page = client.log_page(&host, &filter, &position, app::LOG_PAGE).await?;
                        let lines = page.logs.iter().map(|l| format!("{} {}", l.source, l.line)).collect();
                        Ok(Event::Logs { host, lines, before: page.prev_cursor, more: page.more, older })
                    });
                }
                Some(Command::Acknowledge { id, comment }) => {
                    let (client, user) = (client.clone(), user.to_string());
                    answer(&events, async move {
                        client.acknowledge(&id, &user, &comment).await?;
                        Ok(Event::Done(format!("alert {id} acknowledged")))
                    });
                }
                None => {}
            }
        }
    }
}

/// Runs one API call off the event loop and hands its outcome back as an event.
fn answer(
    events: &mpsc::UnboundedSender<Event>,
    call: impl std::future::Future<Output = Result<Event, client::ClientError>> + Send + 'static,
) {
    let events = events.clone();
    tokio::spawn(async move {
        let _ = events.send(call.await.unwrap_or_else(|error| Event::Failed(error.to_string())));
    });
}
