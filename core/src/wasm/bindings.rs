//! wasmtime bindings, one `bindgen!` per world of each released WIT package (each frozen):
//! `onair:plugin@0.3.0` (`wit/onair-plugin@0.3.0/`, the newest: profile and recording options on
//! `destination-add`) at the top, `onair:plugin@0.2.0` (channels) in [`v0_2`] and
//! `onair:plugin@0.1.0` in [`v0_1`]. All run side by side; `convert.rs` translates the core's
//! types to and from the newest only, and each older version delegates to it (0.2.0's events
//! are the newest ones, its `destination-add` has no options; 0.1.0's events are the newest ones
//! without the channel, its actions the newest ones addressed to the event's channel).

/// The newest WIT package version, the one new plugins are built against.
pub const WIT_VERSION: &str = "0.3.0";
/// Every version this host runs, newest first.
pub const WIT_VERSIONS: &[&str] = &["0.3.0", "0.2.0", "0.1.0"];

pub mod policy {
    wasmtime::component::bindgen!({
        path: "../wit/onair-plugin@0.3.0",
        world: "policy",
    });
}

pub mod overlay {
    wasmtime::component::bindgen!({
        path: "../wit/onair-plugin@0.3.0",
        world: "overlay",
    });
}

/// `onair:plugin@0.2.0`: no options on `destination-add`.
pub mod v0_2 {
    pub mod policy {
        wasmtime::component::bindgen!({
            path: "../wit/onair-plugin@0.2.0",
            world: "policy",
        });
    }

    pub mod overlay {
        wasmtime::component::bindgen!({
            path: "../wit/onair-plugin@0.2.0",
            world: "overlay",
        });
    }
}

/// `onair:plugin@0.1.0`: no channels.
pub mod v0_1 {
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
}
