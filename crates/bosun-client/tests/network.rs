//! Network calls over netlink (root, and only inside a private network
//! namespace: `make test` runs the tests in one; a plain `cargo test` as
//! root on a host refuses rather than touch the host's network).

mod common;

use std::process::Command;

use bosun_protocols::agent::*;
use bosun_protocols::types::{ARPNeighbor, IPAddress, Interface, Route};
use common::pod::Pod;

fn in_private_netns() -> bool {
    std::fs::read_link("/proc/self/ns/net").ok() != std::fs::read_link("/proc/1/ns/net").ok()
}

fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn addr(a: &str, mask: &str) -> IPAddress {
    let mut x = IPAddress::new();
    (x.address, x.mask) = (a.into(), mask.into());
    x
}

#[test]
#[ignore = "needs root"]
fn interfaces_routes_and_neighbours() {
    assert!(
        common::is_root(),
        "this test needs root: run it with `make test` as root"
    );
    assert!(
        in_private_netns(),
        "refusing to change this machine's network: run the tests with `make test` (private network namespace)"
    );
    let pod = Pod::start();
    // A link as a hypervisor would hotplug it, found by its MAC.
    let tag = std::process::id() % 10000;
    let (orig, name) = (format!("bd{tag}"), format!("eth{tag}"));
    // veth: a link with its own MAC (this kernel may lack the dummy driver).
    let peer = format!("{orig}p");
    ip(&[
        "link",
        "add",
        &orig,
        "address",
        "02:00:00:00:aa:01",
        "type",
        "veth",
        "peer",
        "name",
        &peer,
    ]);
    ip(&["link", "set", &peer, "up"]);
    let mut want = Interface::new();
    (want.name, want.hwAddr, want.mtu) = (name.clone(), "02:00:00:00:aa:01".into(), 1400);
    want.IPAddresses = vec![addr("10.77.0.2", "24"), addr("fd00:77::2", "64")];
    let mut r = UpdateInterfaceRequest::new();
    r.interface = Some(want).into();
    let got = pod.rt.block_on(pod.c.agent.update_interface(pod.c.ctx(), &r)).unwrap();
    assert_eq!(
        (got.name.as_str(), got.mtu, got.raw_flags & 1),
        (name.as_str(), 1400, 1),
        "{got:?}"
    );
    let shown = ip(&["addr", "show", "dev", &name]);
    assert!(
        shown.contains("10.77.0.2/24") && shown.contains("fd00:77::2/64") && shown.contains("mtu 1400"),
        "{shown}"
    );

    let list = pod
        .rt
        .block_on(pod.c.agent.list_interfaces(pod.c.ctx(), &ListInterfacesRequest::new()))
        .unwrap();
    let me = list.Interfaces.iter().find(|i| i.name == name).expect("listed");
    assert_eq!(me.hwAddr, "02:00:00:00:aa:01");
    assert!(
        me.IPAddresses
            .iter()
            .any(|a| a.address == "10.77.0.2" && a.mask == "24"),
        "{me:?}"
    );

    let mut route = Route::new();
    (route.dest, route.gateway, route.device) = ("10.78.0.0/16".into(), "10.77.0.1".into(), name.clone());
    let mut default = Route::new();
    (default.gateway, default.device) = ("10.77.0.1".into(), name.clone());
    let mut r = UpdateRoutesRequest::new();
    let mut rs = Routes::new();
    rs.Routes = vec![route, default];
    r.routes = Some(rs).into();
    let routes = pod.rt.block_on(pod.c.agent.update_routes(pod.c.ctx(), &r)).unwrap();
    assert!(
        routes
            .Routes
            .iter()
            .any(|r| r.dest == "10.78.0.0/16" && r.gateway == "10.77.0.1" && r.device == name),
        "{routes:?}"
    );
    assert!(
        routes
            .Routes
            .iter()
            .any(|r| r.dest.is_empty() && r.gateway == "10.77.0.1"),
        "no default route: {routes:?}"
    );
    assert!(ip(&["route", "show"]).contains("10.78.0.0/16 via 10.77.0.1"));

    let mut n = ARPNeighbor::new();
    (n.device, n.lladdr) = (name.clone(), "02:00:00:00:bb:02".into());
    n.toIPAddress = Some(addr("10.77.0.9", "")).into();
    let mut r = AddARPNeighborsRequest::new();
    let mut ns = ARPNeighbors::new();
    ns.ARPNeighbors = vec![n];
    r.neighbors = Some(ns).into();
    pod.rt.block_on(pod.c.agent.add_arp_neighbors(pod.c.ctx(), &r)).unwrap();
    assert!(ip(&["neigh", "show", "dev", &name]).contains("10.77.0.9 lladdr 02:00:00:00:bb:02 PERMANENT"));

    // Bad input: INVALID_ARGUMENT, nothing changed.
    let mut bad = Interface::new();
    (bad.name, bad.hwAddr) = ("x".into(), "02:00:00:00:aa:99".into());
    let mut r = UpdateInterfaceRequest::new();
    r.interface = Some(bad).into();
    let e = pod
        .rt
        .block_on(pod.c.agent.update_interface(pod.c.ctx(), &r))
        .unwrap_err();
    assert!(
        matches!(e, ttrpc::Error::RpcStatus(ref s) if s.code() == ttrpc::Code::INVALID_ARGUMENT),
        "{e:?}"
    );
    // A gateway the pod cannot reach is the request's fault, said plainly
    // (not INTERNAL with the netlink message dumped).
    let mut far = Route::new();
    (far.dest, far.gateway, far.device) = ("10.79.0.0/16".into(), "192.0.2.1".into(), name.clone());
    let mut r = UpdateRoutesRequest::new();
    let mut rs = Routes::new();
    rs.Routes = vec![far];
    r.routes = Some(rs).into();
    match pod.rt.block_on(pod.c.agent.update_routes(pod.c.ctx(), &r)) {
        Err(ttrpc::Error::RpcStatus(s)) => {
            assert_eq!(s.code(), ttrpc::Code::INVALID_ARGUMENT, "{}", s.message());
            assert!(
                s.message().contains("10.79.0.0/16 via 192.0.2.1") && !s.message().contains('{'),
                "{}",
                s.message()
            );
        }
        other => panic!("an unreachable gateway: {other:?}"),
    }
    // What ListInterfaces reports (lo's MTU is 65536) is accepted back.
    let lo = list
        .Interfaces
        .iter()
        .find(|i| i.name == "lo")
        .expect("lo listed")
        .clone();
    assert_eq!(lo.mtu, 65536);
    let mut r = UpdateInterfaceRequest::new();
    r.interface = Some(lo).into();
    let back = pod.rt.block_on(pod.c.agent.update_interface(pod.c.ctx(), &r));
    assert!(back.is_ok(), "lo as listed, sent back: {back:?}");
    ip(&["link", "del", &name]);
}
