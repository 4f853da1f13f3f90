//! The pod's network for its VM, as Kata's `tcfilter` model does it for
//! local VMs: a tap beside the pod's interface (the veth the CNI made in
//! the pod's namespace), and tc rules that redirect every frame from one
//! to the other, both ways. The guest's NIC gets the veth's MAC, and the
//! guest is given the veth's addresses and routes through the agent, so
//! traffic to the pod's IP reaches the guest and the guest's traffic
//! leaves through the pod's network. Done with iproute2 (`ip`, `tc`) run
//! inside the namespace.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// The tap bosun-podvm makes in a pod's namespace (one VM a namespace).
pub const TAP: &str = "tap0_podvm";

/// What the pod's namespace holds for its VM.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PodNet {
    /// The pod's interface (the veth).
    pub name: String,
    pub mac: String,
    pub mtu: u32,
    /// `(address, prefix length, family)`: 4 or 6.
    pub addrs: Vec<(String, u32, u8)>,
    pub routes: Vec<Route>,
}

/// A route of the pod's namespace through its interface.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Route {
    /// "" for the default route, else `net/len`.
    pub dest: String,
    pub gateway: String,
    pub source: String,
    pub scope: u32,
    pub family: u8,
}

/// What bosun-podvm made in the namespace, recorded before it is made.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Plumbing {
    pub veth: String,
    pub tap: String,
}

fn run(netns: &Path, args: &[&str]) -> Result<String, String> {
    let mut net = std::ffi::OsString::from("--net=");
    net.push(netns);
    let out = Command::new("nsenter")
        .arg(net)
        .arg("--")
        .args(args)
        .output()
        .map_err(|e| format!("{}: {e}", args[0]))?;
    if !out.status.success() {
        return Err(format!(
            "{}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn json(netns: &Path, args: &[&str]) -> Result<Value, String> {
    let text = run(netns, args)?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", args.join(" ")))
}

/// The pod's interface in `netns`: the first Ethernet link other than
/// ours with an address. None when the namespace has none (a pod with no
/// network: the guest gets no NIC).
pub fn inspect(netns: &Path) -> Result<Option<PodNet>, String> {
    let links = json(netns, &["ip", "-j", "addr", "show"])?;
    let Some(link) = links.as_array().into_iter().flatten().find(|l| {
        l["link_type"] == "ether"
            && l["ifname"] != TAP
            && l["addr_info"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x["family"] == "inet" || x["scope"] == "global"))
    }) else {
        return Ok(None);
    };
    let name = link["ifname"].as_str().unwrap_or_default().to_string();
    let addrs = link["addr_info"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["scope"] == "global")
        .filter_map(|a| {
            let fam = if a["family"] == "inet" { 4 } else { 6 };
            Some((a["local"].as_str()?.to_string(), a["prefixlen"].as_u64()? as u32, fam))
        })
        .collect();
    let mut routes = Vec::new();
    for (fam, flag) in [(4u8, "-4"), (6u8, "-6")] {
        let rs = json(netns, &["ip", "-j", flag, "route", "show", "dev", &name])?;
        for r in rs.as_array().into_iter().flatten() {
            let dst = r["dst"].as_str().unwrap_or_default();
            // Link-local and the guest's own subnets come with its addresses.
            if dst.starts_with("fe80:") || r["protocol"] == "kernel" {
                continue;
            }
            routes.push(Route {
                dest: if dst == "default" {
                    String::new()
                } else {
                    dst.to_string()
                },
                gateway: r["gateway"].as_str().unwrap_or_default().to_string(),
                source: r["prefsrc"].as_str().unwrap_or_default().to_string(),
                scope: match r["scope"].as_str() {
                    Some("link") => 253,
                    Some("host") => 254,
                    _ => 0,
                },
                family: fam,
            });
        }
    }
    Ok(Some(PodNet {
        mac: link["address"].as_str().unwrap_or_default().to_string(),
        mtu: link["mtu"].as_u64().unwrap_or(1500) as u32,
        name,
        addrs,
        routes,
    }))
}

/// Makes the tap and the redirects. Refuses a veth that already has an
/// ingress qdisc: those rules are someone else's.
pub fn plumb(netns: &Path, p: &Plumbing, mtu: u32) -> Result<(), String> {
    let qdiscs = run(netns, &["tc", "qdisc", "show", "dev", &p.veth, "ingress"])?;
    if qdiscs.contains("ingress") {
        return Err(format!("{} already has an ingress qdisc (not bosun-podvm's)", p.veth));
    }
    let mtu = mtu.to_string();
    let redirect = |from: &str, to: &str| -> Result<(), String> {
        run(netns, &["tc", "qdisc", "add", "dev", from, "ingress"])?;
        run(
            netns,
            &[
                "tc", "filter", "add", "dev", from, "parent", "ffff:", "protocol", "all", "u32", "match", "u8", "0",
                "0", "action", "mirred", "egress", "redirect", "dev", to,
            ],
        )
        .map(|_| ())
    };
    run(netns, &["ip", "tuntap", "add", "dev", &p.tap, "mode", "tap"])?;
    run(netns, &["ip", "link", "set", "dev", &p.tap, "mtu", &mtu, "up"])?;
    redirect(&p.veth, &p.tap)?;
    redirect(&p.tap, &p.veth)
}

/// Removes what `plumb` made, whatever part of it exists: the veth's
/// ingress qdisc (its filter goes with it) and the tap. A namespace that
/// is gone took them with it.
pub fn unplumb(netns: &Path, p: &Plumbing) -> Result<(), String> {
    if !netns.exists() {
        return Ok(());
    }
    let mut errors = Vec::new();
    let links = run(netns, &["ip", "-o", "link", "show"]).unwrap_or_default();
    let has = |name: &str| links.contains(&format!(": {name}:")) || links.contains(&format!(": {name}@"));
    if has(&p.veth) {
        let q = run(netns, &["tc", "qdisc", "show", "dev", &p.veth, "ingress"]).unwrap_or_default();
        // Only the redirect to our tap makes the qdisc ours.
        let f = run(netns, &["tc", "filter", "show", "dev", &p.veth, "parent", "ffff:"]).unwrap_or_default();
        if q.contains("ingress") && f.contains(&p.tap) {
            if let Err(e) = run(netns, &["tc", "qdisc", "del", "dev", &p.veth, "ingress"]) {
                errors.push(e);
            }
        }
    }
    if has(&p.tap) {
        if let Err(e) = run(netns, &["ip", "link", "del", "dev", &p.tap]) {
            errors.push(e);
        }
    }
    match errors.is_empty() {
        true => Ok(()),
        false => Err(errors.join("; ")),
    }
}
