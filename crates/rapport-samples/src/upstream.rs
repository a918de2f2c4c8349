//! A loopback HTTP/1.1 server that answers each request from a closure: the fake
//! upstream tests replay fixtures from (a test fake of someone else's API, never of
//! our own code).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The largest request body read (a form post, not an upload).
pub const BODY_BYTES_MAX: usize = 1024 * 1024;

/// One canned response.
#[derive(Clone, Debug)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// Wait this long before answering (to provoke timeouts).
    pub delay: Duration,
    /// Announce the full length but send only this many body bytes, then close.
    pub truncate_at: Option<usize>,
}

impl Reply {
    /// 200 with a JSON body.
    pub fn json(body: &str) -> Reply {
        Reply {
            headers: vec![("content-type".into(), "application/json".into())],
            ..Reply::status(200, body)
        }
    }

    /// `status` with a plain body.
    pub fn status(status: u16, body: &str) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
            delay: Duration::ZERO,
            truncate_at: None,
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Answers only after `delay`.
    pub fn delayed(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }

    /// Cuts the body off after `bytes`.
    pub fn truncated(mut self, bytes: usize) -> Reply {
        self.truncate_at = Some(bytes);
        self
    }
}

/// Whether request `head` carries header `name` with exactly `value` (for fakes that
/// check credentials).
pub fn has_header(head: &str, name: &str, value: &str) -> bool {
    head.lines().any(|line| {
        line.split_once(':').is_some_and(|(header, given)| {
            header.eq_ignore_ascii_case(name) && given.trim() == value
        })
    })
}

/// The running server. Requests are recorded (their heads); the most requests ever in
/// flight at once is tracked, so tests can prove work was never done concurrently.
#[derive(Debug)]
pub struct Upstream {
    /// Where it listens.
    pub address: SocketAddr,
    /// The request heads seen, in order.
    pub requests: Arc<Mutex<Vec<String>>>,
    in_flight: Arc<AtomicUsize>,
    in_flight_max: Arc<AtomicUsize>,
}

impl Upstream {
    /// Starts answering each request with `respond(path)` (path includes the query).
    pub async fn start(respond: impl Fn(&str) -> Reply + Send + Sync + 'static) -> Upstream {
        Upstream::start_with_heads(move |_, path| respond(path)).await
    }

    /// Starts answering each request with `respond(head, path)`, where `head` is the
    /// request line and headers (for checking credentials).
    pub async fn start_with_heads(
        respond: impl Fn(&str, &str) -> Reply + Send + Sync + 'static,
    ) -> Upstream {
        Upstream::start_with_bodies(move |head, path, _| respond(head, path)).await
    }

    /// Starts answering each request with `respond(head, path, body)`: the body read
    /// whole by its `Content-Length` (at most [`BODY_BYTES_MAX`]), for form posts such
    /// as an OAuth token request.
    pub async fn start_with_bodies(
        respond: impl Fn(&str, &str, &[u8]) -> Reply + Send + Sync + 'static,
    ) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let address = listener.local_addr().expect("local address");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let in_flight_max = Arc::new(AtomicUsize::new(0));
        let respond = Arc::new(respond);
        let (seen, current, most) = (requests.clone(), in_flight.clone(), in_flight_max.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let (seen, respond, current, most) =
                    (seen.clone(), respond.clone(), current.clone(), most.clone());
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buffer = [0u8; 4096];
                    while !head.windows(4).any(|window| window == b"\r\n\r\n") {
                        match socket.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(read) => head.extend_from_slice(&buffer[..read]),
                        }
                    }
                    let end = head
                        .windows(4)
                        .position(|window| window == b"\r\n\r\n")
                        .map_or(head.len(), |at| at + 4);
                    let mut body = head.split_off(end);
                    let head = String::from_utf8_lossy(&head).into_owned();
                    let length = head
                        .lines()
                        .find_map(|line| {
                            let (name, value) = line.split_once(':')?;
                            name.eq_ignore_ascii_case("content-length")
                                .then(|| value.trim().parse::<usize>().ok())
                                .flatten()
                        })
                        .unwrap_or(0)
                        .min(BODY_BYTES_MAX);
                    while body.len() < length {
                        match socket.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(read) => body.extend_from_slice(&buffer[..read]),
                        }
                    }
                    body.truncate(length);
                    let now = current.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
                    let reply = respond(&head, &path, &body);
                    seen.lock().expect("requests lock").push(head);
                    if !reply.delay.is_zero() {
                        tokio::time::sleep(reply.delay).await;
                    }
                    let mut response = format!(
                        "HTTP/1.1 {} X\r\ncontent-length: {}\r\nconnection: close\r\n",
                        reply.status,
                        reply.body.len()
                    );
                    for (name, value) in &reply.headers {
                        response.push_str(&format!("{name}: {value}\r\n"));
                    }
                    response.push_str("\r\n");
                    let body = match reply.truncate_at {
                        Some(bytes) => &reply.body[..bytes.min(reply.body.len())],
                        None => &reply.body[..],
                    };
                    let _ = socket.write_all(response.as_bytes()).await;
                    let _ = socket.write_all(body).await;
                    let _ = socket.shutdown().await;
                    current.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Upstream {
            address,
            requests,
            in_flight,
            in_flight_max,
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// `127.0.0.1:<port>`, as an allowed host.
    pub fn grant(&self) -> String {
        self.address.to_string()
    }

    /// Requests answered or in progress.
    pub fn request_count(&self) -> usize {
        self.requests.lock().expect("requests lock").len()
    }

    /// The most requests that were ever in flight at once.
    pub fn in_flight_max(&self) -> usize {
        self.in_flight_max.load(Ordering::SeqCst)
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }
}
