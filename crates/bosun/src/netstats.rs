//! Interface counters of a network namespace, from /proc/PID/net/dev.

/// One interface's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Interface name.
    pub name: String,
    /// Received bytes.
    pub rx_bytes: u64,
    /// Received packets.
    pub rx_packets: u64,
    /// Receive errors.
    pub rx_errors: u64,
    /// Dropped on receive.
    pub rx_dropped: u64,
    /// Sent bytes.
    pub tx_bytes: u64,
    /// Sent packets.
    pub tx_packets: u64,
    /// Send errors.
    pub tx_errors: u64,
    /// Dropped on send.
    pub tx_dropped: u64,
}

/// Counters of the network namespace `pid` lives in.
pub fn of_pid(pid: i32) -> Vec<NetStats> {
    parse(&std::fs::read_to_string(format!("/proc/{pid}/net/dev")).unwrap_or_default())
}

/// Parses /proc/net/dev (two header lines, then `name: 16 counters`).
pub fn parse(text: &str) -> Vec<NetStats> {
    text.lines()
        .skip(2)
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let v: Vec<u64> = rest.split_whitespace().filter_map(|x| x.parse().ok()).collect();
            (v.len() >= 12).then(|| NetStats {
                name: name.trim().to_string(),
                rx_bytes: v[0],
                rx_packets: v[1],
                rx_errors: v[2],
                rx_dropped: v[3],
                tx_bytes: v[8],
                tx_packets: v[9],
                tx_errors: v[10],
                tx_dropped: v[11],
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_net_dev() {
        let t = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo:    1234      12    0    0    0     0          0         0     1234      12    0    0    0     0       0          0\n  eth0: 10 2 3 4 0 0 0 0 20 5 6 7 0 0 0 0\n";
        let s = parse(t);
        assert_eq!(s.len(), 2);
        assert_eq!(
            s[1],
            NetStats {
                name: "eth0".into(),
                rx_bytes: 10,
                rx_packets: 2,
                rx_errors: 3,
                rx_dropped: 4,
                tx_bytes: 20,
                tx_packets: 5,
                tx_errors: 6,
                tx_dropped: 7
            }
        );
    }
}
