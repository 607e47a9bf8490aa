//! `/proc/self/mountinfo`, parsed just enough for the mount command: which
//! filesystem is mounted where, and on which device number.

use std::path::Path;

/// One mount: its device (`MAJOR:MINOR`), mount point and filesystem type.
#[derive(Debug, PartialEq)]
pub struct Mount {
    pub dev: String,
    pub point: String,
    pub fstype: String,
}

/// Every well-formed line of a mountinfo text, in order (oldest first).
pub fn parse(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let (pre, post) = line.split_once(" - ")?;
            let mut f = pre.split(' ');
            let dev = f.nth(2)?;
            let point = f.nth(1)?;
            let fstype = post.split(' ').next()?;
            valid_dev(dev).then(|| Mount {
                dev: dev.to_string(),
                point: unescape(point),
                fstype: fstype.to_string(),
            })
        })
        .collect()
}

/// The newest mount at `dir`, if any.
pub fn mount_at(text: &str, dir: &Path) -> Option<Mount> {
    let want = dir.to_str()?;
    parse(text).into_iter().rev().find(|m| m.point == want)
}

fn valid_dev(d: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    d.split_once(':')
        .is_some_and(|(a, b)| digits(a) && digits(b))
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], oct) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
80 22 0:39 / /tmp/m rw,nosuid,nodev shared:40 - fuse keyfs rw,user_id=0
81 22 0:40 / /tmp/my\\040mnt rw shared:41 - fuse.sshfs x rw
82 80 0:41 / /tmp/m rw shared:42 - fuse keyfs rw
";

    #[test]
    fn finds_the_newest_mount_at_a_path() {
        let dev = |p: &str| mount_at(INFO, Path::new(p)).map(|m| m.dev);
        assert_eq!(dev("/tmp/m").as_deref(), Some("0:41"));
        assert_eq!(dev("/").as_deref(), Some("254:0"));
        assert_eq!(dev("/tmp/my mnt").as_deref(), Some("0:40"));
        assert_eq!(dev("/tmp/none"), None);
        let m = mount_at(INFO, Path::new("/tmp/my mnt")).map(|m| m.fstype);
        assert_eq!(m.as_deref(), Some("fuse.sshfs"));
    }

    #[test]
    fn odd_lines_are_ignored() {
        let bad =
            "x\n1 2 ../x / /tmp/m rw - fuse a b\n1 2 0:1\n\n1 2 3:4 / /tmp/\\0 rw - ext4 a b\n";
        assert_eq!(mount_at(bad, Path::new("/tmp/m")), None);
        let m = mount_at(bad, Path::new("/tmp/\\0")).map(|m| m.dev);
        assert_eq!(m.as_deref(), Some("3:4"));
    }
}
