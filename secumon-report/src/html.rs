//! The report as one self-contained HTML page: inline CSS, charts as inline SVG, no script
//! and nothing fetched, so it opens from an e-mail attachment or a file as it is.

use std::fmt::Write;

use secumon_api::Report;

use crate::table::{BarChart, sections, utc_text};

/// `text` safe inside HTML text and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn rgb(colour: [f32; 3]) -> String {
    let [r, g, b] = colour.map(|c| (c.clamp(0.0, 1.0) * 255.0).round() as u8);
    format!("#{r:02x}{g:02x}{b:02x}")
}

fn svg(chart: &BarChart) -> String {
    const LINE: usize = 20;
    let (label_width, area) = (160.0, 360.0);
    let height = LINE * chart.bars.len() + 4;
    let mut out = format!(
        "<figure><figcaption>{}</figcaption><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"600\" height=\"{height}\" \
         role=\"img\">",
        escape(&chart.title)
    );
    let scale = chart.scale();
    for (i, (label, value, colour)) in chart.bars.iter().enumerate() {
        let y = i * LINE + 2;
        let length = if scale > 0.0 { (value / scale).clamp(0.0, 1.0) * area } else { 0.0 };
        let _ = write!(
            out,
            "<text x=\"0\" y=\"{}\">{}</text><rect x=\"{label_width}\" y=\"{y}\" width=\"{length:.1}\" height=\"14\" \
             fill=\"{}\"/><text x=\"{:.1}\" y=\"{}\">{}</text>",
            y + 12,
            escape(label),
            rgb(*colour),
            label_width + length + 6.0,
            y + 12,
            escape(&chart.value_text(*value)),
        );
    }
    out.push_str("</svg></figure>");
    out
}

/// `report` as an HTML document.
pub(crate) fn render(report: &Report) -> String {
    let title = format!("SecuMon report: {}", report.tenant);
    let mut out = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>\
         body{{font-family:Helvetica,Arial,sans-serif;margin:2em;color:#222}}\
         table{{border-collapse:collapse;margin:0.5em 0 1.5em}}th,td{{border:1px solid #ccc;padding:3px 8px}}\
         th{{background:#e0e6f0;text-align:left}}td.n{{text-align:right}}p.note{{color:#555;font-size:90%}}\
         svg text{{font-size:12px}}figcaption{{font-weight:bold}}</style></head><body>\n<h1>{}</h1>\n\
         <p>Period {} from {} to {} UTC</p>\n",
        escape(&title),
        escape(&title),
        escape(&report.period),
        utc_text(report.from_ms),
        utc_text(report.to_ms),
    );
    for section in sections(report) {
        let _ =
            write!(out, "<section><h2>{}</h2><p class=\"note\">{}</p>", escape(section.title), escape(&section.note));
        if let Some(chart) = &section.chart
            && !chart.bars.is_empty()
        {
            out.push_str(&svg(chart));
        }
        out.push_str("<table><thead><tr>");
        for column in &section.columns {
            let _ = write!(out, "<th>{}</th>", escape(column));
        }
        out.push_str("</tr></thead><tbody>");
        if section.rows.is_empty() {
            let _ = write!(out, "<tr><td colspan=\"{}\">(none)</td></tr>", section.columns.len());
        }
        for row in &section.rows {
            out.push_str("<tr>");
            for cell in row {
                let class = if cell.is_numeric() { " class=\"n\"" } else { "" };
                let _ = write!(out, "<td{class}>{}</td>", escape(&cell.text()));
            }
            out.push_str("</tr>");
        }
        out.push_str("</tbody></table></section>\n");
    }
    out.push_str("</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_holds_the_numbers_and_escapes_names() {
        let mut report = crate::tests::sample();
        report.hosts[0].host = "<script>".into();
        let page = render(&report);
        assert!(page.contains("<td class=\"n\">95.83%</td>"));
        assert!(page.contains("&lt;script&gt;") && !page.contains("<script>"));
        assert!(page.contains("<svg") && !page.contains("src="), "charts inline, nothing fetched");
    }
}
