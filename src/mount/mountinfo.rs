//! /proc/self/mountinfo: which paths are mount points right now.

use std::path::PathBuf;

/// Mount points of the calling process's mount namespace, in mount order.
pub fn mount_points() -> std::io::Result<Vec<PathBuf>> {
    Ok(parse(&std::fs::read_to_string("/proc/self/mountinfo")?))
}

/// The filesystem type of the topmost mount at `target`, if it is a mount
/// point now.
pub fn fstype_at(target: &std::path::Path) -> std::io::Result<Option<String>> {
    Ok(parse_types(&std::fs::read_to_string("/proc/self/mountinfo")?)
        .into_iter()
        .rev()
        .find(|(p, _)| p == target)
        .map(|(_, t)| t))
}

/// The mount source (the device) of the topmost mount at `target`.
pub fn source_at(target: &std::path::Path) -> std::io::Result<Option<String>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(text
        .lines()
        .rev()
        .find(|l| l.split(' ').nth(4).map(|p| PathBuf::from(unescape(p))).as_deref() == Some(target))
        .and_then(|l| l.split_once(" - ")?.1.split(' ').nth(1).map(unescape)))
}

/// (mount point, fstype) pairs; the fstype is the first field after " - ".
pub fn parse_types(text: &str) -> Vec<(PathBuf, String)> {
    text.lines()
        .filter_map(|l| {
            let point = l.split(' ').nth(4)?;
            let fstype = l.split_once(" - ")?.1.split(' ').next()?;
            Some((PathBuf::from(unescape(point)), fstype.to_string()))
        })
        .collect()
}

/// Parses mountinfo text: field 5 is the mount point, with octal escapes
/// for space, tab, newline and backslash.
pub fn parse(text: &str) -> Vec<PathBuf> {
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape(p)))
        .collect()
}

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_unescapes() {
        let t =
            "22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/vda rw\n36 22 0:32 / /run/a\\040b rw - tmpfs tmpfs rw\n";
        assert_eq!(parse(t), vec![PathBuf::from("/"), PathBuf::from("/run/a b")]);
        assert_eq!(
            parse_types(t),
            vec![
                (PathBuf::from("/"), "ext4".to_string()),
                (PathBuf::from("/run/a b"), "tmpfs".to_string())
            ]
        );
    }
}
