//! The gateway-wide byte budget for data in flight (issue 13): records read off client sockets
//! and not yet persisted, and fetch responses being assembled, across every connection of every
//! front end. It is a semaphore of bytes, as the AMQP front end's publish credit always was: a
//! connection that cannot get credit stops reading its socket until others give theirs back, so
//! a slow backend or a burst of clients slows them down instead of growing memory.
//!
//! Credit for more bytes than the whole budget is capped at the budget, so a single request
//! larger than it still goes through, alone.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The budget, shared by everything that holds data in flight.
#[derive(Debug)]
pub struct MemoryBudget {
    semaphore: Arc<Semaphore>,
    capacity: usize,
}

/// Bytes of the budget held; given back when dropped (or with `release`).
#[derive(Debug)]
pub struct Credit {
    budget: Arc<MemoryBudget>,
    permit: Option<OwnedSemaphorePermit>,
}

impl MemoryBudget {
    /// The largest budget (the semaphore counts up to `u32::MAX` at a time).
    pub const MAX: usize = u32::MAX as usize;

    pub fn new(capacity: usize) -> Arc<MemoryBudget> {
        let capacity = capacity.clamp(1, Self::MAX);
        Arc::new(MemoryBudget {
            semaphore: Arc::new(Semaphore::new(capacity)),
            capacity,
        })
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes held now.
    pub fn in_use(&self) -> usize {
        self.capacity
            .saturating_sub(self.semaphore.available_permits())
    }

    /// Bytes free now.
    pub fn available(&self) -> usize {
        self.semaphore.available_permits()
    }

    /// Credit for `bytes` (at most the whole budget), waiting until it is free. Waiters are
    /// served in order, so a large request is not starved by small ones.
    pub async fn acquire(self: &Arc<Self>, bytes: usize) -> Credit {
        let wanted = bytes.clamp(1, self.capacity) as u32;
        let permit = self
            .semaphore
            .clone()
            .acquire_many_owned(wanted)
            .await
            .expect("the budget's semaphore is never closed");
        self.credit(Some(permit))
    }

    /// Credit for `bytes` (at most the whole budget) if it is free now.
    pub fn try_acquire(self: &Arc<Self>, bytes: usize) -> Option<Credit> {
        let wanted = bytes.clamp(1, self.capacity) as u32;
        let permit = self.semaphore.clone().try_acquire_many_owned(wanted).ok()?;
        Some(self.credit(Some(permit)))
    }

    /// Credit for up to `bytes` of what is free now, possibly none (`Credit::bytes` says).
    pub fn take_available(self: &Arc<Self>, bytes: usize) -> Credit {
        loop {
            let free = self.available().min(bytes).min(self.capacity);
            if free == 0 {
                return self.none();
            }
            // Someone may take some in between: then try again with what is left.
            if let Some(credit) = self.try_acquire(free) {
                return credit;
            }
        }
    }

    /// Credit for nothing, to merge others into.
    pub fn none(self: &Arc<Self>) -> Credit {
        Credit {
            budget: self.clone(),
            permit: None,
        }
    }

    fn credit(self: &Arc<Self>, permit: Option<OwnedSemaphorePermit>) -> Credit {
        let credit = Credit {
            budget: self.clone(),
            permit,
        };
        self.report();
        credit
    }

    fn report(&self) {
        metrics::gauge!("gateway_in_flight_bytes").set(self.in_use() as f64);
    }
}

impl Credit {
    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.permit
            .as_ref()
            .map_or(0, OwnedSemaphorePermit::num_permits)
    }

    /// Holds `other`'s bytes too.
    pub fn merge(&mut self, mut other: Credit) {
        match (self.permit.as_mut(), other.permit.take()) {
            (Some(mine), Some(theirs)) => mine.merge(theirs),
            (None, theirs) => self.permit = theirs,
            (Some(_), None) => {}
        }
    }

    /// Gives `bytes` back (all that is held, at most).
    pub fn release(&mut self, bytes: usize) {
        let held = self.bytes();
        if bytes >= held {
            self.permit = None;
        } else if let Some(permit) = self.permit.as_mut() {
            drop(permit.split(bytes));
        }
        self.budget.report();
    }
}

impl Drop for Credit {
    fn drop(&mut self) {
        if self.permit.take().is_some() {
            self.budget.report();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn credit_beyond_the_budget_waits_until_some_is_given_back() {
        let budget = MemoryBudget::new(100);
        let first = budget.acquire(60).await;
        assert!(budget.try_acquire(50).is_none());
        let waiting = tokio::spawn({
            let budget = budget.clone();
            async move { budget.acquire(50).await.bytes() }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "it waits while 60 of 100 are held");
        drop(first);
        assert_eq!(waiting.await.unwrap(), 50);
        assert_eq!(budget.in_use(), 0);
    }

    #[tokio::test]
    async fn a_request_larger_than_the_budget_takes_all_of_it() {
        let budget = MemoryBudget::new(100);
        let credit = budget.acquire(1_000).await;
        assert_eq!(credit.bytes(), 100);
        assert_eq!(budget.available(), 0);
    }

    #[test]
    fn taking_what_is_free_merging_and_releasing() {
        let budget = MemoryBudget::new(100);
        let held = budget.try_acquire(70).unwrap();
        let mut some = budget.take_available(50);
        assert_eq!(some.bytes(), 30);
        assert_eq!(budget.take_available(10).bytes(), 0);
        some.release(20);
        assert_eq!(budget.in_use(), 80);
        some.merge(held);
        assert_eq!(some.bytes(), 80);
        drop(some);
        assert_eq!(budget.in_use(), 0);
    }
}
