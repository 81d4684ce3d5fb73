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
        let mut out = format!("### {heading}\n\n| measure | value |\n|---|---|\n");
        for (what, value) in &self.rows {
            let _ = writeln!(out, "| {} | {} |", escape(what), escape(value));
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
}
