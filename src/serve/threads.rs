//! The HTTP threads: one single-threaded tokio runtime per core, each serving the connections
//! the acceptor hands it, as nginx's workers serve theirs.
//!
//! A connection stays on its thread, so a scrape's writes never hop between threads (on two
//! cores, the hops of the work-stealing runtime made a 2 MB scrape 1.5 times slower), and the
//! collectors run on the main runtime, not on its thread. The acceptor hands each connection to
//! the thread with the fewest open, so that two scrapers (a Prometheus pair) land on two cores.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use hyper_util::server::graceful::GracefulShutdown;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit};
use tracing::{debug, warn};

use super::{connection, AppState, DRAIN_TIMEOUT, EVENT_INTERVAL};

/// An accepted connection on its way to a thread, with its `--web.max-connections` permit.
pub(super) struct Accepted {
    pub stream: std::net::TcpStream,
    pub peer: SocketAddr,
    pub permit: Option<OwnedSemaphorePermit>,
}

/// An HTTP thread (or the caller's runtime, when no thread could start) as the acceptor sees it.
pub(super) struct Worker {
    streams: mpsc::UnboundedSender<Accepted>,
    /// Its connections open, or handed to it and not yet open.
    open: Arc<AtomicUsize>,
    done: oneshot::Receiver<()>,
}

/// What a worker's runtime holds: the connections handed to it, its count, and where it says
/// it has stopped.
struct Inbox {
    streams: mpsc::UnboundedReceiver<Accepted>,
    open: Arc<AtomicUsize>,
    stopped: oneshot::Sender<()>,
}

impl Inbox {
    /// Serves the connections handed to this runtime until the acceptor stops, lets them
    /// finish (up to [`DRAIN_TIMEOUT`]), then says it has stopped.
    async fn serve(mut self, state: Arc<AppState>) {
        let graceful = GracefulShutdown::new();
        while let Some(accepted) = self.streams.recv().await {
            let counted = Open(self.open.clone());
            let stream = match tokio::net::TcpStream::from_std(accepted.stream) {
                Ok(stream) => stream,
                Err(error) => {
                    warn!(peer = %accepted.peer, error = %error, "cannot serve a connection");
                    continue;
                }
            };
            let watcher = graceful.watcher();
            let state = state.clone();
            let (peer, permit) = (accepted.peer, accepted.permit);
            tokio::spawn(async move {
                connection(stream, peer, state, watcher).await;
                drop((permit, counted));
            });
        }
        debug!("HTTP thread handed no more connections; draining requests");
        if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
            .await
            .is_err()
        {
            warn!("some HTTP connections did not finish in time");
        }
        let _ = self.stopped.send(());
    }
}

impl Worker {
    /// A worker and the inbox its runtime serves.
    fn new() -> (Worker, Inbox) {
        let (streams, receive) = mpsc::unbounded_channel();
        let (stopped, done) = oneshot::channel();
        let open = Arc::new(AtomicUsize::new(0));
        let inbox = Inbox {
            streams: receive,
            open: open.clone(),
            stopped,
        };
        (
            Worker {
                streams,
                open,
                done,
            },
            inbox,
        )
    }

    /// Starts HTTP thread `index`, once its runtime is built.
    pub(super) async fn start(index: usize, state: Arc<AppState>) -> std::io::Result<Worker> {
        let (worker, inbox) = Worker::new();
        let (started, start) = oneshot::channel();
        // The runtime is built on the thread: one built here would be dropped here, inside the
        // caller's runtime (which tokio refuses), if the thread could not be started.
        std::thread::Builder::new()
            .name(format!("http-{index}"))
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .event_interval(EVENT_INTERVAL)
                    .build()
                {
                    Ok(runtime) => {
                        let _ = started.send(Ok(()));
                        runtime.block_on(inbox.serve(state));
                    }
                    Err(error) => {
                        let _ = started.send(Err(error));
                    }
                }
            })?;
        match start.await {
            Ok(Ok(())) => Ok(worker),
            Ok(Err(error)) => Err(error),
            Err(_) => Err(std::io::Error::other("the thread ended before its runtime")),
        }
    }

    /// Serves on the caller's runtime.
    pub(super) fn here(state: Arc<AppState>) -> Worker {
        let (worker, inbox) = Worker::new();
        tokio::spawn(inbox.serve(state));
        worker
    }

    /// Its connections open, or on their way; `usize::MAX` once it has stopped (its thread
    /// panicked), so that it is chosen only when every worker has.
    pub(super) fn open(&self) -> usize {
        if self.streams.is_closed() {
            return usize::MAX;
        }
        self.open.load(Ordering::Relaxed)
    }

    /// Hands it a connection; false if it has stopped (the connection is then closed).
    pub(super) fn hand(&self, accepted: Accepted) -> bool {
        self.open.fetch_add(1, Ordering::Relaxed);
        if self.streams.send(accepted).is_err() {
            self.open.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Tells it no more connections come; the answer comes once it drained its own.
    pub(super) fn close(self) -> oneshot::Receiver<()> {
        drop(self.streams);
        self.done
    }
}

/// Counts a connection open until it is dropped.
struct Open(Arc<AtomicUsize>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
