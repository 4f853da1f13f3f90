//! bosun's built-in pause: holds the pod's namespaces, reaps the children
//! it inherits (as PID 1 of a pod pid namespace), exits on SIGTERM/SIGINT.
//! Runs when the pause container has no rootfs (remote-hypervisor mode,
//! where the host never shares one) and by `bosun pause`.

use nix::sys::signal::Signal;

/// Runs until SIGTERM or SIGINT; returns the exit code (0).
pub fn run() -> i32 {
    // Blocked signals are still delivered to sigwait, even as PID 1 of a
    // pid namespace (which otherwise ignores signals without a handler).
    let Ok(set) = crate::sys::process::block_signals(&[Signal::SIGTERM, Signal::SIGINT, Signal::SIGCHLD]) else {
        return 1;
    };
    loop {
        match set.wait() {
            Ok(Signal::SIGCHLD) => while crate::sys::process::reap_one().is_some() {},
            Ok(Signal::SIGTERM) | Ok(Signal::SIGINT) => return 0,
            _ => {}
        }
    }
}
