//! Benchmark figures: one measured value of pons with its baseline, the ratio, the performance
//! target, and how they are printed (one line as measured, a summary table, JSON).

use serde_json::{json, Value};

/// A performance target.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    /// `pons / baseline ≤ x`.
    RatioAtMost(f64),
    /// `pons / baseline ≥ x`.
    RatioAtLeast(f64),
    /// `pons ≤ x` (in the figure's unit).
    AtMost(f64),
    /// Must equal (a count).
    Exactly(f64),
}

impl Target {
    fn text(self, unit: &str) -> String {
        match self {
            Target::RatioAtMost(x) => format!("≤ {x} ×"),
            Target::RatioAtLeast(x) => format!("≥ {x} ×"),
            Target::AtMost(x) => format!("≤ {} {unit}", num(x)),
            Target::Exactly(x) => format!("= {}", num(x)),
        }
    }
}

/// One measured figure.
#[derive(Debug, Clone)]
pub struct Figure {
    /// Benchmark name (what `cargo bench --bench pons -- NAME` selects).
    pub bench: &'static str,
    /// What is measured, e.g. "RPC round trip p50".
    pub metric: String,
    pub unit: &'static str,
    pub pons: f64,
    /// The same figure for the baseline, measured in the same run.
    pub baseline: Option<f64>,
    /// What the baseline is.
    pub baseline_name: &'static str,
    pub target: Option<Target>,
    /// Anything else worth keeping (counts, spans, percentiles of both sides).
    pub details: Value,
}

impl Figure {
    /// `pons / baseline`.
    pub fn ratio(&self) -> Option<f64> {
        self.baseline.filter(|b| *b > 0.0).map(|b| self.pons / b)
    }

    /// Whether the target is met (`None` without a target).
    pub fn ok(&self) -> Option<bool> {
        let t = self.target?;
        Some(match t {
            Target::RatioAtMost(x) => self.ratio().is_some_and(|r| r <= x),
            Target::RatioAtLeast(x) => self.ratio().is_some_and(|r| r >= x),
            Target::AtMost(x) => self.pons <= x,
            Target::Exactly(x) => self.pons == x,
        })
    }

    /// One line as soon as it is measured.
    pub fn line(&self) -> String {
        let mut s = format!(
            "{:<12} {:<34} pons {:>12} {}",
            self.bench,
            self.metric,
            num(self.pons),
            self.unit
        );
        if let Some(b) = self.baseline {
            s.push_str(&format!(
                "   {} {} {}",
                self.baseline_name,
                num(b),
                self.unit
            ));
        }
        if let Some(r) = self.ratio() {
            s.push_str(&format!("   ratio {r:.2} ×"));
        }
        if let Some(t) = self.target {
            let verdict = if self.ok() == Some(true) {
                "ok"
            } else {
                "MISSED"
            };
            s.push_str(&format!("   target {} {verdict}", t.text(self.unit)));
        }
        s
    }

    pub fn json(&self) -> Value {
        json!({
            "bench": self.bench,
            "metric": self.metric,
            "unit": self.unit,
            "pons": self.pons,
            "baseline": self.baseline,
            "baselineName": if self.baseline.is_some() { Some(self.baseline_name) } else { None },
            "ratio": self.ratio(),
            "target": self.target.map(|t| t.text(self.unit)),
            "ok": self.ok(),
            "details": self.details,
        })
    }
}

/// The summary table (Markdown, so it can go into benches/RESULTS.md as is).
pub fn table(figures: &[Figure]) -> String {
    let mut s = String::from(
        "| benchmark | figure | pons | baseline | ratio | target | |\n|---|---|---:|---:|---:|---|---|\n",
    );
    for f in figures {
        let base = match f.baseline {
            Some(b) => format!("{} {} ({})", num(b), f.unit, f.baseline_name),
            None => "—".into(),
        };
        let ratio = f.ratio().map_or("—".into(), |r| format!("{r:.2} ×"));
        let target = f.target.map_or("—".into(), |t| t.text(f.unit));
        let ok = match f.ok() {
            Some(true) => "ok",
            Some(false) => "**missed**",
            None => "",
        };
        s.push_str(&format!(
            "| {} | {} | {} {} | {} | {} | {} | {} |\n",
            f.bench,
            f.metric,
            num(f.pons),
            f.unit,
            base,
            ratio,
            target,
            ok
        ));
    }
    s
}

/// A number with a sensible number of digits.
pub fn num(x: f64) -> String {
    let a = x.abs();
    if a >= 10_000.0 {
        // Thousands separators for big counts and rates.
        let n = x.round() as i64;
        let digits = n.abs().to_string();
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        if n < 0 {
            out.insert(0, '-');
        }
        out
    } else if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

/// The `p`-quantile (0..=1) of `v` (sorted in place), nearest rank.
pub fn quantile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

/// The machine the figures were measured on.
pub fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    json!({
        "cpus": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "cpuModel": model,
        "memGiB": (mem_kib as f64 / 1024.0 / 1024.0 * 10.0).round() / 10.0,
        "linux": kernel.trim(),
    })
}
