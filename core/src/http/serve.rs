//! The HTTP server's accept loop: warp's routes on hyper's HTTP/1 connections, with the limits
//! warp's own `serve` leaves out. warp 0.4 gives hyper no timer, so a request head may take
//! forever, and it takes every connection it is offered: a slowloris (many connections that send
//! a header byte every few seconds, or nothing) holds the file descriptors that the RTMP ingest
//! and the destinations' reconnects need.
//!
//! - **Header read timeout** ([`HEADER_READ_TIMEOUT`]): a request head must arrive whole within
//!   it, counted from the connection's open and, between keep-alive requests, from the end of the
//!   previous response; past it hyper closes the connection. So it is the idle keep-alive limit
//!   too (hyper 1.12, `src/proto/h1/conn.rs`: `poll_read_head` arms the timer whenever it waits
//!   for a head, and `State::idle` asks for that read again after each response). It never
//!   bounds a response: an endless `/api/events` or `/preview.flv` body is not a head read.
//! - **Connection cap** ([`MAX_CONNECTIONS`]): at the cap, a new connection closes the oldest
//!   one with no request in progress (still sending its head, or idle between requests), so a
//!   flood of slow connections cannot lock a real client out; only when every connection has a
//!   request in progress (a response still being sent) is the new one closed at accept.
//! - **Accept errors** (EMFILE: the process is out of descriptors) wait 100 ms and retry; the
//!   loop never ends.
//!
//! Over the cap and failed accepts each log one warn line per 10 s at most, with a count.
//! Not bounded here: a request body sent slowly (its request is in progress; the cap bounds how
//! many such connections there can be).
//! HTTP/1 only: warp's server also took HTTP/2 with prior knowledge (h2c), which browsers do not
//! speak on plain HTTP, and read the first bytes to tell the two apart with no timeout.
//!
//! `warp::addr::remote()` only sees connections warp's own server accepted: the routes read the
//! client's address with [`remote`].

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::service::Service as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use warp::Filter;

/// How long a request head may take to arrive, from the connection's open or the end of the
/// previous response (so also how long a keep-alive connection may stay idle): 10 s. A browser
/// sends a head in one packet; a client slower than this is a slowloris or gone.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Open HTTP connections at most: 512. Debian starts a service with a soft limit of 1024 file
/// descriptors (systemd's `LimitNOFILE=1024:524288`); this leaves the other half to the RTMP
/// ingest (`ingest.max_connections`, 64 by default), the destinations, GStreamer and SQLite.
/// A constant, not a config key: raise it here.
pub const MAX_CONNECTIONS: usize = 512;

/// The wait after a failed accept (EMFILE, ENFILE, ENOBUFS), in which connections close and
/// give their descriptors back: 100 ms.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// One warn line per kind of trouble (over the cap, failed accepts) per 10 s at most, so a
/// flood cannot flood the log.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// What [`serve`] enforces.
#[derive(Debug, Clone)]
pub struct Limits {
    /// See [`HEADER_READ_TIMEOUT`].
    pub header_read_timeout: Duration,
    /// See [`MAX_CONNECTIONS`].
    pub max_connections: usize,
    /// See [`MAX_PER_NETWORK`].
    pub max_per_network: usize,
    /// Addresses not held to [`Self::max_per_network`]: `http.trusted_proxies` (every client
    /// behind a reverse proxy arrives from its address).
    pub exempt: Vec<ipnet::IpNet>,
}

/// Open HTTP connections at most from one client network (an IPv4 address, an IPv6 /64;
/// [`crate::net::client_net`]): 64, an eighth of [`MAX_CONNECTIONS`]. A browser opens 6 per
/// host; a control room with a few dashboards, events and previews stays well under it. So one
/// host holding requests open (slow bodies, slow reads) cannot take every connection.
pub const MAX_PER_NETWORK: usize = 64;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: HEADER_READ_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
            max_per_network: MAX_PER_NETWORK,
            exempt: Vec::new(),
        }
    }
}

/// The client's address on a connection [`serve`] accepted, as a request extension.
#[derive(Debug, Clone, Copy)]
struct Peer(SocketAddr);

/// The client's TCP address, for routes: what `warp::addr::remote()` gives under warp's own
/// server and `warp::test`, which cannot see the connections [`serve`] accepts. `None` only
/// for in-process requests.
pub fn remote() -> impl Filter<Extract = (Option<SocketAddr>,), Error = Infallible> + Copy {
    warp::ext::optional::<Peer>()
        .and(warp::addr::remote())
        .map(|ours: Option<Peer>, warp: Option<SocketAddr>| ours.map(|Peer(a)| a).or(warp))
}

/// Serves `filter` on every connection `listener` accepts, within `limits`. Never returns.
pub async fn serve<F>(listener: TcpListener, filter: F, limits: Limits)
where
    F: Filter<Extract = (warp::reply::Response,), Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
{
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let open = Arc::new(Mutex::new(Open::default()));
    let mut closed_log = Throttle::default();
    let mut refused_log = Throttle::default();
    let mut failed_log = Throttle::default();
    let mut net_refused_log = Throttle::default();
    let per_network: Arc<Mutex<std::collections::HashMap<std::net::IpAddr, usize>>> =
        Arc::default();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            // the client gave up before the accept: nothing to wait for
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                if let Some(n) = failed_log.count() {
                    tracing::warn!(error = %e, "http accept failed {n} times since the last line: retrying every 100 ms");
                }
                tokio::time::sleep(ACCEPT_RETRY).await;
                continue;
            }
        };
        let net = crate::net::client_net(peer.ip());
        let net_slot = if limits.exempt.iter().any(|n| n.contains(&peer.ip())) {
            None
        } else {
            match NetSlot::take(&per_network, net, limits.max_per_network) {
                Some(s) => Some(s),
                None => {
                    if let Some(n) = net_refused_log.count() {
                        tracing::warn!(
                            client = %net,
                            "http connections from one network at the cap ({}): refused {n} since the last line",
                            limits.max_per_network
                        );
                    }
                    continue; // dropping `stream` closes it
                }
            }
        };
        let permit = match slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) if open.lock().close_oldest_idle() => {
                if let Some(n) = closed_log.count() {
                    tracing::warn!(
                        "http connections at the cap ({}): closed {n} since the last line, the oldest with no request in progress, to let new ones in",
                        limits.max_connections
                    );
                }
                // the closed one gives its permit back at once
                match slots.clone().acquire_owned().await {
                    Ok(permit) => permit,
                    Err(_) => continue, // never closed
                }
            }
            Err(_) => {
                if let Some(n) = refused_log.count() {
                    tracing::warn!(
                        "http connections at the cap ({}), every one with a request in progress: refused {n} new ones since the last line",
                        limits.max_connections
                    );
                }
                continue; // dropping `stream` closes it
            }
        };
        let slot = Open::add(&open, permit);
        let conn = slot.conn.clone();
        let routes = TowerToHyperService::new(warp::service(filter.clone()));
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(Peer(peer));
            let in_progress = InProgress::new(&conn);
            let response = routes.call(req);
            async move {
                let response = response.await?;
                Ok::<_, Infallible>(response.map(|body| Tracked {
                    body,
                    _in_progress: in_progress,
                }))
            }
        });
        let connection = http1
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        tokio::spawn(async move {
            let _net_slot = net_slot;
            tokio::select! {
                ended = connection => if let Err(e) = ended {
                    // a header read timeout, a malformed request, a reset: the client's doing
                    tracing::debug!(client = %peer, error = %e, "http connection ended");
                },
                () = slot.conn.close.notified() => {
                    tracing::debug!(client = %peer, "http connection closed for a newer one (the cap)");
                }
            }
        });
    }
}

/// One connection's place in the per-network count, given back on drop.
struct NetSlot {
    counts: Arc<Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>,
    net: std::net::IpAddr,
}

impl NetSlot {
    /// A place for `net`, or `None` when it holds `max` already.
    fn take(
        counts: &Arc<Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>,
        net: std::net::IpAddr,
        max: usize,
    ) -> Option<NetSlot> {
        let mut c = counts.lock();
        let n = c.entry(net).or_default();
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(NetSlot {
            counts: counts.clone(),
            net,
        })
    }
}

impl Drop for NetSlot {
    fn drop(&mut self) {
        let mut c = self.counts.lock();
        if let Some(n) = c.get_mut(&self.net) {
            *n -= 1;
            if *n == 0 {
                c.remove(&self.net);
            }
        }
    }
}

/// Errors of one connection that `accept` reports: the next accept is fine.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    )
}

/// The connections open now, oldest first (ids count up).
#[derive(Default)]
struct Open {
    next_id: u64,
    conns: BTreeMap<u64, Arc<Conn>>,
}

/// One open connection, as the accept loop sees it.
#[derive(Default)]
struct Conn {
    /// Requests whose response has not been sent whole; 0 while the client sends a head or
    /// keeps the connection idle.
    in_progress: AtomicUsize,
    /// Tells the connection's task to close it.
    close: Notify,
}

/// A connection's place under the cap: its permit and its entry in [`Open`], given back when
/// its task ends.
struct Slot {
    open: Arc<Mutex<Open>>,
    id: u64,
    conn: Arc<Conn>,
    _permit: OwnedSemaphorePermit,
}

impl Open {
    fn add(open: &Arc<Mutex<Open>>, permit: OwnedSemaphorePermit) -> Slot {
        let conn = Arc::new(Conn::default());
        let mut o = open.lock();
        let id = o.next_id;
        o.next_id += 1;
        o.conns.insert(id, conn.clone());
        Slot {
            open: open.clone(),
            id,
            conn,
            _permit: permit,
        }
    }

    /// Tells the oldest connection with no request in progress to close; false when every one
    /// has a request in progress.
    fn close_oldest_idle(&self) -> bool {
        let idle = self
            .conns
            .values()
            .find(|c| c.in_progress.load(Ordering::Acquire) == 0);
        idle.inspect(|c| c.close.notify_one()).is_some()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        // before the permit (a field) goes back: a closed connection is never picked again
        self.open.lock().conns.remove(&self.id);
    }
}

/// One request in progress on a connection, from its head until its response's last byte
/// (dropped with the response body).
struct InProgress(Arc<Conn>);

impl InProgress {
    fn new(conn: &Arc<Conn>) -> InProgress {
        conn.in_progress.fetch_add(1, Ordering::AcqRel);
        InProgress(conn.clone())
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        self.0.in_progress.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request [`InProgress`] until hyper drops it: after the last
/// byte, or with the connection.
struct Tracked<B> {
    body: B,
    _in_progress: InProgress,
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Counts a kind of trouble and says when its warn line is due: at most once per
/// [`LOG_EVERY`].
#[derive(Default)]
struct Throttle {
    last: Option<Instant>,
    count: u64,
}

impl Throttle {
    /// Counts one; when a line is due, how many to report (those since the last line).
    fn count(&mut self) -> Option<u64> {
        self.count += 1;
        if self.last.is_some_and(|t| t.elapsed() < LOG_EVERY) {
            return None;
        }
        self.last = Some(Instant::now());
        Some(std::mem::take(&mut self.count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_connection_without_a_request_is_closed_first() {
        let open = Arc::new(Mutex::new(Open::default()));
        let slots = Arc::new(Semaphore::new(3));
        let slot = || Open::add(&open, slots.clone().try_acquire_owned().expect("permit"));
        let (busy, idle, newer) = (slot(), slot(), slot());
        let _request = InProgress::new(&busy.conn);
        assert!(open.lock().close_oldest_idle());
        // `idle` was told (a stored permit: its next `notified()` is ready), not `busy`
        assert!(
            futures_util::FutureExt::now_or_never(idle.conn.close.notified()).is_some(),
            "the idle connection was not told to close"
        );
        assert!(futures_util::FutureExt::now_or_never(busy.conn.close.notified()).is_none());
        drop(idle);
        assert_eq!(slots.available_permits(), 1);
        assert_eq!(open.lock().conns.len(), 2);
        let _more = InProgress::new(&newer.conn);
        assert!(!open.lock().close_oldest_idle(), "every one is busy");
    }

    #[test]
    fn a_warn_line_at_most_every_10_s_with_the_count() {
        let mut t = Throttle::default();
        assert_eq!(t.count(), Some(1));
        assert_eq!(t.count(), None);
        assert_eq!(t.count(), None);
        t.last = Instant::now().checked_sub(LOG_EVERY);
        assert_eq!(t.count(), Some(3));
    }
}
