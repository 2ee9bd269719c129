//! The operator console: `secumon console`. [`app`] holds the state and turns events into
//! state and commands, [`render`] draws the state (a pure function), [`client`] talks to
//! the server; [`run`] wires them to a terminal. The server is polled every two seconds;
//! when it goes away the last data stays on screen and the status bar says so until it
//! comes back.

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
/// Polling while the live stream is up, in case an event was missed.
const LIVE_FALLBACK: Duration = Duration::from_secs(15);
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
    let client = ApiClient::new(server, token);
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

    let refresh_now = Arc::new(Notify::new());
    let live = Arc::new(AtomicBool::new(false));
    let (refresher, poller, wake, following) = (client.clone(), events.clone(), refresh_now.clone(), live.clone());
    tokio::spawn(async move {
        loop {
            let event = match refresher.snapshot().await {
                Ok(snapshot) => Event::Data(snapshot),
                Err(error) => Event::Failed(error.to_string()),
            };
            if poller.send(event).is_err() {
                return;
            }
            // Live changes come from the stream; polling is the fallback when it is down.
            let interval = if following.load(Ordering::Relaxed) { LIVE_FALLBACK } else { REFRESH };
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = wake.notified() => tokio::time::sleep(MIN_GAP).await,
            }
        }
    });

    // The live stream wakes the refresher; reconnects when the server comes back.
    let (streamer, announcer, wake) = (client.clone(), events.clone(), refresh_now.clone());
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
                wake.notify_one();
                loop {
                    tokio::select! {
                        change = stream.next_change() => match change {
                            Ok(()) => wake.notify_one(),
                            Err(_) => break,
                        },
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
        let unchanged = shown
            .as_ref()
            .is_some_and(|s| app.now_ms - s.now_ms < 1_000 && App { now_ms: s.now_ms, ..app.clone() } == *s);
        if resized || !unchanged {
            terminal.draw(|frame| render::render(&app, frame))?;
            shown = Some(app.clone());
        }
        let Some(event) = incoming.recv().await else { return Ok(()) };
        resized = matches!(event, Event::Resize);
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
