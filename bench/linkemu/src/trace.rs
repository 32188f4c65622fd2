//! Mahimahi packet-delivery traces (the `mm-link` format of Netravali et al., "Mahimahi:
//! Accurate Record-and-Replay for HTTP", USENIX ATC 2015; files in `shared/traces/`).
//!
//! One integer per line: a time in milliseconds from the start of the trace at which
//! one [`OPPORTUNITY_BYTES`]-byte packet may leave the bottleneck queue. Several
//! opportunities in one millisecond repeat the timestamp. The trace repeats with a
//! period equal to its last timestamp (as `mm-link` does: a file holding just `1` is one
//! 1500-byte packet per millisecond, 12 Mbit/s).

use std::path::Path;

/// Bytes one delivery opportunity may carry (Mahimahi's MTU-sized packet).
pub const OPPORTUNITY_BYTES: u64 = 1500;

/// Why a trace could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TraceError {
    /// A line is not a non-negative integer number of milliseconds.
    #[error("line {line}: {text:?} is not a whole number of milliseconds")]
    NotANumber {
        /// 1-based line number.
        line: usize,
        /// The line as read.
        text: String,
    },
    /// Timestamps must not decrease.
    #[error("line {line}: timestamp {value} ms is before the previous one ({previous} ms)")]
    Decreasing {
        /// 1-based line number.
        line: usize,
        /// Timestamp on that line (ms).
        value: u64,
        /// Timestamp of the line before (ms).
        previous: u64,
    },
    /// No timestamps at all.
    #[error("the trace has no delivery opportunities")]
    Empty,
    /// The last timestamp (the period) is 0, so the trace cannot repeat.
    #[error("the last timestamp is 0 ms: the trace has no period")]
    ZeroPeriod,
    /// The file could not be read.
    #[error("cannot read trace {path}: {reason}")]
    Io {
        /// Path as given.
        path: String,
        /// The OS error.
        reason: String,
    },
}

/// A parsed trace: delivery-opportunity times within one period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    /// Opportunity times (ms from the start of a period), non-decreasing.
    times_ms: Vec<u64>,
    /// Period (ms): the last timestamp; the trace repeats after it.
    period_ms: u64,
}

impl Trace {
    /// Parse the text of a trace file. Blank lines are ignored; anything else that is not
    /// a non-negative integer is an error naming the line.
    pub fn parse(text: &str) -> Result<Self, TraceError> {
        let mut times_ms = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() {
                continue;
            }
            let value: u64 = line.parse().map_err(|_| TraceError::NotANumber {
                line: i + 1,
                text: raw.to_owned(),
            })?;
            if let Some(&previous) = times_ms.last() {
                if value < previous {
                    return Err(TraceError::Decreasing {
                        line: i + 1,
                        value,
                        previous,
                    });
                }
            }
            times_ms.push(value);
        }
        let period_ms = *times_ms.last().ok_or(TraceError::Empty)?;
        if period_ms == 0 {
            return Err(TraceError::ZeroPeriod);
        }
        Ok(Self {
            times_ms,
            period_ms,
        })
    }

    /// Read and parse a trace file.
    pub fn load(path: &Path) -> Result<Self, TraceError> {
        let text = std::fs::read_to_string(path).map_err(|e| TraceError::Io {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Self::parse(&text)
    }

    /// A synthetic trace of `bps` rounded down to whole opportunities per second, spread
    /// evenly over a 1000 ms period (for tests and for comparing both capacity modes).
    pub fn constant(bps: u64) -> Self {
        let per_second = (bps / (OPPORTUNITY_BYTES * 8)).max(1);
        // ceil((i + 1) * 1000 / n): non-decreasing, first >= 1, last = 1000 = period.
        let times_ms = (0..per_second)
            .map(|i| ((i + 1) * 1000).div_ceil(per_second))
            .collect();
        Self {
            times_ms,
            period_ms: 1000,
        }
    }

    /// Period of the trace (ms).
    pub fn period_ms(&self) -> u64 {
        self.period_ms
    }

    /// Delivery opportunities in one period.
    pub fn opportunities_per_period(&self) -> u64 {
        self.times_ms.len() as u64
    }

    /// Mean capacity over one period (bit/s, counting [`OPPORTUNITY_BYTES`] per
    /// opportunity).
    pub fn mean_bps(&self) -> f64 {
        self.opportunities_per_period() as f64 * (OPPORTUNITY_BYTES * 8) as f64 * 1000.0
            / self.period_ms as f64
    }

    /// Time (ms from the trace start) of opportunity number `n` (0-based, counting over
    /// the repetitions).
    pub fn opportunity_ms(&self, n: u64) -> u64 {
        let len = self.opportunities_per_period();
        (n / len) * self.period_ms + self.times_ms[(n % len) as usize]
    }

    /// Number of the first opportunity at or after `t_ms` (ms from the trace start).
    pub fn first_at_or_after(&self, t_ms: u64) -> u64 {
        // = the number of opportunities before t_ms. Cycle c holds c·period + times[i];
        // the last entry of a cycle (= period) falls on the next cycle's start, so split
        // t_ms as q·period + r with r in [1, period]: cycles before q are whole.
        if t_ms == 0 {
            return 0;
        }
        let q = (t_ms - 1) / self.period_ms;
        let r = t_ms - q * self.period_ms;
        q * self.opportunities_per_period() + self.times_ms.partition_point(|&x| x < r) as u64
    }

    /// Opportunities in `[from_ms, to_ms)` (trace time).
    pub fn opportunities_between(&self, from_ms: u64, to_ms: u64) -> u64 {
        if to_ms <= from_ms {
            return 0;
        }
        self.first_at_or_after(to_ms) - self.first_at_or_after(from_ms)
    }

    /// Capacity offered in `[from_ms, to_ms)` (trace time), in bits.
    pub fn capacity_bits_between(&self, from_ms: u64, to_ms: u64) -> u64 {
        self.opportunities_between(from_ms, to_ms) * OPPORTUNITY_BYTES * 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_period() {
        let t = Trace::parse("1\n1\n3\n\n5\n").unwrap();
        assert_eq!(t.period_ms(), 5);
        assert_eq!(t.opportunities_per_period(), 4);
        let times: Vec<_> = (0..9).map(|n| t.opportunity_ms(n)).collect();
        assert_eq!(times, vec![1, 1, 3, 5, 6, 6, 8, 10, 11]);
        assert_eq!(t.first_at_or_after(0), 0);
        assert_eq!(t.first_at_or_after(2), 2);
        assert_eq!(t.first_at_or_after(5), 3);
        assert_eq!(t.first_at_or_after(6), 4);
        assert_eq!(t.first_at_or_after(7), 6);
        assert_eq!(t.opportunities_between(0, 10), 7);
    }

    #[test]
    fn single_line_is_12_mbit() {
        let t = Trace::parse("1").unwrap();
        assert_eq!(t.mean_bps(), 12_000_000.0);
        assert_eq!(t.opportunities_between(0, 1000), 999); // at 1..=999 ms
        assert_eq!(t.opportunities_between(1, 1001), 1000);
    }

    #[test]
    fn bad_input_is_an_error_naming_the_line() {
        assert_eq!(
            Trace::parse("1\nx2\n"),
            Err(TraceError::NotANumber {
                line: 2,
                text: "x2".into()
            })
        );
        assert!(matches!(
            Trace::parse("5\n3\n"),
            Err(TraceError::Decreasing { line: 2, .. })
        ));
        assert_eq!(Trace::parse("\n\n"), Err(TraceError::Empty));
        assert_eq!(Trace::parse("0\n0\n"), Err(TraceError::ZeroPeriod));
        assert!(matches!(
            Trace::load(Path::new("/nonexistent/trace.up")),
            Err(TraceError::Io { .. })
        ));
    }

    #[test]
    fn constant_trace_has_the_rate() {
        for bps in [2_000_000u64, 5_000_000, 10_000_000] {
            let t = Trace::constant(bps);
            let want = (bps / 12_000) as f64 * 12_000.0;
            assert!((t.mean_bps() - want).abs() < 1.0, "{bps}: {}", t.mean_bps());
        }
    }

    #[test]
    fn shared_traces_have_their_documented_mean() {
        // Figures of shared/traces/README.md (Mbit/s), when the files are present.
        let Some(dir) = crate::find_traces_dir(Path::new(env!("CARGO_MANIFEST_DIR"))) else {
            eprintln!("skip: no shared/traces directory above the crate");
            return;
        };
        for (name, mbps) in [
            ("TMobile-LTE-short.up", 13.3),
            ("Verizon-LTE-short.up", 5.95),
            ("ATT-LTE-driving.up", 0.83),
        ] {
            let path = dir.join(name);
            if !path.exists() {
                eprintln!("skip {name}: {} not found", path.display());
                continue;
            }
            let t = Trace::load(&path).unwrap();
            let got = t.mean_bps() / 1e6;
            assert!((got - mbps).abs() / mbps < 0.02, "{name}: {got} Mbit/s");
        }
    }
}
