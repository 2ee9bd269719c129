//! The findings view: imported vulnerability findings, one line each.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table};

use super::{TableLines, severity_colour, shown_lines, table_lines};
use crate::app::{App, View};

pub(super) fn findings(app: &App, frame: &mut Frame, area: Rect) -> Option<TableLines> {
    let title = format!(" Findings ({}) ", app.data.findings.len());
    if app.data.findings.is_empty() {
        frame.render_widget(Paragraph::new("No finding imported.").block(Block::bordered().title(title)), area);
        return None;
    }
    let (first, room) = shown_lines(area, app.selected, app.scroll);
    let rows = app.data.findings.iter().enumerate().skip(first).take(room).map(|(i, f)| {
        let style = if i == app.selected { Style::new().add_modifier(Modifier::REVERSED) } else { Style::new() };
        Row::new(vec![
            Cell::from(f.severity.clone()).style(Style::new().fg(severity_colour(&f.severity))),
            Cell::from(f.status.clone()),
            Cell::from(f.asset.clone()),
            Cell::from(f.id.clone()),
            Cell::from(f.title.clone()),
        ])
        .style(style)
    });
    let widths = [
        Constraint::Length(9),
        Constraint::Length(6),
        Constraint::Length(20),
        Constraint::Length(24),
        Constraint::Min(10),
    ];
    let header =
        Row::new(["SEVERITY", "STATUS", "ASSET", "ID", "TITLE"]).style(Style::new().add_modifier(Modifier::BOLD));
    frame.render_widget(Table::new(rows, widths).header(header).block(Block::bordered().title(title)), area);
    Some(table_lines(View::Findings, area, first))
}
