//! The policy host: events in, actions out. The core decides nothing itself.
//!
//! The policy runs on its own thread ("policy"), never on a GStreamer streaming thread or the
//! async runtime, so nothing a script does can block the media. For every event it runs the Lua
//! handlers; if the script is missing, failed to load, raised an error, ran past its time limit or
//! returned nonsense, the error is logged with file:line and event name and the built-in default
//! ([`builtin::decide`], the same behaviour as the shipped `scripts/failover.lua`) applies.

pub mod builtin;
pub mod lua;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;

use tokio::sync::oneshot;

use crate::action::Action;
use crate::event::Event;

/// The script that holds the switching policy, inside `scripts.dir`.
pub const FAILOVER_SCRIPT: &str = "failover.lua";

struct Job {
    event: Event,
    reply: oneshot::Sender<Vec<Action>>,
}

/// Handle to the policy thread.
#[derive(Clone)]
pub struct Policy {
    tx: mpsc::Sender<Job>,
    /// The script in use, or `None` when the built-in default runs.
    pub script: Option<PathBuf>,
    /// The error that kept the script from loading, if any.
    pub load_error: Option<String>,
}

impl Policy {
    /// Loads `<dir>/failover.lua` and starts the policy thread. A script that is missing or fails
    /// to load is reported in `load_error`; the built-in default then runs.
    pub fn start(dir: &Path) -> Policy {
        let path = dir.join(FAILOVER_SCRIPT);
        let (host, load_error) = match lua::LuaHost::load(&path) {
            Ok(h) => (Some(h), None),
            Err(e) => (None, Some(e.to_string())),
        };
        match (&host, &load_error) {
            (Some(_), _) => tracing::info!(script = %path.display(), "policy loaded"),
            (None, Some(e)) => {
                tracing::error!(error = %e, "policy script not loaded: the built-in default policy runs")
            }
            _ => {}
        }
        let script = host.as_ref().map(|_| path.clone());
        let (tx, rx) = mpsc::channel::<Job>();
        let spawned = thread::Builder::new().name("policy".into()).spawn(move || {
            let mut host = host;
            for job in rx {
                let actions = decide(host.as_mut(), &job.event);
                let _ = job.reply.send(actions);
            }
        });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the policy thread");
        }
        Policy {
            tx,
            script,
            load_error,
        }
    }

    /// Runs the handlers for `event` and returns the actions they asked for. If the policy thread
    /// is gone, the built-in default answers.
    pub async fn decide(&self, event: Event) -> Vec<Action> {
        let (reply, rx) = oneshot::channel();
        if self
            .tx
            .send(Job {
                event: event.clone(),
                reply,
            })
            .is_err()
        {
            return builtin::decide(&event);
        }
        rx.await.unwrap_or_else(|_| builtin::decide(&event))
    }
}

fn decide(host: Option<&mut lua::LuaHost>, event: &Event) -> Vec<Action> {
    let Some(host) = host else {
        return builtin::decide(event);
    };
    match host.dispatch(event) {
        Ok(actions) => actions,
        Err(e) => {
            tracing::error!(event = event.name(), error = %e, "policy handler failed: applying the built-in default");
            builtin::decide(event)
        }
    }
}
