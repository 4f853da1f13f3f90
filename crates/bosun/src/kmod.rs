//! CreateSandbox `kernel_modules`: load each module the runtime names, with
//! its parameters, the way modprobe would: find it in the guest kernel's
//! `modules.dep`, load its dependencies first, then it. A module already
//! present (loaded or built in: /sys/module/NAME) is left as it is.

use std::path::{Path, PathBuf};

use crate::sys::guest as sys_guest;

/// Most parameters one module takes from a request.
const MAX_PARAMS: usize = 64;

/// One module, validated.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KernelModule {
    /// Module name (`vsock_loopback`; `-` and `_` are the same to the kernel).
    pub name: String,
    /// `key=value` parameters.
    pub params: Vec<String>,
}

/// Why a module could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KmodError {
    /// Not a module name or parameter.
    #[error("kernel module {name:?}: {reason}")]
    Invalid {
        /// The module.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The guest kernel has no such module.
    #[error("kernel module {name:?} is not in {}: the guest kernel does not have it", dep.display())]
    NotFound {
        /// The module.
        name: String,
        /// The modules.dep looked in.
        dep: PathBuf,
    },
    /// The kernel refused it.
    #[error("kernel module {name:?}: load {}: {reason}", file.display())]
    Load {
        /// The module.
        name: String,
        /// The file.
        file: PathBuf,
        /// finit_module's answer.
        reason: String,
    },
}

impl KernelModule {
    /// Validates a name and its parameters.
    pub fn new(name: &str, params: &[String]) -> Result<Self, KmodError> {
        let bad = |reason: String| KmodError::Invalid {
            name: name.to_string(),
            reason,
        };
        let ok_name = !name.is_empty()
            && name.len() <= 64
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !ok_name {
            return Err(bad("a name is 1 to 64 of [A-Za-z0-9_-]".into()));
        }
        if params.len() > MAX_PARAMS {
            return Err(bad(format!("at most {MAX_PARAMS} parameters")));
        }
        if let Some(p) = params
            .iter()
            .find(|p| p.is_empty() || p.len() > 1024 || p.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return Err(bad(format!("parameter {p:?}: key=value, no spaces")));
        }
        Ok(Self {
            name: name.to_string(),
            params: params.to_vec(),
        })
    }
}

/// What `load` did.
#[derive(Debug, PartialEq, Eq)]
pub enum Loaded {
    /// It was there already (its parameters were not applied again).
    Present,
    /// Loaded now, after these dependencies.
    Now(Vec<String>),
}

fn canonical(name: &str) -> String {
    name.replace('-', "_")
}

/// The module name of a modules.dep path (`kernel/.../vsock_loopback.ko.xz`).
fn name_of(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    canonical(file.split(".ko").next().unwrap_or(file))
}

/// The files to load for `name`, dependencies first, from a modules.dep
/// text; `None` when the module is not listed.
pub fn resolve(dep_text: &str, name: &str) -> Option<Vec<String>> {
    let want = canonical(name);
    let line = dep_text
        .lines()
        .find(|l| l.split_once(':').is_some_and(|(m, _)| name_of(m) == want))?;
    let (module, deps) = line.split_once(':')?;
    // modules.dep lists a module's dependencies so that each comes before
    // the ones it needs: load them in reverse.
    let mut files: Vec<String> = deps.split_whitespace().rev().map(str::to_string).collect();
    files.push(module.trim().to_string());
    Some(files)
}

/// Loads `m` from the kernel's module tree `modules_dir`
/// (/lib/modules/RELEASE) unless /sys/module already has it.
pub fn load(m: &KernelModule, modules_dir: &Path, sys_module: &Path) -> Result<Loaded, KmodError> {
    if sys_module.join(canonical(&m.name)).exists() {
        return Ok(Loaded::Present);
    }
    let dep = modules_dir.join("modules.dep");
    let text = std::fs::read_to_string(&dep).unwrap_or_default();
    let files = resolve(&text, &m.name).ok_or_else(|| KmodError::NotFound {
        name: m.name.clone(),
        dep: dep.clone(),
    })?;
    let mut deps = Vec::new();
    for (i, f) in files.iter().enumerate() {
        let last = i + 1 == files.len();
        let dep_name = name_of(f);
        if !last && sys_module.join(&dep_name).exists() {
            continue;
        }
        let file = modules_dir.join(f);
        let params = if last { m.params.join(" ") } else { String::new() };
        sys_guest::load_module(&file, &params).map_err(|reason| KmodError::Load {
            name: m.name.clone(),
            file: file.clone(),
            reason,
        })?;
        if !last {
            deps.push(dep_name);
        }
    }
    Ok(Loaded::Now(deps))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "kernel/net/vmw_vsock/vsock.ko.xz:\n\
kernel/net/vmw_vsock/vsock_loopback.ko.xz: kernel/net/vmw_vsock/vmw_vsock_virtio_transport_common.ko.xz kernel/net/vmw_vsock/vsock.ko.xz\n\
kernel/drivers/net/dummy.ko:\n";

    #[test]
    fn modules_dep_resolution() {
        let cases: &[(&str, Option<&[&str]>)] = &[
            (
                "vsock_loopback",
                Some(&[
                    "kernel/net/vmw_vsock/vsock.ko.xz",
                    "kernel/net/vmw_vsock/vmw_vsock_virtio_transport_common.ko.xz",
                    "kernel/net/vmw_vsock/vsock_loopback.ko.xz",
                ]),
            ),
            (
                "vsock-loopback",
                Some(&[
                    "kernel/net/vmw_vsock/vsock.ko.xz",
                    "kernel/net/vmw_vsock/vmw_vsock_virtio_transport_common.ko.xz",
                    "kernel/net/vmw_vsock/vsock_loopback.ko.xz",
                ]),
            ),
            ("dummy", Some(&["kernel/drivers/net/dummy.ko"])),
            ("vsock_loop", None),
            ("nope", None),
        ];
        for (i, (name, want)) in cases.iter().enumerate() {
            let got = resolve(DEP, name);
            let want = want.map(|w| w.iter().map(|s| s.to_string()).collect::<Vec<_>>());
            assert_eq!(got, want, "test[{i}]: {name}");
        }
    }

    #[test]
    fn names_and_parameters_are_checked() {
        assert!(KernelModule::new("vsock_loopback", &["x=1".into()]).is_ok());
        for (i, (name, params)) in [
            ("", vec![]),
            ("../evil", vec![]),
            ("a b", vec![]),
            ("ok", vec!["a=1 b=2".to_string()]),
            ("ok", vec![String::new()]),
        ]
        .iter()
        .enumerate()
        {
            assert!(
                KernelModule::new(name, params).is_err(),
                "test[{i}]: {name:?} {params:?}"
            );
        }
    }
}
