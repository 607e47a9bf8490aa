//! Request bodies as byte streams with an idle timeout, and uploads fed
//! from them.
//!
//! Each chunk is written where it was received before the next is read,
//! so memory per upload is bounded whatever the size: when the disk is
//! slower than the network, the body is simply not polled and TCP pushes
//! back.
//!
//! A body that has gone silent (its client lost the link) is also watched
//! for a takeover: a newer upload of the same file by the same account
//! with the same key asks the store to stop this one, and the body ends
//! within [`TICK`], not after the request timeout. Until then the newer
//! upload would get 423 and the client would wait out its backoff.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::backend::{BResult, Begin, UpEnd, UpOpts, UpState, Writer};
use super::Ctx;
use crate::server::paths::VPath;

/// How often a silent body looks at its upload's takeover flag.
const TICK: Duration = Duration::from_millis(200);

/// What a request whose upload was taken over is told (409).
pub(crate) const TAKEN_OVER: &str = "a newer upload of the file with the same key took over";

/// Why a body stopped before its end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    /// The connection broke (the client went away mid-body).
    Cut,
    /// Nothing arrived for the request timeout.
    Timeout,
    /// A newer upload of the file by the same account and key took over.
    TakenOver,
}

/// Where a body stream records why it stopped, and the takeover flag of
/// the upload it feeds (set once the upload has begun).
#[derive(Clone, Default)]
pub(crate) struct StopCell {
    why: Arc<Mutex<Option<Stop>>>,
    takeover: Arc<OnceLock<Arc<AtomicBool>>>,
}

impl StopCell {
    fn set(&self, s: Stop) {
        *self.why.lock().unwrap_or_else(|p| p.into_inner()) = Some(s);
    }

    /// Why the body stopped early, if it did.
    pub fn get(&self) -> Option<Stop> {
        *self.why.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ends the body early once `up` is taken over.
    pub fn watch(&self, up: &Upload) {
        if let Some((w, _)) = &up.w {
            let _ = self.takeover.set(w.takeover_flag());
        }
    }

    fn taken_over(&self) -> bool {
        self.takeover
            .get()
            .is_some_and(|f| f.load(Ordering::SeqCst))
    }
}

/// `body` as a stream of data chunks; an error item ends it (a cut, no
/// byte for `idle`, or a takeover), recorded in `why`.
pub(crate) fn stream(
    body: Incoming,
    idle: Duration,
    why: StopCell,
) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static {
    futures_util::stream::unfold(Some(body), move |st| {
        let why = why.clone();
        async move {
            let mut body = st?;
            let deadline = Instant::now() + idle;
            loop {
                // `frame()` is cancel-safe: a tick that fires first loses
                // nothing of the body.
                let wait = deadline.saturating_duration_since(Instant::now()).min(TICK);
                match tokio::time::timeout(wait, body.frame()).await {
                    Err(_) if why.taken_over() => {
                        why.set(Stop::TakenOver);
                        let e = io::Error::other(TAKEN_OVER);
                        return Some((Err(e), None));
                    }
                    Err(_) if Instant::now() >= deadline => {
                        why.set(Stop::Timeout);
                        let e = io::Error::new(io::ErrorKind::TimedOut, "request body timed out");
                        return Some((Err(e), None));
                    }
                    Err(_) => {}
                    Ok(None) => return None,
                    Ok(Some(Ok(frame))) => match frame.into_data() {
                        Ok(d) if d.is_empty() => {}
                        Ok(d) => return Some((Ok(d), Some(body))),
                        Err(_) => {} // trailers
                    },
                    Ok(Some(Err(e))) => {
                        why.set(Stop::Cut);
                        return Some((Err(io::Error::other(e)), None));
                    }
                }
            }
        }
    })
}

/// An upload accepted by the backend, written as its body arrives.
pub(crate) struct Upload {
    /// Taken by [`Upload::finish`]; an upload dropped unfinished (its
    /// request went away) is ended as a cut.
    w: Option<(Writer, Running)>,
    /// The file's state when the upload began.
    pub start: UpState,
}

/// Counts an upload as running until dropped.
struct Running(Arc<Ctx>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.uploads.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Begins an upload of `v` (on a blocking thread); Err when the backend
/// refuses it (then nothing was written).
pub(crate) async fn begin(ctx: &Arc<Ctx>, v: &VPath, how: Begin, owner: &str) -> BResult<Upload> {
    begin_with(ctx, v, how, UpOpts::default(), owner).await
}

/// [`begin`] with the extra rules of `opts`.
pub(crate) async fn begin_with(
    ctx: &Arc<Ctx>,
    v: &VPath,
    how: Begin,
    opts: UpOpts,
    owner: &str,
) -> BResult<Upload> {
    let (ready_tx, ready_rx) = oneshot::channel();
    ctx.uploads.fetch_add(1, Ordering::SeqCst);
    let running = Running(ctx.clone());
    let be = ctx.backend.clone();
    let v = v.clone();
    let owner = owner.to_string();
    tokio::task::spawn_blocking(move || {
        // A requester gone meanwhile leaves the file as it was.
        if let Err(Ok(w)) = ready_tx.send(be.start(&v, how, opts, &owner)) {
            w.abandon();
        }
    });
    match ready_rx.await {
        Ok(Ok(w)) => Ok(Upload {
            start: w.start_state(),
            w: Some((w, running)),
        }),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(super::backend::BackendError::Refused("upload thread ended")),
    }
}

/// Records the end of `w` on a blocking thread.
async fn end(w: Writer, running: Running, clean: bool) -> Option<UpEnd> {
    tokio::task::spawn_blocking(move || {
        let _running = running;
        w.end(clean)
    })
    .await
    .ok()
}

impl Upload {
    /// Writes the next bytes of the body, here and now: a page-cache
    /// write, as FTP's STOR does on its session thread. False when the
    /// upload stopped taking them (a local write error, reported by
    /// [`Upload::finish`]).
    pub fn write(&mut self, b: &[u8]) -> bool {
        self.w.as_mut().is_some_and(|(w, _)| w.write(b))
    }

    /// Ends the upload: `clean` when the body ended where the client meant
    /// it to, else a cut. Returns how it ended.
    pub async fn finish(mut self, clean: bool) -> Option<UpEnd> {
        let (w, running) = self.w.take()?;
        end(w, running, clean).await
    }

    /// Feeds a whole raw body (PUT, PATCH) into the upload and ends it.
    pub async fn pump(mut self, body: Incoming, idle: Duration) -> (Option<UpEnd>, Option<Stop>) {
        use futures_util::StreamExt;
        let why = StopCell::default();
        why.watch(&self);
        let s = stream(body, idle, why.clone());
        futures_util::pin_mut!(s);
        let mut clean = true;
        while let Some(item) = s.next().await {
            // Each chunk is dropped before the next is read, so hyper
            // reads the next one into the same buffer.
            if !item.is_ok_and(|b| self.write(&b)) {
                clean = false;
                break;
            }
        }
        (self.finish(clean).await, why.get())
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if let Some((w, running)) = self.w.take() {
            match tokio::runtime::Handle::try_current() {
                Ok(h) => {
                    h.spawn(end(w, running, false));
                }
                Err(_) => {
                    w.end(false);
                }
            }
        }
    }
}
