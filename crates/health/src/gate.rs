//! The report gate: whether a derived status is worth a write.
//!
//! A runner reports only a status that differs both from what the catalog holds (as last learned
//! through `Scheduler::update`) and from what it already reported and is waiting to see
//! confirmed. Without the second rule, a check at a 1 s interval behind a slow write path would
//! queue the same write again every second until the first one landed.
//!
//! A pending report that is never confirmed (the agent dropped it, or its write failed) is sent
//! again after [`CONFIRM_TIMEOUT`], so that a lost write cannot leave the catalog wrong forever.
//!
//! Pure apart from the instants it is handed, so it is tested without a clock.

use std::time::Duration;
use tokio::time::Instant;
use wayfinder_catalog::Status;

/// How long a reported status may go unconfirmed before the same status is reported again.
pub(crate) const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);

/// The status a runner reported and has not yet seen in the catalog.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ReportGate {
    pending: Option<(Status, Instant)>,
}

impl ReportGate {
    /// Decides whether `derived` must be reported while the catalog holds `known`, and if so
    /// records it as pending. A derived status equal to the catalog's withdraws any pending
    /// report: it is stale, and [`ReportGate::pending`] no longer vouches for it.
    pub(crate) fn decide(&mut self, derived: Status, known: Status, now: Instant) -> bool {
        if derived == known {
            self.pending = None;
            return false;
        }
        if let Some((status, at)) = self.pending
            && status == derived
            && now.saturating_duration_since(at) < CONFIRM_TIMEOUT
        {
            return false;
        }
        self.pending = Some((derived, now));
        true
    }

    /// The catalog now holds `known`: a pending report of that status has landed.
    pub(crate) fn confirm(&mut self, known: Status) {
        if self.pending.is_some_and(|(status, _)| status == known) {
            self.pending = None;
        }
    }

    /// Forgets the pending report: something newer (a TTL heartbeat written by the API)
    /// supersedes it.
    pub(crate) fn withdraw(&mut self) {
        self.pending = None;
    }

    /// The status reported and not yet confirmed, if any.
    pub(crate) fn pending(&self) -> Option<Status> {
        self.pending.map(|(status, _)| status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Status::{Critical, Passing, Warning};

    #[test]
    fn reports_only_a_change() {
        let now = Instant::now();
        let mut gate = ReportGate::default();
        assert!(!gate.decide(Passing, Passing, now));
        assert!(gate.decide(Critical, Passing, now));
        assert_eq!(gate.pending(), Some(Critical));
    }

    #[test]
    fn does_not_repeat_a_report_in_flight() {
        let now = Instant::now();
        let mut gate = ReportGate::default();
        assert!(gate.decide(Critical, Passing, now));
        assert!(!gate.decide(Critical, Passing, now + Duration::from_secs(1)));
        // A different status is a new report.
        assert!(gate.decide(Warning, Passing, now + Duration::from_secs(2)));
    }

    #[test]
    fn confirmation_clears_the_pending_report() {
        let now = Instant::now();
        let mut gate = ReportGate::default();
        assert!(gate.decide(Critical, Passing, now));
        gate.confirm(Warning);
        assert_eq!(
            gate.pending(),
            Some(Critical),
            "another status confirms nothing"
        );
        gate.confirm(Critical);
        assert_eq!(gate.pending(), None);
        // The catalog moved back (someone else wrote): the same status is reported again.
        assert!(gate.decide(Critical, Passing, now));
    }

    #[test]
    fn an_unconfirmed_report_is_repeated_after_the_timeout() {
        let now = Instant::now();
        let mut gate = ReportGate::default();
        assert!(gate.decide(Critical, Passing, now));
        assert!(!gate.decide(Critical, Passing, now + CONFIRM_TIMEOUT / 2));
        assert!(gate.decide(Critical, Passing, now + CONFIRM_TIMEOUT));
    }

    #[test]
    fn agreeing_with_the_catalog_withdraws_a_stale_report() {
        let now = Instant::now();
        let mut gate = ReportGate::default();
        assert!(gate.decide(Critical, Passing, now));
        assert!(!gate.decide(Passing, Passing, now));
        assert_eq!(gate.pending(), None);
    }

    #[test]
    fn withdraw_forgets() {
        let now = Instant::now();
        let mut gate = ReportGate::default();
        assert!(gate.decide(Critical, Passing, now));
        gate.withdraw();
        assert_eq!(gate.pending(), None);
    }
}
