//! /proc/self/mountinfo: which mounts exist right now, and which one is
//! on top at a path.

use std::path::{Path, PathBuf};

/// What identifies one mount while it exists: the kernel's mount id and
/// the device of its filesystem. A path and a filesystem type are shared
/// by mounts bosun never made (the namespace's own tmpfs at `/dev/shm`);
/// this pair is not.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MountId {
    /// Field 1 of mountinfo: unique among the mounts that exist.
    pub id: u32,
    /// Field 3, `major:minor` of the filesystem.
    pub dev: String,
}

/// One line of mountinfo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountRecord {
    /// Mount id and device.
    pub ident: MountId,
    /// The parent mount's id.
    pub parent: u32,
    /// Mount point.
    pub point: PathBuf,
    /// Filesystem type (first field after " - ").
    pub fstype: String,
    /// Mount source (second field after " - ").
    pub source: String,
}

/// Every mount of the calling process's mount namespace, in mountinfo order.
pub fn table() -> std::io::Result<Vec<MountRecord>> {
    Ok(parse_records(&std::fs::read_to_string("/proc/self/mountinfo")?))
}

/// Mount points of the calling process's mount namespace, in mount order.
pub fn mount_points() -> std::io::Result<Vec<PathBuf>> {
    Ok(table()?.into_iter().map(|r| r.point).collect())
}

/// The topmost mount at `target` in `table`: the one at that path that no
/// other mount at the same path sits on.
pub fn top_at<'a>(table: &'a [MountRecord], target: &Path) -> Option<&'a MountRecord> {
    let here: Vec<&MountRecord> = table.iter().filter(|r| r.point == target).collect();
    here.iter()
        .rev()
        .find(|r| !here.iter().any(|o| o.parent == r.ident.id))
        .or(here.last())
        .copied()
}

/// The filesystem type of the topmost mount at `target`, if it is a mount
/// point now.
pub fn fstype_at(target: &Path) -> std::io::Result<Option<String>> {
    Ok(top_at(&table()?, target).map(|r| r.fstype.clone()))
}

/// The mount source (the device) of the topmost mount at `target`.
pub fn source_at(target: &Path) -> std::io::Result<Option<String>> {
    Ok(top_at(&table()?, target).map(|r| r.source.clone()))
}

/// The identity of the topmost mount at `target` now.
pub fn identity_at(target: &Path) -> std::io::Result<Option<MountId>> {
    Ok(top_at(&table()?, target).map(|r| r.ident.clone()))
}

/// Parses mountinfo text. Fields: 1 mount id, 2 parent id, 3 major:minor,
/// 4 root, 5 mount point (octal escapes for space, tab, newline and
/// backslash), optional fields, " - ", fstype, source, super options.
pub fn parse_records(text: &str) -> Vec<MountRecord> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(' ');
            let id = f.next()?.parse().ok()?;
            let parent = f.next()?.parse().ok()?;
            let dev = f.next()?.to_string();
            let point = PathBuf::from(unescape(f.nth(1)?));
            let mut after = l.split_once(" - ")?.1.split(' ');
            Some(MountRecord {
                ident: MountId { id, dev },
                parent,
                point,
                fstype: after.next()?.to_string(),
                source: after.next().map(unescape).unwrap_or_default(),
            })
        })
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

    const TEXT: &str = "22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/vda rw\n\
        36 22 0:32 / /run/a\\040b rw - tmpfs tmpfs rw\n\
        40 22 0:40 / /dev/shm rw - tmpfs shm rw\n\
        41 40 0:41 / /dev/shm rw - tmpfs tmpfs rw\n\
        42 22 0:42 / /x rw - tmpfs t rw\n\
        43 22 0:43 / /x/y rw - tmpfs t rw\n";

    #[test]
    fn parses_and_unescapes() {
        let t = parse_records(TEXT);
        let points: Vec<&Path> = t.iter().map(|r| r.point.as_path()).collect();
        assert_eq!(
            points,
            ["/", "/run/a b", "/dev/shm", "/dev/shm", "/x", "/x/y"].map(Path::new)
        );
        assert_eq!(t[1].fstype, "tmpfs");
        assert_eq!(t[0].source, "/dev/vda");
        assert_eq!(
            t[2].ident,
            MountId {
                id: 40,
                dev: "0:40".into()
            }
        );
    }

    #[test]
    fn the_top_mount_is_the_one_nothing_sits_on() {
        let t = parse_records(TEXT);
        let cases = [
            ("/dev/shm", Some(41)),
            ("/x", Some(42)),
            ("/x/y", Some(43)),
            ("/nope", None),
        ];
        for (i, (p, want)) in cases.into_iter().enumerate() {
            assert_eq!(top_at(&t, Path::new(p)).map(|r| r.ident.id), want, "test[{i}]: {p}");
        }
        // Stacked in the other order in the file: still the child.
        let swapped = "41 40 0:41 / /dev/shm rw - tmpfs tmpfs rw\n40 22 0:40 / /dev/shm rw - tmpfs shm rw\n";
        assert_eq!(
            top_at(&parse_records(swapped), Path::new("/dev/shm")).map(|r| r.ident.id),
            Some(41)
        );
    }
}
