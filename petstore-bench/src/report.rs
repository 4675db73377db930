//! The results table.

use std::fmt::Write as _;

/// How a row's value is judged.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Target {
    /// The value must be at least this.
    AtLeast(f64),
    /// The value must be at most this.
    AtMost(f64),
    /// Reported, not judged.
    Info,
}

impl Target {
    fn judge(self, value: f64) -> Option<bool> {
        match self {
            Target::AtLeast(t) => Some(value.is_finite() && value >= t),
            Target::AtMost(t) => Some(value.is_finite() && value <= t),
            Target::Info => None,
        }
    }

    fn show(self, unit: &str) -> String {
        match self {
            Target::AtLeast(t) => format!(">= {}{unit}", trim(t)),
            Target::AtMost(t) => format!("<= {}{unit}", trim(t)),
            Target::Info => "(info)".to_owned(),
        }
    }
}

fn trim(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// One line of the table.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) scenario: String,
    pub(crate) metric: String,
    /// The bare baseline's figure (median of rounds), with its unit.
    pub(crate) bare: String,
    /// The full stack's figure (median of rounds), with its unit.
    pub(crate) full: String,
    /// What the target is checked against (a ratio, or an absolute figure).
    pub(crate) value: f64,
    /// Unit of `value` (`x` for a ratio).
    pub(crate) unit: &'static str,
    pub(crate) target: Target,
    pub(crate) pass: Option<bool>,
    /// The row was not measured (what it needs is missing: the note says what).
    pub(crate) not_run: bool,
    /// Per-round ratios, where adapters were composed, errors.
    pub(crate) note: String,
}

impl Row {
    pub(crate) fn new(
        scenario: &str,
        metric: &str,
        bare: String,
        full: String,
        value: f64,
        unit: &'static str,
        target: Target,
    ) -> Self {
        Self {
            scenario: scenario.to_owned(),
            metric: metric.to_owned(),
            bare,
            full,
            value,
            unit,
            target,
            pass: target.judge(value),
            not_run: false,
            note: String::new(),
        }
    }

    /// A row that could not be measured, and `why`: it shows as "not run", never as a
    /// pass, and `--strict` counts it as missed.
    pub(crate) fn not_run(
        scenario: &str,
        metric: &str,
        unit: &'static str,
        target: Target,
        why: &str,
    ) -> Self {
        Self {
            pass: None,
            not_run: true,
            note: why.to_owned(),
            ..Self::new(
                scenario,
                metric,
                "-".to_owned(),
                "-".to_owned(),
                f64::NAN,
                unit,
                target,
            )
        }
    }

    pub(crate) fn error(scenario: &str, error: &anyhow::Error) -> Self {
        Self {
            scenario: scenario.to_owned(),
            metric: "(scenario failed)".to_owned(),
            bare: "-".to_owned(),
            full: "-".to_owned(),
            value: f64::NAN,
            unit: "",
            target: Target::Info,
            pass: Some(false),
            not_run: false,
            note: format!("ERROR: {error:#}"),
        }
    }

    pub(crate) fn note(mut self, note: impl Into<String>) -> Self {
        let note = note.into();
        if !note.is_empty() {
            if !self.note.is_empty() {
                self.note.push_str("; ");
            }
            self.note.push_str(&note);
        }
        self
    }

    pub(crate) fn rounds(self, ratios: &[f64]) -> Self {
        let list: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
        self.note(format!("rounds: {}", list.join(" ")))
    }

    pub(crate) fn failed(&self) -> bool {
        self.pass == Some(false)
    }
}

/// The Markdown table of `rows`.
pub(crate) fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    out.push_str(
        "| scenario | metric | bare (A) | full stack (B) | value | target | result | notes |\n",
    );
    out.push_str("|---|---|---|---|---|---|---|---|\n");
    for r in rows {
        let value = if r.value.is_nan() {
            "-".to_owned()
        } else if r.unit == "x" {
            format!("{:.2} x", r.value)
        } else {
            format!("{:.2} {}", r.value, r.unit)
        };
        let result = match r.pass {
            _ if r.not_run => "**not run**",
            Some(true) => "pass",
            Some(false) => "**FAIL**",
            None => "-",
        };
        let unit = if r.unit == "x" {
            " x".to_owned()
        } else {
            format!(" {}", r.unit)
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            r.scenario,
            r.metric,
            r.bare,
            r.full,
            value,
            r.target.show(&unit),
            result,
            r.note.replace('|', "/").replace('\n', " ")
        );
    }
    out
}

/// A figure with a unit, rounded for reading.
pub(crate) fn fig(v: f64, unit: &str) -> String {
    if v >= 100.0 {
        format!("{v:.0} {unit}")
    } else if v >= 10.0 {
        format!("{v:.1} {unit}")
    } else {
        format!("{v:.2} {unit}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_not_run_says_so_and_never_passes() {
        let row = Row::not_run(
            "rest-post-postgres",
            "POST throughput",
            "x",
            Target::AtLeast(0.7),
            "not run: no cluster",
        );
        assert!(row.not_run);
        assert_ne!(row.pass, Some(true));
        let table = table(&[row]);
        assert!(
            table.contains("| **not run** | not run: no cluster |"),
            "{table}"
        );
        assert!(table.contains("| >= 0.7 x |"), "{table}");
        assert!(!table.contains("| pass |"), "{table}");
    }
}
