//! onair keeps a live stream on air: RTMP ingest, a fallback when the feed drops or stalls, one
//! persistent connection per platform, and policy in Lua.

pub mod action;
pub mod auth;
pub mod channel;
pub mod config;
pub mod db;
pub mod engine;
pub mod event;
pub mod gallery;
pub mod http;
pub mod media;
pub mod metrics;
pub mod net;
pub mod policy;
pub mod recordings;
pub mod redact;
pub mod roots;
pub mod secrets;
pub mod streamers;
pub mod telemetry;
pub mod wasm;
pub mod watch;
