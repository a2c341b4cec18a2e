//! A step's retry budget as a value: its policy's `retry` layers flattened in order, where the
//! step stands in them, and the policy that applies once they are spent. The task runner asks
//! it for the next wait; nothing else walks the layers.

use crate::check::Policy;
use std::time::Duration;

/// One `retry(times, backoff, max)` layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layer {
    times: u32,
    backoff_ms: u64,
    max_backoff_ms: Option<u64>,
}

/// The next retry: how long to wait, and which retry of its layer it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Next {
    /// The wait before it.
    pub wait: Duration,
    /// 1 for the layer's first retry.
    pub number: u32,
    /// The layer's retries in all.
    pub of: u32,
}

/// Where a step stands in its retries.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Retries {
    layers: Vec<Layer>,
    /// The policy once every layer is spent (never a `Retry`).
    last: Policy,
    layer: usize,
    used: u32,
}

impl Retries {
    /// The budget of `policy`, `retried` retries already used (a resumed step continues it).
    pub fn new(policy: &Policy, retried: u32) -> Retries {
        let mut layers = Vec::new();
        let mut p = policy;
        while let Policy::Retry {
            times,
            backoff_ms,
            max_backoff_ms,
            then,
        } = p
        {
            layers.push(Layer {
                times: *times,
                backoff_ms: *backoff_ms,
                max_backoff_ms: *max_backoff_ms,
            });
            p = then;
        }
        let mut r = Retries {
            layers,
            last: p.clone(),
            layer: 0,
            used: 0,
        };
        for _ in 0..retried {
            if r.advance().is_none() {
                break;
            }
        }
        r
    }

    /// The policy that applies when the step fails for good.
    pub fn last(&self) -> &Policy {
        &self.last
    }

    /// Whether a retry is left (for a transient error).
    pub fn any_left(&self) -> bool {
        self.layers[self.layer.min(self.layers.len())..]
            .iter()
            .enumerate()
            .any(|(i, l)| l.times > if i == 0 { self.used } else { 0 })
    }

    /// Uses up the next retry: its wait (exponential in the layer, capped by the layer's
    /// maximum), or `None` when every layer is spent.
    pub fn advance(&mut self) -> Option<Next> {
        while let Some(l) = self.layers.get(self.layer) {
            if self.used < l.times {
                let exp = l.backoff_ms.saturating_mul(1u64 << self.used.min(30));
                let wait = l.max_backoff_ms.map_or(exp, |m| exp.min(m));
                self.used += 1;
                return Some(Next {
                    wait: Duration::from_millis(wait),
                    number: self.used,
                    of: l.times,
                });
            }
            self.layer += 1;
            self.used = 0;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retry(times: u32, backoff_ms: u64, max: Option<u64>, then: Policy) -> Policy {
        Policy::Retry {
            times,
            backoff_ms,
            max_backoff_ms: max,
            then: Box::new(then),
        }
    }

    fn waits(r: &mut Retries) -> Vec<(u64, u32, u32)> {
        std::iter::from_fn(|| r.advance())
            .map(|n| (n.wait.as_millis() as u64, n.number, n.of))
            .collect()
    }

    #[test]
    fn layers_give_their_waits_in_order_then_the_last_policy() {
        let policy = retry(3, 100, Some(250), retry(1, 1000, None, Policy::Rollback));
        let mut r = Retries::new(&policy, 0);
        assert!(r.any_left());
        assert_eq!(
            waits(&mut r),
            [(100, 1, 3), (200, 2, 3), (250, 3, 3), (1000, 1, 1)]
        );
        assert!(!r.any_left());
        assert_eq!(r.last(), &Policy::Rollback);
    }

    /// A resumed step continues its budget through nested layers.
    #[test]
    fn a_resumed_step_continues_where_it_stood() {
        let policy = retry(2, 10, None, retry(1, 50, None, Policy::Stop));
        assert_eq!(
            waits(&mut Retries::new(&policy, 1)),
            [(20, 2, 2), (50, 1, 1)]
        );
        assert_eq!(waits(&mut Retries::new(&policy, 2)), [(50, 1, 1)]);
        assert_eq!(waits(&mut Retries::new(&policy, 3)), []);
        assert_eq!(waits(&mut Retries::new(&policy, 9)), []);
        let plain = Retries::new(&Policy::Continue, 4);
        assert!(!plain.any_left());
        assert_eq!(plain.last(), &Policy::Continue);
    }

    #[test]
    fn zero_times_layers_are_skipped_and_backoff_saturates() {
        let policy = retry(0, 10, None, retry(40, u64::MAX / 2, None, Policy::Halt));
        let mut r = Retries::new(&policy, 0);
        let w = waits(&mut r);
        assert_eq!(w.len(), 40);
        assert!(w.iter().all(|(ms, _, of)| *ms >= u64::MAX / 2 && *of == 40));
        assert_eq!(r.last(), &Policy::Halt);
    }
}
