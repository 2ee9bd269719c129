//! The report as a PDF: A4 pages of real text in the standard Helvetica fonts (no font is
//! embedded, so `pdftotext` and screen readers read every number) and bar charts drawn as
//! vector rectangles. Pages break wherever the next row or chart does not fit.

use pdf_writer::{Content, Name, Pdf, Rect, Ref, Str, TextStr};
use secumon_api::Report;

use crate::table::{BarChart, Section, sections, utc_text};

const WIDTH: f32 = 595.0;
const HEIGHT: f32 = 842.0;
const MARGIN: f32 = 50.0;
const ROW: f32 = 13.0;
const TABLE_SIZE: f32 = 8.5;
const REGULAR: Name<'static> = Name(b"F1");
const BOLD: Name<'static> = Name(b"F2");

/// Text in the fonts' WinAnsi encoding: Latin-1 as is, anything else `?`.
fn encode(text: &str) -> Vec<u8> {
    text.chars().map(|c| if (c as u32) < 0x100 && !c.is_control() { c as u32 as u8 } else { b'?' }).collect()
}

/// Helvetica's glyph widths (thousandths of an em) for ASCII 32 to 126, from its AFM.
const HELVETICA: [u16; 95] = [
    278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278, 278, // space to /
    556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584, 556, // 0 to ?
    1015, 667, 667, 722, 722, 667, 611, 778, 722, 278, 500, 667, 556, 833, 722, 778, // @ to O
    667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 278, 278, 278, 469, 556, // P to _
    333, 556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500, 222, 833, 556, 556, // ` to o
    556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334, 260, 334, 584, // p to ~
];

/// How wide `text` is in Helvetica at `size` (bold is about 5 % wider: callers leave room).
fn text_width(text: &str, size: f32) -> f32 {
    let units: u32 = text
        .chars()
        .map(|c| match c as u32 {
            code @ 32..=126 => u32::from(HELVETICA[(code - 32) as usize]),
            _ => 556,
        })
        .sum();
    units as f32 * size / 1_000.0
}

/// `text` cut (with `..`) to fit `width` at `size`.
fn fit(text: &str, width: f32, size: f32) -> String {
    if text_width(text, size) <= width {
        return text.to_string();
    }
    let mut kept = String::new();
    for c in text.chars() {
        kept.push(c);
        if text_width(&kept, size) + text_width("..", size) > width {
            kept.pop();
            break;
        }
    }
    format!("{kept}..")
}

/// Pages being written, top to bottom.
struct Pages {
    done: Vec<Content>,
    page: Content,
    /// The baseline of the next line.
    y: f32,
}

impl Pages {
    fn new() -> Self {
        Self { done: Vec::new(), page: Content::new(), y: HEIGHT - MARGIN }
    }

    /// Starts a new page unless `height` more fits on this one.
    fn room(&mut self, height: f32) {
        if self.y - height < MARGIN {
            self.break_page();
        }
    }

    fn break_page(&mut self) {
        let page = std::mem::replace(&mut self.page, Content::new());
        self.done.push(page);
        self.y = HEIGHT - MARGIN;
    }

    fn text(&mut self, x: f32, y: f32, font: Name<'_>, size: f32, text: &str) {
        self.page.set_fill_rgb(0.0, 0.0, 0.0);
        self.page.begin_text();
        self.page.set_font(font, size);
        self.page.next_line(x, y);
        self.page.show(Str(&encode(text)));
        self.page.end_text();
    }

    fn fill(&mut self, x: f32, y: f32, w: f32, h: f32, rgb: [f32; 3]) {
        self.page.set_fill_rgb(rgb[0], rgb[1], rgb[2]);
        self.page.rect(x, y, w, h);
        self.page.fill_nonzero();
    }

    /// A line of text at the cursor, then the cursor below it.
    fn line(&mut self, font: Name<'_>, size: f32, text: &str) {
        self.room(size * 1.5);
        self.text(MARGIN, self.y - size, font, size, &fit(text, WIDTH - 2.0 * MARGIN, size));
        self.y -= size * 1.5;
    }

    fn finish(mut self) -> Vec<Content> {
        self.done.push(self.page);
        self.done
    }
}

/// Column widths: numbers narrow, text shares the rest.
fn column_widths(section: &Section) -> Vec<f32> {
    let numeric: Vec<bool> =
        (0..section.columns.len()).map(|i| section.rows.first().is_some_and(|r| r[i].is_numeric())).collect();
    let number_width = 58.0;
    let numbers = numeric.iter().filter(|n| **n).count() as f32;
    let texts = (section.columns.len() as f32 - numbers).max(1.0);
    let text_width = (WIDTH - 2.0 * MARGIN - numbers * number_width) / texts;
    numeric.iter().map(|n| if *n { number_width } else { text_width }).collect()
}

fn table(pages: &mut Pages, section: &Section) {
    let widths = column_widths(section);
    let numeric: Vec<bool> =
        (0..widths.len()).map(|i| section.rows.first().is_some_and(|r| r[i].is_numeric())).collect();
    let header = |pages: &mut Pages| {
        pages.room(ROW * 2.0);
        pages.fill(MARGIN, pages.y - ROW + 2.0, WIDTH - 2.0 * MARGIN, ROW, [0.88, 0.90, 0.94]);
        let mut x = MARGIN;
        for (i, column) in section.columns.iter().enumerate() {
            let text = fit(column, (widths[i] - 4.0) / 1.05, TABLE_SIZE);
            let left = if numeric[i] { x + widths[i] - 2.0 - 1.05 * text_width(&text, TABLE_SIZE) } else { x + 2.0 };
            pages.text(left, pages.y - ROW + 5.0, BOLD, TABLE_SIZE, &text);
            x += widths[i];
        }
        pages.y -= ROW;
    };
    header(pages);
    if section.rows.is_empty() {
        pages.line(REGULAR, TABLE_SIZE, "(none)");
        return;
    }
    for row in &section.rows {
        if pages.y - ROW < MARGIN {
            pages.break_page();
            header(pages);
        }
        let mut x = MARGIN;
        for (i, cell) in row.iter().enumerate() {
            let text = fit(&cell.text(), widths[i] - 4.0, TABLE_SIZE);
            let left = if numeric[i] { x + widths[i] - 2.0 - text_width(&text, TABLE_SIZE) } else { x + 2.0 };
            pages.text(left, pages.y - ROW + 4.0, REGULAR, TABLE_SIZE, &text);
            x += widths[i];
        }
        pages.y -= ROW;
    }
}

/// Horizontal bars, one a line, with the label on the left and the value after the bar.
fn chart(pages: &mut Pages, chart: &BarChart) {
    const BAR: f32 = 10.0;
    const LINE: f32 = 14.0;
    let label_width = 120.0;
    let area = WIDTH - 2.0 * MARGIN - label_width - 70.0;
    pages.room(LINE * (chart.bars.len() as f32 + 2.0));
    pages.line(BOLD, 9.0, &chart.title);
    let scale = chart.scale();
    // The axis line, then the bars.
    let top = pages.y;
    let bottom = top - LINE * chart.bars.len() as f32;
    pages.fill(MARGIN + label_width - 1.0, bottom, 0.8, top - bottom, [0.3, 0.3, 0.3]);
    for (label, value, rgb) in &chart.bars {
        let length = if scale > 0.0 { (value / scale).clamp(0.0, 1.0) as f32 * area } else { 0.0 };
        let base = pages.y - LINE + 2.0;
        pages.text(MARGIN, base + 2.0, REGULAR, TABLE_SIZE, &fit(label, label_width - 6.0, TABLE_SIZE));
        pages.fill(MARGIN + label_width, base, length, BAR, *rgb);
        pages.text(MARGIN + label_width + length + 4.0, base + 2.0, REGULAR, TABLE_SIZE, &chart.value_text(*value));
        pages.y -= LINE;
    }
    pages.y -= 6.0;
}

/// `report` as PDF bytes.
pub(crate) fn render(report: &Report) -> Vec<u8> {
    let mut pages = Pages::new();
    pages.line(BOLD, 18.0, &format!("SecuMon report: {}", report.tenant));
    pages.line(
        REGULAR,
        10.0,
        &format!("Period {} from {} to {} UTC", report.period, utc_text(report.from_ms), utc_text(report.to_ms)),
    );
    pages.y -= 6.0;
    for section in sections(report) {
        pages.room(60.0);
        pages.y -= 6.0;
        pages.line(BOLD, 13.0, section.title);
        pages.line(REGULAR, 8.0, &section.note);
        if let Some(bars) = &section.chart
            && !bars.bars.is_empty()
        {
            chart(&mut pages, bars);
        }
        table(&mut pages, &section);
    }
    let contents = pages.finish();

    let catalog = Ref::new(1);
    let tree = Ref::new(2);
    let regular = Ref::new(3);
    let bold = Ref::new(4);
    let info = Ref::new(5);
    let page_ids: Vec<Ref> = (0..contents.len()).map(|i| Ref::new(6 + 2 * i as i32)).collect();
    let mut pdf = Pdf::new();
    pdf.catalog(catalog).pages(tree);
    pdf.pages(tree).kids(page_ids.iter().copied()).count(page_ids.len() as i32);
    pdf.type1_font(regular).base_font(Name(b"Helvetica")).encoding_predefined(Name(b"WinAnsiEncoding"));
    pdf.type1_font(bold).base_font(Name(b"Helvetica-Bold")).encoding_predefined(Name(b"WinAnsiEncoding"));
    let title = format!("SecuMon report {} {}", report.tenant, report.period);
    pdf.document_info(info).title(TextStr(&title));
    for (i, (content, id)) in contents.into_iter().zip(&page_ids).enumerate() {
        let content_id = Ref::new(7 + 2 * i as i32);
        let mut content = content;
        // The page number at the bottom.
        let number = format!("Page {}", i + 1);
        content.set_fill_rgb(0.4, 0.4, 0.4);
        content.begin_text();
        content.set_font(REGULAR, 8.0);
        content.next_line(WIDTH - MARGIN - text_width(&number, 8.0), MARGIN / 2.0);
        content.show(Str(number.as_bytes()));
        content.end_text();
        let mut page = pdf.page(*id);
        page.media_box(Rect::new(0.0, 0.0, WIDTH, HEIGHT)).parent(tree).contents(content_id);
        page.resources().fonts().pair(REGULAR, regular).pair(BOLD, bold);
        drop(page);
        pdf.stream(content_id, &content.finish());
    }
    pdf.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_is_a_pdf_with_its_numbers_as_text() {
        let bytes = render(&crate::tests::sample());
        assert!(bytes.starts_with(b"%PDF-"));
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("(95.83%)"), "availability as text");
        assert!(text.contains("(150.0)"), "MTTA as text");
        assert!(text.contains(" re"), "bars are rectangles");
    }

    #[test]
    fn long_tables_break_onto_more_pages() {
        let mut report = crate::tests::sample();
        let host = report.hosts[0].clone();
        report.hosts =
            (0..200).map(|i| secumon_api::HostAvailability { host: format!("h{i}"), ..host.clone() }).collect();
        let text = String::from_utf8_lossy(&render(&report)).into_owned();
        assert!(text.contains("(Page 5)"), "200 rows take several pages");
    }

    #[test]
    fn text_outside_latin1_is_replaced_not_dropped() {
        assert_eq!(encode("é→x"), vec![0xe9, b'?', b'x']);
    }
}
