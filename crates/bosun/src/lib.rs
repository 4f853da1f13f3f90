//! bosun: the in-guest agent for VM-isolated pods, wire-compatible with the
//! Kata Containers agent protocol (ttrpc over vsock or unix sockets).
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod cgroup;
pub mod config;
pub mod container;
pub mod device;
pub mod error;
pub mod faults;
pub mod guestops;
pub mod ids;
pub mod image;
pub mod journal;
pub mod kmod;
pub mod logging;
pub mod mount;
pub mod net;
pub mod netstats;
pub mod policy;
pub mod process;
pub mod protect;
/// The protocol, as generated in `bosun-protocols`.
pub use bosun_protocols as protocols;
pub mod rpc;
pub mod runlock;
pub mod sandbox;
pub mod sync;
pub mod sys;
pub mod transport;
