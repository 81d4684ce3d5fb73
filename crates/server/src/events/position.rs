//! Where a watcher is in the event stream: the SSE `id:` it last saw.
//!
//! One write (one catalog index) can yield several events (a registration that moves an
//! instance to another service is a deregistration plus a registration; a node-level check
//! changes the health of every instance), so the index alone cannot say which of them a
//! client has seen. A position is the index plus the event's place within that index.

use std::fmt;
use std::str::FromStr;

/// A point in the event stream, ordered by index, then by place within the index.
///
/// Written `"{index}.{seq}"` for an event (`1795383607278.0`, `1795383607278.1`, ...), and
/// `"{index}"` for "everything up to and including index `index`", which is what a `resync`
/// event's id says: the snapshot it carries includes every event of that index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// Catalog index of the write.
    pub index: u64,
    /// Place of the event among the events of `index`, from 0; `u32::MAX` means "after all of
    /// them".
    pub seq: u32,
}

impl Position {
    /// The position of the `seq`-th event (from 0) of the write at `index`.
    pub fn event(index: u64, seq: u32) -> Self {
        Self { index, seq }
    }

    /// The position after every event of the write at `index`: a snapshot at that index.
    pub fn end_of(index: u64) -> Self {
        Self {
            index,
            seq: u32::MAX,
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.seq == u32::MAX {
            write!(f, "{}", self.index)
        } else {
            write!(f, "{}.{}", self.index, self.seq)
        }
    }
}

/// A `Last-Event-ID` that is not a position this agent hands out. The watch treats it as
/// "too far behind" and starts with a resync rather than refusing the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an event position; expected INDEX or INDEX.SEQ, e.g. 1795383607278.0")]
pub struct ParsePositionError(pub String);

impl FromStr for Position {
    type Err = ParsePositionError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || ParsePositionError(text.to_owned());
        let trimmed = text.trim();
        let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
        match trimmed.split_once('.') {
            None if digits(trimmed) => {
                Ok(Position::end_of(trimmed.parse().map_err(|_| invalid())?))
            }
            Some((index, seq)) if digits(index) && digits(seq) => Ok(Position::event(
                index.parse().map_err(|_| invalid())?,
                seq.parse().map_err(|_| invalid())?,
            )),
            _ => Err(invalid()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip_through_text() {
        for position in [
            Position::event(1_795_383_607_278, 0),
            Position::event(7, 3),
            Position::end_of(42),
        ] {
            assert_eq!(position.to_string().parse::<Position>(), Ok(position));
        }
        assert_eq!(
            Position::event(1_795_383_607_278, 0).to_string(),
            "1795383607278.0"
        );
        assert_eq!(Position::end_of(42).to_string(), "42");
    }

    #[test]
    fn order_is_index_then_place_and_end_of_covers_the_whole_index() {
        assert!(Position::event(5, 9) < Position::event(6, 0));
        assert!(Position::event(5, 0) < Position::event(5, 1));
        assert!(Position::event(5, 1000) < Position::end_of(5));
        assert!(Position::end_of(5) < Position::event(6, 0));
    }

    #[test]
    fn garbage_is_refused_not_guessed() {
        for text in [
            "",
            " ",
            "abc",
            "1.",
            ".1",
            "1.2.3",
            "-1",
            "1.-2",
            "+1",
            "1e3",
            "1.99999999999",
            "99999999999999999999999",
        ] {
            assert!(text.parse::<Position>().is_err(), "{text:?} parsed");
        }
        assert_eq!(" 12.3 ".parse::<Position>(), Ok(Position::event(12, 3)));
    }
}
