//! Health status and its ordering: aggregation is "the worst check wins".

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The health of one check, or the aggregate of several.
///
/// Ordered from best to worst so that aggregation is `max()`: an instance is as healthy as its
/// least healthy check (Consul's `AggregatedStatus`, without maintenance, which is a critical
/// check by another name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Healthy: included in every healthy answer.
    Passing,
    /// Degraded: kept out of `?passing` answers, shown with its status where asked for.
    Warning,
    /// Failing: excluded from every healthy answer. The default for a new check, as in Consul.
    Critical,
}

impl Status {
    /// The wire spelling used by Consul's API: `passing`, `warning`, `critical`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Passing => "passing",
            Status::Warning => "warning",
            Status::Critical => "critical",
        }
    }

    /// The aggregate of a set of statuses: the worst one, or passing for none (Consul's rule).
    pub fn worst<I: IntoIterator<Item = Status>>(statuses: I) -> Status {
        statuses.into_iter().max().unwrap_or(Status::Passing)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A status string that is none of `passing`, `warning`, `critical`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid check status {0:?}: use passing, warning or critical")]
pub struct ParseStatusError(pub String);

impl FromStr for Status {
    type Err = ParseStatusError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "passing" => Ok(Status::Passing),
            "warning" => Ok(Status::Warning),
            "critical" => Ok(Status::Critical),
            other => Err(ParseStatusError(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worst_of_none_is_passing() {
        assert_eq!(Status::worst([]), Status::Passing);
    }

    #[test]
    fn worst_prefers_critical_over_warning() {
        assert_eq!(
            Status::worst([Status::Warning, Status::Critical, Status::Passing]),
            Status::Critical
        );
    }

    #[test]
    fn parses_only_the_three_statuses() {
        assert_eq!("warning".parse::<Status>(), Ok(Status::Warning));
        assert!("maintenance".parse::<Status>().is_err());
        assert!("Passing".parse::<Status>().is_err());
    }
}
