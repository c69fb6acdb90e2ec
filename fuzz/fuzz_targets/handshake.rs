//! The server side of the RTMP handshake (rml_rtmp), fed as onair feeds it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};

fuzz_target!(|data: &[u8]| {
    let mut hs = Handshake::new(PeerType::Server);
    for piece in data.chunks(769) {
        match hs.process_bytes(piece) {
            Ok(HandshakeProcessResult::InProgress { .. }) => {}
            Ok(HandshakeProcessResult::Completed { .. }) | Err(_) => return,
        }
    }
});
