//! Connections per principal, counted across every listener: one role cannot take all of a
//! gateway's connections.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Counts open authenticated connections per role.
#[derive(Debug)]
pub struct PrincipalConnections {
    max: usize,
    open: Mutex<HashMap<String, usize>>,
}

/// One counted connection; dropping it gives the slot back.
#[derive(Debug)]
pub struct ConnectionSlot {
    counter: Arc<PrincipalConnections>,
    role: String,
}

impl PrincipalConnections {
    pub fn new(max: usize) -> Arc<PrincipalConnections> {
        Arc::new(PrincipalConnections {
            max,
            open: Mutex::new(HashMap::new()),
        })
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// A slot for one more connection of `role`, or `None` when it has `max` already.
    pub fn acquire(self: &Arc<Self>, role: &str) -> Option<ConnectionSlot> {
        let mut open = self.open.lock().expect("connections lock");
        let count = open.entry(role.to_owned()).or_default();
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(ConnectionSlot {
            counter: self.clone(),
            role: role.to_owned(),
        })
    }

    /// Open connections of `role`.
    pub fn count(&self, role: &str) -> usize {
        self.open
            .lock()
            .expect("connections lock")
            .get(role)
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut open = self.counter.open.lock().expect("connections lock");
        if let Some(count) = open.get_mut(&self.role) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.role);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_role_gets_at_most_max_slots_and_dropping_frees_one() {
        let counter = PrincipalConnections::new(2);
        let a1 = counter.acquire("a").unwrap();
        let _a2 = counter.acquire("a").unwrap();
        assert!(counter.acquire("a").is_none());
        let _b = counter.acquire("b").expect("roles are counted apart");
        drop(a1);
        assert_eq!(counter.count("a"), 1);
        assert!(counter.acquire("a").is_some());
    }
}
