//! OCI mount options → mount(2) flags, propagation and data string.

use crate::sys::mount::Flags;

/// A parsed option list.
#[derive(Debug, PartialEq, Eq)]
pub struct Parsed {
    /// Flags for the mount call.
    pub flags: Flags,
    /// Propagation to apply after mounting (MS_SHARED, MS_SLAVE, ...).
    pub propagation: Flags,
    /// Comma-joined options the filesystem itself reads (mode=, size=, ...).
    pub data: String,
    /// A bind mount (bind or rbind).
    pub bind: bool,
}

/// Parses OCI mount options. Unknown words are passed to the filesystem
/// as data, as runc does.
pub fn parse(options: &[String]) -> Parsed {
    let mut p = Parsed {
        flags: Flags::empty(),
        propagation: Flags::empty(),
        data: String::new(),
        bind: false,
    };
    let mut data = Vec::new();
    for o in options {
        let (set, clear, prop): (Flags, Flags, Flags) = match o.as_str() {
            "ro" => (Flags::MS_RDONLY, Flags::empty(), Flags::empty()),
            "rw" => (Flags::empty(), Flags::MS_RDONLY, Flags::empty()),
            "nosuid" => (Flags::MS_NOSUID, Flags::empty(), Flags::empty()),
            "suid" => (Flags::empty(), Flags::MS_NOSUID, Flags::empty()),
            "nodev" => (Flags::MS_NODEV, Flags::empty(), Flags::empty()),
            "dev" => (Flags::empty(), Flags::MS_NODEV, Flags::empty()),
            "noexec" => (Flags::MS_NOEXEC, Flags::empty(), Flags::empty()),
            "exec" => (Flags::empty(), Flags::MS_NOEXEC, Flags::empty()),
            "sync" => (Flags::MS_SYNCHRONOUS, Flags::empty(), Flags::empty()),
            "async" => (Flags::empty(), Flags::MS_SYNCHRONOUS, Flags::empty()),
            "relatime" => (Flags::MS_RELATIME, Flags::empty(), Flags::empty()),
            "norelatime" => (Flags::empty(), Flags::MS_RELATIME, Flags::empty()),
            "strictatime" => (Flags::MS_STRICTATIME, Flags::empty(), Flags::empty()),
            "noatime" => (Flags::MS_NOATIME, Flags::empty(), Flags::empty()),
            "nodiratime" => (Flags::MS_NODIRATIME, Flags::empty(), Flags::empty()),
            "bind" => (Flags::MS_BIND, Flags::empty(), Flags::empty()),
            "rbind" => (Flags::MS_BIND | Flags::MS_REC, Flags::empty(), Flags::empty()),
            "private" => (Flags::empty(), Flags::empty(), Flags::MS_PRIVATE),
            "rprivate" => (Flags::empty(), Flags::empty(), Flags::MS_PRIVATE | Flags::MS_REC),
            "slave" => (Flags::empty(), Flags::empty(), Flags::MS_SLAVE),
            "rslave" => (Flags::empty(), Flags::empty(), Flags::MS_SLAVE | Flags::MS_REC),
            "shared" => (Flags::empty(), Flags::empty(), Flags::MS_SHARED),
            "rshared" => (Flags::empty(), Flags::empty(), Flags::MS_SHARED | Flags::MS_REC),
            "unbindable" => (Flags::empty(), Flags::empty(), Flags::MS_UNBINDABLE),
            "runbindable" => (Flags::empty(), Flags::empty(), Flags::MS_UNBINDABLE | Flags::MS_REC),
            "defaults" => (Flags::empty(), Flags::empty(), Flags::empty()),
            other => {
                data.push(other.to_string());
                continue;
            }
        };
        p.flags = (p.flags | set) & !clear;
        p.propagation |= prop;
    }
    p.bind = p.flags.contains(Flags::MS_BIND);
    p.data = data.join(",");
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn table() {
        let cases = [
            (
                v(&["nosuid", "noexec", "nodev"]),
                Flags::MS_NOSUID | Flags::MS_NOEXEC | Flags::MS_NODEV,
                Flags::empty(),
                "",
                false,
            ),
            (
                v(&["rbind", "ro", "rprivate"]),
                Flags::MS_BIND | Flags::MS_REC | Flags::MS_RDONLY,
                Flags::MS_PRIVATE | Flags::MS_REC,
                "",
                true,
            ),
            (v(&["ro", "rw"]), Flags::empty(), Flags::empty(), "", false),
            (
                v(&["nosuid", "strictatime", "mode=755", "size=65536k"]),
                Flags::MS_NOSUID | Flags::MS_STRICTATIME,
                Flags::empty(),
                "mode=755,size=65536k",
                false,
            ),
            (
                v(&["newinstance", "ptmxmode=0666", "gid=5"]),
                Flags::empty(),
                Flags::empty(),
                "newinstance,ptmxmode=0666,gid=5",
                false,
            ),
        ];
        for (i, (opts, flags, prop, data, bind)) in cases.into_iter().enumerate() {
            let p = parse(&opts);
            assert_eq!(
                p,
                Parsed {
                    flags,
                    propagation: prop,
                    data: data.to_string(),
                    bind
                },
                "test[{i}]: {opts:?}"
            );
        }
    }
}
