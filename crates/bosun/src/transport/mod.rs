//! Transports: bytes in, bytes out. Parsing addresses, binding listeners
//! (unix, abstract, vsock) and dialling (unix, vsock, hybrid vsock).

pub mod accept;
pub mod address;
pub mod connect;
pub mod guard;
pub mod limits;
pub mod listen;

pub use address::{Address, AddressError};
