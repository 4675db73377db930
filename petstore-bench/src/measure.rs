//! Measuring: latency histograms, A/B rounds with median ratios, load average, RSS.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;

/// Sub-buckets per power of two: values are kept within 1/64 (1.6 %) of their size.
const SUB: u64 = 64;
/// Powers of two covered above the linear range: up to 2^46 µs (two years).
const OCTAVES: u64 = 40;

/// A lock-free log-linear histogram of microsecond values (HDR-style), shared by the
/// tasks that record into it.
#[derive(Debug)]
pub(crate) struct Histogram {
    buckets: Vec<AtomicU64>,
}

impl Default for Histogram {
    fn default() -> Self {
        let len = usize::try_from(2 * SUB + OCTAVES * SUB).expect("small");
        Self {
            buckets: (0..len).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

fn bucket_of(v: u64) -> usize {
    let idx = if v < 2 * SUB {
        v
    } else {
        // 2*SUB = 2^7: octave e >= 7 holds [2^e, 2^(e+1)) in SUB steps of 2^(e-6).
        let e = 63 - u64::from(v.leading_zeros());
        let shift = e - 6;
        let sub = (v >> shift) - SUB; // 0..SUB
        2 * SUB + (e - 7) * SUB + sub
    };
    usize::try_from(idx.min(2 * SUB + OCTAVES * SUB - 1)).expect("small")
}

/// The middle of the values bucket `idx` holds.
fn value_of(idx: usize) -> u64 {
    let idx = idx as u64;
    if idx < 2 * SUB {
        return idx;
    }
    let e = (idx - 2 * SUB) / SUB + 7;
    let sub = (idx - 2 * SUB) % SUB + SUB;
    let shift = e - 6;
    (sub << shift) + (1 << shift) / 2
}

impl Histogram {
    pub(crate) fn record(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.buckets[bucket_of(us)].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn reset(&self) {
        for b in &self.buckets {
            b.store(0, Ordering::Relaxed);
        }
    }

    pub(crate) fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// The value at quantile `q` (0..=1), in microseconds.
    pub(crate) fn quantile_us(&self, q: f64) -> u64 {
        let total = self.count();
        if total == 0 {
            return 0;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            seen += b.load(Ordering::Relaxed);
            if seen >= rank {
                return value_of(i);
            }
        }
        value_of(self.buckets.len() - 1)
    }

    pub(crate) fn p50_ms(&self) -> f64 {
        self.quantile_us(0.50) as f64 / 1000.0
    }

    pub(crate) fn p99_ms(&self) -> f64 {
        self.quantile_us(0.99) as f64 / 1000.0
    }
}

/// The median of `values` (mean of the middle two for an even count).
pub(crate) fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

/// The figures of A (bare) and B (full stack) over alternating rounds.
#[derive(Debug, Clone, Default)]
pub(crate) struct Rounds {
    pub(crate) a: Vec<f64>,
    pub(crate) b: Vec<f64>,
}

impl Rounds {
    /// Median of the per-round ratios B / A.
    pub(crate) fn ratio(&self) -> f64 {
        let ratios: Vec<f64> = self.a.iter().zip(&self.b).map(|(a, b)| b / a).collect();
        median(&ratios)
    }

    pub(crate) fn median_a(&self) -> f64 {
        median(&self.a)
    }

    pub(crate) fn median_b(&self) -> f64 {
        median(&self.b)
    }

    /// The per-round ratios, for the record.
    pub(crate) fn ratios(&self) -> Vec<f64> {
        self.a.iter().zip(&self.b).map(|(a, b)| b / a).collect()
    }
}

/// Runs `rounds` rounds of A then B (B then A in odd rounds, so that drift in the
/// machine's load does not favour one side), each returning one figure.
pub(crate) async fn alternate<A, FA, B, FB>(
    rounds: usize,
    mut a: A,
    mut b: B,
) -> anyhow::Result<Rounds>
where
    A: FnMut(usize) -> FA,
    FA: Future<Output = anyhow::Result<f64>>,
    B: FnMut(usize) -> FB,
    FB: Future<Output = anyhow::Result<f64>>,
{
    let mut out = Rounds::default();
    for round in 0..rounds {
        if round % 2 == 0 {
            out.a.push(a(round).await.context("bare (A)")?);
            out.b.push(b(round).await.context("full stack (B)")?);
        } else {
            out.b.push(b(round).await.context("full stack (B)")?);
            out.a.push(a(round).await.context("bare (A)")?);
        }
        eprintln!(
            "    round {}: A {:.1}  B {:.1}  ratio {:.3}",
            round + 1,
            out.a[round],
            out.b[round],
            out.b[round] / out.a[round]
        );
    }
    Ok(out)
}

/// `/proc/loadavg`'s first three fields.
pub(crate) fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "n/a".to_owned())
}

/// This process's resident set size in KiB (`VmRSS` of `/proc/self/status`).
pub(crate) fn rss_kib() -> anyhow::Result<u64> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS in /proc/self/status")
}

/// A point in time as nanoseconds since a shared origin, storable in an atomic.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    origin: Instant,
}

impl Clock {
    pub(crate) fn new() -> Self {
        Self {
            origin: Instant::now(),
        }
    }

    pub(crate) fn now_ns(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    pub(crate) fn since(&self, ns: u64) -> Duration {
        Duration::from_nanos(self.now_ns().saturating_sub(ns))
    }

    pub(crate) fn at(&self, ns: u64) -> Instant {
        self.origin + Duration::from_nanos(ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_round_trip_within_two_percent() {
        for v in [0u64, 1, 127, 128, 129, 1000, 4567, 99_999, 10_000_000] {
            let back = value_of(bucket_of(v));
            let err = (back as f64 - v as f64).abs() / (v.max(1) as f64);
            assert!(err <= 0.02, "{v} -> {back}");
        }
    }

    #[test]
    fn quantiles() {
        let h = Histogram::default();
        for us in 1..=1000u64 {
            h.record(Duration::from_micros(us));
        }
        let p99 = h.quantile_us(0.99);
        assert!((980..=1000).contains(&p99), "{p99}");
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
    }
}
