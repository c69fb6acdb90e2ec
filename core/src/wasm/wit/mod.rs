//! The WIT package versions this host runs side by side, one file each (each package frozen once
//! released, in `wit/onair-plugin@X.Y.Z/`): [`v0_3`] (`onair:plugin@0.3.0`, the newest), [`v0_2`]
//! and [`v0_1`]. A file holds its version's `bindgen!` for both worlds, their host interfaces, how
//! it is linked and instantiated, and its translation: the newest to and from the core's events
//! and actions, every older one to and from the next newer version. [`Instance`] is the one
//! dispatch: a method has one arm per version.
//!
//! Adding a WIT version: copy the newest file to `vX_Y.rs` and point its `VERSION` and `bindgen!`
//! at the new package (its translation to and from the core is the newest's); make the old newest
//! translate to it (`event` from the new version's event, `action` and `channel_action` to the
//! new version's, and its `from_newest`, `action_to_core`, `channel_action_to_core` in the older
//! versions' form, which chains through `next`); here, declare the file, point [`newest`] at it,
//! list it in [`WIT_VERSIONS`], and add one arm per method of [`Instance`].

use wasmtime::Store;
use wasmtime::component::{Component, Linker};

use crate::action::Action;
use crate::wasm::{Image, PluginState, World};

/// `log` and `types` for one world of one WIT version: every version logs the same way.
macro_rules! host_interfaces {
    ($($m:ident)::+) => {
        impl $($m)::+::onair::plugin::log::Host for $crate::wasm::PluginState {
            fn log(&mut self, level: $($m)::+::onair::plugin::log::Level, message: String) {
                use $($m)::+::onair::plugin::log::Level as L;
                let l = match level {
                    L::Debug => 0,
                    L::Info => 1,
                    L::Warn => 2,
                    L::Error => 3,
                };
                $crate::wasm::wit::log(&self.name, l, &message);
            }
        }
        impl $($m)::+::onair::plugin::types::Host for $crate::wasm::PluginState {}
    };
}

/// An overlay world's image, in any WIT version, as the host's [`Image`].
macro_rules! image_from {
    ($($m:ident)::+) => {
        impl From<$($m)::+::onair::plugin::types::Image> for $crate::wasm::Image {
            fn from(i: $($m)::+::onair::plugin::types::Image) -> $crate::wasm::Image {
                $crate::wasm::Image {
                    width: i.width,
                    height: i.height,
                    stride: i.stride,
                    pixels: i.pixels,
                }
            }
        }
    };
}

pub mod v0_1;
pub mod v0_2;
pub mod v0_3;

/// The newest version: the core's events are translated to it once per event, every older
/// version translates from it, and every version's actions reach the core through it.
pub use self::v0_3 as newest;

/// The newest WIT package version, the one new plugins are built against.
pub const WIT_VERSION: &str = newest::VERSION;
/// Every version this host runs, newest first.
pub const WIT_VERSIONS: &[&str] = &[v0_3::VERSION, v0_2::VERSION, v0_1::VERSION];

/// What a guest's `log.log` writes: onair's log, tagged with the plugin's name.
fn log(name: &str, level: u8, message: &str) {
    match level {
        0 => tracing::debug!(plugin = %name, "{message}"),
        1 => tracing::info!(plugin = %name, "{message}"),
        2 => tracing::warn!(plugin = %name, "{message}"),
        _ => tracing::error!(plugin = %name, "{message}"),
    }
}

/// A running plugin of either world, in the WIT version it was built for.
pub enum Instance {
    V0_3(v0_3::Instance),
    V0_2(v0_2::Instance),
    V0_1(v0_1::Instance),
}

impl Instance {
    /// Adds every version's interfaces to the policy world's linker and the overlay world's.
    pub fn add_to_linkers(
        policy: &mut Linker<PluginState>,
        overlay: &mut Linker<PluginState>,
    ) -> wasmtime::Result<()> {
        v0_3::add_to_linkers(policy, overlay)?;
        v0_2::add_to_linkers(policy, overlay)?;
        v0_1::add_to_linkers(policy, overlay)
    }

    /// Instantiates `component` as `world` of WIT `version` (one of [`WIT_VERSIONS`]), with the
    /// linker of that world.
    pub fn instantiate(
        version: &str,
        world: World,
        store: &mut Store<PluginState>,
        component: &Component,
        linker: &Linker<PluginState>,
    ) -> wasmtime::Result<Instance> {
        match version {
            v0_3::VERSION => v0_3::instantiate(world, store, component, linker).map(Instance::V0_3),
            v0_2::VERSION => v0_2::instantiate(world, store, component, linker).map(Instance::V0_2),
            v0_1::VERSION => v0_1::instantiate(world, store, component, linker).map(Instance::V0_1),
            other => Err(wasmtime::Error::msg(format!(
                "onair:plugin@{other} is not a version this host runs"
            ))),
        }
    }

    /// A policy plugin's `on-event` for `event` (in the newest version's types: [`newest::event`]),
    /// its actions as the core's. `None` for an overlay plugin.
    pub fn on_event(
        &self,
        store: &mut Store<PluginState>,
        event: &newest::types::Event,
    ) -> Option<wasmtime::Result<Vec<Action>>> {
        match self {
            Instance::V0_3(i) => i.on_event(store, event),
            Instance::V0_2(i) => i.on_event(store, event),
            Instance::V0_1(i) => i.on_event(store, event),
        }
    }

    /// An overlay plugin's `render`: its image, or its own error. `None` for a policy plugin.
    pub fn render(
        &self,
        store: &mut Store<PluginState>,
        width: u32,
        height: u32,
        data: &str,
    ) -> Option<wasmtime::Result<Result<Image, String>>> {
        match self {
            Instance::V0_3(i) => i.render(store, width, height, data),
            Instance::V0_2(i) => i.render(store, width, height, data),
            Instance::V0_1(i) => i.render(store, width, height, data),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::Action;
    use crate::event::{Event, Publish};

    #[test]
    fn versions_are_listed_newest_first_once_each() {
        assert_eq!(WIT_VERSIONS.first(), Some(&WIT_VERSION));
        let mut sorted = WIT_VERSIONS.to_vec();
        sorted.sort_by_key(|v| {
            std::cmp::Reverse(
                v.split('.')
                    .map(|n| n.parse::<u32>().unwrap())
                    .collect::<Vec<_>>(),
            )
        });
        sorted.dedup();
        assert_eq!(sorted, WIT_VERSIONS);
    }

    /// The chains every older version reaches the core through: events down from the newest,
    /// actions up to the core.
    #[test]
    fn older_versions_translate_through_the_next_newer() {
        let publish = newest::event(&Event::Publish(Publish {
            channel: "b".into(),
            session: 3,
            key: "k…y".into(),
            account: None,
            addr: "203.0.113.5:5000".into(),
        }));
        match &*v0_2::from_newest(&publish) {
            v0_2::types::Event::Publish(p) => assert_eq!((p.channel.as_str(), p.session), ("b", 3)),
            other => panic!("{other:?}"),
        }
        match &*v0_1::from_newest(&publish) {
            v0_1::types::Event::Publish(p) => {
                assert_eq!((p.session, p.addr.as_str()), (3, "203.0.113.5:5000"))
            }
            other => panic!("{other:?}"),
        }
        let add = Action::DestinationAdd {
            name: "yt".into(),
            url: "rtmp://a/b".into(),
            profile: None,
            segment_minutes: None,
            max_total_gib: None,
        };
        let old_add = || v0_1::types::Destination {
            name: "yt".into(),
            url: "rtmp://a/b".into(),
        };
        assert_eq!(
            v0_1::action_to_core(v0_1::types::Action::DestinationAdd(old_add())),
            add
        );
        assert_eq!(
            v0_2::channel_action_to_core(v0_2::types::ChannelAction {
                channel: Some("c".into()),
                action: v0_2::types::Action::DestinationAdd(v0_2::types::Destination {
                    name: "yt".into(),
                    url: "rtmp://a/b".into(),
                }),
            }),
            Action::OnChannel {
                channel: "c".into(),
                action: Box::new(add),
            }
        );
    }
}
