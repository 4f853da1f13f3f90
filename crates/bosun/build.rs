//! Writes the link map of the `bosun` binary when asked
//! (`BOSUN_LINK_MAP=<path>`): scripts/symbol-order.sh reads it to name the
//! functions the agent runs from start to idle (symbol-order.txt, README
//! "Memory"). Nothing else changes the build.

fn main() {
    println!("cargo:rerun-if-env-changed=BOSUN_LINK_MAP");
    // A new order must relink the binary.
    println!("cargo:rerun-if-changed=symbol-order.txt");
    if let Ok(path) = std::env::var("BOSUN_LINK_MAP") {
        println!("cargo:rustc-link-arg-bin=bosun=-Wl,-Map={path}");
    }
}
