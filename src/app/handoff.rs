//! [`Handoff`]: the queue between the producer's coordinating thread and its
//! decoder threads (jobs one way, decoded frames the other), whose waiters
//! sleep at once on a futex (`parking_lot`'s `Condvar`) and never call
//! `sched_yield`.
//!
//! Why not a `crossbeam` channel: a blocked `recv` there snoozes first,
//! calling `sched_yield` about eight times before it parks. When every core
//! is busy decoding (the normal case: one decoder per core), each of those
//! yields hands the core to a decoder for the rest of its time slice (up to
//! a scheduler tick, 4 ms here), and a thread that yields is still
//! runnable, so a message sent to it meanwhile cannot wake it. The
//! coordinator then saw a finished frame milliseconds late, the decoders ran
//! out of jobs and the cores went idle 4–5 % of a 2-core JPEG run
//! (`perf sched`: the coordinator runnable but not running at 4 ms steps
//! while the other core was idle; docs/benchmarks.md). A sleeping waiter is
//! woken by the sender and, having slept, is scheduled at once.
//!
//! Capacity is the caller's business: the producer never has more items
//! out than slots in flight, so the queue preallocates that many and a push
//! never allocates nor waits.

use parking_lot::{Condvar, Mutex};
use std::collections::VecDeque;
use std::time::Duration;

/// A multi-producer, multi-consumer FIFO whose `pop` sleeps until an item
/// arrives, the queue is closed, or every sender is gone.
#[derive(Debug)]
pub(crate) struct Handoff<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
}

#[derive(Debug)]
struct State<T> {
    items: VecDeque<T>,
    /// No more items will be taken: pushes fail, pops return `Closed`.
    closed: bool,
    /// Live [`Sender`]s; with none left and no items, pops return `Closed`.
    senders: usize,
}

/// What [`Handoff::pop`] found.
#[derive(Debug)]
pub(crate) enum Pop<T> {
    Item(T),
    /// The timeout passed with the queue empty.
    Timeout,
    /// The queue was closed, or its senders are all gone and it is empty.
    Closed,
}

impl<T> Handoff<T> {
    /// An open queue with room for `capacity` items before it allocates.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self {
            state: Mutex::new(State {
                items: VecDeque::with_capacity(capacity),
                closed: false,
                senders: 0,
            }),
            ready: Condvar::new(),
        }
    }

    /// Appends `item` and wakes one waiting `pop`; gives the item back if
    /// the queue is closed. Only through a [`Sender`], so that whoever
    /// pushes is counted.
    fn push(&self, item: T) -> Result<(), T> {
        let mut s = self.state.lock();
        if s.closed {
            return Err(item);
        }
        s.items.push_back(item);
        drop(s);
        self.ready.notify_one();
        Ok(())
    }

    /// The oldest item, waiting up to `timeout` (`None`: for good) for one.
    pub(crate) fn pop(&self, timeout: Option<Duration>) -> Pop<T> {
        let mut s = self.state.lock();
        loop {
            if s.closed {
                return Pop::Closed;
            }
            if let Some(item) = s.items.pop_front() {
                return Pop::Item(item);
            }
            if s.senders == 0 {
                return Pop::Closed;
            }
            match timeout {
                None => self.ready.wait(&mut s),
                Some(t) => {
                    if self.ready.wait_for(&mut s, t).timed_out() {
                        return match s.items.pop_front() {
                            Some(item) => Pop::Item(item),
                            None => Pop::Timeout,
                        };
                    }
                }
            }
        }
    }

    /// Registers a sender: while one lives, an empty open queue makes
    /// `pop` wait rather than return `Closed`.
    pub(crate) fn sender(&self) -> Sender<'_, T> {
        self.state.lock().senders += 1;
        Sender(self)
    }

    /// Closes the queue: waiters return, later pushes fail. The items still
    /// queued are dropped here, outside the lock (slots go back to the ring).
    pub(crate) fn close(&self) {
        let left = {
            let mut s = self.state.lock();
            s.closed = true;
            std::mem::take(&mut s.items)
        };
        self.ready.notify_all();
        drop(left);
    }
}

/// A registered sender of a [`Handoff`]; dropping it (a thread ending, or
/// unwinding) tells the receivers once none is left.
#[derive(Debug)]
pub(crate) struct Sender<'a, T>(&'a Handoff<T>);

impl<T> Sender<'_, T> {
    /// [`Handoff::push`].
    pub(crate) fn push(&self, item: T) -> Result<(), T> {
        self.0.push(item)
    }
}

impl<T> Drop for Sender<'_, T> {
    fn drop(&mut self) {
        let last = {
            let mut s = self.0.state.lock();
            s.senders -= 1;
            s.senders == 0
        };
        if last {
            self.0.ready.notify_all();
        }
    }
}

/// Closes its queue when dropped, on every way out of a scope.
#[derive(Debug)]
pub(crate) struct CloseOnDrop<'a, T>(pub(crate) &'a Handoff<T>);

impl<T> Drop for CloseOnDrop<'_, T> {
    fn drop(&mut self) {
        self.0.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn items_come_out_in_order_and_a_closed_queue_refuses_more() {
        let q = Handoff::with_capacity(4);
        let tx = q.sender();
        for i in 0..3 {
            tx.push(i).unwrap();
        }
        for i in 0..3 {
            assert!(matches!(q.pop(Some(Duration::ZERO)), Pop::Item(x) if x == i));
        }
        assert!(matches!(
            q.pop(Some(Duration::from_millis(1))),
            Pop::Timeout
        ));
        tx.push(7).unwrap();
        q.close();
        assert!(
            matches!(q.pop(None), Pop::Closed),
            "closing drops what is queued"
        );
        assert_eq!(tx.push(8), Err(8));
    }

    #[test]
    fn a_waiting_pop_returns_when_the_last_sender_goes() {
        let q = Handoff::<u32>::with_capacity(1);
        std::thread::scope(|s| {
            let (a, b) = (q.sender(), q.sender());
            s.spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                drop(a);
                std::thread::sleep(Duration::from_millis(20));
                drop(b);
            });
            let t = Instant::now();
            assert!(matches!(q.pop(None), Pop::Closed));
            assert!(
                t.elapsed() >= Duration::from_millis(40),
                "returned while a sender lived"
            );
        });
        // No sender ever: nothing can come.
        assert!(matches!(q.pop(None), Pop::Closed));
    }

    #[test]
    fn a_push_wakes_a_sleeping_pop_and_close_wakes_all() {
        let q = Handoff::with_capacity(2);
        let tx = q.sender();
        std::thread::scope(|s| {
            let got = s.spawn(|| q.pop(None));
            std::thread::sleep(Duration::from_millis(20));
            tx.push(5u8).unwrap();
            assert!(matches!(got.join().unwrap(), Pop::Item(5)));
            let waiters: Vec<_> = (0..2).map(|_| s.spawn(|| q.pop(None))).collect();
            std::thread::sleep(Duration::from_millis(20));
            q.close();
            for w in waiters {
                assert!(matches!(w.join().unwrap(), Pop::Closed));
            }
        });
    }
}
