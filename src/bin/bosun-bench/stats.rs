//! Percentiles and the result table.

use std::time::Duration;

/// Latency samples of one measurement.
#[derive(Default, Clone)]
pub struct Samples(pub Vec<Duration>);

impl Samples {
    /// The q-quantile (0..=1), nearest rank.
    pub fn pct(&self, q: f64) -> Duration {
        let mut v = self.0.clone();
        if v.is_empty() {
            return Duration::ZERO;
        }
        v.sort();
        let i = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
        v[i]
    }
}

/// One row of the table.
pub struct Row {
    pub name: String,
    pub value: String,
    pub vs: Option<String>,
    pub baseline: Option<String>,
    pub ratio: Option<String>,
    pub target: Option<(String, bool)>,
}

impl Row {
    pub fn new(name: &str, value: String) -> Self {
        Row {
            name: name.into(),
            value,
            vs: None,
            baseline: None,
            ratio: None,
            target: None,
        }
    }
    pub fn baseline(mut self, base: f64, ours: f64, unit: &str) -> Self {
        self.baseline = Some(format!("{base} {unit}"));
        if base > 0.0 && ours > 0.0 {
            self.ratio = Some(format!("{:.2}x", ours / base));
        }
        self
    }
    pub fn target(mut self, what: &str, ok: bool) -> Self {
        self.target = Some((what.into(), ok));
        self
    }
    pub fn vs(mut self, v: Option<String>) -> Self {
        self.vs = v;
        self
    }
}

pub fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Prints the rows as an aligned table.
pub fn print(rows: &[Row], vs_name: Option<&str>) {
    let vs_col = vs_name.map(|n| format!("--vs {n}")).unwrap_or_default();
    println!(
        "{:<58} {:>16} {vs_col:>16} {:>22} {:>10}  target",
        "measure", "bosun", "Kata agent 4.1.0", "ratio"
    );
    println!("{}", "-".repeat(142));
    for r in rows {
        let t = r
            .target
            .as_ref()
            .map(|(w, ok)| format!("{} {w}", if *ok { "PASS" } else { "MISS" }))
            .unwrap_or_default();
        println!(
            "{:<58} {:>16} {:>16} {:>22} {:>10}  {}",
            r.name,
            r.value,
            r.vs.clone().unwrap_or_default(),
            r.baseline.clone().unwrap_or_default(),
            r.ratio.clone().unwrap_or_default(),
            t
        );
    }
}

/// The rows as JSON.
pub fn json(rows: &[Row]) -> String {
    let v: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| serde_json::json!({"measure": r.name, "bosun": r.value, "vs": r.vs, "baseline": r.baseline, "ratio": r.ratio, "target": r.target.as_ref().map(|(w, ok)| serde_json::json!({"what": w, "met": ok}))}))
        .collect();
    serde_json::to_string_pretty(&v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let s = Samples((1..=100).map(Duration::from_micros).collect());
        assert_eq!(s.pct(0.5), Duration::from_micros(50));
        assert_eq!(s.pct(0.99), Duration::from_micros(99));
        assert_eq!(s.pct(1.0), Duration::from_micros(100));
        assert_eq!(Samples::default().pct(0.5), Duration::ZERO);
    }
}
