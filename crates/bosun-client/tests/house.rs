//! The shape of the workspace, kept by tests: the agent depends on nothing
//! of the client side, and the protocol crate on neither.

use std::path::Path;

fn crate_dir(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(name)
}

/// Every `.rs` file below `dir`.
fn sources(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out
}

/// The names in a manifest's `[dependencies]` tables (build and dev
/// dependencies included).
fn dependencies(manifest: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(manifest).unwrap();
    let mut in_deps = false;
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_deps = line.ends_with("dependencies]");
            continue;
        }
        if in_deps && !line.starts_with('#') {
            if let Some((name, _)) = line.split_once('=') {
                out.push(name.trim().trim_end_matches(".workspace").to_string());
            }
        }
    }
    out
}

#[test]
fn the_agent_depends_on_nothing_of_the_client() {
    let cases = [
        ("bosun", &["bosun-client", "bosun_client"][..]),
        ("bosun-protocols", &["bosun", "bosun-client", "bosun_client"][..]),
    ];
    for (i, (krate, forbidden)) in cases.iter().enumerate() {
        let deps = dependencies(&crate_dir(krate).join("Cargo.toml"));
        for f in forbidden.iter() {
            assert!(
                !deps.iter().any(|d| d == f),
                "test[{i}]: {krate} depends on {f}: {deps:?}"
            );
        }
        for src in sources(&crate_dir(krate).join("src")) {
            let text = std::fs::read_to_string(&src).unwrap();
            assert!(
                !text.contains("bosun_client"),
                "test[{i}]: {} uses the client crate",
                src.display()
            );
        }
    }
}

/// The README's storage driver table is the drivers' table, row by row.
#[test]
fn the_readme_lists_the_storage_drivers_as_the_registry_does() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md")).unwrap();
    let section = &readme[readme.find("### Storage drivers").expect("the section")..];
    let rows: Vec<String> = section
        .lines()
        .skip_while(|l| !l.starts_with("| driver |"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(str::to_string)
        .collect();
    let want: Vec<String> = bosun::mount::storage::DRIVERS
        .iter()
        .map(|d| {
            let names: Vec<String> = d.names().iter().map(|n| format!("`{n}`")).collect();
            format!("| {} | {} |", names.join(", "), d.describe())
        })
        .collect();
    assert_eq!(rows, want, "README.md's storage driver table and DRIVERS differ");
}

/// The README's table of bosun's flags lists every flag bosun takes, and
/// no other.
#[test]
fn the_readme_lists_every_flag_of_bosun() {
    let readme = std::fs::read_to_string(crate_dir("..").join("README.md")).unwrap();
    let section = readme
        .split("### Flags of `bosun`")
        .nth(1)
        .expect("a flags section")
        .split("\n#")
        .next()
        .unwrap();
    let mut listed: Vec<String> = section
        .lines()
        .filter_map(|l| l.strip_prefix("| `--"))
        .map(|l| l.split('`').next().unwrap().to_string())
        .collect();
    listed.sort();
    let mut flags: Vec<String> = bosun::config::OPTIONS.iter().map(|o| o.flag.to_string()).collect();
    flags.sort();
    assert_eq!(listed, flags, "README flags (left) vs bosun's OPTIONS (right)");
}

/// `unsafe` lives where the README's layout says: the agent's `src/sys`,
/// and the `pre_exec` calls in bosun-podvm's `procs.rs` (setsid, setns)
/// and the bench's `load.rs` (joining the hogs' cgroup before exec, and
/// each agent's session of its own).
#[test]
fn unsafe_code_stays_in_its_few_modules() {
    let allowed = |p: &Path| {
        let s = p.to_string_lossy();
        s.contains("/bosun/src/sys/") || s.ends_with("bosun-podvm/src/procs.rs") || s.ends_with("bosun-bench/load.rs")
    };
    let mut found = Vec::new();
    for krate in ["bosun", "bosun-client", "bosun-podvm", "bosun-protocols"] {
        for f in sources(&crate_dir(krate).join("src")) {
            let text = std::fs::read_to_string(&f).unwrap();
            let code = text.lines().filter(|l| !l.trim_start().starts_with("//"));
            if code.clone().any(|l| l.contains("unsafe {") || l.contains("unsafe fn")) && !allowed(&f) {
                found.push(f.display().to_string());
            }
        }
    }
    assert!(found.is_empty(), "unsafe outside its modules: {found:?}");
}
