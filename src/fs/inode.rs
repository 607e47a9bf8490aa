//! The inode table: a stable inode number for every path the kernel has
//! seen, in both directions. Paths are relative to the mount root,
//! `/`-separated, `""` for the root (inode 1).
//!
//! Numbers are never reused within a mount, so a stale kernel inode can
//! never reach another file. A rename moves the path of the inode (and of
//! everything under it when it is a directory); an unlink *detaches* the
//! inode: its number stays valid for open handles but no path leads to it.
//! Entries are small (a path) and are dropped when the kernel forgets them.

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
    next: u64,
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
            next: ROOT + 1,
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

    /// The inode of `path`, assigning a new number on first sight.
    pub fn ino_for(&mut self, path: &str) -> u64 {
        if let Some(i) = self.by_path.get(path) {
            return *i;
        }
        let ino = self.next;
        self.next += 1;
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
    /// `keep` says something (an open file) still needs it.
    pub fn forget(&mut self, ino: u64, n: u64, keep: bool) {
        if ino == ROOT {
            return;
        }
        let gone = match self.by_ino.get_mut(&ino) {
            Some(node) => {
                node.lookups = node.lookups.saturating_sub(n);
                node.lookups == 0 && !keep
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
    fn paths() {
        assert_eq!(join("", "a"), "a");
        assert_eq!(join("a", "b"), "a/b");
        assert_eq!(parent_of("a/b/c"), "a/b");
        assert_eq!(parent_of("a"), "");
        assert_eq!(name_of("a/b"), "b");
    }
}
