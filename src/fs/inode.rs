//! The inode table: a stable inode number for every path the kernel has
//! seen, in both directions. Paths are relative to the mount root,
//! `/`-separated, `""` for the root (inode 1).
//!
//! A path's number is a hash of the path (folded to 32 bits, so 32-bit
//! programs that stat without large-file support still work), so it is the
//! same every time the path is looked up, even after the kernel forgot it
//! (memory pressure, `drop_caches`) and the table dropped the entry. A
//! number taken by another live inode (a hash collision, or the detached
//! inode of an unlinked file still open) is probed past, so two live
//! inodes never share a number and a number the kernel still holds never
//! reaches another file.
//!
//! A rename moves the path of the inode (and of everything under it when it
//! is a directory): the number goes with the file, as on a local disk. Such
//! an entry (and a probed one) no longer matches its path's hash, so it is
//! kept when the kernel forgets it: the file keeps its number for the life
//! of the mount. An unlink *detaches* the inode: its number stays valid
//! for open handles but no path leads to it; it is dropped when the kernel
//! forgets it. Entries are small (a path).

use std::collections::HashMap;

pub const ROOT: u64 = 1;

#[derive(Clone, Debug)]
struct Node {
    path: String,
    lookups: u64,
    detached: bool,
}

pub struct InodeTable {
    by_ino: HashMap<u64, Node>,
    by_path: HashMap<String, u64>,
}

impl Default for InodeTable {
    fn default() -> Self {
        Self::new()
    }
}

impl InodeTable {
    pub fn new() -> InodeTable {
        let mut t = InodeTable {
            by_ino: HashMap::new(),
            by_path: HashMap::new(),
        };
        t.by_ino.insert(
            ROOT,
            Node {
                path: String::new(),
                lookups: 1,
                detached: false,
            },
        );
        t.by_path.insert(String::new(), ROOT);
        t
    }

    /// The inode of `path`, assigning its number on first sight.
    pub fn ino_for(&mut self, path: &str) -> u64 {
        if let Some(i) = self.by_path.get(path) {
            return *i;
        }
        let mut ino = hash_ino(path);
        while self.by_ino.contains_key(&ino) {
            ino = next_ino(ino);
        }
        self.by_ino.insert(
            ino,
            Node {
                path: path.to_string(),
                lookups: 0,
                detached: false,
            },
        );
        self.by_path.insert(path.to_string(), ino);
        ino
    }

    /// Like [`ino_for`](Self::ino_for), counting one kernel lookup.
    pub fn lookup(&mut self, path: &str) -> u64 {
        let ino = self.ino_for(path);
        if let Some(n) = self.by_ino.get_mut(&ino) {
            n.lookups += 1;
        }
        ino
    }

    pub fn get(&self, path: &str) -> Option<u64> {
        self.by_path.get(path).copied()
    }

    /// The path of a live (not detached) inode.
    pub fn path(&self, ino: u64) -> Option<&str> {
        self.by_ino
            .get(&ino)
            .filter(|n| !n.detached)
            .map(|n| n.path.as_str())
    }

    /// The kernel dropped `n` references; forget the inode at zero unless
    /// `keep` says something (an open file) still needs it, or its number
    /// could not be found again from its path (renamed, probed).
    pub fn forget(&mut self, ino: u64, n: u64, keep: bool) {
        if ino == ROOT {
            return;
        }
        let gone = match self.by_ino.get_mut(&ino) {
            Some(node) => {
                node.lookups = node.lookups.saturating_sub(n);
                node.lookups == 0 && !keep && (node.detached || hash_ino(&node.path) == ino)
            }
            None => false,
        };
        if gone {
            if let Some(node) = self.by_ino.remove(&ino) {
                if !node.detached && self.by_path.get(&node.path) == Some(&ino) {
                    self.by_path.remove(&node.path);
                }
            }
        }
    }

    /// The path no longer exists: its inode stays valid (open handles) but
    /// is no longer reachable by name.
    pub fn detach(&mut self, path: &str) {
        if let Some(ino) = self.by_path.remove(path) {
            if let Some(n) = self.by_ino.get_mut(&ino) {
                n.detached = true;
            }
        }
    }

    /// Moves `from` (and, for a directory, everything below it) to `to`,
    /// detaching whatever `to` was.
    pub fn rename(&mut self, from: &str, to: &str) {
        self.detach(to);
        let prefix = format!("{from}/");
        let moved: Vec<(String, u64)> = self
            .by_path
            .iter()
            .filter(|(p, _)| p.as_str() == from || p.starts_with(&prefix))
            .map(|(p, i)| (p.clone(), *i))
            .collect();
        for (old, ino) in moved {
            let new = format!("{to}{}", &old[from.len()..]);
            self.by_path.remove(&old);
            self.detach(&new);
            self.by_path.insert(new.clone(), ino);
            if let Some(n) = self.by_ino.get_mut(&ino) {
                n.path = new;
            }
        }
    }
}

/// The number a path gets when it is free: FNV-1a of the path, folded to
/// 32 bits, never 0 (no inode) or [`ROOT`].
pub fn hash_ino(path: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in path.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let folded = (h ^ (h >> 32)) & 0xffff_ffff;
    if folded <= ROOT {
        folded + 2
    } else {
        folded
    }
}

fn next_ino(ino: u64) -> u64 {
    if ino >= 0xffff_ffff {
        ROOT + 1
    } else {
        ino + 1
    }
}

/// `parent/name`, with `""` as the root.
pub fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}/{name}")
    }
}

/// The parent directory of a path (`""` for a top-level name).
pub fn parent_of(path: &str) -> &str {
    path.rsplit_once('/').map(|(p, _)| p).unwrap_or("")
}

/// The last component of a path.
pub fn name_of(path: &str) -> &str {
    path.rsplit_once('/').map(|(_, n)| n).unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_numbers_rename_and_detach() {
        let mut t = InodeTable::new();
        assert_eq!(t.get(""), Some(ROOT));
        let d = t.ino_for("d");
        let f = t.ino_for("d/f");
        assert_eq!(t.ino_for("d/f"), f);
        t.rename("d", "e");
        assert_eq!(t.path(d), Some("e"));
        assert_eq!(t.path(f), Some("e/f"));
        assert_eq!(t.get("d/f"), None);
        t.detach("e/f");
        assert_eq!(t.path(f), None);
        let g = t.ino_for("e/f");
        assert_ne!(g, f);
        t.forget(g, 0, false);
        assert_eq!(t.get("e/f"), None);
    }

    #[test]
    fn numbers_survive_forget() {
        let mut t = InodeTable::new();
        let a = t.lookup("A");
        let f = t.lookup("A/n2");
        t.forget(f, 1, false);
        t.forget(a, 1, false);
        assert_eq!(t.get("A/n2"), None, "dropped when forgotten");
        assert_eq!(t.lookup("A"), a);
        assert_eq!(t.lookup("A/n2"), f);
    }

    #[test]
    fn a_renamed_file_keeps_its_number_after_forget() {
        let mut t = InodeTable::new();
        let f = t.lookup("A/n2");
        t.lookup("B/n3");
        t.rename("A/n2", "B/n3");
        assert_eq!(t.lookup("B/n3"), f);
        t.forget(f, 2, false);
        assert_eq!(t.lookup("B/n3"), f);
        assert_eq!(t.path(f), Some("B/n3"));
        // The old name, used again, does not get the number the file has.
        assert_ne!(t.lookup("A/n2"), f);
    }

    #[test]
    fn live_numbers_are_never_shared() {
        let mut t = InodeTable::new();
        let f = t.lookup("x");
        t.detach("x"); // unlinked, still open
        let g = t.lookup("x");
        assert_ne!(f, g);
        t.forget(f, 1, false);
        assert_eq!(t.lookup("x"), g);
        // A collision probes past the taken number.
        let mut seen = std::collections::HashSet::new();
        for i in 0..20_000 {
            assert!(seen.insert(t.ino_for(&format!("d/{i}"))));
        }
        assert!(!seen.contains(&ROOT) && !seen.contains(&0));
    }

    #[test]
    fn paths() {
        assert_eq!(join("", "a"), "a");
        assert_eq!(join("a", "b"), "a/b");
        assert_eq!(parent_of("a/b/c"), "a/b");
        assert_eq!(parent_of("a"), "");
        assert_eq!(name_of("a/b"), "b");
    }
}
