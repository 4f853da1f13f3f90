//! The kernel calls with consequences (mount, namespaces, credentials,
//! signals, clone and exec, the clock, reboot, locks) and every `unsafe`
//! block live under this module; the rest of the agent calls these
//! functions, and uses std's safe wrappers only for plain files and
//! sockets (and nix's types: signal names, errno). There is no fake behind
//! it: the tests run against the real kernel, and the few faults it will
//! not produce on demand are injected at named points (`crate::faults`).
#![allow(unsafe_code)]

pub mod fd;
pub mod fsnode;
pub mod guest;
pub mod identity;
pub mod mount;
pub mod ns;
pub mod pidfd;
pub mod process;
pub mod sched;
pub mod socket;
pub mod spawn;
pub mod tty;
pub mod zygote;
