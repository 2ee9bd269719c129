//! Drawing: a pure function of [`App`] onto a frame, so a view is tested by rendering it
//! into ratatui's `TestBackend` and reading the buffer. Each view has its own file; this one
//! lays out the tabs, the body and the status line, and says where it drew what a click can
//! pick ([`Drawn`]), so clicks follow the layout rather than assumed coordinates.

mod alerts;
mod checks;
mod findings;
mod host;
mod overview;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Tabs};

use crate::app::{App, Input, View};

pub use checks::sparkline;
pub use overview::clock_offset;

/// Where a frame put what a click can pick: each tab, and the lines of the view's table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Drawn {
    /// Each view's tab on the tab bar.
    pub tabs: Vec<(Rect, View)>,
    /// The table's lines, if the view drawn has one.
    pub table: Option<TableLines>,
}

/// The lines of a table as drawn: line `i` of `area` shows the view's line `first + i`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableLines {
    /// The view the table belongs to.
    pub view: View,
    /// The cells of the data lines, under the header and inside the border.
    pub area: Rect,
    /// The index of the line drawn at the top of `area`.
    pub first: usize,
}

impl Drawn {
    /// The view whose tab is at `at`.
    pub fn tab_at(&self, at: Position) -> Option<View> {
        self.tabs.iter().find(|(area, _)| area.contains(at)).map(|(_, view)| *view)
    }

    /// The index of the line of `view`'s table drawn at `at`.
    pub fn line_at(&self, view: View, at: Position) -> Option<usize> {
        let table = self.table.filter(|t| t.view == view && t.area.contains(at))?;
        Some(table.first + usize::from(at.y - table.area.y))
    }
}

/// A bordered table's data lines: inside the border, under the one-line header.
fn table_lines(view: View, area: Rect, first: usize) -> TableLines {
    let inner = Block::bordered().inner(area);
    let area = Rect { y: inner.y.saturating_add(1), height: inner.height.saturating_sub(1), ..inner };
    TableLines { view, area, first }
}

/// Which lines of a table in `area` (a bordered block with a header) are shown so that
/// `selected` is on screen, starting from `scroll` when that keeps it there: the first
/// line's index and how many fit.
fn shown_lines(area: Rect, selected: usize, scroll: usize) -> (usize, usize) {
    let room = usize::from(area.height.saturating_sub(3)).max(1);
    (scroll.clamp(selected.saturating_sub(room - 1), selected), room)
}

fn severity_colour(severity: &str) -> Color {
    match severity {
        "critical" => Color::Red,
        "high" | "warning" => Color::LightRed,
        "medium" => Color::Yellow,
        "info" | "low" => Color::Blue,
        _ => Color::Gray,
    }
}

fn percent(value: Option<f64>) -> String {
    value.map(|v| format!("{:>5.1}%", v * 100.0)).unwrap_or_else(|| "    -".into())
}

/// "12s ago", "3m ago", "2h ago", "4d ago".
pub fn ago(now_ms: i64, then_ms: i64) -> String {
    let seconds = ((now_ms - then_ms) / 1000).max(0);
    match seconds {
        0..60 => format!("{seconds}s ago"),
        60..3600 => format!("{}m ago", seconds / 60),
        3600..86400 => format!("{}h ago", seconds / 3600),
        _ => format!("{}d ago", seconds / 86400),
    }
}

/// Draws the whole console, and says where it drew what a click can pick.
pub fn render(app: &App, frame: &mut Frame) -> Drawn {
    let [tabs, body, status] =
        Layout::vertical([Constraint::Length(1), Constraint::Min(3), Constraint::Length(1)]).areas(frame.area());
    let mut titles: Vec<Line> =
        View::TABS.iter().enumerate().map(|(i, v)| Line::from(format!("{} {}", i + 1, v.title()))).collect();
    let drawn_tabs = tab_areas(tabs, &titles);
    if let Some(tenant) = &app.tenant {
        titles.push(Line::from(format!("tenant {tenant}")).style(Style::new().fg(Color::Yellow)));
    }
    let selected = View::TABS.iter().position(|v| *v == app.view).unwrap_or(0);
    frame.render_widget(
        Tabs::new(titles)
            .select(selected)
            .highlight_style(Style::new().add_modifier(Modifier::REVERSED))
            .divider(TAB_DIVIDER)
            .padding(TAB_PADDING, TAB_PADDING),
        tabs,
    );
    let table = match app.view {
        View::Overview => overview::overview(app, frame, body),
        View::Host => {
            host::host(app, frame, body);
            None
        }
        View::Checks => checks::checks(app, frame, body),
        View::Alerts => alerts::alerts(app, frame, body),
        View::Findings => findings::findings(app, frame, body),
    };
    let (text, colour) = match &app.input {
        Some(Input::Filter) => (format!("filter: {}▏ (Enter to keep, Esc to leave)", app.filter), Color::Cyan),
        Some(Input::LogFilter) => {
            (format!("log lines holding: {}▏ (Enter to apply, empty for all)", app.logs.filter), Color::Cyan)
        }
        Some(Input::SilenceFor { text, .. }) => {
            (format!("silence for: {text}▏ (e.g. 30m, 4h; Enter to silence, Esc to cancel)"), Color::Cyan)
        }
        Some(Input::Comment { text, .. }) => {
            (format!("acknowledge, comment: {text}▏ (Enter to send, Esc to cancel)"), Color::Cyan)
        }
        None if app.connected => {
            let feed = if app.live { "live" } else { "polling" };
            (format!("{} ({feed})   ? help  q quit", app.status), Color::Green)
        }
        None => (format!("{}   ? help  q quit", app.status), Color::Red),
    };
    frame.render_widget(Paragraph::new(text).style(Style::new().fg(colour)), status);
    let mut covered = app.help;
    if app.help {
        help(frame);
    }
    if app.check_detail
        && let Some(check) = app.data.checks.get(app.selected)
    {
        checks::check_detail(check, frame);
        covered = true;
    }
    if let Some((rows, at)) = &app.silences {
        alerts::silences(app.now_ms, rows, *at, frame);
        covered = true;
    }
    if let Some((rule, lines)) = &app.rule_history {
        let lines: Vec<Line> = if lines.is_empty() {
            vec![Line::from("No history yet.")]
        } else {
            lines.iter().map(|l| Line::from(l.clone())).collect()
        };
        popup(frame, format!(" History of {rule} — any key closes "), lines);
        covered = true;
    }
    // Under a pop-up nothing is clickable: what it covers is not what the user sees.
    if covered { Drawn::default() } else { Drawn { tabs: drawn_tabs, table } }
}

const TAB_DIVIDER: &str = "│";
const TAB_PADDING: &str = " ";

/// Where `Tabs` puts each view's title in `area`: padding, title, padding, then a divider.
fn tab_areas(area: Rect, titles: &[Line]) -> Vec<(Rect, View)> {
    let mut x = area.x;
    let mut tabs = Vec::with_capacity(View::TABS.len());
    for (title, view) in titles.iter().zip(View::TABS) {
        let width = (TAB_PADDING.len() * 2 + title.width()) as u16;
        let shown = width.min(area.right().saturating_sub(x));
        tabs.push((Rect { x, y: area.y, width: shown, height: area.height }, view));
        x = x.saturating_add(width + TAB_DIVIDER.chars().count() as u16);
    }
    tabs
}

/// A bordered box over the screen, two cells in from its edges.
fn popup(frame: &mut Frame, title: String, lines: Vec<Line>) {
    let area = frame.area();
    let popup = Rect {
        x: area.x + 2.min(area.width),
        y: area.y + 1.min(area.height),
        width: area.width.saturating_sub(4),
        height: area.height.saturating_sub(2),
    };
    frame.render_widget(Clear, popup);
    frame.render_widget(Paragraph::new(lines).block(Block::bordered().title(title)), popup);
}

fn help(frame: &mut Frame) {
    let lines = [
        "1-5 / Tab   switch view",
        "[ ]         chart range shorter / longer (Host)",
        "Enter       open the host (Overview), a check's details (Checks)",
        "↑↓ j k      move",
        "/           filter hosts by name, tenant or label=value; log lines by text (Host)",
        "g           group hosts: tenant (super-admin), client, site, role",
        "space { }   fold a group / previous, next group (Overview)",
        "Home End    first / last line; PgUp PgDn a page",
        "PgUp PgDn   log lines back / forward, older pages loaded (Host)",
        "a           acknowledge the alert (Alerts)",
        "r           refresh now",
        "t           next tenant (super-admin)",
        "o           sort hosts: alerts, name, CPU, memory, disk, last seen",
        "s / h       silence the alert / its rule's history (Alerts)",
        "S           silences in force; x expires one (Alerts)",
        "Esc         back / cancel",
        "q Ctrl-C    quit",
    ];
    let area = frame.area();
    let width = 70.min(area.width);
    let height = (lines.len() as u16 + 2).min(area.height);
    let popup = Rect { x: area.x + (area.width - width) / 2, y: area.y + (area.height - height) / 2, width, height };
    frame.render_widget(Clear, popup);
    let text: Vec<Line> = lines.iter().map(|l| Line::from(Span::raw(*l))).collect();
    frame.render_widget(
        Paragraph::new(text).block(Block::default().borders(Borders::ALL).title(" Help — any key closes ")),
        popup,
    );
}

#[cfg(test)]
mod tests;
