//! Percentiles of a set of timings.

use std::time::Duration;

#[derive(Debug, Clone, Copy, Default)]
pub struct Summary {
    pub median_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
}

pub fn summarise(samples: &[Duration]) -> Summary {
    if samples.is_empty() {
        return Summary::default();
    }
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    Summary {
        median_ms: at(0.5),
        p95_ms: at(0.95),
        p99_ms: at(0.99),
    }
}

pub fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
