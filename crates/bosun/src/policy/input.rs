//! A request as a policy reads it: the JSON the Kata agent hands its
//! engine, which is serde's rendering of the rust-protobuf structs. So:
//! every field is present (defaults included), named as the Rust field
//! is (the proto name, a Rust keyword with `_` after it: `type_`); an
//! unset message is `null`; enums are their numbers; 64-bit integers are
//! numbers; bytes are arrays of numbers; maps are objects; a oneof is
//! `{"<field>": value}` under the oneof's name, or `null`. Policies written
//! for the Kata agent (genpolicy's rules.rego reads `input.OCI.Mounts[i].type_`)
//! read bosun's requests the same way.

use protobuf::reflect::{ReflectFieldRef, ReflectValueRef, RuntimeFieldType, RuntimeType};
use protobuf::MessageDyn;
use serde_json::{Map, Value};

/// `m` as the Kata agent's policy input.
pub fn of(m: &dyn MessageDyn) -> Value {
    let d = m.descriptor_dyn();
    let mut out = Map::new();
    for f in d.fields() {
        if let Some(oneof) = f.containing_oneof() {
            let slot = out.entry(rust_name(oneof.name())).or_insert(Value::Null);
            if let ReflectFieldRef::Optional(o) = f.get_reflect(m) {
                if let Some(v) = o.value() {
                    let mut one = Map::new();
                    one.insert(rust_name(f.name()), value(v));
                    *slot = Value::Object(one);
                }
            }
            continue;
        }
        let v = match f.get_reflect(m) {
            ReflectFieldRef::Optional(o) => match o.value() {
                Some(v) => value(v),
                None => match f.runtime_field_type() {
                    RuntimeFieldType::Singular(t) => default(&t),
                    _ => Value::Null,
                },
            },
            ReflectFieldRef::Repeated(r) => Value::Array((0..r.len()).map(|i| value(r.get(i))).collect()),
            ReflectFieldRef::Map(mp) => {
                let mut o = Map::new();
                for (k, v) in &mp {
                    let key = match k {
                        ReflectValueRef::String(s) => s.to_string(),
                        other => value(other).to_string(),
                    };
                    o.insert(key, value(v));
                }
                Value::Object(o)
            }
        };
        out.insert(rust_name(f.name()), v);
    }
    Value::Object(out)
}

/// CopyFile as the policy reads it: the Kata agent's PolicyCopyFileRequest
/// (the file's place, kind, size, modes and owner; a symlink's target; not
/// the data).
pub fn copy_file(r: &crate::protocols::agent::CopyFileRequest) -> Result<Value, String> {
    let kind = match r.file_mode & libc::S_IFMT {
        libc::S_IFREG => "Regular",
        libc::S_IFDIR => "Directory",
        libc::S_IFLNK => "Symlink",
        _ => "Unknown",
    };
    let symlink_target = match kind {
        "Symlink" => Some(
            std::str::from_utf8(&r.data)
                .map_err(|_| "a symlink's target that is not UTF-8".to_string())?
                .to_string(),
        ),
        _ => None,
    };
    Ok(serde_json::json!({
        "path": r.path,
        "file_type": kind,
        "symlink_target": symlink_target,
        "file_size": r.file_size,
        "file_mode": r.file_mode,
        "dir_mode": r.dir_mode,
        "uid": r.uid,
        "gid": r.gid,
        "offset": r.offset,
    }))
}

fn value(v: ReflectValueRef<'_>) -> Value {
    match v {
        ReflectValueRef::U32(x) => x.into(),
        ReflectValueRef::U64(x) => x.into(),
        ReflectValueRef::I32(x) => x.into(),
        ReflectValueRef::I64(x) => x.into(),
        ReflectValueRef::F32(x) => serde_json::Number::from_f64(x.into()).map_or(Value::Null, Value::Number),
        ReflectValueRef::F64(x) => serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number),
        ReflectValueRef::Bool(x) => x.into(),
        ReflectValueRef::String(s) => s.into(),
        ReflectValueRef::Bytes(b) => Value::Array(b.iter().map(|x| (*x).into()).collect()),
        ReflectValueRef::Enum(_, n) => n.into(),
        ReflectValueRef::Message(m) => of(&*m),
    }
}

/// The value an unset singular field has in the struct: its type's
/// default, `null` for a message.
fn default(t: &RuntimeType) -> Value {
    match t {
        RuntimeType::I32 | RuntimeType::I64 | RuntimeType::U32 | RuntimeType::U64 => 0.into(),
        RuntimeType::F32 | RuntimeType::F64 => 0.0.into(),
        RuntimeType::Bool => false.into(),
        RuntimeType::String => "".into(),
        RuntimeType::VecU8 => Value::Array(Vec::new()),
        // proto3: an enum's default is its value 0.
        RuntimeType::Enum(_) => 0.into(),
        RuntimeType::Message(_) => Value::Null,
    }
}

/// The Rust field name rust-protobuf gives a proto field: the name, with
/// `_` after a Rust keyword.
fn rust_name(proto: &str) -> String {
    const KEYWORDS: &[&str] = &[
        "_", "as", "async", "await", "break", "crate", "dyn", "else", "enum", "extern", "false", "fn", "for", "if",
        "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub", "ref", "return", "static", "self", "Self",
        "struct", "super", "true", "trait", "type", "unsafe", "use", "while", "continue", "box", "const", "where",
        "virtual", "proc", "alignof", "become", "offsetof", "priv", "pure", "sizeof", "typeof", "unsized", "yield",
        "do", "abstract", "final", "override", "macro",
    ];
    if KEYWORDS.contains(&proto) {
        format!("{proto}_")
    } else {
        proto.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocols::agent::{CopyFileRequest, CreateContainerRequest, ExecProcessRequest, Storage};
    use crate::protocols::oci;

    /// The shape of a Kata agent policy input, as genpolicy's test cases
    /// record the agent's requests.
    #[test]
    fn inputs_read_as_the_kata_agent_serializes_requests() {
        let mut r = CreateContainerRequest::new();
        r.container_id = "c1".into();
        let mut spec = oci::Spec::new();
        let mut m = oci::Mount::new();
        (m.destination, m.type_, m.source) = ("/proc".into(), "proc".into(), "proc".into());
        spec.Mounts.push(m);
        spec.Annotations
            .insert("io.kubernetes.cri.container-type".into(), "container".into());
        let mut p = oci::Process::new();
        p.Args = vec!["sh".into()];
        spec.Process = Some(p).into();
        r.OCI = Some(spec).into();
        let mut s = Storage::new();
        s.driver = "local".into();
        r.storages.push(s);
        let v = of(&r);
        assert_eq!(v["container_id"], "c1");
        assert_eq!(v["exec_id"], "", "defaults are present");
        assert_eq!(v["sandbox_pidns"], false);
        assert_eq!(v["OCI"]["Mounts"][0]["type_"], "proc", "keywords take a `_`");
        assert_eq!(v["OCI"]["Hooks"], Value::Null, "an unset message is null");
        assert_eq!(v["OCI"]["Process"]["Args"][0], "sh");
        assert_eq!(v["OCI"]["Process"]["Terminal"], false);
        assert_eq!(v["OCI"]["Annotations"]["io.kubernetes.cri.container-type"], "container");
        assert_eq!(v["storages"][0]["driver"], "local");
        assert_eq!(v["storages"][0]["fs_group"], Value::Null);
        assert!(v.get("special_fields").is_none());

        let v = of(&ExecProcessRequest::new());
        assert_eq!(v["process"], Value::Null);
        assert_eq!(v["string_user"], Value::Null);

        let mut c = CopyFileRequest::new();
        c.data = vec![1, 2];
        c.file_size = 1 << 40;
        let v = of(&c);
        assert_eq!(v["data"], serde_json::json!([1, 2]), "bytes are numbers");
        assert_eq!(v["file_size"], 1u64 << 40, "64-bit integers are numbers");
    }
}
