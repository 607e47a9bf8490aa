//! The namespace over WebDAV: PROPFIND (depth 1 for a listing, 0 for
//! one entry), MKCOL, DELETE, MOVE and PROPPATCH of the time.

use std::io::Read;
use std::time::SystemTime;

use super::{davxml, drain, status_error, Session};
use crate::transport::{Applied, RemoteEntry, RemoteError};

/// Largest PROPFIND answer read (some 100000 entries).
const LISTING_MAX: u64 = 64 << 20;

/// A listing answer larger than this is followed by a trim of the heaps.
const TRIM_AFTER: usize = 64 << 10;

/// Gives the heaps' free pages back to the system. A big listing's answer
/// and its parsed tree (some 1.5 MiB for 1000 entries) are freed at once,
/// but glibc keeps a thread's freed heap memory resident, and each FUSE
/// thread has its own heap: over a `cp -r` into a large directory the
/// mount held several megabytes more than over FTP, whose listing is read
/// line by line.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory to the system.
    unsafe {
        libc::malloc_trim(0);
    }
}

const PROPFIND_BODY: &str = r#"<?xml version="1.0" encoding="utf-8"?><D:propfind xmlns:D="DAV:"><D:prop><D:resourcetype/><D:getcontentlength/><D:getlastmodified/></D:prop></D:propfind>"#;

impl Session {
    fn propfind(&mut self, rel: &str, depth: &str) -> Result<Option<String>, RemoteError> {
        let mut url = self.url(rel)?;
        if depth == "1" && !url.ends_with('/') {
            url.push('/');
        }
        let r = self
            .request("PROPFIND", &url)
            .set("Depth", depth)
            .set("Content-Type", "application/xml; charset=utf-8")
            .send_string(PROPFIND_BODY);
        match r {
            // Not `into_string`: its 10 MB cap is a directory of ~20000
            // entries.
            Ok(resp) => {
                let mut body = String::new();
                resp.into_reader()
                    .take(LISTING_MAX + 1)
                    .read_to_string(&mut body)?;
                if body.len() as u64 > LISTING_MAX {
                    return Err(RemoteError::Protocol(format!(
                        "PROPFIND {rel:?}: answer over {LISTING_MAX} bytes"
                    )));
                }
                Ok(Some(body))
            }
            Err(ureq::Error::Status(404, _)) => Ok(None),
            Err(e) => Err(self.peer.error(e, &format!("PROPFIND {rel:?}"))),
        }
    }

    pub fn list(&mut self, dir: &str) -> Result<Vec<RemoteEntry>, RemoteError> {
        let abs = self.abs(dir)?;
        let Some(body) = self.propfind(dir, "1")? else {
            return Err(status_error(404, &format!("PROPFIND {dir:?}")));
        };
        let r = davxml::entries(&body, &abs, false);
        if body.len() > TRIM_AFTER {
            drop(body);
            release_free_memory();
        }
        r
    }

    pub fn stat(&mut self, path: &str) -> Result<Option<RemoteEntry>, RemoteError> {
        let abs = self.abs(path)?;
        match self.propfind(path, "0")? {
            Some(body) => Ok(davxml::entries(&body, &abs, true)?.into_iter().next()),
            None => Ok(None),
        }
    }

    fn simple(&mut self, method: &str, url: &str, what: &str) -> Result<(), RemoteError> {
        self.request(method, url)
            .call()
            .map(drain)
            .map_err(|e| self.peer.error(e, what))
    }

    pub fn mkdir(&mut self, path: &str) -> Result<(), RemoteError> {
        let url = self.url(path)? + "/";
        self.simple("MKCOL", &url, &format!("MKCOL {path:?}"))
    }

    /// WebDAV's DELETE of a collection is recursive: an rmdir checks first
    /// that the directory is one, and empty.
    pub fn rmdir(&mut self, path: &str) -> Result<(), RemoteError> {
        match self.stat(path)? {
            None => return Err(status_error(404, &format!("rmdir {path:?}"))),
            Some(e) if !e.is_dir => {
                return Err(RemoteError::Status {
                    errno: libc::ENOTDIR,
                    permanent: true,
                    text: format!("{path:?} is not a directory"),
                })
            }
            Some(_) => {}
        }
        if !self.list(path)?.is_empty() {
            return Err(RemoteError::Status {
                errno: libc::ENOTEMPTY,
                permanent: true,
                text: format!("{path:?} is not empty"),
            });
        }
        let url = self.url(path)? + "/";
        self.simple("DELETE", &url, &format!("DELETE {path:?}"))
    }

    pub fn delete(&mut self, path: &str) -> Result<(), RemoteError> {
        if let Some(e) = self.stat(path)? {
            if e.is_dir {
                return Err(RemoteError::Status {
                    errno: libc::EISDIR,
                    permanent: true,
                    text: format!("{path:?} is a directory"),
                });
            }
        }
        let url = self.url(path)?;
        self.simple("DELETE", &url, &format!("DELETE {path:?}"))
    }

    pub fn rename(&mut self, from: &str, to: &str) -> Result<(), RemoteError> {
        let dir = self.stat(from)?.is_some_and(|e| e.is_dir);
        let slash = if dir { "/" } else { "" };
        let src = self.url(from)? + slash;
        let dst = self.url(to)? + slash;
        self.request("MOVE", &src)
            .set("Destination", &dst)
            .set("Overwrite", "T")
            .call()
            .map(drain)
            .map_err(|e| self.peer.error(e, &format!("MOVE {from:?} {to:?}")))
    }

    /// Sets the modification time of `path` by PROPPATCH of
    /// `{DAV:}lastmodified` in Unix seconds: the form ownCloud, Nextcloud
    /// and keyftpd take (rclone's webdav backend sends it too). One request
    /// for a file already on the server, whenever the time was set, where a
    /// header on the upload (`X-OC-Mtime`) would serve only an upload.
    /// A server that does not set it (a 207 without a 2xx for it, or no
    /// PROPPATCH at all) keeps its own time: `Unsupported`.
    pub fn set_mtime(&mut self, path: &str, t: SystemTime) -> Result<Applied, RemoteError> {
        let secs = match t.duration_since(SystemTime::UNIX_EPOCH) {
            Ok(d) => d.as_secs() as i64,
            Err(e) => -(e.duration().as_secs() as i64),
        };
        let body = format!(
            r#"<?xml version="1.0" encoding="utf-8"?><D:propertyupdate xmlns:D="DAV:"><D:set><D:prop><D:lastmodified>{secs}</D:lastmodified></D:prop></D:set></D:propertyupdate>"#
        );
        let url = self.url(path)?;
        let r = self
            .request("PROPPATCH", &url)
            .set("Content-Type", "application/xml; charset=utf-8")
            .send_string(&body);
        match r {
            Ok(resp) => {
                let mut text = String::new();
                resp.into_reader().take(1 << 20).read_to_string(&mut text)?;
                Ok(if davxml::prop_was_set(&text, "lastmodified") {
                    Applied::Done
                } else {
                    Applied::Unsupported
                })
            }
            Err(ureq::Error::Status(404, _)) => {
                Err(status_error(404, &format!("PROPPATCH {path:?}")))
            }
            Err(ureq::Error::Status(401, _)) => {
                Err(status_error(401, &format!("PROPPATCH {path:?}")))
            }
            Err(ureq::Error::Status(_, _)) => Ok(Applied::Unsupported),
            Err(e) => Err(self.peer.error(e, &format!("PROPPATCH {path:?}"))),
        }
    }

    /// Checks that the connection is alive.
    pub fn noop(&mut self) -> Result<(), RemoteError> {
        self.stat("").map(drop)
    }
}
