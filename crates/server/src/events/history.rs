//! The bounded ring of recent events a reconnecting watcher resumes from.

use super::position::Position;
use super::render::RenderedEvent;
use std::collections::VecDeque;
use std::sync::Arc;

/// The last `capacity` events, oldest first, and how far back they reach.
///
/// Invariant: every event after `horizon` is retained. So a client whose last
/// position is at or after the horizon can be given exactly what it missed; one before it
/// cannot, and gets a resync instead.
#[derive(Debug)]
pub struct History {
    events: VecDeque<Arc<RenderedEvent>>,
    capacity: usize,
    horizon: Position,
}

impl History {
    /// An empty history starting after `start` (the catalog the hub was created from), holding
    /// at most `capacity` events (at least one).
    pub fn new(start: Position, capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            events: VecDeque::with_capacity(capacity),
            capacity,
            horizon: start,
        }
    }

    /// Appends `event`, forgetting the oldest one when full. Positions must only grow.
    pub fn push(&mut self, event: Arc<RenderedEvent>) {
        debug_assert!(
            self.last().is_none_or(|last| last < event.position),
            "event positions must only grow"
        );
        if self.events.len() == self.capacity
            && let Some(oldest) = self.events.pop_front()
        {
            self.horizon = oldest.position;
        }
        self.events.push_back(event);
    }

    /// The position of the newest event retained.
    pub fn last(&self) -> Option<Position> {
        self.events.back().map(|event| event.position)
    }

    /// Every retained event after `after`, oldest first, or `None` when events after `after`
    /// have already been forgotten (the client is too far behind).
    pub fn after(&self, after: Position) -> Option<impl Iterator<Item = &Arc<RenderedEvent>> + '_> {
        if after < self.horizon {
            return None;
        }
        let start = self.events.partition_point(|event| event.position <= after);
        Some(self.events.range(start..))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::response::sse::Event as SseEvent;
    use wayfinder_catalog::ServiceName;

    fn event(index: u64, seq: u32) -> Arc<RenderedEvent> {
        Arc::new(RenderedEvent {
            position: Position::event(index, seq),
            service: ServiceName::new("web", "Name").expect("name"),
            name: "registered",
            frame: SseEvent::default(),
        })
    }

    fn positions<'a>(events: impl Iterator<Item = &'a Arc<RenderedEvent>>) -> Vec<String> {
        events.map(|e| e.position.to_string()).collect()
    }

    #[test]
    fn resumes_after_any_retained_position_including_mid_index() {
        let mut history = History::new(Position::end_of(10), 8);
        for (index, seq) in [(11, 0), (11, 1), (11, 2), (12, 0)] {
            history.push(event(index, seq));
        }
        let after = |p| history.after(p).map(positions);
        assert_eq!(
            after(Position::end_of(10)),
            Some(vec![
                "11.0".into(),
                "11.1".into(),
                "11.2".into(),
                "12.0".into()
            ])
        );
        assert_eq!(
            after(Position::event(11, 0)),
            Some(vec!["11.1".into(), "11.2".into(), "12.0".into()])
        );
        assert_eq!(after(Position::end_of(11)), Some(vec!["12.0".into()]));
        assert_eq!(after(Position::event(12, 0)), Some(vec![]));
        assert_eq!(after(Position::event(10, 5)), None, "before the start");
        assert_eq!(after(Position::event(1, 0)), None);
    }

    #[test]
    fn a_full_ring_forgets_the_oldest_and_moves_the_horizon() {
        let mut history = History::new(Position::end_of(0), 3);
        for index in 1..=5 {
            history.push(event(index, 0));
        }
        assert_eq!(history.events.len(), 3);
        assert_eq!(history.horizon, Position::event(2, 0));
        assert_eq!(
            history.after(Position::event(2, 0)).map(positions),
            Some(vec!["3.0".into(), "4.0".into(), "5.0".into()]),
            "resuming exactly at the horizon misses nothing"
        );
        assert!(
            history.after(Position::event(1, 0)).is_none(),
            "2.0 was forgotten, so a client at 1.0 cannot be caught up"
        );
        assert_eq!(history.last(), Some(Position::event(5, 0)));
    }
}
