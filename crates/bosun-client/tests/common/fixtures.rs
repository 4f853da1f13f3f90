//! The golden requests of tests/fixtures, parsed as a runtime filled them.
#![allow(dead_code)]

use std::path::Path;

pub fn fixture_text(name: &str, subst: &[(&str, &str)]) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    let mut text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    for (k, v) in subst {
        text = text.replace(k, v);
    }
    text
}

/// A request message from its protobuf JSON fixture (strict: an unknown
/// field is an error, so a fixture cannot drift from the protocol).
pub fn fixture<M: protobuf::MessageFull>(name: &str, subst: &[(&str, &str)]) -> M {
    protobuf_json_mapping::parse_from_str(&fixture_text(name, subst)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A JSON array of request messages.
pub fn fixture_list<M: protobuf::MessageFull>(name: &str) -> Vec<M> {
    fixture_list_with(name, &[])
}

/// A JSON array of request messages, with `subst` applied to the text.
pub fn fixture_list_with<M: protobuf::MessageFull>(name: &str, subst: &[(&str, &str)]) -> Vec<M> {
    let v: serde_json::Value = serde_json::from_str(&fixture_text(name, subst)).unwrap();
    v.as_array()
        .unwrap_or_else(|| panic!("{name}: an array"))
        .iter()
        .map(|m| protobuf_json_mapping::parse_from_str(&m.to_string()).unwrap_or_else(|e| panic!("{name}: {e}")))
        .collect()
}
