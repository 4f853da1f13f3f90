//! What the `bosun init` helper and its child tell the agent over the
//! report pipe: one JSON `Message` a line. Each line is written in one
//! write(2) and kept under PIPE_BUF, so it is atomic: the helper's and the
//! child's lines never interleave.

use serde::{Deserialize, Serialize};

/// One report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Message {
    /// From the helper: the container's process (in the agent's pid
    /// namespace).
    Pid(i32),
    /// From the process: set up, waiting for the start gate.
    Ready,
    /// From either: what failed, as the kernel said it.
    Error(String),
}

/// Lines stay below PIPE_BUF (4096) to be atomic.
pub const MAX_LINE: usize = 4000;

impl Message {
    /// The line to write, newline included; an error too long for one
    /// atomic write is cut (control characters become spaces).
    pub fn line(&self) -> Vec<u8> {
        let mut m = match self {
            Self::Error(e) => Self::Error(e.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()),
            other => other.clone(),
        };
        loop {
            let mut v = serde_json::to_vec(&m).unwrap_or_else(|_| b"{\"error\":\"unencodable\"}".to_vec());
            if v.len() < MAX_LINE {
                v.push(b'\n');
                return v;
            }
            if let Self::Error(e) = &mut m {
                let keep = e.chars().count() / 2;
                *e = e.chars().take(keep).collect();
            }
        }
    }

    /// Reads a line written by `line`.
    pub fn parse(line: &str) -> Result<Self, String> {
        serde_json::from_str(line.trim_end()).map_err(|e| format!("bad report line {line:?}: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_and_stay_atomic() {
        let long = "é\"\\\n".repeat(3000);
        let cases = [
            Message::Pid(812),
            Message::Ready,
            Message::Error("exec \"x\": ENOENT".into()),
            Message::Error(long),
        ];
        for (i, m) in cases.into_iter().enumerate() {
            let line = m.line();
            assert!(line.len() <= MAX_LINE, "test[{i}]: {} bytes", line.len());
            assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1, "test[{i}]: one line");
            let back = Message::parse(std::str::from_utf8(&line).unwrap()).unwrap();
            match (&m, &back) {
                (Message::Error(a), Message::Error(b)) => {
                    assert!(a.replace('\n', " ").starts_with(b.as_str()), "test[{i}]")
                }
                _ => assert_eq!(back, m, "test[{i}]"),
            }
        }
        assert!(Message::parse("pid 12").is_err());
    }
}
