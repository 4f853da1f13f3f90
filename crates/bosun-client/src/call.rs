//! Any AgentService or Health method by name, with its request as protobuf
//! JSON (the same mapping as tests/fixtures): `bosunctl call METHOD JSON`.
//! The method's types come from the protocol's own descriptors, so every
//! method of protocols/*.proto is callable, served or not.

use protobuf::reflect::{FileDescriptor, MethodDescriptor};

use super::Client;

/// A method by its name (`GetMetrics`), in `grpc.AgentService` or
/// `grpc.Health`: (service name, method).
pub fn method(name: &str) -> Option<(String, MethodDescriptor)> {
    let files: [FileDescriptor; 2] = [
        bosun_protocols::agent::file_descriptor().clone(),
        bosun_protocols::health::file_descriptor().clone(),
    ];
    files.iter().find_map(|f| {
        f.services().find_map(|s| {
            let m = s.methods().find(|m| m.proto().name() == name)?;
            Some((format!("grpc.{}", s.proto().name()), m))
        })
    })
}

/// Calls `name` with `json`; returns the answer as JSON.
pub async fn call(c: &Client, name: &str, json: &str, timeout: std::time::Duration) -> Result<String, String> {
    let (service, m) = method(name).ok_or_else(|| format!("no method {name:?} in the Kata protocol"))?;
    let req =
        protobuf_json_mapping::parse_dyn_from_str(&m.input_type(), json).map_err(|e| format!("{name} request: {e}"))?;
    let mut r = ttrpc::proto::Request::new();
    r.set_service(service);
    r.set_method(name.to_string());
    r.set_timeout_nano(timeout.as_nanos() as i64);
    r.set_payload(req.write_to_bytes_dyn().map_err(|e| e.to_string())?);
    let resp = c.raw.request(r).await.map_err(|e| match e {
        ttrpc::Error::RpcStatus(s) => format!("{:?}: {}", s.code(), s.message()),
        other => other.to_string(),
    })?;
    let out = m
        .output_type()
        .parse_from_bytes(&resp.payload)
        .map_err(|e| format!("{name} answer: {e}"))?;
    protobuf_json_mapping::print_to_string(&*out).map_err(|e| e.to_string())
}
