//! Renderings shared by blocking readers that ask the same question at the same index.
//!
//! When a service changes, every reader blocked on it wakes at once. If each rendered its own
//! answer, 500 watchers of `/v1/health/service/web` would cost 500 renderings of the same bytes
//! per change (and did: p99 wake-up of 23–30 ms with 1,000 watchers, docs/BENCHMARKS.md). Here
//! the first reader renders and the others reuse its bytes: one rendering per change per
//! question, as issue 3 asks of every fan-out.
//!
//! Only blocking reads (`?index=` given) share: their readers wait for an index change, and the
//! answer at an index is the same for all of them except for check output and latency, which
//! change on every run without a write. A blocking reader therefore sees the output as of the
//! first render at its index (Consul itself only syncs output every few minutes). Plain reads
//! always render fresh.

use bytes::Bytes;
use dashmap::DashMap;
use std::sync::{Arc, OnceLock};

/// Most questions remembered; past it, new questions render for themselves. Keys come from
/// clients (path and query), so the map must not grow without bound.
const MAX_QUESTIONS: usize = 4096;

struct Slot {
    index: u64,
    body: OnceLock<Bytes>,
}

/// The latest rendering of each question.
#[derive(Default)]
pub struct SharedReads {
    slots: DashMap<String, Arc<Slot>>,
}

impl SharedReads {
    /// The answer to `question` at `index`: rendered by the first reader to ask, shared with
    /// the rest. A reader holding an older index than the remembered one renders its own.
    pub fn get_or_render(
        &self,
        question: String,
        index: u64,
        render: impl FnOnce() -> Bytes,
    ) -> Bytes {
        // The common case — a slot for this index exists — takes only a read lock: all the
        // readers of a change arrive together, and a write lock here made them queue (and
        // spin, then yield the CPU) behind each other on the map's shard.
        let current = self
            .slots
            .get(&question)
            .filter(|slot| slot.index >= index)
            .map(|slot| Arc::clone(&slot));
        let slot = match current {
            Some(slot) => slot,
            None => match self.slots.get_mut(&question) {
                Some(mut slot) => {
                    if slot.index < index {
                        *slot = Arc::new(Slot {
                            index,
                            body: OnceLock::new(),
                        });
                    }
                    Arc::clone(&slot)
                }
                None if self.slots.len() < MAX_QUESTIONS => {
                    Arc::clone(&self.slots.entry(question).or_insert_with(|| {
                        Arc::new(Slot {
                            index,
                            body: OnceLock::new(),
                        })
                    }))
                }
                None => return render(),
            },
        };
        if slot.index != index {
            return render();
        }
        slot.body.get_or_init(render).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn readers_at_one_index_share_one_rendering() {
        let reads = SharedReads::default();
        let renders = AtomicUsize::new(0);
        let render = |text: &'static str| {
            renders.fetch_add(1, Ordering::SeqCst);
            Bytes::from_static(text.as_bytes())
        };
        for _ in 0..10 {
            assert_eq!(reads.get_or_render("q".into(), 5, || render("a")), "a");
        }
        assert_eq!(renders.load(Ordering::SeqCst), 1);
        assert_eq!(reads.get_or_render("q".into(), 6, || render("b")), "b");
        assert_eq!(
            reads.get_or_render("q".into(), 5, || render("old")),
            "old",
            "older index renders its own"
        );
        assert_eq!(reads.get_or_render("q".into(), 6, || render("c")), "b");
        assert_eq!(renders.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn the_number_of_questions_is_bounded() {
        let reads = SharedReads::default();
        for i in 0..MAX_QUESTIONS + 10 {
            reads.get_or_render(format!("q{i}"), 1, || Bytes::from_static(b"x"));
        }
        assert_eq!(reads.slots.len(), MAX_QUESTIONS);
    }
}
