//! The RTMP server: the listener, the handshake, and one task per connection. Handshake and
//! chunk/message parsing are rml_rtmp's, behind [`chunk_guard`] (every chunk) and [`amf`] (every
//! AMF0 command and data message); this module owns the sockets, the refusals and the RTMP side
//! of a publish session. What a session is and where a stream key publishes is the ingest's
//! ([`super`]), shared by every ingest protocol.

pub mod amf;
pub mod chunk_guard;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ServerSession, ServerSessionConfig, ServerSessionEvent, ServerSessionResult,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::stall::{Check, StallTimer};
use super::*;
use crate::media::flv;

impl Ingest {
    /// Accepts connections on `listener` until the task is dropped.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        loop {
            match listener.accept().await {
                Ok((stream, addr)) => match self.take_slot(addr) {
                    Ok(slot) => {
                        let me = self.clone();
                        tokio::spawn(async move {
                            me.connection(stream, addr).await;
                            drop(slot);
                        });
                    }
                    Err(why) => {
                        self.refuse(addr, format_args!("too many connections: {why}"));
                        drop(stream);
                    }
                },
                Err(e) => {
                    tracing::warn!(error = %e, "rtmp accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    async fn connection(self: Arc<Self>, mut stream: TcpStream, addr: SocketAddr) {
        let accepted_at = Instant::now();
        let _ = stream.set_nodelay(true);
        let handshake_timeout = HANDSHAKE_TIMEOUT.min(self.connect_timeout);
        let leftover = match tokio::time::timeout(handshake_timeout, handshake(&mut stream)).await {
            Ok(Ok(rest)) => rest,
            Ok(Err(e)) => return self.refuse(addr, format_args!("{e}")),
            Err(_) => {
                return self.refuse(
                    addr,
                    format_args!(
                        "handshake not completed within {} ms",
                        handshake_timeout.as_millis()
                    ),
                );
            }
        };
        let mut conn = Conn {
            ingest: self.clone(),
            stream,
            addr,
            session: None,
        };
        // last resort: a panic in the RTMP parser ends this connection only (never the
        // listener), and the drop guards below clean the session up
        let run = std::panic::AssertUnwindSafe(conn.run(leftover, accepted_at));
        let end = match futures_util::FutureExt::catch_unwind(run).await {
            Ok(end) => end,
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                End::Refused(format!("malformed input (the parser failed: {what})"))
            }
        };
        conn.finish(end);
    }
}

impl Drop for Conn {
    /// A session whose task ends without [`Conn::finish`] (dropped, or a panic outside the
    /// guarded part) still unpublishes.
    fn drop(&mut self) {
        if self.session.is_some() {
            self.finish(End::Error("the session task ended abnormally".into()));
        }
    }
}

/// Runs the server side of the RTMP handshake. Returns bytes received after it.
async fn handshake(stream: &mut TcpStream) -> Result<Vec<u8>, String> {
    let mut hs = Handshake::new(PeerType::Server);
    let mut buf = vec![0u8; 4096];
    let mut total = 0usize;
    loop {
        let n = stream.read(&mut buf).await.map_err(|e| {
            format!("connection lost during the handshake after {total} bytes ({e}): truncated handshake")
        })?;
        if n == 0 {
            return Err(format!(
                "connection closed during the handshake after {total} bytes (truncated handshake)"
            ));
        }
        if total == 0 && buf[0] != 3 {
            return Err(format!(
                "not an RTMP client: first byte 0x{:02x}, expected RTMP version 3 \
                 (is this HTTP or TLS sent to the RTMP port?)",
                buf[0]
            ));
        }
        total += n;
        match hs.process_bytes(&buf[..n]) {
            Ok(HandshakeProcessResult::InProgress { response_bytes }) => {
                write(stream, &response_bytes).await.map_err(|e| {
                    format!("{e} after {total} bytes of handshake: truncated handshake")
                })?;
            }
            Ok(HandshakeProcessResult::Completed {
                response_bytes,
                remaining_bytes,
            }) => {
                write(stream, &response_bytes).await?;
                return Ok(remaining_bytes);
            }
            Err(e) => return Err(format!("invalid RTMP handshake: {e:?}")),
        }
    }
}

async fn write(stream: &mut TcpStream, bytes: &[u8]) -> Result<(), String> {
    if bytes.is_empty() {
        return Ok(());
    }
    stream
        .write_all(bytes)
        .await
        .map_err(|e| format!("write failed: {e}"))
}

/// A publishing session's own state.
struct Active {
    id: SessionId,
    route: Route,
    key: String,
    raw_key: String,
    feed: SessionFeed,
    stall: StallTimer,
    checked_video: bool,
    checked_audio: bool,
    bytes_window: (Instant, u64),
    /// Arrival and timestamp (ms) of the first video message, and the latest video timestamp.
    video_clock: Option<(Instant, u32, u32)>,
    /// Notified to disconnect this publisher.
    kick: Arc<tokio::sync::Notify>,
    _registration: Registration,
}

/// A session in the ingest's table. Dropping it removes the entry, whatever ends the task (an
/// error, a panic, the task being dropped), so a key can never stay "already publishing".
struct Registration {
    ingest: Arc<Ingest>,
    id: SessionId,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let ended = self.ingest.lock().remove(&self.id);
        if let Some(s) = ended {
            *self.ingest.ended_bytes.lock().entry(s.channel).or_default() += s.bytes_in;
        }
    }
}

struct Conn {
    ingest: Arc<Ingest>,
    stream: TcpStream,
    addr: SocketAddr,
    session: Option<Active>,
}

/// Why a connection ended.
enum End {
    Refused(String),
    Closed(&'static str),
    Error(String),
}

impl Conn {
    async fn send(
        &mut self,
        results: Vec<ServerSessionResult>,
        rtmp: &mut ServerSession,
    ) -> Result<(), End> {
        let mut queue = std::collections::VecDeque::from(results);
        while let Some(r) = queue.pop_front() {
            match r {
                ServerSessionResult::OutboundResponse(packet) => {
                    write(&mut self.stream, &packet.bytes)
                        .await
                        .map_err(End::Error)?;
                }
                ServerSessionResult::RaisedEvent(ev) => match self.on_event(ev, rtmp).await {
                    Ok(more) => queue.extend(more),
                    Err((last_words, end)) => {
                        // tell the client why (NetConnection/NetStream status), then close
                        for r in last_words {
                            if let ServerSessionResult::OutboundResponse(p) = r {
                                let _ = write(&mut self.stream, &p.bytes).await;
                            }
                        }
                        return Err(end);
                    }
                },
                ServerSessionResult::UnhandleableMessageReceived(_) => {}
            }
        }
        Ok(())
    }

    async fn run(&mut self, leftover: Vec<u8>, opened: Instant) -> End {
        let (mut rtmp, initial) = match ServerSession::new(ServerSessionConfig::new()) {
            Ok(x) => x,
            Err(e) => return End::Error(format!("rtmp session: {e:?}")),
        };
        if let Err(end) = self.send(initial, &mut rtmp).await {
            return end;
        }
        let mut pending = leftover;
        let mut buf = vec![0u8; 64 * 1024];
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        let mut guard = chunk_guard::ChunkGuard::new(self.ingest.chunk_limits);
        loop {
            if !pending.is_empty() {
                let input = std::mem::take(&mut pending);
                if let Err(why) = guard.feed(&input) {
                    return End::Refused(format!("malformed input: {why}"));
                }
                match rtmp.handle_input(&input) {
                    Ok(results) => {
                        if let Err(end) = self.send(results, &mut rtmp).await {
                            return end;
                        }
                    }
                    Err(e) => return End::Error(format!("invalid RTMP data: {e:?}")),
                }
                if let Some(err) = self.session.as_mut().and_then(|s| s.feed.take_error()) {
                    return End::Error(format!("decode failed: {err}"));
                }
                // the guard now lets large media messages through: only for an admitted publish
                if guard.saw_publish() && self.session.is_none() {
                    return End::Refused(
                        "a publish command out of order (before connect or createStream)".into(),
                    );
                }
            }
            let kick = self.session.as_ref().map(|s| s.kick.clone());
            let kicked = async {
                match kick {
                    Some(k) => k.notified().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = kicked => return End::Closed("kicked"),
                read = self.stream.read(&mut buf) => match read {
                    Ok(0) => return End::Closed("disconnected"),
                    Ok(n) => {
                        pending.extend_from_slice(&buf[..n]);
                        if let Some(s) = self.session.as_mut() {
                            s.bytes_window.1 += n as u64;
                            let id = s.id;
                            if let Some(st) = self.ingest.lock().get_mut(&id) {
                                st.bytes_in += n as u64;
                            }
                        }
                    }
                    Err(e) => return End::Error(format!("read failed: {e}")),
                },
                _ = tick.tick() => {
                    if let Some(end) = self.check_timers(opened) {
                        return end;
                    }
                }
            }
        }
    }

    /// Stall detection, the kbit/s figure and idle limits.
    fn check_timers(&mut self, opened: Instant) -> Option<End> {
        let ingest = self.ingest.clone();
        let Some(s) = self.session.as_mut() else {
            let limit = ingest.connect_timeout;
            return (opened.elapsed() > limit).then_some(End::Refused(format!(
                "no publish within {} ms of connecting (ingest.connect_timeout_ms)",
                limit.as_millis()
            )));
        };
        let window = s.bytes_window.0.elapsed();
        if window >= Duration::from_secs(1) {
            let kbps = s.bytes_window.1 * 8 / window.as_millis().max(1) as u64;
            s.bytes_window = (Instant::now(), 0);
            let drift = s.video_clock.map_or(0, |(t0, ts0, ts)| {
                t0.elapsed().as_millis() as i64 - i64::from(ts.wrapping_sub(ts0))
            });
            if let Some(st) = ingest.lock().get_mut(&s.id) {
                st.kbps = kbps;
                st.timestamp_drift_ms = drift;
            }
            let _ = s.route.events.send(Event::IngestStats(IngestStats {
                channel: s.route.channel.clone(),
                session: s.id,
                key: s.key.clone(),
                kbps,
                silent_ms: s.stall.silent(Instant::now()).as_millis() as u64,
                stalled: s.stall.is_stalled(),
                on_air: s.route.program.is_program(s.id),
            }));
        }
        let now = Instant::now();
        match s.stall.check(now) {
            Check::Quiet => None,
            Check::Disconnect => Some(End::Closed("timeout")),
            Check::Stalled(silent) => {
                if let Some(st) = ingest.lock().get_mut(&s.id) {
                    st.stalled = true;
                }
                let _ = s.route.events.send(Event::Stall(Stall {
                    channel: s.route.channel.clone(),
                    session: s.id,
                    key: s.key.clone(),
                    silent_ms: silent.as_millis() as u64,
                    on_air: s.route.program.is_program(s.id),
                }));
                None
            }
        }
    }

    fn media(&mut self, tag_type: u8, ts: u32, data: &[u8]) -> Result<(), End> {
        let ingest = self.ingest.clone();
        let Some(s) = self.session.as_mut() else {
            return Ok(());
        };
        let check = if tag_type == flv::TAG_VIDEO && !s.checked_video {
            s.checked_video = true;
            flv::check_video_codec(data)
        } else if tag_type == flv::TAG_AUDIO && !s.checked_audio {
            s.checked_audio = true;
            flv::check_audio_codec(data)
        } else {
            Ok(())
        };
        check.map_err(|e| End::Refused(e.to_string()))?;
        let resumed = s.stall.media(Instant::now());
        if tag_type == flv::TAG_VIDEO {
            match &mut s.video_clock {
                Some((_, _, last)) => *last = ts,
                None => s.video_clock = Some((Instant::now(), ts, ts)),
            }
        }
        if let Some(silent) = resumed {
            let stalled_ms = silent.as_millis() as u64;
            if let Some(st) = ingest.lock().get_mut(&s.id) {
                st.stalled = false;
            }
            let _ = s.route.events.send(Event::Resume(Resume {
                channel: s.route.channel.clone(),
                session: s.id,
                key: s.key.clone(),
                stalled_ms,
                on_air: s.route.program.is_program(s.id),
            }));
        }
        let was_decoding = s.feed.is_decoding();
        s.feed
            .push(tag_type, ts, data)
            .map_err(|e| End::Error(format!("cannot start decoding: {e}")))?;
        let decoding = s.feed.is_decoding();
        if decoding != was_decoding
            && let Some(st) = ingest.lock().get_mut(&s.id)
        {
            st.decoding = decoding;
        }
        Ok(())
    }

    /// Handles one RTMP event. `Err` ends the connection after sending the packets it carries.
    async fn on_event(
        &mut self,
        ev: ServerSessionEvent,
        rtmp: &mut ServerSession,
    ) -> Result<Vec<ServerSessionResult>, (Vec<ServerSessionResult>, End)> {
        let rtmp_err = |e: rml_rtmp::sessions::ServerSessionError| {
            (Vec::new(), End::Error(format!("rtmp: {e:?}")))
        };
        let end = |e: End| (Vec::new(), e);
        match ev {
            ServerSessionEvent::ConnectionRequested {
                request_id,
                app_name,
            } => {
                if app_name != self.ingest.app {
                    let results = rtmp
                        .reject_request(
                            request_id,
                            "NetConnection.Connect.Rejected",
                            "unknown application",
                        )
                        .map_err(rtmp_err)?;
                    return Err((
                        results,
                        End::Refused(format!(
                            "wrong application {app_name:?}: the OBS Server must end in /{}",
                            self.ingest.app
                        )),
                    ));
                }
                rtmp.accept_request(request_id).map_err(rtmp_err)
            }
            ServerSessionEvent::PublishStreamRequested {
                request_id,
                stream_key,
                ..
            } => {
                if self.session.is_some() {
                    return Err(end(End::Refused(
                        "a second publish on one connection".into(),
                    )));
                }
                match self.admit(&stream_key).await {
                    Ok(active) => {
                        self.session = Some(active);
                        rtmp.accept_request(request_id).map_err(rtmp_err)
                    }
                    Err(why) => {
                        let results = rtmp
                            .reject_request(request_id, "NetStream.Publish.BadName", &why)
                            .map_err(rtmp_err)?;
                        Err((results, End::Refused(why)))
                    }
                }
            }
            ServerSessionEvent::PlayStreamRequested { request_id, .. } => {
                let results = rtmp
                    .reject_request(
                        request_id,
                        "NetStream.Play.Failed",
                        "playback is not served over RTMP",
                    )
                    .map_err(rtmp_err)?;
                Err((
                    results,
                    End::Refused(
                        "RTMP playback is not served here; watch the output at /preview.flv".into(),
                    ),
                ))
            }
            ServerSessionEvent::VideoDataReceived {
                data, timestamp, ..
            } => {
                self.media(flv::TAG_VIDEO, timestamp.value, &data)
                    .map_err(end)?;
                Ok(Vec::new())
            }
            ServerSessionEvent::AudioDataReceived {
                data, timestamp, ..
            } => {
                self.media(flv::TAG_AUDIO, timestamp.value, &data)
                    .map_err(end)?;
                Ok(Vec::new())
            }
            ServerSessionEvent::PublishStreamFinished { .. } => {
                Err(end(End::Closed("unpublished")))
            }
            ServerSessionEvent::StreamMetadataChanged { metadata, .. } => {
                if let Some(s) = &self.session {
                    tracing::info!(session = s.id, encoder = ?metadata.encoder, width = ?metadata.video_width,
                        height = ?metadata.video_height, fps = ?metadata.video_frame_rate,
                        video_kbps = ?metadata.video_bitrate_kbps, audio_kbps = ?metadata.audio_bitrate_kbps,
                        "publisher metadata");
                }
                Ok(Vec::new())
            }
            _ => Ok(Vec::new()),
        }
    }

    /// Checks a publish: the stream key, duplicates, then the policy. Registers the session.
    async fn admit(&mut self, stream_key: &str) -> Result<Active, String> {
        let ingest = self.ingest.clone();
        let key = crate::redact::key(stream_key);
        let route = ingest.router.route(stream_key)?;
        // OBS reconnecting after a network drop often finds its old connection still open (no
        // FIN arrived) and stalled: the new connection takes over instead of being refused until
        // the old one times out. A healthy session keeps its key.
        let stalled = ingest
            .lock()
            .values()
            .find(|s| s.raw_key == stream_key && s.stalled)
            .map(|s| (s.session, s.kick.clone()));
        if let Some((old, Some(kick))) = stalled {
            tracing::info!(session = old, key = %key, client = %self.addr, "stream key publishing again while its session is stalled: closing the stalled session");
            kick.notify_one();
            let since = Instant::now();
            while ingest.is_publishing(old) && since.elapsed() < Duration::from_secs(2) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let id = ingest.next_session.fetch_add(1, Ordering::Relaxed);
        let kick = Arc::new(tokio::sync::Notify::new());
        {
            let mut sessions = ingest.lock();
            if let Some(other) = sessions.values().find(|s| s.raw_key == stream_key) {
                return Err(format!(
                    "stream key {key} is already publishing (session {}, not stalled); the first publisher keeps streaming",
                    other.session
                ));
            }
            sessions.insert(
                id,
                SessionStatus {
                    session: id,
                    channel: route.channel.clone(),
                    key: key.clone(),
                    account: route.account.clone(),
                    addr: self.addr.to_string(),
                    publishing_s: 0.0,
                    stalled: false,
                    bytes_in: 0,
                    kbps: 0,
                    timestamp_drift_ms: 0,
                    on_air: false,
                    decoding: false,
                    started: Some(Instant::now()),
                    raw_key: stream_key.to_string(),
                    kick: Some(kick.clone()),
                    program: Some(route.program.clone()),
                },
            );
        }
        let registration = Registration {
            ingest: ingest.clone(),
            id,
        };
        // The channel may have stopped (or restarted) between the lookup and the registration,
        // when `kick_channel` could not see this session yet: check the route again.
        match ingest.router.route(stream_key) {
            Ok(now) if Arc::ptr_eq(&now.program, &route.program) => {}
            Ok(_) | Err(_) => {
                return Err(format!(
                    "channel {:?} stopped or restarted while this publish was admitted: publish again",
                    route.channel
                ));
            }
        }
        let (reply, verdict) = oneshot::channel();
        let request = PublishRequest {
            event: Publish {
                channel: route.channel.clone(),
                session: id,
                key: key.clone(),
                account: route.account.clone(),
                addr: self.addr.to_string(),
            },
            reply,
        };
        if ingest.publishes.send(request).is_err() {
            return Err("onair is shutting down".into());
        }
        match tokio::time::timeout(PUBLISH_VERDICT_TIMEOUT, verdict).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(reason))) => return Err(format!("rejected by policy: {reason}")),
            Ok(Err(_)) => return Err("policy did not answer".into()),
            Err(_) => tracing::warn!(
                session = id,
                timeout_s = PUBLISH_VERDICT_TIMEOUT.as_secs(),
                "no publish verdict in time: accepted by default"
            ),
        }
        let feed = SessionFeed::new(id, route.program.clone());
        ingest.accepted.fetch_add(1, Ordering::Relaxed);
        tracing::info!(channel = %route.channel, session = id, key = %key, account = route.account.as_deref().unwrap_or("-"), client = %self.addr, "publish accepted");
        let stall_timeout = route.stall_timeout;
        Ok(Active {
            id,
            route,
            key,
            raw_key: stream_key.to_string(),
            feed,
            stall: StallTimer::new(stall_timeout, Instant::now()),
            checked_video: false,
            checked_audio: false,
            bytes_window: (Instant::now(), 0),
            video_clock: None,
            kick,
            _registration: registration,
        })
    }

    fn finish(&mut self, end: End) {
        let ingest = self.ingest.clone();
        let Some(s) = self.session.take() else {
            match end {
                End::Refused(why) => ingest.refuse(self.addr, format_args!("{why}")),
                End::Error(e) => ingest.refuse(self.addr, format_args!("{e}")),
                End::Closed(why) => {
                    tracing::debug!(client = %self.addr, why, "rtmp connection closed before publishing")
                }
            }
            return;
        };
        let reason = match end {
            End::Refused(why) => {
                ingest.refused.fetch_add(1, Ordering::Relaxed);
                format!("error: {why}")
            }
            End::Error(e) => format!("error: {e}"),
            End::Closed(why) => why.to_string(),
        };
        let on_air = s.route.program.is_program(s.id);
        let _ = &s.raw_key;
        let (id, key, route) = (s.id, s.key.clone(), s.route.clone());
        // stops the decoder, releases the live input and (its registration) frees the key
        drop(s);
        let _ = route.events.send(Event::Unpublish(Unpublish {
            channel: route.channel,
            session: id,
            key,
            reason,
            on_air,
        }));
    }
}
