//! Re-maps asked for over the API, run beside the request that asked.
//!
//! Re-mapping an org of a few hundred thousand alerts takes minutes, longer
//! than a request may last. Run inside the request, a re-map stopped at the
//! request's time limit and left the alerts it had not reached stale. A run
//! now belongs to the service: it goes on after the request has answered,
//! one run per org at a time, and its progress can be read while it runs
//! and after it ended. Runs are kept in the process: a restart forgets
//! them, and the alerts a stopped run did not reach stay marked stale until
//! the next re-map.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use store::{OrgId, OrgScope};
use tokio::sync::oneshot;

use crate::access::Action;
use crate::{Actor, App, Result, ServiceError};

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RemapState {
    /// Re-mapping.
    Running,
    /// Every alert re-evaluated.
    Finished,
    /// Stopped by an error; the alerts not reached stay stale.
    Failed,
}

/// One re-map of an org and how far it got.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RemapRun {
    /// The run's id.
    pub id: String,
    /// Who asked for it.
    pub requested_by: String,
    /// Running, finished or failed.
    pub state: RemapState,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it finished or failed.
    pub finished_at: Option<DateTime<Utc>>,
    /// Alerts of the org when the run counted them (0 until it has),
    /// raised to the alerts done when alerts ingested during the run take
    /// it past that.
    pub total: usize,
    /// Alerts re-evaluated so far.
    pub alerts: usize,
    /// Of those, alerts whose canonical mapping changed.
    pub changed: usize,
    /// Why it failed.
    pub error: Option<String>,
}

/// The latest run of each org.
#[derive(Debug, Default)]
pub(crate) struct RemapRuns {
    latest: Mutex<HashMap<OrgId, RemapRun>>,
}

impl RemapRuns {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<OrgId, RemapRun>) -> T) -> T {
        // A panic elsewhere while holding the lock leaves the map whole
        // (every change is one insert or one field), so keep using it.
        f(&mut self.latest.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Records `run` as the org's latest, unless a run of the org is still
    /// going: that one is answered instead (and `None` once recorded).
    fn claim(&self, org: &OrgId, run: RemapRun) -> Option<RemapRun> {
        self.with(|latest| match latest.get(org) {
            Some(going) if going.state == RemapState::Running => Some(going.clone()),
            _ => {
                latest.insert(org.clone(), run);
                None
            }
        })
    }

    /// Changes the org's run `id`, if it is still the latest, and answers
    /// it as changed.
    fn update(
        &self,
        org: &OrgId,
        id: &str,
        change: impl FnOnce(&mut RemapRun),
    ) -> Option<RemapRun> {
        self.with(|latest| {
            let run = latest.get_mut(org).filter(|run| run.id == id)?;
            change(run);
            Some(run.clone())
        })
    }

    fn latest(&self, org: &OrgId) -> Option<RemapRun> {
        self.with(|latest| latest.get(org).cloned())
    }
}

/// Ends a run however its task ends: a run whose task stopped without
/// saying how (a panic, or the runtime shutting down) reads as failed
/// instead of running for ever and refusing every later re-map.
struct Ending {
    runs: Arc<RemapRuns>,
    org: OrgId,
    id: String,
}

impl Ending {
    fn end(&self, outcome: &Result<(usize, usize)>) -> Option<RemapRun> {
        self.runs.update(&self.org, &self.id, |run| {
            run.finished_at = Some(store::now());
            match outcome {
                Ok((alerts, changed)) => {
                    run.state = RemapState::Finished;
                    (run.alerts, run.changed) = (*alerts, *changed);
                }
                Err(e) => {
                    run.state = RemapState::Failed;
                    run.error = Some(e.to_string());
                }
            }
        })
    }
}

impl Drop for Ending {
    fn drop(&mut self) {
        let mut stopped = false;
        self.runs.update(&self.org, &self.id, |run| {
            if run.state == RemapState::Running {
                stopped = true;
                run.state = RemapState::Failed;
                run.finished_at = Some(store::now());
                run.error = Some("the re-map stopped before it finished".into());
            }
        });
        if stopped {
            tracing::warn!(org = %self.org, run = %self.id, "re-map stopped before it finished (shutdown or a fault); the alerts it did not reach stay stale");
        }
    }
}

/// The org's run held by a re-map the service starts itself (the one after
/// an activation or rollback): API callers see it and wait for it like any
/// other run.
pub(crate) struct RemapClaim {
    ending: Ending,
}

impl RemapClaim {
    /// What to tell after each page: alerts done and changed so far.
    pub(crate) fn progress(&self) -> impl FnMut(usize, usize) + Send + 'static {
        let runs = self.ending.runs.clone();
        let (org, id) = (self.ending.org.clone(), self.ending.id.clone());
        move |alerts, changed| {
            runs.update(&org, &id, |run| {
                (run.alerts, run.changed) = (alerts, changed);
                run.total = run.total.max(alerts);
            });
        }
    }

    /// Ends the run with the re-map's outcome.
    pub(crate) fn end(self, outcome: &Result<(usize, usize)>) {
        self.ending.end(outcome);
    }
}

impl App {
    /// Takes the org's run for a re-map of `total` alerts the service
    /// starts itself, waiting while a run of the org is going: two re-maps
    /// of one org at once write the same rows and can deadlock each other.
    /// A run started before an activation stops at its next page (its
    /// release is retired), so the wait is short unless the running one
    /// re-maps under the new release already.
    pub(crate) async fn claim_remap(
        &self,
        scope: &OrgScope,
        requested_by: &str,
        total: u64,
    ) -> RemapClaim {
        let run = RemapRun {
            id: uuid::Uuid::now_v7().to_string(),
            requested_by: requested_by.to_string(),
            state: RemapState::Running,
            started_at: store::now(),
            finished_at: None,
            total: usize::try_from(total).unwrap_or(usize::MAX),
            alerts: 0,
            changed: 0,
            error: None,
        };
        while self.remap_runs.claim(scope.org(), run.clone()).is_some() {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        RemapClaim {
            ending: Ending {
                runs: self.remap_runs.clone(),
                org: scope.org().clone(),
                id: run.id,
            },
        }
    }

    /// Starts re-mapping every alert of the org beside the caller (see
    /// [`App::remap_org`] for what a re-map does) and answers the run as it
    /// starts, with a receiver of how it ended. A run of the org still
    /// going is a conflict that names it.
    pub async fn start_remap(
        &self,
        actor: &Actor,
        org: &str,
    ) -> Result<(RemapRun, oneshot::Receiver<Result<RemapRun>>)> {
        self.authorize(actor, Action::RuleWrite, ("alerts", org))
            .await?;
        let scope = self.scope(actor, org).await?;
        let run = RemapRun {
            id: uuid::Uuid::now_v7().to_string(),
            requested_by: actor.name.clone(),
            state: RemapState::Running,
            started_at: store::now(),
            finished_at: None,
            // Counted by the run itself: on a large table the count alone
            // can take seconds, which the caller should not wait for.
            total: 0,
            alerts: 0,
            changed: 0,
            error: None,
        };
        if let Some(going) = self.remap_runs.claim(scope.org(), run.clone()) {
            return Err(ServiceError::StateConflict {
                message: format!(
                    "a re-map of this org is running ({} of {} alerts): wait for it to finish",
                    going.alerts, going.total
                ),
                details: json!({"run": going.id, "started_at": going.started_at}),
            });
        }
        tracing::info!(org = %scope.org(), run = %run.id, "re-map started");
        let (sender, receiver) = oneshot::channel();
        let app = self.clone();
        let actor = actor.clone();
        let id = run.id.clone();
        let run_started = run.clone();
        tokio::spawn(async move {
            let ending = Ending {
                runs: app.remap_runs.clone(),
                org: scope.org().clone(),
                id,
            };
            let outcome = app.run_remap(&actor, &scope, &ending).await;
            let ended = ending.end(&outcome);
            match &outcome {
                Ok((alerts, changed)) => {
                    tracing::info!(org = %scope.org(), run = %ending.id, alerts, changed, "re-map finished")
                }
                Err(e) => {
                    tracing::warn!(org = %scope.org(), run = %ending.id, error = %e, "re-map failed; the alerts it did not reach stay stale")
                }
            }
            // The run is the org's latest until it has ended, so `ended`
            // is there. Nobody listens once the request has answered.
            let _ = sender.send(outcome.map(|_| ended.unwrap_or(run_started)));
        });
        Ok((run, receiver))
    }

    async fn run_remap(
        &self,
        actor: &Actor,
        scope: &OrgScope,
        ending: &Ending,
    ) -> Result<(usize, usize)> {
        let runs = ending.runs.clone();
        let (org, id) = (ending.org.clone(), ending.id.clone());
        let total = usize::try_from(self.store.alert_count(scope).await?).unwrap_or(usize::MAX);
        runs.update(&org, &id, |run| run.total = run.total.max(total));
        let mut progress = move |alerts: usize, changed: usize| {
            runs.update(&org, &id, |run| {
                (run.alerts, run.changed) = (alerts, changed);
                // Alerts ingested while the run goes are re-mapped too
                // when its pages reach them, so the count taken at the
                // start can be passed; a total below the done count
                // would read as more than complete.
                run.total = run.total.max(alerts);
            });
        };
        self.remap_scope(actor, scope, &mut progress).await
    }

    /// The org's latest re-map run, running or ended.
    pub async fn remap_run(&self, actor: &Actor, org: &str) -> Result<RemapRun> {
        self.authorize(actor, Action::ReadMappings, ("alerts", org))
            .await?;
        let scope = self.scope(actor, org).await?;
        self.remap_runs
            .latest(scope.org())
            .ok_or_else(|| ServiceError::NotFound {
                kind: "re-map run",
                id: org.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(id: &str, state: RemapState) -> RemapRun {
        RemapRun {
            id: id.into(),
            requested_by: "erin".into(),
            state,
            started_at: store::now(),
            finished_at: None,
            total: 10,
            alerts: 0,
            changed: 0,
            error: None,
        }
    }

    #[test]
    fn one_run_per_org_at_a_time_and_an_ended_run_makes_room() {
        let runs = Arc::new(RemapRuns::default());
        let (acme, other) = (OrgId("acme".into()), OrgId("other".into()));
        assert_eq!(runs.claim(&acme, run("r1", RemapState::Running)), None);
        let refused = runs.claim(&acme, run("r2", RemapState::Running));
        assert_eq!(refused.map(|going| going.id), Some("r1".to_string()));
        assert_eq!(runs.claim(&other, run("o1", RemapState::Running)), None);

        // A task that ends without a word leaves a failed run behind.
        drop(Ending {
            runs: runs.clone(),
            org: acme.clone(),
            id: "r1".into(),
        });
        let ended = runs.latest(&acme).unwrap();
        assert_eq!(ended.state, RemapState::Failed);
        assert!(ended.error.unwrap().contains("stopped before it finished"));
        assert_eq!(runs.claim(&acme, run("r3", RemapState::Running)), None);

        // A finished run keeps its figures; an old id changes nothing.
        let ending = Ending {
            runs: runs.clone(),
            org: acme.clone(),
            id: "r3".into(),
        };
        ending.end(&Ok((10, 4)));
        drop(ending);
        runs.update(&acme, "r1", |run| run.alerts = 99);
        let done = runs.latest(&acme).unwrap();
        assert_eq!(
            (done.state, done.alerts, done.changed, done.error),
            (RemapState::Finished, 10, 4, None)
        );
        assert_eq!(runs.latest(&other).unwrap().state, RemapState::Running);
    }
}
