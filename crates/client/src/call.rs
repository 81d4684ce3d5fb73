//! [`Service::call`]: one request, balanced, retried on another endpoint when it fails, within
//! a deadline and the service's retry budget.

use crate::endpoint::Endpoint;
use crate::error::{CallError, StopReason};
use crate::service::Service;
use std::future::Future;
use std::sync::Arc;
use tokio::time::{Instant, timeout_at};

impl Service {
    /// Calls the service: picks an endpoint, runs `attempt` on it, and on an `Err` tries
    /// another endpoint (never one already tried in this call), until one succeeds or the
    /// [`crate::CallPolicy`] says stop: its deadline passes, its attempts are used up, or the
    /// retry budget is spent. With no endpoint yet (the first answer from the agent still on
    /// its way, or nothing healthy) it waits for one until the deadline.
    ///
    /// Every `Err` is retried, so return errors that must not be repeated (a 4xx, a
    /// non-idempotent request that may have run) inside `Ok`.
    pub async fn call<T, E, F, Fut>(&self, mut attempt: F) -> Result<T, CallError<E>>
    where
        F: FnMut(Arc<Endpoint>) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let policy = self.inner.call;
        let deadline = Instant::now() + policy.deadline;
        self.inner.budget.deposit(self.inner.clock.now());
        let mut tried: Vec<String> = Vec::new();
        let mut attempts = 0u32;
        let mut last: Option<E> = None;
        loop {
            let mut changes = self.inner.endpoints.clone();
            let snapshot = Arc::clone(&changes.borrow_and_update());
            let picked = {
                let accept = |_: usize, e: &wayfinder_balance::Endpoint| {
                    !tried.iter().any(|t| t.as_str() == e.id.as_str())
                };
                self.pick_from(&snapshot, None, Some(&accept))
            };
            let Some(picked) = picked else {
                if let Some(last) = last {
                    return Err(CallError::Failed {
                        attempts,
                        stopped: StopReason::AllEndpointsTried,
                        last,
                    });
                }
                // Nothing to try yet: wait for the set to change, within the deadline.
                match timeout_at(deadline, changes.changed()).await {
                    Ok(Ok(())) => continue,
                    _ => {
                        return Err(CallError::NoEndpoints {
                            service: self.name().to_owned(),
                            stale: self.freshness().error().map(ToString::to_string),
                        });
                    }
                }
            };
            attempts += 1;
            let endpoint = Arc::clone(picked.endpoint());
            match timeout_at(deadline, attempt(Arc::clone(&endpoint))).await {
                Ok(Ok(value)) => {
                    picked.finish();
                    return Ok(value);
                }
                Err(_elapsed) => {
                    return Err(CallError::DeadlineExceeded {
                        deadline: policy.deadline,
                        attempts,
                        last,
                    });
                }
                Ok(Err(error)) => {
                    drop(picked);
                    tracing::debug!(service = %self.name(), endpoint = %endpoint, attempts, "attempt failed");
                    tried.push(endpoint.key());
                    if attempts >= policy.max_attempts {
                        return Err(CallError::Failed {
                            attempts,
                            stopped: StopReason::MaxAttempts,
                            last: error,
                        });
                    }
                    if !self.inner.budget.try_withdraw(self.inner.clock.now()) {
                        return Err(CallError::Failed {
                            attempts,
                            stopped: StopReason::RetryBudget,
                            last: error,
                        });
                    }
                    last = Some(error);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::endpoint::Endpoint;
    use crate::error::{CallError, StopReason};
    use crate::options::{CallPolicy, ServiceOptions};
    use crate::service::Service;
    use std::collections::BTreeMap;
    use std::sync::Mutex;
    use std::time::Duration;
    use wayfinder_balance::{Health, RetryBudgetConfig, Weights};

    fn endpoint(id: &str, port: u16) -> Endpoint {
        Endpoint {
            id: id.to_owned(),
            node: String::new(),
            address: "127.0.0.1".to_owned(),
            port,
            tags: Vec::new(),
            meta: BTreeMap::new(),
            weights: Weights::default(),
            health: Health::Passing,
        }
    }

    fn fleet(n: u16) -> Vec<Endpoint> {
        (0..n)
            .map(|i| endpoint(&format!("w-{i}"), 9000 + i))
            .collect()
    }

    fn service(n: u16, policy: CallPolicy) -> Service {
        Service::fixed(
            "worker-service",
            fleet(n),
            ServiceOptions::new().call_policy(policy),
        )
        .expect("service")
    }

    #[tokio::test]
    async fn a_failure_is_retried_on_another_endpoint() {
        let service = service(3, CallPolicy::default());
        for _ in 0..50 {
            let seen = Mutex::new(Vec::new());
            let answer = service
                .call(|e| {
                    seen.lock().expect("lock").push(e.id.clone());
                    let first = seen.lock().expect("lock").len() == 1;
                    async move { if first { Err("refused") } else { Ok(e.port) } }
                })
                .await
                .expect("the second endpoint answers");
            let seen = seen.into_inner().expect("lock");
            assert_eq!(seen.len(), 2);
            assert_ne!(seen[0], seen[1], "the retry goes to another endpoint");
            assert!((9000..9003).contains(&answer));
        }
    }

    #[tokio::test]
    async fn every_endpoint_is_tried_once_at_most() {
        let policy = CallPolicy {
            max_attempts: 10,
            ..CallPolicy::default()
        };
        let seen = Mutex::new(Vec::new());
        let error = service(3, policy)
            .call(|e| {
                seen.lock().expect("lock").push(e.id.clone());
                async { Err::<(), _>("down") }
            })
            .await
            .expect_err("all down");
        let mut seen = seen.into_inner().expect("lock");
        seen.sort();
        assert_eq!(seen, ["w-0", "w-1", "w-2"]);
        assert!(matches!(
            error,
            CallError::Failed {
                attempts: 3,
                stopped: StopReason::AllEndpointsTried,
                last: "down"
            }
        ));
    }

    #[tokio::test]
    async fn attempts_are_capped() {
        let error = service(5, CallPolicy::default())
            .call(|_| async { Err::<(), _>("down") })
            .await
            .expect_err("all down");
        assert!(matches!(
            error,
            CallError::Failed {
                attempts: 3,
                stopped: StopReason::MaxAttempts,
                ..
            }
        ));
        assert!(error.to_string().contains("down"), "{error}");
    }

    #[tokio::test]
    async fn the_retry_budget_bounds_retries_across_calls() {
        let policy = CallPolicy {
            max_attempts: 2,
            retry_budget: RetryBudgetConfig {
                ratio: 0.0,
                min_per_second: 1,
                ttl: Duration::from_secs(10),
            },
            ..CallPolicy::default()
        };
        let service = service(5, policy);
        let mut stopped = Vec::new();
        for _ in 0..20 {
            match service.call(|_| async { Err::<(), _>("down") }).await {
                Err(CallError::Failed { stopped: s, .. }) => stopped.push(s),
                other => panic!("{other:?}"),
            }
        }
        let retried = stopped
            .iter()
            .filter(|s| **s == StopReason::MaxAttempts)
            .count();
        assert_eq!(
            retried, 10,
            "a reserve of 1/s over 10 s allows 10 retries, then the budget says stop"
        );
        assert!(stopped.contains(&StopReason::RetryBudget));
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_attempt_ends_at_the_deadline() {
        let policy = CallPolicy {
            deadline: Duration::from_millis(200),
            ..CallPolicy::default()
        };
        let error = service(2, policy)
            .call(|_| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                Ok::<(), &str>(())
            })
            .await
            .expect_err("too slow");
        assert!(matches!(
            error,
            CallError::DeadlineExceeded { attempts: 1, .. }
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn no_endpoints_waits_until_the_deadline() {
        let policy = CallPolicy {
            deadline: Duration::from_millis(300),
            ..CallPolicy::default()
        };
        let error = service(0, policy)
            .call(|_| async { Ok::<(), &str>(()) })
            .await
            .expect_err("empty");
        assert!(matches!(error, CallError::NoEndpoints { .. }), "{error:?}");
        assert!(error.to_string().contains("worker-service"));
    }

    #[tokio::test]
    async fn picks_count_in_flight_until_finished() {
        let service = Service::fixed(
            "worker-service",
            fleet(2),
            ServiceOptions::new().strategy(wayfinder_balance::StrategyKind::LeastRequest),
        )
        .expect("service");
        let first = service.pick().expect("pick");
        let second = service.pick().expect("pick");
        assert_ne!(
            first.endpoint().id,
            second.endpoint().id,
            "least request avoids the busy endpoint"
        );
        first.finish();
        drop(second);
        let endpoints = service.endpoints();
        assert!(
            endpoints
                .set()
                .endpoints()
                .iter()
                .enumerate()
                .all(|(i, _)| endpoints.set().load(i).map(|l| l.in_flight()) == Some(0))
        );
    }
}
