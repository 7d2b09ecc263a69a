//! Benchmark figures: one measured value of pons with its baseline, the ratio, the performance
//! target, and how they are printed (one line as measured, a summary table, JSON).
//!
//! A figure measured with both placements (free, and every process pinned to one CPU) keeps
//! both values of each side; its `pons` and `baseline` are the best of the two (best with
//! best), which the ratio and the target use.

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
    /// `lo ≤ pons ≤ hi` (in the figure's unit).
    Within(f64, f64),
}

impl Target {
    fn text(self, unit: &str) -> String {
        match self {
            Target::RatioAtMost(x) => format!("≤ {x} ×"),
            Target::RatioAtLeast(x) => format!("≥ {x} ×"),
            Target::AtMost(x) => format!("≤ {} {unit}", num(x)),
            Target::Exactly(x) => format!("= {}", num(x)),
            Target::Within(lo, hi) => format!("{}–{} {unit}", num(lo), num(hi)),
        }
    }
}

/// Which of two measurements is the better one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    /// Times, sizes, CPU; and counts that must be complete in every placement.
    Min,
    /// Rates.
    Max,
}

impl Pick {
    pub fn best(self, a: f64, b: f64) -> f64 {
        match (a.is_nan(), b.is_nan()) {
            (true, _) => b,
            (_, true) => a,
            _ if self == Pick::Min => a.min(b),
            _ => a.max(b),
        }
    }
}

/// One value measured with free placement and pinned to one CPU (NaN: not measured).
#[derive(Debug, Clone, Copy)]
pub struct Placed {
    pub free: f64,
    pub pinned: f64,
}

impl Placed {
    pub fn new(free: f64, pinned: f64) -> Placed {
        Placed { free, pinned }
    }

    fn text(self, unit: &str) -> String {
        let v = |x: f64| {
            if x.is_nan() {
                "–".to_string()
            } else {
                num(x)
            }
        };
        format!("{} / {} {unit}", v(self.free), v(self.pinned))
    }

    fn json(self) -> Value {
        let v = |x: f64| if x.is_nan() { Value::Null } else { json!(x) };
        json!({"free": v(self.free), "pinned": v(self.pinned)})
    }
}

/// The placements of a figure: both values of pons and of its baseline, and which is best.
#[derive(Debug, Clone, Copy)]
pub struct Placements {
    pub pick: Pick,
    pub pons: Placed,
    pub baseline: Option<Placed>,
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
    /// Both placements, when measured with both (`pons` and `baseline` are then their best).
    pub placements: Option<Placements>,
}

impl Figure {
    /// A figure without a baseline, measured once (no placement).
    pub fn single(
        bench: &'static str,
        metric: impl Into<String>,
        unit: &'static str,
        pons: f64,
        target: Option<Target>,
        details: Value,
    ) -> Figure {
        Figure {
            bench,
            metric: metric.into(),
            unit,
            pons,
            baseline: None,
            baseline_name: "",
            target,
            details,
            placements: None,
        }
    }

    /// A figure measured free and pinned, with an optional baseline measured the same way:
    /// `pons` and `baseline` are each the best of their two placements.
    #[allow(clippy::too_many_arguments)]
    pub fn placed(
        bench: &'static str,
        metric: impl Into<String>,
        unit: &'static str,
        pick: Pick,
        pons: Placed,
        baseline: Option<(&'static str, Placed)>,
        target: Option<Target>,
        details: Value,
    ) -> Figure {
        Figure {
            bench,
            metric: metric.into(),
            unit,
            pons: pick.best(pons.free, pons.pinned),
            baseline: baseline.map(|(_, b)| pick.best(b.free, b.pinned)),
            baseline_name: baseline.map_or("", |(n, _)| n),
            target,
            details,
            placements: Some(Placements {
                pick,
                pons,
                baseline: baseline.map(|(_, b)| b),
            }),
        }
    }

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
            Target::Within(lo, hi) => lo <= self.pons && self.pons <= hi,
        })
    }

    /// One line as soon as it is measured.
    pub fn line(&self) -> String {
        let mut s = format!(
            "{:<12} {:<44} pons {:>10} {}",
            self.bench,
            self.metric,
            num(self.pons),
            self.unit
        );
        if let Some(p) = self.placements {
            s.push_str(&format!(" (free / pinned {})", p.pons.text(self.unit)));
        }
        if let Some(b) = self.baseline {
            s.push_str(&format!(
                "   {} {} {}",
                self.baseline_name,
                num(b),
                self.unit
            ));
            if let Some(pb) = self.placements.and_then(|p| p.baseline) {
                s.push_str(&format!(" ({})", pb.text(self.unit)));
            }
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
            "placements": self.placements.map(|p| json!({
                "best": if p.pick == Pick::Min { "min" } else { "max" },
                "pons": p.pons.json(),
                "baseline": p.baseline.map(Placed::json),
            })),
            "details": self.details,
        })
    }
}

/// The summary table (Markdown, so it can go into benches/RESULTS.md as is). `pons`, `baseline`
/// and `ratio` are best with best; the last column gives both placements (free / pinned).
pub fn table(figures: &[Figure]) -> String {
    let mut s = String::from(
        "| benchmark | figure | pons | baseline | ratio | target | | free / pinned |\n|---|---|---:|---:|---:|---|---|---|\n",
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
        let placed = match f.placements {
            Some(p) => match p.baseline {
                Some(b) => format!("{}; baseline {}", p.pons.text(f.unit), b.text(f.unit)),
                None => p.pons.text(f.unit),
            },
            None => "—".into(),
        };
        s.push_str(&format!(
            "| {} | {} | {} {} | {} | {} | {} | {} | {} |\n",
            f.bench,
            f.metric,
            num(f.pons),
            f.unit,
            base,
            ratio,
            target,
            ok,
            placed
        ));
    }
    s
}

/// A count with thousands separators (`1,000`).
pub fn count(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
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
    } else if a >= 0.1 || a == 0.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
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
