//! The Kata Containers agent protocol as bosun serves and speaks it: the
//! generated messages and ttrpc services (see build.rs and protos/), and
//! OCI bundles read into the protocol's `Spec`. Both the agent and its
//! clients depend on this crate; it depends on neither.
#![warn(missing_docs)]

pub mod bundle;

macro_rules! generated {
    ($($name:ident),*) => {
        $(
            #[allow(
                missing_docs,
                clippy::all,
                unused_qualifications,
                unused_results,
                non_camel_case_types,
                non_snake_case,
                non_upper_case_globals,
                unknown_lints,
                dead_code,
                unused,
                unsafe_code
            )]
            pub mod $name {
                include!(concat!(env!("OUT_DIR"), "/", stringify!($name), ".rs"));
            }
        )*
    };
}

generated!(
    empty,
    types,
    oci,
    agent,
    agent_ttrpc,
    health,
    health_ttrpc,
    remote,
    remote_ttrpc
);

/// Every AgentService request type name, from the protocol's own
/// descriptors (`ReadStreamRequest` serves ReadStdout and ReadStderr): the
/// names an agent policy has rules for.
pub fn agent_request_types() -> Vec<String> {
    let f = agent::file_descriptor();
    let mut v: Vec<String> = f
        .services()
        .flat_map(|s| {
            s.methods()
                .map(|m| m.input_type().name().to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    v.sort();
    v.dedup();
    v
}
