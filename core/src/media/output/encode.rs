//! A channel's encodes: its own (`[output]`, key `""`) and one per profile its destinations use.
//! Each has a [`FanOut`] that outlives program runs; a profile's encode exists in the program
//! while at least one destination holds it ([`Encodes::acquire`] → [`EncodeUse`]), and is removed
//! when the last one lets go. The channel's own encode always runs (the preview watches it).
//!
//! Locks: `changes` serialises acquire, release, start and stop (an acquire may wait up to 5 s
//! while the program raises its frame rate); `inner` is only held for look-ups and counts, so
//! the preview, `/metrics` and the status never wait for an encode being added.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;

use super::fanout::FanOut;
use crate::config::Profiles;
use crate::media::program::Program;

#[derive(Default)]
struct Inner {
    program: Option<Arc<Program>>,
    fanouts: HashMap<String, Arc<FanOut>>,
    /// Destinations holding each profile key.
    users: HashMap<String, usize>,
    /// Buffers dropped by the consumers of encodes since removed, by consumer name.
    dropped_before: HashMap<String, u64>,
}

pub struct Encodes {
    channel: String,
    profiles: Arc<Profiles>,
    changes: Mutex<()>,
    inner: Mutex<Inner>,
}

/// A destination's hold on an encode; dropping it lets go (the last one removes the encode).
pub struct EncodeUse {
    encodes: Arc<Encodes>,
    key: String,
    pub fanout: Arc<FanOut>,
}

impl Drop for EncodeUse {
    fn drop(&mut self) {
        self.encodes.release(&self.key);
    }
}

impl Encodes {
    pub fn new(channel: &str, profiles: Arc<Profiles>) -> Arc<Encodes> {
        let enc = Encodes {
            channel: channel.into(),
            profiles,
            changes: Mutex::default(),
            inner: Mutex::default(),
        };
        enc.inner
            .lock()
            .fanouts
            .insert(String::new(), Arc::new(FanOut::new()));
        Arc::new(enc)
    }

    /// The profiles destinations may name.
    pub fn profiles(&self) -> &Profiles {
        &self.profiles
    }

    /// The channel's own encode's fan-out (the preview's, and destinations' without a profile).
    pub fn main(&self) -> Arc<FanOut> {
        self.inner.lock().fanouts[""].clone()
    }

    /// Holds the encode of `profile` (`None`: the channel's own) and returns its fan-out; a
    /// running program gets the encode now, a later one when it starts ([`Encodes::started`]).
    /// `wanted` is asked once this call's turn comes (an add of another encode may be under
    /// way): false gives up without building anything.
    /// Errors: no profile of that name, the encode could not be built (the message says), or no
    /// longer wanted.
    pub fn acquire(
        self: &Arc<Self>,
        profile: Option<&str>,
        wanted: &dyn Fn() -> bool,
    ) -> Result<EncodeUse, String> {
        let key = profile.unwrap_or("").to_string();
        let out = match profile {
            Some(p) => Some(
                self.profiles
                    .get(p)
                    .cloned()
                    .ok_or_else(|| format!("no profile named {p:?}"))?,
            ),
            None => None,
        };
        let _changes = self.changes.lock();
        if !wanted() {
            return Err("no longer wanted".into());
        }
        let (fanout, program) = {
            let mut inner = self.inner.lock();
            let fanout = inner
                .fanouts
                .entry(key.clone())
                .or_insert_with(|| Arc::new(FanOut::new()))
                .clone();
            (fanout, inner.program.clone())
        };
        if let (Some(out), Some(program)) = (&out, &program) {
            program
                .add_encode(&key, out, fanout.clone())
                .map_err(|e| format!("profile {key:?}: {e}"))?;
        }
        *self.inner.lock().users.entry(key.clone()).or_default() += 1;
        Ok(EncodeUse {
            encodes: self.clone(),
            key,
            fanout,
        })
    }

    fn release(&self, key: &str) {
        let _changes = self.changes.lock();
        let program = {
            let mut inner = self.inner.lock();
            let n = inner.users.entry(key.to_string()).or_default();
            *n = n.saturating_sub(1);
            if *n > 0 || key.is_empty() {
                return;
            }
            inner.users.remove(key);
            if let Some(f) = inner.fanouts.remove(key) {
                for (name, n) in f.dropped() {
                    *inner.dropped_before.entry(name).or_default() += n;
                }
                f.reset();
            }
            inner.program.clone()
        };
        if let Some(p) = program {
            p.remove_encode(key);
        }
    }

    /// The program started: it gets an encode for every profile held.
    pub fn started(&self, program: Arc<Program>) {
        let _changes = self.changes.lock();
        let held: Vec<(String, Arc<FanOut>)> = {
            let inner = self.inner.lock();
            inner
                .users
                .iter()
                .filter(|(key, n)| !key.is_empty() && **n > 0)
                .filter_map(|(key, _)| Some((key.clone(), inner.fanouts.get(key)?.clone())))
                .collect()
        };
        for (key, fanout) in held {
            let Some(out) = self.profiles.get(&key) else {
                continue;
            };
            if let Err(e) = program.add_encode(&key, out, fanout) {
                tracing::error!(channel = %self.channel, profile = %key, error = %e, "encode not added");
            }
        }
        self.inner.lock().program = Some(program);
    }

    /// The program stopped: every fan-out forgets its headers and ends its consumers' streams.
    pub fn stopped(&self) {
        let _changes = self.changes.lock();
        let mut inner = self.inner.lock();
        inner.program = None;
        for f in inner.fanouts.values() {
            f.reset();
        }
    }

    /// Buffers lost to full queues, by consumer name, over every encode.
    pub fn dropped(&self) -> HashMap<String, u64> {
        let inner = self.inner.lock();
        let mut all = inner.dropped_before.clone();
        for f in inner.fanouts.values() {
            for (name, n) in f.dropped() {
                *all.entry(name).or_default() += n;
            }
        }
        all
    }
}
