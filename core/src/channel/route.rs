//! Stream key → channel: the ingest's [`Router`]. The one place that decides which channel a
//! publish feeds, for every ingest protocol.

use std::time::Duration;

use super::Channels;
use super::destinations::DEFAULT_CHANNEL;
use crate::media::ingest::{Route, Router};

impl Router for Channels {
    /// The config's keys first, then the streamer accounts' (an enabled account's key
    /// publishes to the account's channel), then `ingest.allow_any_key`.
    fn route(&self, key: &str) -> Result<Route, String> {
        let redacted = crate::redact::key(key);
        let mut account = None;
        // one read guard at a time: a second read while a writer waits would deadlock; and no
        // database lookup under it (a writer may hold the database while it waits for the map)
        let by_config = self
            .read()
            .values()
            .find(|c| c.spec.lock().keys.iter().any(|k| k == key))
            .cloned();
        let channel = match by_config {
            Some(c) => Some(c),
            None => match self.shared.streamers.by_key(key) {
                Some(a) if !a.enabled => {
                    return Err(format!(
                        "stream key {redacted} belongs to streamer account {:?}, which is disabled: ask the operator to enable it",
                        a.name
                    ));
                }
                Some(a) => {
                    let c = self.read().get(&a.channel).cloned().ok_or_else(|| {
                        format!(
                            "streamer account {:?} publishes to channel {:?}, which does not exist",
                            a.name, a.channel
                        )
                    })?;
                    account = Some(a.name);
                    Some(c)
                }
                None => {
                    let map = self.read();
                    self.allow_any_key
                        .then(|| map.get(DEFAULT_CHANNEL).or_else(|| map.values().next()))
                        .flatten()
                        .cloned()
                }
            },
        };
        let channel = channel.ok_or_else(|| {
            format!("unknown stream key {redacted}: check OBS Settings → Stream → Stream Key")
        })?;
        let program = channel
            .program()
            .ok_or_else(|| format!("channel {:?} is stopped: start it to publish", channel.id))?;
        Ok(Route {
            channel: channel.id.clone(),
            program,
            events: channel.events.clone(),
            stall_timeout: Duration::from_millis(channel.spec.lock().fallback.stall_timeout_ms),
            account,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::Fixture;
    use crate::media::ingest::Router;

    #[test]
    fn an_unknown_key_and_a_stopped_channel_are_refused_in_words() {
        let f = Fixture::new();
        let why = f.channels.route("live_nobody").err().expect("refused");
        assert!(
            why.contains("unknown stream key") && why.contains("OBS"),
            "{why}"
        );
        assert!(!why.contains("live_nobody"), "the key is redacted: {why}");
        let why = f.channels.route("live_default_key").err().expect("refused");
        assert!(why.contains("\"default\" is stopped"), "{why}");
    }
}
