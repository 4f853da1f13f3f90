//! An OCI bundle directory (config.json + rootfs) as the Kata protocol's
//! `Spec`: the fields bosun acts on. `root.path` is made absolute against
//! the bundle, as runc does.

use std::path::Path;

use serde_json::Value;

use crate::oci;

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect())
        .unwrap_or_default()
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

/// Reads `bundle/config.json`.
pub fn load(bundle: &Path) -> Result<oci::Spec, String> {
    let path = bundle.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let j: Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut spec = oci::Spec::new();
    spec.Version = s(&j["ociVersion"]);
    spec.Hostname = s(&j["hostname"]);
    let p = &j["process"];
    let mut proc_ = oci::Process::new();
    proc_.Args = strs(&p["args"]);
    proc_.Env = strs(&p["env"]);
    proc_.Cwd = s(&p["cwd"]);
    proc_.Terminal = p["terminal"].as_bool().unwrap_or(false);
    proc_.NoNewPrivileges = p["noNewPrivileges"].as_bool().unwrap_or(false);
    let mut user = oci::User::new();
    user.UID = p["user"]["uid"].as_u64().unwrap_or(0) as u32;
    user.GID = p["user"]["gid"].as_u64().unwrap_or(0) as u32;
    user.AdditionalGids = p["user"]["additionalGids"]
        .as_array()
        .map(|a| a.iter().filter_map(|g| g.as_u64().map(|g| g as u32)).collect())
        .unwrap_or_default();
    proc_.User = Some(user).into();
    if p["capabilities"].is_object() {
        let c = &p["capabilities"];
        let mut caps = oci::LinuxCapabilities::new();
        (
            caps.Bounding,
            caps.Effective,
            caps.Inheritable,
            caps.Permitted,
            caps.Ambient,
        ) = (
            strs(&c["bounding"]),
            strs(&c["effective"]),
            strs(&c["inheritable"]),
            strs(&c["permitted"]),
            strs(&c["ambient"]),
        );
        proc_.Capabilities = Some(caps).into();
    }
    proc_.Rlimits = p["rlimits"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| {
                    let mut l = oci::POSIXRlimit::new();
                    (l.Type, l.Soft, l.Hard) = (
                        s(&r["type"]),
                        r["soft"].as_u64().unwrap_or(0),
                        r["hard"].as_u64().unwrap_or(0),
                    );
                    l
                })
                .collect()
        })
        .unwrap_or_default();
    spec.Process = Some(proc_).into();
    let mut root = oci::Root::new();
    let rp = s(&j["root"]["path"]);
    root.Path = if rp.is_empty() {
        String::new()
    } else {
        bundle.join(&rp).display().to_string()
    };
    root.Readonly = j["root"]["readonly"].as_bool().unwrap_or(false);
    spec.Root = Some(root).into();
    spec.Mounts = j["mounts"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|m| {
                    let mut x = oci::Mount::new();
                    (x.destination, x.type_, x.source, x.options) = (
                        s(&m["destination"]),
                        s(&m["type"]),
                        s(&m["source"]),
                        strs(&m["options"]),
                    );
                    x
                })
                .collect()
        })
        .unwrap_or_default();
    if let Some(a) = j["annotations"].as_object() {
        spec.Annotations = a.iter().map(|(k, v)| (k.clone(), s(v))).collect();
    }
    let l = &j["linux"];
    let mut linux = oci::Linux::new();
    linux.Namespaces = l["namespaces"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|n| {
                    let mut ns = oci::LinuxNamespace::new();
                    (ns.Type, ns.Path) = (s(&n["type"]), s(&n["path"]));
                    ns
                })
                .collect()
        })
        .unwrap_or_default();
    let r = &l["resources"];
    let mut res = oci::LinuxResources::new();
    if r["memory"].is_object() {
        let mut m = oci::LinuxMemory::new();
        m.Limit = r["memory"]["limit"].as_i64().unwrap_or(0);
        res.Memory = Some(m).into();
    }
    if r["cpu"].is_object() {
        let mut c = oci::LinuxCPU::new();
        (c.Shares, c.Quota, c.Period) = (
            r["cpu"]["shares"].as_u64().unwrap_or(0),
            r["cpu"]["quota"].as_i64().unwrap_or(0),
            r["cpu"]["period"].as_u64().unwrap_or(0),
        );
        res.CPU = Some(c).into();
    }
    if r["pids"].is_object() {
        let mut pl = oci::LinuxPids::new();
        pl.Limit = r["pids"]["limit"].as_i64().unwrap_or(0);
        res.Pids = Some(pl).into();
    }
    linux.Resources = Some(res).into();
    spec.Linux = Some(linux).into();
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_runc_style_config() {
        let d = tempfile::tempdir().unwrap();
        let cfg = r#"{"ociVersion":"1.1.0","hostname":"h","process":{"terminal":false,"user":{"uid":5,"gid":6},"args":["sh","-c","true"],"env":["A=1"],"cwd":"/w",
            "capabilities":{"bounding":["CAP_CHOWN"]},"rlimits":[{"type":"RLIMIT_NOFILE","hard":10,"soft":5}],"noNewPrivileges":true},
            "root":{"path":"rootfs","readonly":true},"mounts":[{"destination":"/proc","type":"proc","source":"proc"}],
            "annotations":{"k":"v"},"linux":{"namespaces":[{"type":"pid"},{"type":"mount"}],"resources":{"memory":{"limit":1048576},"pids":{"limit":9}}}}"#;
        std::fs::write(d.path().join("config.json"), cfg).unwrap();
        let s = load(d.path()).unwrap();
        let p = s.Process.as_ref().unwrap();
        assert_eq!(p.Args, vec!["sh", "-c", "true"]);
        assert_eq!(
            (p.User.UID, p.User.GID, p.Cwd.as_str(), p.NoNewPrivileges),
            (5, 6, "/w", true)
        );
        assert_eq!(p.Capabilities.Bounding, vec!["CAP_CHOWN"]);
        assert_eq!((p.Rlimits[0].Soft, p.Rlimits[0].Hard), (5, 10));
        assert_eq!(s.Root.Path, d.path().join("rootfs").display().to_string());
        assert!(s.Root.Readonly);
        assert_eq!(s.Mounts[0].type_, "proc");
        assert_eq!(s.Annotations["k"], "v");
        assert_eq!(s.Linux.Namespaces.len(), 2);
        assert_eq!(s.Linux.Resources.Memory.Limit, 1 << 20);
        assert_eq!(s.Linux.Resources.Pids.Limit, 9);
        assert!(load(&d.path().join("nope")).is_err());
    }
}
