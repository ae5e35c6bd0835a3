//! A long sleep kept pending on each worker thread's runtime, so that arming a request's
//! deadline does not wake the runtime's driver.
//!
//! Tokio's time driver sleeps until its earliest timer. Registering a timer earlier than that
//! (or any timer when none is pending, as on a gateway between requests) must wake the driver
//! so it re-arms, which writes the runtime's eventfd: a system call on the first byte's path of
//! every request that arrives at an idle gateway (seen with `strace`: one 8-byte write per
//! request). With an anchor that always wakes the driver no later than any request deadline,
//! a deadline is never the earliest timer and is registered without that write. The anchor
//! costs one wake-up per period per worker thread.

use std::cell::Cell;
use std::time::Duration;

/// The longest the anchor sleeps: it wakes an idle gateway once a minute.
const MAX_PERIOD: Duration = Duration::from_secs(60);

thread_local! {
    /// Whether this thread's runtime has its anchor.
    static ANCHORED: Cell<bool> = const { Cell::new(false) };
}

/// Starts the anchor on the current runtime unless this thread has one: called on a request's
/// path before it arms a deadline of `deadline` (the shortest it arms; the anchor then always
/// wakes no later than a deadline armed after it).
pub(crate) fn ensure(deadline: Duration) {
    if ANCHORED.with(|a| a.replace(true)) {
        return;
    }
    let period = deadline.min(MAX_PERIOD);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(period).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One anchor per thread, whatever the number of requests.
    #[tokio::test]
    async fn a_thread_gets_one_anchor() {
        let metrics = tokio::runtime::Handle::current().metrics();
        let before = metrics.num_alive_tasks();
        ensure(Duration::from_secs(600));
        assert_eq!(metrics.num_alive_tasks(), before + 1);
        ensure(Duration::from_secs(600));
        ensure(Duration::from_millis(10));
        assert_eq!(metrics.num_alive_tasks(), before + 1);
    }
}
