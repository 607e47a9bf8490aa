//! The upload primitives over FTP, as the transport seam offers them:
//! what the server holds for a path (by the KEY same-name prompt and
//! `KEY NULL`, or by SIZE on a stock server), replacing it, and a STOR
//! from an offset under our key.

use super::{RemoteError, Session, StoreStart, Upload};
use crate::key::Key;
use crate::transport::Holding;
use crate::upload::resume::StoredKey;

impl Session {
    /// Whether [`Session::probe`] may create the file on the server (the
    /// KEY flow asks by a STOR).
    pub fn probe_may_create(&self) -> bool {
        self.features().key
    }

    /// What the server holds for `path`, for an upload keyed `key`.
    pub fn probe(&mut self, path: &str, key: Key) -> Result<Holding, RemoteError> {
        if !self.features().key {
            return Ok(match super::verify::remote_size(self, path)? {
                None => Holding::Nothing { open: None },
                Some(size) => Holding::Partial {
                    size,
                    key: StoredKey::Unsupported,
                },
            });
        }
        self.key_set(key)?;
        match self.store_at(path, 0, false)? {
            StoreStart::Started(up) => Ok(Holding::Nothing {
                open: Some(crate::transport::Upload::Ftp(up)),
            }),
            StoreStart::Prompt(size) => {
                let key = match self.key_null()? {
                    Some(k) => StoredKey::Some(k),
                    None => StoredKey::None,
                };
                Ok(Holding::Partial { size, key })
            }
        }
    }

    /// Drops what the server holds for `path`, so that the next upload
    /// under `key` starts from zero.
    /// On a stock server a STOR from zero overwrites, so nothing is done;
    /// a KEY server would prompt again, so the file goes first.
    pub fn replace(&mut self, path: &str, key: Key) -> Result<(), RemoteError> {
        if !self.features().key {
            return Ok(());
        }
        match self.delete(path) {
            Err(e) if e.code() != Some(550) => return Err(e),
            _ => {}
        }
        self.key_set(key)
    }

    /// Starts the upload of `path` from `offset` (REST + STOR). The key
    /// was announced by [`Session::probe`] or [`Session::replace`].
    pub fn send_from(&mut self, path: &str, offset: u64) -> Result<Upload, RemoteError> {
        match self.store_at(path, offset, false)? {
            StoreStart::Started(up) => Ok(up),
            StoreStart::Prompt(_) => Err(RemoteError::Protocol(
                "unexpected second same-name prompt".into(),
            )),
        }
    }
}
