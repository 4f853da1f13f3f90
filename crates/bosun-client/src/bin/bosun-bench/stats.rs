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

/// Blocks measured in turn with other participants: a figure is the
/// median of the per-block values, given with their range, so that a burst
/// of machine noise moves one block rather than the result.
#[derive(Default, Clone)]
pub struct Blocks(pub Vec<Samples>);

impl Blocks {
    /// All samples together (for the tail percentiles).
    pub fn all(&self) -> Samples {
        Samples(self.0.iter().flat_map(|b| b.0.iter().copied()).collect())
    }
    /// The per-block p50s in µs.
    pub fn p50s_us(&self) -> Vec<f64> {
        self.0.iter().map(|b| us(b.pct(0.5))).collect()
    }
}

/// The median of `v` and its range.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub lo: f64,
    pub hi: f64,
}

pub fn spread(v: &[f64]) -> Spread {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return Spread {
            median: 0.0,
            lo: 0.0,
            hi: 0.0,
        };
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Spread {
        median,
        lo: v[0],
        hi: v[n - 1],
    }
}

impl Spread {
    /// `20.6 us (19.8-23.1)`.
    pub fn show(&self, unit: &str) -> String {
        format!("{:.1} {unit} ({:.1}-{:.1})", self.median, self.lo, self.hi)
    }
}

/// One row of the table.
pub struct Row {
    pub name: String,
    pub value: String,
    pub vs: Option<String>,
    pub baseline: Option<String>,
    pub ratio: Option<String>,
    /// bosun / the `--vs` agent, both measured in this run.
    pub vs_ratio: Option<String>,
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
            vs_ratio: None,
            target: None,
        }
    }
    /// bosun's figure over the `--vs` agent's, both from this run.
    pub fn measured_ratio(mut self, ours: f64, theirs: f64) -> Self {
        if ours > 0.0 && theirs > 0.0 {
            self.vs_ratio = Some(format!("{:.2}x", ours / theirs));
        }
        self
    }
    pub fn baseline(mut self, base: f64, ours: f64, unit: &str) -> Self {
        self.baseline = Some(format!("{base} {unit}"));
        if base > 0.0 && ours > 0.0 {
            self.ratio = Some(format!("{:.2}x", ours / base));
        }
        self
    }
    /// A target on bosun over the `--vs` agent (at most `limit` times its
    /// figure), when the `--vs` agent was measured.
    pub fn vs_target(self, what: &str, ours: f64, theirs: Option<f64>, limit: f64) -> Self {
        match theirs {
            Some(t) if t > 0.0 => self.target(what, ours <= limit * t),
            _ => self,
        }
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
    let (vs_col, vs_ratio_col) = match vs_name {
        Some(_) => ("--vs agent".to_string(), "bosun/vs".to_string()),
        None => (String::new(), String::new()),
    };
    if let Some(n) = vs_name {
        println!("--vs agent: {n} (measured in this run, interleaved with bosun)");
    }
    println!(
        "{:<58} {:>20} {vs_col:>22} {vs_ratio_col:>9} {:>18} {:>7}  target",
        "measure", "bosun", "Kata 4.1.0 (ref)", "ratio"
    );
    println!("{}", "-".repeat(156));
    for r in rows {
        let t = r
            .target
            .as_ref()
            .map(|(w, ok)| format!("{} {w}", if *ok { "PASS" } else { "MISS" }))
            .unwrap_or_default();
        println!(
            "{:<58} {:>20} {:>22} {:>9} {:>18} {:>7}  {}",
            r.name,
            r.value,
            r.vs.clone().unwrap_or_default(),
            r.vs_ratio.clone().unwrap_or_default(),
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
        .map(|r| serde_json::json!({"measure": r.name, "bosun": r.value, "vs": r.vs, "vs_ratio": r.vs_ratio, "baseline": r.baseline, "ratio": r.ratio, "target": r.target.as_ref().map(|(w, ok)| serde_json::json!({"what": w, "met": ok}))}))
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

    #[test]
    fn spreads() {
        assert_eq!(
            spread(&[3.0, 1.0, 2.0]),
            Spread {
                median: 2.0,
                lo: 1.0,
                hi: 3.0
            }
        );
        assert_eq!(
            spread(&[4.0, 1.0, 2.0, 3.0]),
            Spread {
                median: 2.5,
                lo: 1.0,
                hi: 4.0
            }
        );
        assert_eq!(
            spread(&[]),
            Spread {
                median: 0.0,
                lo: 0.0,
                hi: 0.0
            }
        );
        assert_eq!(spread(&[f64::NAN, 5.0]).median, 5.0);
    }
}
