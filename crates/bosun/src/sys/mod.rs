//! Every direct kernel call bosun makes (nix, libc, `unsafe`) lives under
//! this module, so the rest of the code stays safe and easy to fake.
#![allow(unsafe_code)]

pub mod fd;
pub mod fsnode;
pub mod guest;
pub mod identity;
pub mod mount;
pub mod process;
pub mod socket;
pub mod spawn;
pub mod tty;
