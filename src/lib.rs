//! bosun: the in-guest agent for VM-isolated pods.
#![deny(unsafe_code)]
pub mod protocols;
