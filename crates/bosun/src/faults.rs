//! Test-only fault points, for faults the kernel will not produce on
//! demand: the agent dying at an exact step (a SIGKILL from outside cannot
//! be timed between two syscalls), a bug (a panic) while a lock is
//! held, and a step this machine's kernel never refuses (a zygote that
//! cannot start: PR_SET_MM_MAP fails only without
//! CONFIG_CHECKPOINT_RESTORE). Each is named by an environment variable
//! that production never sets; unset, a point costs one lookup of the
//! environment.

use std::sync::atomic::{AtomicBool, Ordering};

/// `BOSUN_CRASH_AT=name`: the process aborts at the step `name`.
pub fn crash_point(name: &str) {
    if std::env::var_os("BOSUN_CRASH_AT").is_some_and(|v| v == name) {
        eprintln!("bosun: BOSUN_CRASH_AT={name}: aborting here on purpose");
        std::process::abort();
    }
}

/// `BOSUN_PANIC_AT=name`: the first pass through `name` panics (the
/// call is answered INTERNAL); later passes go on.
pub fn panic_point(name: &str) {
    static FIRED: AtomicBool = AtomicBool::new(false);
    if std::env::var_os("BOSUN_PANIC_AT").is_some_and(|v| v == name) && !FIRED.swap(true, Ordering::AcqRel) {
        panic!("BOSUN_PANIC_AT={name}: panicking here on purpose");
    }
}

/// `BOSUN_FAIL_AT=name`: the step `name` fails (the caller says how).
pub fn fail_point(name: &str) -> bool {
    std::env::var_os("BOSUN_FAIL_AT").is_some_and(|v| v == name)
}
