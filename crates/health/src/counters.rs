//! The threshold state machine: how consecutive probe results become a status.
//!
//! This is Consul's `StatusHandler` (agent/checks/check.go), kept pure so it can be tested
//! exhaustively: no clock, no IO, one result in, at most one status out.
//!
//! - A passing or warning result counts as a success: it resets the failure count, and the
//!   result is reported once `success_before_passing` consecutive successes have been seen.
//! - A critical result resets the success count; critical is reported once
//!   `failures_before_critical` consecutive failures have been seen, otherwise warning once
//!   `failures_before_warning` (when that is set) have been.
//! - Anything else holds: the catalog keeps the status it has.
//!
//! With every threshold at 0 (the default) each result is reported as it comes.

use wayfinder_catalog::{CheckPolicy, Status};

/// The three thresholds of a [`CheckPolicy`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Thresholds {
    /// Consecutive successes needed before a success is reported.
    pub(crate) success_before_passing: u32,
    /// Consecutive failures after which warning is reported (0: never warn early).
    pub(crate) failures_before_warning: u32,
    /// Consecutive failures needed before critical is reported.
    pub(crate) failures_before_critical: u32,
}

impl From<&CheckPolicy> for Thresholds {
    fn from(policy: &CheckPolicy) -> Self {
        Self {
            success_before_passing: policy.success_before_passing,
            failures_before_warning: policy.failures_before_warning,
            failures_before_critical: policy.failures_before_critical,
        }
    }
}

/// Consecutive successes and failures of one check since its runner started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counters {
    successes: u32,
    failures: u32,
}

impl Counters {
    /// Counts one run's `result` and returns the status it makes the check take, or `None` while
    /// a threshold holds the current status.
    pub(crate) fn record(&mut self, thresholds: Thresholds, result: Status) -> Option<Status> {
        match result {
            Status::Passing | Status::Warning => {
                self.successes = self.successes.saturating_add(1);
                self.failures = 0;
                (self.successes >= thresholds.success_before_passing).then_some(result)
            }
            Status::Critical => {
                self.successes = 0;
                self.failures = self.failures.saturating_add(1);
                if self.failures >= thresholds.failures_before_critical {
                    Some(Status::Critical)
                } else if thresholds.failures_before_warning > 0
                    && self.failures >= thresholds.failures_before_warning
                {
                    Some(Status::Warning)
                } else {
                    None
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Status::{Critical, Passing, Warning};

    fn thresholds(success: u32, warn: u32, crit: u32) -> Thresholds {
        Thresholds {
            success_before_passing: success,
            failures_before_warning: warn,
            failures_before_critical: crit,
        }
    }

    fn run(t: Thresholds, results: &[Status]) -> Vec<Option<Status>> {
        let mut counters = Counters::default();
        results.iter().map(|r| counters.record(t, *r)).collect()
    }

    #[test]
    fn zero_thresholds_report_every_result() {
        let t = Thresholds::default();
        assert_eq!(
            run(t, &[Passing, Critical, Warning, Critical]),
            [Some(Passing), Some(Critical), Some(Warning), Some(Critical)]
        );
    }

    #[test]
    fn successes_must_be_consecutive() {
        let t = thresholds(3, 0, 0);
        assert_eq!(
            run(
                t,
                &[
                    Passing, Passing, Critical, Passing, Passing, Passing, Passing
                ]
            ),
            [
                None,
                None,
                Some(Critical),
                None,
                None,
                Some(Passing),
                Some(Passing)
            ]
        );
    }

    #[test]
    fn a_warning_result_counts_as_a_success_and_is_reported_as_warning() {
        let t = thresholds(2, 0, 0);
        assert_eq!(run(t, &[Warning, Passing]), [None, Some(Passing)]);
        assert_eq!(run(t, &[Passing, Warning]), [None, Some(Warning)]);
    }

    #[test]
    fn failures_warn_then_go_critical() {
        let t = thresholds(0, 2, 4);
        assert_eq!(
            run(t, &[Critical, Critical, Critical, Critical, Critical]),
            [
                None,
                Some(Warning),
                Some(Warning),
                Some(Critical),
                Some(Critical)
            ]
        );
    }

    #[test]
    fn without_a_warning_threshold_failures_hold_until_critical() {
        let t = thresholds(0, 0, 3);
        assert_eq!(
            run(t, &[Critical, Critical, Critical]),
            [None, None, Some(Critical)]
        );
    }

    #[test]
    fn a_success_resets_the_failure_count() {
        let t = thresholds(0, 0, 2);
        assert_eq!(
            run(t, &[Critical, Passing, Critical, Critical]),
            [None, Some(Passing), None, Some(Critical)]
        );
    }

    #[test]
    fn equal_warning_and_critical_thresholds_go_straight_to_critical() {
        let t = thresholds(0, 2, 2);
        assert_eq!(run(t, &[Critical, Critical]), [None, Some(Critical)]);
    }

    #[test]
    fn counts_saturate_instead_of_overflowing() {
        let mut counters = Counters {
            successes: u32::MAX,
            failures: 0,
        };
        let t = thresholds(u32::MAX, 0, 0);
        assert_eq!(counters.record(t, Passing), Some(Passing));
        assert_eq!(counters.successes, u32::MAX);
    }

    #[test]
    fn every_sequence_respects_the_thresholds() {
        // Exhaustive over all result sequences of length 6 and small thresholds: whatever is
        // reported is backed by enough consecutive results of the right kind.
        let statuses = [Passing, Warning, Critical];
        for success in 0..4 {
            for crit in 0..4 {
                for warn in 0..=crit {
                    let t = thresholds(success, warn, crit);
                    for code in 0..3usize.pow(6) {
                        let seq: Vec<Status> =
                            (0..6).map(|i| statuses[code / 3usize.pow(i) % 3]).collect();
                        let out = run(t, &seq);
                        for (i, reported) in out.iter().enumerate() {
                            let tail_ok = seq[..=i]
                                .iter()
                                .rev()
                                .take_while(|s| **s != Critical)
                                .count();
                            let tail_bad = seq[..=i]
                                .iter()
                                .rev()
                                .take_while(|s| **s == Critical)
                                .count();
                            match reported {
                                Some(Passing) => {
                                    assert_eq!(seq[i], Passing);
                                    assert!(tail_ok >= success as usize);
                                }
                                Some(Warning) if seq[i] == Warning => {
                                    assert!(tail_ok >= success as usize);
                                }
                                Some(Warning) => {
                                    assert!(warn > 0 && tail_bad >= warn as usize);
                                    assert!(tail_bad < crit as usize);
                                }
                                Some(Critical) => assert!(tail_bad >= crit as usize),
                                None if seq[i] == Critical => {
                                    assert!(tail_bad < crit as usize)
                                }
                                None => assert!(tail_ok < success as usize),
                            }
                        }
                    }
                }
            }
        }
    }
}
