//! Packet-loss processes: independent (Bernoulli) loss and the two-state
//! Gilbert-Elliott model (Gilbert 1960, Elliott 1963; parameters as in RFC 3611 §4.7.2
//! and Hasslinger & Hohlfeld, "The Gilbert-Elliott Model for Packet Loss in Real Time
//! Services on the Internet", MMB 2008).

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;

/// Gilbert-Elliott parameters, given either as raw transition probabilities or as a
/// mean loss rate and mean burst length (packets), from which
/// `r = 1 / mean_burst`, `p = mean_loss · r / (1 − mean_loss)` with a lossless Good
/// state and an always-losing Bad state.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum GilbertElliottConfig {
    /// Mean loss rate (0..1) and mean length of a loss burst (packets, ≥ 1).
    Mean {
        /// Long-run share of packets lost (0..1).
        mean_loss: f64,
        /// Mean number of consecutive packets lost in a burst (≥ 1).
        mean_burst: f64,
    },
    /// Raw model.
    Raw {
        /// P(Good → Bad) per packet.
        p: f64,
        /// P(Bad → Good) per packet.
        r: f64,
        /// Loss probability in the Good state (default 0).
        #[serde(default)]
        loss_good: f64,
        /// Loss probability in the Bad state (default 1).
        #[serde(default = "one")]
        loss_bad: f64,
    },
}

fn one() -> f64 {
    1.0
}

/// A resolved Gilbert-Elliott model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GilbertElliott {
    /// P(Good → Bad) per packet.
    pub p: f64,
    /// P(Bad → Good) per packet.
    pub r: f64,
    /// Loss probability in Good.
    pub loss_good: f64,
    /// Loss probability in Bad.
    pub loss_bad: f64,
}

impl GilbertElliottConfig {
    /// Check ranges and resolve to transition probabilities.
    /// Errors: a probability outside [0, 1], `mean_loss` not in [0, 1), `mean_burst` < 1.
    pub fn resolve(&self) -> Result<GilbertElliott, String> {
        let ge = match *self {
            Self::Mean {
                mean_loss,
                mean_burst,
            } => {
                if !(0.0..1.0).contains(&mean_loss) {
                    return Err(format!("mean_loss {mean_loss} is not in [0, 1)"));
                }
                if mean_burst.is_nan() || mean_burst < 1.0 {
                    return Err(format!("mean_burst {mean_burst} is below 1 packet"));
                }
                let r = 1.0 / mean_burst;
                GilbertElliott {
                    p: mean_loss * r / (1.0 - mean_loss),
                    r,
                    loss_good: 0.0,
                    loss_bad: 1.0,
                }
            }
            Self::Raw {
                p,
                r,
                loss_good,
                loss_bad,
            } => GilbertElliott {
                p,
                r,
                loss_good,
                loss_bad,
            },
        };
        for (name, v) in [
            ("p", ge.p),
            ("r", ge.r),
            ("loss_good", ge.loss_good),
            ("loss_bad", ge.loss_bad),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(format!("Gilbert-Elliott {name} = {v} is not in [0, 1]"));
            }
        }
        Ok(ge)
    }
}

impl GilbertElliott {
    /// Long-run loss rate: π_B · loss_bad + π_G · loss_good with π_B = p / (p + r).
    pub fn mean_loss(&self) -> f64 {
        if self.p + self.r == 0.0 {
            return self.loss_good;
        }
        let pi_b = self.p / (self.p + self.r);
        pi_b * self.loss_bad + (1.0 - pi_b) * self.loss_good
    }
}

/// The loss process of one path: independent loss, optionally combined with a
/// Gilbert-Elliott process (a packet is lost if either process loses it). Seeded, so a
/// run is reproducible.
#[derive(Debug, Clone)]
pub struct LossProcess {
    random: f64,
    ge: Option<GilbertElliott>,
    bad: bool,
    rng: SmallRng,
}

impl LossProcess {
    /// `random`: independent loss probability (0..=1); `ge`: optional bursty process.
    pub fn new(random: f64, ge: Option<GilbertElliott>, seed: u64) -> Self {
        Self {
            random,
            ge,
            bad: false,
            rng: SmallRng::seed_from_u64(seed),
        }
    }

    /// Change the independent loss probability (schedule event).
    pub fn set_random(&mut self, random: f64) {
        self.random = random;
    }

    /// Decide the fate of the next packet: `true` = lost.
    pub fn lose(&mut self) -> bool {
        let mut lost = false;
        if let Some(ge) = self.ge {
            let p_loss = if self.bad { ge.loss_bad } else { ge.loss_good };
            lost = p_loss > 0.0 && self.rng.random::<f64>() < p_loss;
            let flip = if self.bad { ge.r } else { ge.p };
            if flip > 0.0 && self.rng.random::<f64>() < flip {
                self.bad = !self.bad;
            }
        }
        if self.random > 0.0 && self.rng.random::<f64>() < self.random {
            lost = true;
        }
        lost
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Loss rate and mean burst length over `n` packets.
    fn measure(lp: &mut LossProcess, n: usize) -> (f64, f64) {
        let (mut lost, mut bursts, mut run) = (0usize, 0usize, 0usize);
        for _ in 0..n {
            if lp.lose() {
                lost += 1;
                run += 1;
            } else if run > 0 {
                bursts += 1;
                run = 0;
            }
        }
        if run > 0 {
            bursts += 1;
        }
        (lost as f64 / n as f64, lost as f64 / bursts.max(1) as f64)
    }

    #[test]
    fn bernoulli_hits_its_rate_with_bursts_near_one() {
        let mut lp = LossProcess::new(0.01, None, 7);
        let (rate, burst) = measure(&mut lp, 400_000);
        assert!((rate - 0.01).abs() < 0.001, "rate {rate}");
        assert!(burst < 1.05, "burst {burst}");
    }

    #[test]
    fn gilbert_elliott_hits_mean_loss_and_burst_length() {
        for (mean_loss, mean_burst) in [(0.02, 4.0), (0.05, 8.0), (0.01, 1.5)] {
            let ge = GilbertElliottConfig::Mean {
                mean_loss,
                mean_burst,
            }
            .resolve()
            .unwrap();
            assert!((ge.mean_loss() - mean_loss).abs() < 1e-12);
            let mut lp = LossProcess::new(0.0, Some(ge), 11);
            let (rate, burst) = measure(&mut lp, 2_000_000);
            assert!(
                (rate - mean_loss).abs() / mean_loss < 0.06,
                "{mean_loss}/{mean_burst}: rate {rate}"
            );
            assert!(
                (burst - mean_burst).abs() / mean_burst < 0.06,
                "{mean_loss}/{mean_burst}: burst {burst}"
            );
        }
    }

    #[test]
    fn raw_parameters_and_combination() {
        let ge = GilbertElliottConfig::Raw {
            p: 0.01,
            r: 0.25,
            loss_good: 0.0,
            loss_bad: 1.0,
        }
        .resolve()
        .unwrap();
        // π_B = 0.01 / 0.26; with 3 % independent loss on top: 1 − (1 − π_B)(1 − 0.03).
        let want = 1.0 - (1.0 - 0.01 / 0.26) * 0.97;
        let mut lp = LossProcess::new(0.03, Some(ge), 3);
        let (rate, _) = measure(&mut lp, 1_000_000);
        assert!((rate - want).abs() / want < 0.05, "rate {rate} want {want}");
    }

    #[test]
    fn invalid_parameters_are_refused() {
        let bad = [
            GilbertElliottConfig::Mean {
                mean_loss: 1.0,
                mean_burst: 3.0,
            },
            GilbertElliottConfig::Mean {
                mean_loss: 0.1,
                mean_burst: 0.5,
            },
            GilbertElliottConfig::Raw {
                p: 1.5,
                r: 0.1,
                loss_good: 0.0,
                loss_bad: 1.0,
            },
        ];
        for b in bad {
            assert!(b.resolve().is_err(), "{b:?}");
        }
    }

    #[test]
    fn seeded_runs_repeat() {
        let a: Vec<bool> = {
            let mut lp = LossProcess::new(0.2, None, 42);
            (0..100).map(|_| lp.lose()).collect()
        };
        let b: Vec<bool> = {
            let mut lp = LossProcess::new(0.2, None, 42);
            (0..100).map(|_| lp.lose()).collect()
        };
        assert_eq!(a, b);
    }
}
