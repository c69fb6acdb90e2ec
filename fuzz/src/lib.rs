//! The modules of onair that read untrusted input, compiled here on their own (they depend on
//! nothing else of onair), so the fuzz build does not pull in GStreamer or wasmtime.

#[path = "../../core/src/media/ingest/rtmp/amf.rs"]
pub mod amf;
#[path = "../../core/src/media/ingest/rtmp/chunk_guard.rs"]
pub mod chunk_guard;
#[path = "../../core/src/config.rs"]
pub mod config;
#[path = "../../core/src/media/flv.rs"]
pub mod flv;
#[path = "../../core/src/redact.rs"]
pub mod redact;
#[path = "../../core/src/policy/routes.rs"]
pub mod routes;
