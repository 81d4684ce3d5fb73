//! The process-wide SIGTERM handling ([`TERMINATOR`]): one listener thread that deregisters
//! the live registrations and, when any of them asked for it, exits.
//!
//! Why SIGTERM is handled by one process-wide thread and not by each handle's task: tokio's
//! handler, once installed, disables SIGTERM's default action for the rest of the process. A
//! per-handle listener would leave a process that dropped its handle (or registered two
//! services) unkillable by SIGTERM, or racing two `exit`s. The single listener deregisters every
//! live registration, then exits once; it also keeps working when the application's runtime is
//! busy or gone, because it runs on its own current-thread runtime.

use super::keepalive::{Shared, deregister};
use super::{FAREWELL_TIMEOUT, OnSigterm, SIGTERM_EXIT_CODE};
use crate::agent::AgentHttp;
use crate::error::ClientError;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::thread;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::oneshot;

/// The process-wide SIGTERM handling: which registrations are alive, and whether SIGTERM ends
/// the process.
pub(super) struct Terminator {
    /// Every registration made in this process; dead ones are pruned as new ones come.
    live: Mutex<Vec<Weak<Shared>>>,
    /// Whether a registration asked for [`OnSigterm::DeregisterAndExit`].
    exit_on_sigterm: AtomicBool,
    /// Whether the listener thread runs (or is starting).
    listening: AtomicBool,
}

/// The one SIGTERM listener of the process.
pub(super) static TERMINATOR: Terminator = Terminator::new();

impl Terminator {
    /// A listener that tracks no registration and is not listening yet.
    const fn new() -> Terminator {
        Terminator {
            live: Mutex::new(Vec::new()),
            exit_on_sigterm: AtomicBool::new(false),
            listening: AtomicBool::new(false),
        }
    }

    /// Makes sure the listener thread runs, for a registration that asked for `action`.
    pub(super) async fn listen(&'static self, action: OnSigterm) -> Result<(), ClientError> {
        if action == OnSigterm::DeregisterAndExit {
            self.exit_on_sigterm.store(true, Ordering::Release);
        }
        if self.listening.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let (ready, started) = oneshot::channel();
        let spawned = thread::Builder::new()
            .name("wayfinder-sigterm".into())
            .spawn(move || self.serve(ready));
        let outcome = match spawned {
            Ok(_) => started
                .await
                .unwrap_or_else(|_| Err("the listener thread ended".to_owned())),
            Err(e) => Err(format!("cannot start a thread: {e}")),
        };
        outcome.map_err(|reason| {
            self.listening.store(false, Ordering::Release);
            ClientError::Signal(reason)
        })
    }

    /// The listener thread: its own runtime, so SIGTERM is handled however busy (or gone) the
    /// application's runtime is. Says on `ready` whether it listens.
    fn serve(&self, ready: oneshot::Sender<Result<(), String>>) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(e) => {
                let _ = ready.send(Err(format!("cannot start a runtime: {e}")));
                return;
            }
        };
        runtime.block_on(async {
            let mut sigterm = match signal(SignalKind::terminate()) {
                Ok(sigterm) => sigterm,
                Err(e) => {
                    let _ = ready.send(Err(e.to_string()));
                    return;
                }
            };
            let _ = ready.send(Ok(()));
            while sigterm.recv().await.is_some() {
                tracing::info!("SIGTERM: deregistering from the agent");
                if self.terminate().await {
                    std::process::exit(SIGTERM_EXIT_CODE);
                }
            }
        });
    }

    /// Tracks a new registration.
    pub(super) fn adopt(&self, shared: &Arc<Shared>) {
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        live.retain(|registration| registration.strong_count() > 0);
        live.push(Arc::downgrade(shared));
    }

    /// What SIGTERM does, apart from the exit itself: deregisters the live registrations that
    /// asked for it (all of them when the process is about to exit), concurrently and each
    /// within [`FAREWELL_TIMEOUT`]; then resolves
    /// [`Registered::terminated`](super::Registered::terminated) for
    /// [`OnSigterm::Notify`]. Returns whether the process should exit now.
    async fn terminate(&self) -> bool {
        let exit = self.exit_on_sigterm.load(Ordering::Acquire);
        let live: Vec<Arc<Shared>> = self
            .live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        let farewells = live
            .iter()
            .filter(|shared| exit || shared.on_sigterm != OnSigterm::Ignore)
            .filter(|shared| shared.finish())
            .map(|shared| async move {
                let result = match AgentHttp::new(&shared.agent) {
                    Ok(http) => deregister(&http, &shared.id, FAREWELL_TIMEOUT).await,
                    Err(e) => Err(e),
                };
                match result {
                    Ok(()) => tracing::info!(id = %shared.id, "deregistered on SIGTERM"),
                    Err(error) => tracing::warn!(
                        id = %shared.id, %error,
                        "could not deregister on SIGTERM; the agent keeps the instance until its check fails"
                    ),
                }
            });
        futures::future::join_all(farewells).await;
        for shared in &live {
            if shared.on_sigterm == OnSigterm::Notify {
                shared.terminated.send_replace(true);
            }
        }
        exit
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registration::Registered;
    use crate::registration::keepalive::Report;
    use axum::extract::{Path, State};
    use axum::routing::put;
    use std::time::Duration;
    use tokio::sync::watch;

    /// A stand-in agent that records which instances were deregistered.
    async fn recording_agent() -> (String, Arc<Mutex<Vec<String>>>) {
        let deregistered = Arc::new(Mutex::new(Vec::new()));
        let app = axum::Router::new()
            .route(
                "/v1/agent/service/deregister/{id}",
                put(
                    |State(seen): State<Arc<Mutex<Vec<String>>>>, Path(id): Path<String>| async move {
                        seen.lock().expect("lock").push(id);
                    },
                ),
            )
            .with_state(Arc::clone(&deregistered));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (format!("http://{addr}"), deregistered)
    }

    fn sorted(seen: &Arc<Mutex<Vec<String>>>) -> Vec<String> {
        let mut seen = seen.lock().expect("lock").clone();
        seen.sort();
        seen
    }

    #[tokio::test]
    async fn sigterm_with_notify_deregisters_and_tells_the_application() {
        let (agent, deregistered) = recording_agent().await;
        let terminator = Terminator::new();
        let notify = Shared::new(&agent, "notify-1", OnSigterm::Notify);
        let ignore = Shared::new(&agent, "ignore-1", OnSigterm::Ignore);
        terminator.adopt(&notify);
        terminator.adopt(&ignore);
        let handle = Registered {
            shared: Arc::clone(&notify),
            http: AgentHttp::new(&agent).expect("url"),
            check_id: None,
            report: watch::Sender::new(Report::default()),
        };

        assert!(!terminator.terminate().await, "Notify alone does not exit");
        assert_eq!(sorted(&deregistered), ["notify-1"]);
        tokio::time::timeout(Duration::from_secs(5), handle.terminated())
            .await
            .expect("terminated() resolves after SIGTERM handling");
        assert!(!ignore.is_finished(), "Ignore is left to the application");

        // Already deregistered: neither the explicit call nor a second SIGTERM sends again.
        handle.deregister().await.expect("nothing left to do");
        assert!(!terminator.terminate().await);
        assert_eq!(sorted(&deregistered), ["notify-1"]);
    }

    #[tokio::test]
    async fn sigterm_with_deregister_and_exit_deregisters_everything_first() {
        let (agent, deregistered) = recording_agent().await;
        let terminator = Terminator::new();
        terminator.exit_on_sigterm.store(true, Ordering::Release);
        let exit = Shared::new(&agent, "exit-1", OnSigterm::DeregisterAndExit);
        let ignore = Shared::new(&agent, "ignore-1", OnSigterm::Ignore);
        let gone = Shared::new(&agent, "gone-1", OnSigterm::DeregisterAndExit);
        terminator.adopt(&exit);
        terminator.adopt(&ignore);
        terminator.adopt(&gone);
        // Dropped (and deregistered by its handle) before SIGTERM: not asked again.
        assert!(gone.finish());

        assert!(terminator.terminate().await, "the process exits");
        assert_eq!(sorted(&deregistered), ["exit-1", "ignore-1"]);
        assert!(exit.is_finished() && ignore.is_finished());
    }
}
