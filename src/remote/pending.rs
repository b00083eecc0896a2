//! Connections that have not finished their hello. They cost a thread and a file descriptor
//! each, so there is a cap; when it is reached the oldest one is shut down to make room. A peer
//! that says hello at once is settled long before it could be the oldest, so a crowd of idle
//! connections cannot keep a viewer out, and the accept loop never waits for anyone.
use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

/// How many connections may be waiting for their hello at once.
pub const MAX_PENDING: usize = 64;

/// Shuts one connection down (its hello read then fails at once).
pub type Closer = Box<dyn FnOnce() + Send>;

pub struct Pending {
    cap: usize,
    waiting: Mutex<VecDeque<(u64, Closer)>>,
}

impl Pending {
    pub fn new(cap: usize) -> Pending {
        Pending {
            cap: cap.max(1),
            waiting: Mutex::new(VecDeque::new()),
        }
    }

    /// A new connection `id` starts its hello; at the cap the oldest waiting one is shut down.
    /// Returns the id it evicted, if any.
    pub fn admit(&self, id: u64, close: Closer) -> Option<u64> {
        let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        let evicted = if waiting.len() >= self.cap {
            waiting.pop_front().map(|(old, close)| {
                close();
                old
            })
        } else {
            None
        };
        waiting.push_back((id, close));
        evicted
    }

    /// Connection `id` finished its hello (either way): it no longer counts.
    pub fn settle(&self, id: u64) {
        let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        waiting.retain(|(waiting_id, _)| *waiting_id != id);
    }

    pub fn len(&self) -> usize {
        self.waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    #[test]
    fn the_oldest_waiting_connection_makes_room() {
        let closed = Arc::new(AtomicU64::new(0));
        let pending = Pending::new(3);
        let closer = |id: u64| -> Closer {
            let closed = Arc::clone(&closed);
            Box::new(move || {
                closed.fetch_or(1 << id, Ordering::SeqCst);
            })
        };
        for id in 1..=3 {
            assert_eq!(pending.admit(id, closer(id)), None);
        }
        // 2 said hello: it no longer counts, so 4 fits without evicting anyone.
        pending.settle(2);
        assert_eq!(pending.admit(4, closer(4)), None);
        assert_eq!(pending.len(), 3);
        // Now full: 5 evicts 1, the oldest, and 6 evicts 3.
        assert_eq!(pending.admit(5, closer(5)), Some(1));
        assert_eq!(pending.admit(6, closer(6)), Some(3));
        assert_eq!(closed.load(Ordering::SeqCst), (1 << 1) | (1 << 3));
        assert_eq!(pending.len(), 3);
        for id in [4, 5, 6, 7] {
            pending.settle(id);
        }
        assert!(pending.is_empty());
    }
}
