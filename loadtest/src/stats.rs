//! Small statistics used by the load test: percentiles of per-transaction latencies and the
//! median and spread of a figure across rounds.

/// The `q`-quantile (0.0..=1.0) of sorted values by the nearest-rank method: the smallest
/// value such that at least `q` of all values are at or below it. `None` when empty.
///
/// Nearest rank (rather than interpolation) keeps every reported percentile a latency that a
/// transaction really had, which is what pgbench's own `--aggregate-interval` tables do too.
pub fn percentile(sorted: &[u64], q: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let q = q.clamp(0.0, 1.0);
    let rank = (q * sorted.len() as f64).ceil() as usize;
    let index = rank.clamp(1, sorted.len()) - 1;
    sorted.get(index).copied()
}

/// Median of the values (mean of the two middle ones for an even count). `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// The spread of a figure across rounds: (max - min) / median. `None` for fewer than two
/// values or a zero median.
pub fn spread(values: &[f64]) -> Option<f64> {
    if values.len() < 2 {
        return None;
    }
    let med = median(values)?;
    if med == 0.0 {
        return None;
    }
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    Some((max - min) / med)
}

/// A spread above this share of the median marks a figure "noisy".
pub const NOISY_SPREAD: f64 = 0.10;

/// True when the spread across rounds passes [`NOISY_SPREAD`].
pub fn is_noisy(spread: Option<f64>) -> bool {
    spread.is_some_and(|s| s > NOISY_SPREAD)
}

/// `value / baseline`, or `None` when either is missing or the baseline is zero.
pub fn ratio(value: Option<f64>, baseline: Option<f64>) -> Option<f64> {
    match (value, baseline) {
        (Some(v), Some(b)) if b > 0.0 => Some(v / b),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_is_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.50), Some(50));
        assert_eq!(percentile(&v, 0.99), Some(99));
        assert_eq!(percentile(&v, 0.999), Some(100));
        assert_eq!(percentile(&v, 0.0), Some(1));
        assert_eq!(percentile(&v, 1.0), Some(100));
        let v: Vec<u64> = (1..=1000).collect();
        assert_eq!(percentile(&v, 0.999), Some(999));
        assert_eq!(percentile(&[7], 0.5), Some(7));
        assert_eq!(percentile(&[], 0.5), None);
        // Two values: the median by nearest rank is the lower one.
        assert_eq!(percentile(&[10, 20], 0.5), Some(10));
    }

    #[test]
    fn median_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[f64::NAN]), None);
    }

    #[test]
    fn spread_and_noisy() {
        // 100, 104, 108: (108 - 100) / 104 = 7.7 %: not noisy.
        let s = spread(&[100.0, 108.0, 104.0]).unwrap();
        assert!((s - 8.0 / 104.0).abs() < 1e-12);
        assert!(!is_noisy(Some(s)));
        // 100, 105, 120: 20 / 105 = 19 %: noisy.
        assert!(is_noisy(spread(&[100.0, 120.0, 105.0])));
        // Exactly 10 % is not past the bar.
        assert!(!is_noisy(Some(0.10)));
        assert_eq!(spread(&[5.0]), None);
        assert!(!is_noisy(None));
        assert_eq!(spread(&[0.0, 0.0]), None);
    }

    #[test]
    fn ratio_needs_both_and_a_positive_baseline() {
        assert_eq!(ratio(Some(9.0), Some(10.0)), Some(0.9));
        assert_eq!(ratio(Some(9.0), Some(0.0)), None);
        assert_eq!(ratio(None, Some(1.0)), None);
        assert_eq!(ratio(Some(1.0), None), None);
    }
}
