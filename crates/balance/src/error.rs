//! Configuration errors.
//!
//! Owns [`ConfigError`], the one error this crate returns: picking itself cannot fail (an empty
//! or fully rejected set is `None`, not an error), so errors only arise when a route's balancing
//! configuration is built. The message names the bad value so the agent can put it in a 4xx
//! body or a config-file diagnostic unchanged.

/// A balancing setting that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// A strategy name that is not one of [`crate::StrategyKind`]'s.
    #[error(
        "unknown strategy {0:?}; expected one of round_robin, random, least_request, peak_ewma, \
         weighted, consistent_hash"
    )]
    UnknownStrategy(String),
    /// A split weight outside `0..=1` (or not a number).
    #[error("split weight {0} is not a share between 0 and 1")]
    SplitWeight(f64),
    /// A split without a tag.
    #[error("split tag must not be empty")]
    EmptySplitTag,
    /// A slow start window of zero length.
    #[error("slow start window must be longer than zero")]
    ZeroSlowStartWindow,
    /// A slow start aggression that is not a finite number above zero.
    #[error("slow start aggression {0} must be a finite number above zero")]
    Aggression(f64),
    /// A slow start minimum weight outside `(0, 100]` percent.
    #[error("slow start minimum weight {0}% must be above 0 and at most 100")]
    MinWeightPercent(f64),
    /// An EWMA decay of zero length.
    #[error("EWMA decay must be longer than zero")]
    ZeroDecay,
}
