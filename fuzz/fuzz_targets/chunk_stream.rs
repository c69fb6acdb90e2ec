//! The chunk stream after the handshake, as onair's ingest handles it: every piece goes through
//! the chunk guard, and only what it accepts reaches rml_rtmp's server session. Neither may
//! panic. The first byte picks how the input is cut into reads.
#![no_main]

use libfuzzer_sys::fuzz_target;
use onair_fuzz::chunk_guard::{ChunkGuard, Limits};
use rml_rtmp::sessions::{ServerSession, ServerSessionConfig};

fuzz_target!(|data: &[u8]| {
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    let Ok((mut session, _)) = ServerSession::new(ServerSessionConfig::new()) else {
        return;
    };
    let mut guard = ChunkGuard::new(Limits::default());
    let step = usize::from(cut).max(1) * 7;
    for piece in rest.chunks(step) {
        if guard.feed(piece).is_err() {
            return; // onair ends the connection here
        }
        if session.handle_input(piece).is_err() {
            return;
        }
    }
});
