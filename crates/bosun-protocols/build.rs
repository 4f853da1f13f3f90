//! Generates the protocol code from protos/*.proto with ttrpc-codegen
//! (pure-Rust parser: no protoc needed on the machine).
//!
//! The generated files start with inner attributes (`#![allow(..)]`), which
//! `include!` cannot take, so they are copied without those lines; the
//! allowances are restated on the modules in src/lib.rs.

use std::fs;
use std::path::PathBuf;

use ttrpc_codegen::{Codegen, Customize, ProtobufCustomize};

const PROTOS: &[&str] = &[
    "protos/empty.proto",
    "protos/types.proto",
    "protos/oci.proto",
    "protos/agent.proto",
    "protos/health.proto",
    "protos/remote.proto",
];

fn main() {
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR is set by cargo"));
    let raw = out.join("raw");
    fs::create_dir_all(&raw).expect("create OUT_DIR/raw");
    for p in PROTOS {
        println!("cargo:rerun-if-changed={p}");
    }
    Codegen::new()
        .out_dir(&raw)
        .inputs(PROTOS)
        .include("protos")
        .rust_protobuf()
        .customize(Customize {
            async_all: true,
            ..Default::default()
        })
        .rust_protobuf_customize(ProtobufCustomize::default().gen_mod_rs(false))
        .run()
        .expect("generate protocol code");

    for entry in fs::read_dir(&raw).expect("read generated dir") {
        let path = entry.expect("dir entry").path();
        let text = fs::read_to_string(&path).expect("read generated file");
        let kept: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with("#![") && !l.starts_with("//!"))
            .collect();
        fs::write(
            out.join(path.file_name().expect("file name")),
            unimplemented_by_default(&kept.join("\n")),
        )
        .expect("write generated file");
    }
}

/// The generated trait's default methods answer NOT_FOUND "... is not
/// supported". A kata runtime reads NOT_FOUND as "no such container", so
/// bosun answers UNIMPLEMENTED, naming the method, for every method it has
/// not implemented.
fn unimplemented_by_default(code: &str) -> String {
    code.replace(
        "::ttrpc::get_status(::ttrpc::Code::NOT_FOUND, \"/grpc.",
        "::ttrpc::get_status(::ttrpc::Code::UNIMPLEMENTED, \"/grpc.",
    )
    .replace(
        " is not supported\".to_string()",
        " is not implemented by bosun\".to_string()",
    )
}
