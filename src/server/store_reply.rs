//! The FTP face of the store: path targets and store errors as replies.

use std::io;

use super::paths::VPath;
use super::session::Session;
use super::store::{ErrorKind, StoreError};

/// The FTP code for a store error kind (commands with their own code for
/// a conflict, such as REST's 554, reply themselves).
pub(crate) fn code(kind: ErrorKind) -> u16 {
    match kind {
        ErrorKind::Busy => 450,
        ErrorKind::NoSpace => 452,
        ErrorKind::Io => 451,
        ErrorKind::NotFound | ErrorKind::Conflict | ErrorKind::NotRegular | ErrorKind::Denied => {
            550
        }
    }
}

impl Session {
    /// Resolves a client path against the cwd; `root`, when given, is the
    /// reply for a command that cannot act on `/`. On a refusal it replies
    /// and returns None, so a command handler just returns.
    pub(crate) fn target(
        &mut self,
        arg: &str,
        root: Option<(u16, &str)>,
    ) -> io::Result<Option<VPath>> {
        let v = match self.resolve(arg) {
            Ok(v) => v,
            Err(e) => return self.path_error(e).map(|_| None),
        };
        if let (true, Some((code, text))) = (v.is_root(), root) {
            return self.reply(code, text).map(|_| None);
        }
        Ok(Some(v))
    }

    /// Replies to a store error: `VERB: text` with the kind's code.
    pub(crate) fn store_error(&mut self, verb: &str, e: &StoreError) -> io::Result<()> {
        self.reply(code(e.kind), &format!("{verb}: {}", e.msg))
    }
}
