//! Locks that survive a panic.
//!
//! A handler that panics is answered INTERNAL (see `rpc::traced`), and the
//! agent goes on serving. A `std` mutex held at that moment is poisoned,
//! and `.lock().expect()` would then fail every later call until a
//! restart. bosun's critical sections are short and leave the guarded data
//! consistent at every step (no invariant spans two statements that a
//! panic could split), so the lock is taken over as it stands.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, taking it over if a panic poisoned it.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_poisoned_by_a_panic_is_still_served() {
        let m = std::sync::Arc::new(Mutex::new(vec![1]));
        let m2 = m.clone();
        let r = std::thread::spawn(move || {
            let mut g = m2.lock().unwrap();
            g.push(2);
            panic!("a bug while the lock is held");
        })
        .join();
        assert!(r.is_err(), "the thread panicked");
        assert!(m.is_poisoned());
        lock(&m).push(3);
        assert_eq!(*lock(&m), vec![1, 2, 3]);
    }
}
