//! The report as an Excel workbook: one sheet per section, a title and a note, then the
//! table with numbers as numbers (ratios formatted as percentages, times as dates), and a
//! native bar chart beside the sections that have one.

use rust_xlsxwriter::{Chart, ChartType, ExcelDateTime, Format, Workbook, Worksheet, XlsxError};
use secumon_api::Report;

use crate::table::{Cell, Section, sections};

/// The sheet's first table row (0-based): title, note, a blank row, the heading.
const HEADING_ROW: u32 = 3;

fn write_cell(sheet: &mut Worksheet, row: u32, col: u16, cell: &Cell, formats: &Formats) -> Result<(), XlsxError> {
    match cell {
        Cell::Text(text) => sheet.write_string(row, col, text).map(drop),
        Cell::Count(n) => sheet.write_number(row, col, *n as f64).map(drop),
        Cell::Ratio(r) => sheet.write_number_with_format(row, col, *r, &formats.percent).map(drop),
        Cell::Seconds(Some(s)) => sheet.write_number_with_format(row, col, *s, &formats.one_decimal).map(drop),
        // No mean: the cell stays empty rather than holding a zero that reads as a measure.
        Cell::Seconds(None) => Ok(()),
        Cell::Days(d) => sheet.write_number_with_format(row, col, *d, &formats.one_decimal).map(drop),
        Cell::Time(ms) => match ExcelDateTime::from_timestamp(ms.div_euclid(1_000)) {
            Ok(time) => sheet.write_datetime_with_format(row, col, &time, &formats.time).map(drop),
            // Outside Excel's calendar: the text instead.
            Err(_) => sheet.write_string(row, col, cell.text()).map(drop),
        },
    }
}

struct Formats {
    title: Format,
    heading: Format,
    percent: Format,
    one_decimal: Format,
    time: Format,
}

fn sheet(workbook: &mut Workbook, section: &Section, formats: &Formats) -> Result<(), XlsxError> {
    let sheet = workbook.add_worksheet();
    sheet.set_name(section.title)?;
    sheet.write_string_with_format(0, 0, section.title, &formats.title)?;
    sheet.write_string(1, 0, &section.note)?;
    for (col, name) in section.columns.iter().enumerate() {
        sheet.write_string_with_format(HEADING_ROW, col as u16, *name, &formats.heading)?;
        sheet.set_column_width(col as u16, if col == 0 { 24 } else { 16 })?;
    }
    for (i, row) in section.rows.iter().enumerate() {
        for (col, cell) in row.iter().enumerate() {
            write_cell(sheet, HEADING_ROW + 1 + i as u32, col as u16, cell, formats)?;
        }
    }
    sheet.set_freeze_panes(HEADING_ROW + 1, 0)?;
    if let Some(bars) = &section.chart
        && !bars.bars.is_empty()
    {
        // The chart reads the table's first column and the column of the charted value.
        let value_col = section.columns.len().min(2) as u16 - 1;
        let first = HEADING_ROW + 1;
        let last = HEADING_ROW + bars.bars.len() as u32;
        let mut chart = Chart::new(ChartType::Bar);
        chart.title().set_name(&bars.title);
        chart.legend().set_hidden();
        chart.add_series().set_categories((section.title, first, 0, last, 0)).set_values((
            section.title,
            first,
            value_col,
            last,
            value_col,
        ));
        sheet.insert_chart(HEADING_ROW, section.columns.len() as u16 + 1, &chart)?;
    }
    Ok(())
}

/// `report` as `.xlsx` bytes.
pub(crate) fn render(report: &Report) -> Result<Vec<u8>, crate::RenderError> {
    let formats = Formats {
        title: Format::new().set_bold().set_font_size(14),
        heading: Format::new().set_bold().set_background_color("#E0E6F0"),
        percent: Format::new().set_num_format("0.00%"),
        one_decimal: Format::new().set_num_format("0.0"),
        time: Format::new().set_num_format("yyyy-mm-dd hh:mm"),
    };
    let mut workbook = Workbook::new();
    for section in sections(report) {
        sheet(&mut workbook, &section, &formats)?;
    }
    Ok(workbook.save_to_buffer()?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_report_is_a_zip_workbook() {
        let bytes = super::render(&crate::tests::sample()).unwrap();
        assert!(bytes.starts_with(b"PK\x03\x04"), "xlsx is a zip");
    }
}
