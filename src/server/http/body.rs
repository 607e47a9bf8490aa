//! Request bodies as byte streams with an idle timeout, and the hand-off
//! of a body's bytes to an upload running on a blocking thread.
//!
//! The channel to the upload thread holds a few chunks, so memory per
//! upload is bounded whatever the size: when the disk is slower than the
//! network, the body is simply not polled and TCP pushes back.

use std::io;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::backend::{BResult, Begin, Chunk, UpEnd, UpOpts, UpState};
use super::Ctx;
use crate::server::paths::VPath;

/// Chunks in flight between a body and its upload thread.
const CHANNEL_CHUNKS: usize = 8;

/// Why a body stopped before its end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    /// The connection broke (the client went away mid-body).
    Cut,
    /// Nothing arrived for the request timeout.
    Timeout,
}

/// Where a body stream records why it stopped.
#[derive(Clone, Default)]
pub(crate) struct StopCell(Arc<Mutex<Option<Stop>>>);

impl StopCell {
    fn set(&self, s: Stop) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(s);
    }

    /// Why the body stopped early, if it did.
    pub fn get(&self) -> Option<Stop> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// `body` as a stream of data chunks; an error item ends it (a cut, or no
/// byte for `idle`), recorded in `why`.
pub(crate) fn stream(
    body: Incoming,
    idle: Duration,
    why: StopCell,
) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static {
    futures_util::stream::unfold(Some(body), move |st| {
        let why = why.clone();
        async move {
            let mut body = st?;
            loop {
                match tokio::time::timeout(idle, body.frame()).await {
                    Err(_) => {
                        why.set(Stop::Timeout);
                        let e = io::Error::new(io::ErrorKind::TimedOut, "request body timed out");
                        return Some((Err(e), None));
                    }
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

/// An upload accepted by the backend, fed from the request side.
pub(crate) struct Upload {
    tx: mpsc::Sender<Chunk>,
    task: JoinHandle<Option<UpEnd>>,
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

/// Starts an upload of `v` on a blocking thread; Err when the backend
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
    let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
    ctx.uploads.fetch_add(1, Ordering::SeqCst);
    let running = Running(ctx.clone());
    let be = ctx.backend.clone();
    let v = v.clone();
    let owner = owner.to_string();
    let task = tokio::task::spawn_blocking(move || {
        let _running = running;
        be.upload(&v, how, opts, &owner, ready_tx, rx)
    });
    match ready_rx.await {
        Ok(Ok(start)) => Ok(Upload { tx, task, start }),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(super::backend::BackendError::Refused("upload thread ended")),
    }
}

impl Upload {
    /// Hands over a chunk; false when the upload stopped taking them (a
    /// local write error, reported by [`Upload::finish`]).
    pub async fn send(&self, b: Bytes) -> bool {
        self.tx.send(Chunk::Data(b)).await.is_ok()
    }

    /// Ends the upload: `clean` when the body ended where the client meant
    /// it to, else a cut. Returns how it ended.
    pub async fn finish(self, clean: bool) -> Option<UpEnd> {
        if clean {
            let _ = self.tx.send(Chunk::End).await;
        }
        drop(self.tx);
        self.task.await.ok().flatten()
    }

    /// Feeds a whole raw body (PUT, PATCH) into the upload and ends it.
    pub async fn pump(self, body: Incoming, idle: Duration) -> (Option<UpEnd>, Option<Stop>) {
        use futures_util::StreamExt;
        let why = StopCell::default();
        let s = stream(body, idle, why.clone());
        futures_util::pin_mut!(s);
        let mut clean = true;
        while let Some(item) = s.next().await {
            match item {
                Ok(b) => {
                    if !self.send(b).await {
                        clean = false;
                        break;
                    }
                }
                Err(_) => {
                    clean = false;
                    break;
                }
            }
        }
        (self.finish(clean).await, why.get())
    }
}
