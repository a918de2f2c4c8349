//! Accepting connections and serving HTTP/1.1 on them, with the bounds a server on an
//! open network needs: at most [`HttpTuning::connections_max`] connections at once, and
//! every connection closed when its client is too slow or silent —
//!
//! - **headers**: a request's headers must arrive within `header_read_timeout`,
//!   counted from the connection's first byte (or from its opening, for a connection
//!   that sends nothing);
//! - **body**: a request's body must arrive within `request_body_timeout` of its
//!   headers;
//! - **idle**: a connection with no request in flight and no bytes moving for
//!   `idle_timeout` is closed — a keep-alive connection nobody uses, or a client that
//!   stopped reading its answer.
//!
//! axum's own `serve` has none of these, which let 2,000 silent sockets hold a node.
//! Timers here are this module's own (a watchdog per connection, reading atomics the
//! socket and the service update) rather than hyper's header timer, so that the idle
//! and header timeouts can differ.

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use bytes::Bytes;
use http_body::Frame;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt;

/// The `[server]` settings for connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpTuning {
    /// How long a request's headers may take to arrive.
    pub header_read_timeout: Duration,
    /// How long a request's body may take to arrive, from its headers.
    pub request_body_timeout: Duration,
    /// How long a connection may sit with nothing in flight and nothing moving.
    pub idle_timeout: Duration,
    /// Most connections open at once; further ones wait in the kernel's backlog until
    /// one closes.
    pub connections_max: usize,
}

impl Default for HttpTuning {
    fn default() -> Self {
        HttpTuning {
            header_read_timeout: Duration::from_secs(10),
            request_body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            connections_max: 1024,
        }
    }
}

/// How often a connection's watchdog looks at it.
const WATCH_EVERY: Duration = Duration::from_millis(250);

/// Serves `router` on `listener` until `stop` turns true; then stops accepting, lets
/// each open connection finish its request in flight, and returns once all are closed.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    tuning: HttpTuning,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(tuning.connections_max));
    let (closing, closing_rx) = watch::channel(false);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            () = turned_true(&mut stop) => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, or a connection reset before it was
                    // taken: wait a moment rather than spin.
                    tracing::warn!(%error, "accepting a connection failed; trying again shortly");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = turned_true(&mut stop) => break,
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let closing = closing_rx.clone();
        tokio::spawn(async move {
            serve_connection(stream, peer, router, tuning, closing).await;
            drop(slot);
        });
    }
    drop(listener);
    let _ = closing.send(true);
    // Every connection gives its slot back when it ends.
    let all = u32::try_from(tuning.connections_max).unwrap_or(u32::MAX);
    let _ = slots.acquire_many(all).await;
}

/// Waits until `signal` is true. (The guard `wait_for` returns is not `Send`; this
/// drops it inside, so the futures that wait stay `Send`.)
async fn turned_true(signal: &mut watch::Receiver<bool>) {
    let _ = signal.wait_for(|on| *on).await;
}

/// What a connection's watchdog reads: milliseconds since the connection opened.
#[derive(Debug)]
struct Activity {
    opened: Instant,
    /// Requests whose answer is being made.
    in_flight: AtomicUsize,
    /// Requests started.
    started: AtomicU64,
    /// When bytes last moved either way.
    last_io_ms: AtomicU64,
    /// When the last answer was made (or the connection opened).
    idle_since_ms: AtomicU64,
    /// When the first byte of the next request's head arrived; `u64::MAX` for none.
    head_since_ms: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            started: AtomicU64::new(0),
            last_io_ms: AtomicU64::new(0),
            idle_since_ms: AtomicU64::new(0),
            head_since_ms: AtomicU64::new(u64::MAX),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn read(&self) {
        let now = self.now_ms();
        self.last_io_ms.store(now, Ordering::Relaxed);
        if self.in_flight.load(Ordering::Acquire) == 0 {
            let _ = self.head_since_ms.compare_exchange(
                u64::MAX,
                now,
                Ordering::AcqRel,
                Ordering::Relaxed,
            );
        }
    }

    fn wrote(&self) {
        self.last_io_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.started.fetch_add(1, Ordering::Relaxed);
        self.head_since_ms.store(u64::MAX, Ordering::Release);
    }

    fn request_answered(&self) {
        self.idle_since_ms.store(self.now_ms(), Ordering::Relaxed);
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    /// Why the connection should be closed now, if it should.
    fn overdue(&self, tuning: &HttpTuning) -> Option<&'static str> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            // The request timeout and the body deadline bound a request in flight.
            return None;
        }
        let now = self.now_ms();
        let past = |since: u64, limit: Duration| {
            now.saturating_sub(since) >= u64::try_from(limit.as_millis()).unwrap_or(u64::MAX)
        };
        let head_since = self.head_since_ms.load(Ordering::Acquire);
        if head_since != u64::MAX {
            return past(head_since, tuning.header_read_timeout)
                .then_some("its request's headers did not arrive in time");
        }
        if self.started.load(Ordering::Relaxed) == 0 {
            return past(0, tuning.header_read_timeout).then_some("it sent no request in time");
        }
        let quiet_since = self
            .idle_since_ms
            .load(Ordering::Relaxed)
            .max(self.last_io_ms.load(Ordering::Relaxed));
        past(quiet_since, tuning.idle_timeout).then_some("it was idle")
    }
}

/// Counts a request in flight for as long as it lives.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn enter(activity: &Arc<Activity>) -> InFlight {
        activity.request_started();
        InFlight(Arc::clone(activity))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_answered();
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    tuning: HttpTuning,
    mut closing: watch::Receiver<bool>,
) {
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: Arc::clone(&activity),
    });
    let for_requests = Arc::clone(&activity);
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let in_flight = InFlight::enter(&for_requests);
        let router = router.clone();
        let deadline = tokio::time::Instant::now() + tuning.request_body_timeout;
        let mut request = request.map(|body| {
            Body::new(DeadlineBody {
                inner: body,
                deadline: Box::pin(tokio::time::sleep_until(deadline)),
                limit: tuning.request_body_timeout,
            })
        });
        request.extensions_mut().insert(ConnectInfo(peer));
        async move {
            let response = router.oneshot(request).await;
            drop(in_flight);
            response
        }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(io, service);
    tokio::pin!(connection);
    let mut draining = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%peer, %error, "a connection ended with an error");
                }
                return;
            }
            () = turned_true(&mut closing), if !draining => {
                draining = true;
                connection.as_mut().graceful_shutdown();
            }
            () = tokio::time::sleep(WATCH_EVERY) => {
                if let Some(why) = activity.overdue(&tuning) {
                    tracing::debug!(%peer, why, "closing a connection");
                    return;
                }
            }
        }
    }
}

/// The socket, noting when bytes move.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(written)) if written > 0) {
            self.activity.wrote();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(written)) if written > 0) {
            self.activity.wrote();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// A request body that fails once its deadline passes, so a client trickling a body
/// cannot hold a handler (and its connection) open.
struct DeadlineBody {
    inner: Incoming,
    deadline: Pin<Box<tokio::time::Sleep>>,
    limit: Duration,
}

/// The error a [`DeadlineBody`] ends with.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0} s: send it faster, or in smaller requests")]
pub(crate) struct BodyTooSlow(u64);

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(BodyTooSlow(self.limit.as_secs()).into())));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
