//! wasmtime bindings, one `bindgen!` per world of the released WIT package
//! `onair:plugin@0.1.0` (`wit/onair-plugin@0.1.0/`, frozen). A later WIT version gets its own
//! folder and its own bindings here; older versions then delegate to the newest.

/// The version of the WIT package these bindings are for.
pub const WIT_VERSION: &str = "0.1.0";

pub mod policy {
    wasmtime::component::bindgen!({
        path: "../wit/onair-plugin@0.1.0",
        world: "policy",
    });
}

pub mod overlay {
    wasmtime::component::bindgen!({
        path: "../wit/onair-plugin@0.1.0",
        world: "overlay",
    });
}
