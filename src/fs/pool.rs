//! A small fixed pool of threads for the requests that wait on the network
//! (remote reads, directory listings). A FUSE request thread hands the
//! request *and its reply* (fuser's `Reply*` objects are `Send`) to the
//! pool and goes back to the kernel at once, so `ls` and `stat` keep
//! answering while slow downloads block pool threads.
//!
//! Bounded on both sides: `threads` workers, and a queue of [`QUEUE`]
//! waiting jobs (a job is a closure with its reply, no data). When the
//! queue is full the request thread waits for a slot: back-pressure
//! instead of unbounded memory.

use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Sender};

/// Jobs waiting for a worker, at most.
pub const QUEUE: usize = 64;

type Job = Box<dyn FnOnce() + Send + 'static>;

pub struct Pool {
    tx: Option<Sender<Job>>,
    threads: Vec<JoinHandle<()>>,
}

impl Pool {
    /// Starts `threads` workers named `name-N`. A worker that cannot be
    /// started is logged; with none, jobs run on the caller's thread.
    pub fn new(name: &str, threads: usize) -> Pool {
        let (tx, rx) = bounded::<Job>(QUEUE);
        let mut handles = Vec::new();
        for i in 0..threads {
            let rx = rx.clone();
            let t = std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || {
                    for job in rx.iter() {
                        job();
                    }
                });
            match t {
                Ok(t) => handles.push(t),
                Err(e) => log::warn!("cannot start {name}-{i}: {e}"),
            }
        }
        Pool {
            tx: (!handles.is_empty()).then_some(tx),
            threads: handles,
        }
    }

    /// Runs `job` on a worker (waiting for a queue slot if need be), or
    /// here when the pool is stopped.
    pub fn run(&self, job: impl FnOnce() + Send + 'static) {
        match &self.tx {
            Some(tx) => {
                if let Err(e) = tx.send(Box::new(job)) {
                    (e.into_inner())();
                }
            }
            None => job(),
        }
    }

    /// Lets the workers finish the queued jobs and exit (not waited for:
    /// one may be blocked on the network).
    pub fn stop(&mut self) {
        self.tx = None;
        self.threads.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn a_blocked_worker_does_not_block_the_caller() {
        let pool = Pool::new("t", 2);
        let (gate_tx, gate_rx) = mpsc::channel::<()>();
        let (done_tx, done_rx) = mpsc::channel();
        pool.run(move || {
            let _ = gate_rx.recv();
        });
        let d = done_tx.clone();
        pool.run(move || d.send(1).unwrap());
        assert_eq!(done_rx.recv_timeout(Duration::from_secs(5)), Ok(1));
        gate_tx.send(()).unwrap();
        let mut stopped = pool;
        stopped.stop();
        stopped.run(move || done_tx.send(2).unwrap());
        assert_eq!(done_rx.recv_timeout(Duration::from_secs(5)), Ok(2));
    }
}
