//! Generated Kata-compatible protocol code (see build.rs and protocols/).
#![allow(
    missing_docs,
    clippy::all,
    unused_qualifications,
    unused_results,
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    unknown_lints,
    dead_code,
    unused
)]
#![allow(unsafe_code)]

macro_rules! generated {
    ($($name:ident),*) => {
        $(pub mod $name {
            include!(concat!(env!("OUT_DIR"), "/", stringify!($name), ".rs"));
        })*
    };
}

generated!(empty, types, oci, agent, agent_ttrpc, health, health_ttrpc);
