//! Results as markdown, ready to paste into `docs/BENCHMARKS.md`.

use std::fmt::{self, Write as _};

/// A two-column markdown table: what was measured, and its value.
#[derive(Debug, Default)]
pub struct Table {
    rows: Vec<(String, String)>,
}

impl Table {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a row.
    pub fn row(&mut self, what: impl Into<String>, value: impl fmt::Display) -> &mut Self {
        self.rows.push((what.into(), value.to_string()));
        self
    }

    /// The table under a `###` heading.
    pub fn render(&self, heading: &str) -> String {
        let mut grid = Grid::new(["measure", "value"]);
        for (what, value) in &self.rows {
            grid.row([what, value]);
        }
        grid.render(heading)
    }
}

/// A markdown table with any columns, for results side by side (one row per run or per
/// measure, one column per peer or percentile).
#[derive(Debug, Default)]
pub struct Grid {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Grid {
    /// An empty table with these column headings.
    pub fn new<S: Into<String>>(header: impl IntoIterator<Item = S>) -> Self {
        Self {
            header: header.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; missing cells are left empty, extra ones dropped.
    pub fn row<S: fmt::Display>(&mut self, cells: impl IntoIterator<Item = S>) -> &mut Self {
        let mut row: Vec<String> = cells.into_iter().map(|c| c.to_string()).collect();
        row.resize(self.header.len(), String::new());
        self.rows.push(row);
        self
    }

    /// The table under a `###` heading, or bare when the heading is empty.
    pub fn render(&self, heading: &str) -> String {
        let mut out = String::new();
        if !heading.is_empty() {
            let _ = write!(out, "### {heading}\n\n");
        }
        let line = |cells: &[String]| {
            let cells: Vec<String> = cells.iter().map(|c| escape(c)).collect();
            format!("| {} |\n", cells.join(" | "))
        };
        out.push_str(&line(&self.header));
        out.push_str(&format!("|{}\n", "---|".repeat(self.header.len())));
        for row in &self.rows {
            out.push_str(&line(row));
        }
        out
    }
}

fn escape(cell: &str) -> String {
    cell.replace('|', "\\|").replace('\n', " ")
}

/// An integer with thousands separators: `12,345`.
pub struct Count(pub u64);

impl fmt::Display for Count {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.0.to_string();
        let mut out = String::with_capacity(digits.len() + digits.len() / 3);
        for (i, digit) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(digit);
        }
        f.pad(&out)
    }
}

/// A rate rounded to a whole number, with thousands separators.
pub struct Rate(pub f64);

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Rates here are far below 2^53; rounding to an integer is the precision we report.
        Count(self.0.max(0.0).round() as u64).fmt(f)
    }
}

/// The median of `values` (the mean of the middle two for an even count); `None` when empty.
pub fn median(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let mut sorted: Vec<f64> = values.into_iter().collect();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    match sorted.len() {
        0 => None,
        n if n % 2 == 1 => Some(sorted[middle]),
        _ => Some((sorted[middle - 1] + sorted[middle]) / 2.0),
    }
}

/// A ratio as the reports write it: `0.87×`.
pub struct Ratio(pub f64);

impl fmt::Display for Ratio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.2}×", self.0)
    }
}

/// "met" or "MISSED", so a missed target stands out in the table.
pub fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "**MISSED**" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands() {
        assert_eq!(Count(0).to_string(), "0");
        assert_eq!(Count(999).to_string(), "999");
        assert_eq!(Count(1000).to_string(), "1,000");
        assert_eq!(Count(200_000).to_string(), "200,000");
        assert_eq!(Count(1_234_567).to_string(), "1,234,567");
        assert_eq!(Rate(9_999.6).to_string(), "10,000");
        assert_eq!(median([3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median([4.0, 1.0]), Some(2.5));
        assert_eq!(median([]), None);
        assert_eq!(Ratio(0.8666).to_string(), "0.87×");
    }

    #[test]
    fn table() {
        let mut table = Table::new();
        table.row("a|b", 1);
        assert_eq!(
            table.render("T"),
            "### T\n\n| measure | value |\n|---|---|\n| a\\|b | 1 |\n"
        );
    }

    #[test]
    fn grid() {
        let mut grid = Grid::new(["run", "req/s", "p99"]);
        grid.row(["1", "2,000"]);
        assert_eq!(
            grid.render(""),
            "| run | req/s | p99 |\n|---|---|---|\n| 1 | 2,000 |  |\n"
        );
    }
}
