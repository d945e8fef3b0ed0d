//! The one way a table is shown: any polars [`DataFrame`] as HTML for a notebook or as aligned
//! text for a terminal, with the number formats fastai prints (losses and metrics with six
//! decimals, counts as integers, a missing value as `#na#`). Every table type of the crate keeps
//! its data in a DataFrame and shows it through here.

use polars::prelude::{AnyValue, DataFrame};

use crate::show::display::{display_html, escape};

/// How one cell reads: floats with six decimals as fastai's progress table prints them,
/// integers and text as they are, null as fastai's `#na#`.
///
/// ```
/// use polars::prelude::AnyValue;
/// use fastvision::show::table::format_value;
/// assert_eq!(format_value(&AnyValue::Float64(0.0386504)), "0.038650");
/// assert_eq!(format_value(&AnyValue::UInt64(30)), "30");
/// assert_eq!(format_value(&AnyValue::Null), "#na#");
/// ```
pub fn format_value(v: &AnyValue) -> String {
    match v {
        AnyValue::Null => "#na#".into(),
        AnyValue::Float64(x) => format!("{x:.6}"),
        AnyValue::Float32(x) => format!("{x:.6}"),
        AnyValue::String(s) => (*s).to_string(),
        AnyValue::StringOwned(s) => s.to_string(),
        AnyValue::Boolean(b) => if *b { "yes" } else { "no" }.into(),
        other => other.to_string(),
    }
}

/// The table's cells as text, row by row, with a flag per column: right-aligned (numbers)?
fn cells(df: &DataFrame) -> (Vec<String>, Vec<Vec<String>>, Vec<bool>) {
    let cols = df.columns();
    let headers = cols.iter().map(|c| c.name().to_string()).collect();
    let numeric = cols
        .iter()
        .map(|c| c.dtype().is_primitive_numeric())
        .collect();
    let rows = (0..df.height())
        .map(|i| {
            cols.iter()
                .map(|c| {
                    c.get(i)
                        .map_or_else(|_| "#na#".into(), |v| format_value(&v))
                })
                .collect()
        })
        .collect();
    (headers, rows, numeric)
}

/// Any DataFrame as one HTML table, styled like fastai's (numbers right-aligned); `caption`
/// becomes a line above it. A table with no rows shows only the caption.
///
/// ```
/// use polars::prelude::*;
/// let df = df!("class" => ["apple", "pear"], "n" => [3u64, 4]).unwrap();
/// let html = fastvision::show::table::html(&df, Some("counts"));
/// assert!(html.contains("<td>apple</td>") && html.contains(">n</th>"));
/// assert!(html.contains("<td style=\"text-align:right\">4</td>") && html.starts_with("<p>counts</p>"));
/// ```
pub fn html(df: &DataFrame, caption: Option<&str>) -> String {
    let mut out = caption.map_or_else(String::new, |c| format!("<p>{}</p>", escape(c)));
    if df.height() == 0 {
        return out;
    }
    let (headers, rows, numeric) = cells(df);
    out += "<table class=\"dataframe\" border=\"1\">\n<thead><tr>";
    for h in &headers {
        out += &format!("<th style=\"text-align:left\">{}</th>", escape(h));
    }
    out += "</tr></thead>\n<tbody>\n";
    for row in &rows {
        out += "<tr>";
        for (cell, &num) in row.iter().zip(&numeric) {
            if num {
                out += &format!("<td style=\"text-align:right\">{}</td>", escape(cell));
            } else {
                out += &format!("<td>{}</td>", escape(cell));
            }
        }
        out += "</tr>\n";
    }
    out + "</tbody>\n</table>"
}

/// The same table as aligned text for a terminal (numbers right-aligned), caption first.
///
/// ```
/// use polars::prelude::*;
/// let df = df!("class" => ["apple", "pear"], "loss" => [0.5f64, 0.25]).unwrap();
/// let text = fastvision::show::table::text(&df, None);
/// assert_eq!(text, "class  loss    \napple  0.500000\npear   0.250000\n");
/// ```
pub fn text(df: &DataFrame, caption: Option<&str>) -> String {
    let mut out = caption.map_or_else(String::new, |c| format!("{c}\n"));
    if df.height() == 0 {
        return out;
    }
    let (headers, rows, numeric) = cells(df);
    let widths: Vec<usize> = (0..headers.len())
        .map(|j| {
            rows.iter()
                .map(|r| r[j].chars().count())
                .chain(std::iter::once(headers[j].chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cols: &[String], align_numbers: bool| {
        let parts: Vec<String> = cols
            .iter()
            .enumerate()
            .map(|(j, c)| {
                let w = widths[j];
                if align_numbers && numeric[j] {
                    format!("{c:>w$}")
                } else {
                    format!("{c:<w$}")
                }
            })
            .collect();
        parts.join("  ")
    };
    out += &line(&headers, false);
    out.push('\n');
    for r in &rows {
        out += &line(r, true);
        out.push('\n');
    }
    out
}

/// Shows a DataFrame in an evcxr notebook: one `text/html` output.
///
/// ```
/// use polars::prelude::*;
/// fastvision::show::table::display(&df!("a" => [1i64]).unwrap(), None);
/// ```
pub fn display(df: &DataFrame, caption: Option<&str>) {
    display_html(&html(df, caption));
}

#[cfg(test)]
mod tests {
    use super::*;
    use polars::prelude::*;

    #[test]
    fn nulls_read_as_fastai_na_and_text_is_escaped() {
        let df = df!("name" => ["<b>"], "valid_loss" => [None::<f64>]).unwrap();
        let h = html(&df, None);
        assert!(h.contains("<td>&lt;b&gt;</td>"), "{h}");
        assert!(h.contains(">#na#</td>"), "{h}");
    }

    #[test]
    fn an_empty_table_shows_only_its_caption() {
        let df = df!("file" => Vec::<String>::new()).unwrap();
        assert_eq!(html(&df, Some("nothing wrong")), "<p>nothing wrong</p>");
        assert_eq!(text(&df, Some("nothing wrong")), "nothing wrong\n");
    }
}
