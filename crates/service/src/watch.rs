//! The watch: what `serve` checks on its own, and the notifications it
//! raises for admins.
//!
//! - Audit chain: the same verification as `nexus-attack audit verify`,
//!   every [`WatchConfig::audit_interval`]. A broken chain is logged at
//!   error level with the first bad event, counted, and notified to platform
//!   admins once per bad event.
//! - Misuse signals, every [`WatchConfig::misuse_interval`]: one actor
//!   writing many overrides in a short window, across alerts (the per-alert
//!   flip-flop lock of `overrides` cannot see that), and one actor refused
//!   many times (denials are audited by every use case). Each is logged at
//!   warn level, counted by kind, audited, and notified to the org's admins
//!   at most once per window and actor.
//!
//! The scans read the database rather than events in this process, so a
//! burst spread over several `serve` nodes is still one burst, and one node
//! raises it.

use std::sync::Arc;
use std::sync::atomic::{AtomicI8, AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;
use store::{ActorBurst, NotificationAudience, NotificationEntry, OrgScope};

use crate::{
    Action, Actor, App, AuditVerification, Outcome, Page, PageRequest, Result, Role, ServiceError,
};

/// The actor that the watch's own audit events name.
pub const WATCH_ACTOR: &str = "system:watch";

/// Notification kind of a broken audit chain.
pub const AUDIT_CHAIN_BROKEN: &str = "audit_chain_broken";

/// How many events within how long raise a misuse signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignalRule {
    /// Events by one actor within `window` that raise a signal (at least 1).
    pub threshold: usize,
    /// The sliding window; also the quiet time after a signal for the same
    /// actor.
    pub window: Duration,
}

/// What the watch checks and how often.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchConfig {
    /// Time between audit chain verifications; zero turns them off.
    pub audit_interval: Duration,
    /// Time between misuse scans; zero turns them off.
    pub misuse_interval: Duration,
    /// Overrides written by one actor (across alerts) that raise a signal.
    pub overrides: SignalRule,
    /// Refusals of one actor that raise a signal.
    pub denials: SignalRule,
}

impl Default for WatchConfig {
    /// Verify the chain every five minutes and scan for misuse every minute.
    /// Twenty overrides in ten minutes is far beyond a day of review work
    /// for one analyst; ten refusals in ten minutes is past a confused user
    /// trying a few buttons.
    fn default() -> Self {
        Self {
            audit_interval: Duration::from_secs(300),
            misuse_interval: Duration::from_secs(60),
            overrides: SignalRule {
                threshold: 20,
                window: Duration::from_secs(600),
            },
            denials: SignalRule {
                threshold: 10,
                window: Duration::from_secs(600),
            },
        }
    }
}

/// A kind of misuse signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MisuseKind {
    /// One actor wrote many overrides in a short window.
    OverrideBurst,
    /// One actor was refused many times in a short window.
    RepeatedDenials,
}

impl MisuseKind {
    /// Every kind, in metric order.
    pub const ALL: [MisuseKind; 2] = [MisuseKind::OverrideBurst, MisuseKind::RepeatedDenials];

    /// The kind as a metric label (`override_burst`).
    pub fn as_str(self) -> &'static str {
        match self {
            MisuseKind::OverrideBurst => "override_burst",
            MisuseKind::RepeatedDenials => "repeated_denials",
        }
    }

    /// The kind of its notifications (`misuse_override_burst`).
    pub fn notification_kind(self) -> &'static str {
        match self {
            MisuseKind::OverrideBurst => "misuse_override_burst",
            MisuseKind::RepeatedDenials => "misuse_repeated_denials",
        }
    }

    fn slot(self) -> usize {
        match self {
            MisuseKind::OverrideBurst => 0,
            MisuseKind::RepeatedDenials => 1,
        }
    }
}

/// One misuse signal raised by a scan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MisuseSignal {
    /// What was seen.
    pub kind: MisuseKind,
    /// The org concerned; `None` for a platform actor.
    pub org_id: Option<store::OrgId>,
    /// Who.
    pub actor: String,
    /// Events in the window.
    pub count: i64,
    /// The notification raised.
    pub notification_id: String,
}

/// Counters of the watch in this process, for `/metrics`.
#[derive(Debug, Default)]
struct Counters {
    verifications: AtomicU64,
    failures: AtomicU64,
    /// -1 before the first verification, then 0 or 1.
    chain_ok: AtomicI8,
    signals: [AtomicU64; 2],
}

/// A handle on the watch's counters: cheap to clone, shared by every clone
/// of the [`App`].
#[derive(Debug, Clone)]
pub struct WatchStats(Arc<Counters>);

impl Default for WatchStats {
    fn default() -> Self {
        let counters = Counters::default();
        counters.chain_ok.store(-1, Ordering::Relaxed);
        Self(Arc::new(counters))
    }
}

/// The watch's counters at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchSnapshot {
    /// Audit chain verifications completed.
    pub audit_verifications: u64,
    /// Of those, the ones that found the chain broken.
    pub audit_failures: u64,
    /// The last verification's verdict; `None` before the first.
    pub audit_chain_ok: Option<bool>,
    /// Misuse signals raised, per kind, in [`MisuseKind::ALL`] order.
    pub signals: Vec<(MisuseKind, u64)>,
}

impl WatchStats {
    /// The counters now.
    pub fn snapshot(&self) -> WatchSnapshot {
        let c = &self.0;
        WatchSnapshot {
            audit_verifications: c.verifications.load(Ordering::Relaxed),
            audit_failures: c.failures.load(Ordering::Relaxed),
            audit_chain_ok: match c.chain_ok.load(Ordering::Relaxed) {
                0 => Some(false),
                1 => Some(true),
                _ => None,
            },
            signals: MisuseKind::ALL
                .into_iter()
                .map(|k| (k, c.signals[k.slot()].load(Ordering::Relaxed)))
                .collect(),
        }
    }

    fn verified(&self, ok: bool) {
        self.0.verifications.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.0.failures.fetch_add(1, Ordering::Relaxed);
        }
        self.0.chain_ok.store(i8::from(ok), Ordering::Relaxed);
    }

    fn signalled(&self, kind: MisuseKind) {
        self.0.signals[kind.slot()].fetch_add(1, Ordering::Relaxed);
    }
}

/// A notification as its reader sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationView {
    /// Id.
    pub id: String,
    /// The org; `null` for a platform notification.
    pub org_id: Option<String>,
    /// The role it is for (`lead`, `admin`, `platform-admin`).
    pub recipient: String,
    /// Kind (`arbitration_lock`, `audit_chain_broken`,
    /// `misuse_override_burst`, `misuse_repeated_denials`).
    pub kind: String,
    /// What it is about (the actor of a misuse signal, the bad event).
    pub subject: Option<String>,
    /// The alert concerned.
    pub alert_id: Option<String>,
    /// Text.
    pub message: String,
    /// When it was raised.
    pub created_at: String,
    /// When it was acknowledged.
    pub read_at: Option<String>,
    /// Who acknowledged it.
    pub read_by: Option<String>,
}

fn ts(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn view(entry: NotificationEntry) -> NotificationView {
    NotificationView {
        id: entry.id,
        org_id: entry.org_id.map(|o| o.0),
        recipient: entry.recipient,
        kind: entry.kind,
        subject: entry.subject,
        alert_id: entry.alert_id.map(|a| a.to_string()),
        message: entry.message,
        created_at: ts(&entry.created_at),
        read_at: entry.read_at.as_ref().map(ts),
        read_by: entry.read_by,
    }
}

/// The recipient roles whose notifications `role` reads: a lead reads the
/// leads', an admin the leads' and admins', a platform admin every one of
/// its org's and the platform's.
fn readable_recipients(role: Role) -> &'static [&'static str] {
    match role {
        Role::Lead => &["lead"],
        Role::Admin => &["lead", "admin"],
        Role::PlatformAdmin => &["lead", "admin", "platform-admin"],
        Role::Viewer | Role::Analyst | Role::Engineer | Role::Steward => &[],
    }
}

fn whole_seconds(window: Duration) -> u64 {
    window.as_secs().max(1)
}

impl App {
    /// The watch's counters, shared with every clone of this app.
    pub fn watch_stats(&self) -> WatchStats {
        self.watch.clone()
    }

    /// Verifies the audit chain as `audit verify` does, records the verdict
    /// in [`WatchStats`], and on a broken chain logs an error naming the
    /// first bad event and notifies platform admins (once per bad event:
    /// history is append-only, so a broken chain stays broken).
    pub async fn watch_audit_chain(&self) -> Result<AuditVerification> {
        let verification = self.store.verify_audit().await?;
        self.watch.verified(verification.ok);
        if verification.ok {
            tracing::debug!(events = verification.events, "audit chain verified");
            return Ok(verification);
        }

        let seq = verification.first_bad_seq.unwrap_or_default();
        let problem = verification.problem.clone().unwrap_or_default();
        tracing::error!(
            first_bad_seq = seq,
            problem = %problem,
            events = verification.events,
            "the audit chain is broken"
        );
        let now = store::now();
        let entry = NotificationEntry {
            id: uuid::Uuid::now_v7().to_string(),
            org_id: None,
            recipient: Role::PlatformAdmin.as_str().into(),
            kind: AUDIT_CHAIN_BROKEN.into(),
            subject: Some(format!("event {seq}")),
            alert_id: None,
            message: format!(
                "audit chain verification failed at event {seq}: {problem} \
                 ({} events checked); run `nexus-attack audit verify` and investigate",
                verification.events
            ),
            created_at: now,
            read_at: None,
            read_by: None,
        };
        let mut tx = self.store.begin_all().await?;
        if tx.insert_notification_once(&entry, None).await? {
            tx.commit().await?;
        }
        Ok(verification)
    }

    /// Scans recent overrides and refusals of every org and raises a signal
    /// for each actor at or over a threshold that has had none within the
    /// window. Answers the signals raised by this scan.
    pub async fn watch_misuse(&self) -> Result<Vec<MisuseSignal>> {
        let now = store::now();
        let config = self.config.watch;
        let mut raised = Vec::new();
        for (kind, rule) in [
            (MisuseKind::OverrideBurst, config.overrides),
            (MisuseKind::RepeatedDenials, config.denials),
        ] {
            let window = chrono::Duration::from_std(rule.window).unwrap_or(chrono::Duration::MAX);
            let since = now.checked_sub_signed(window).unwrap_or(now);
            let threshold = i64::try_from(rule.threshold.max(1)).unwrap_or(i64::MAX);
            let bursts = match kind {
                MisuseKind::OverrideBurst => self.store.override_bursts(&since, threshold).await?,
                MisuseKind::RepeatedDenials => self.store.denial_bursts(&since, threshold).await?,
            };
            for burst in bursts {
                if let Some(signal) = self.raise(kind, rule, &burst, &since).await? {
                    raised.push(signal);
                }
            }
        }
        Ok(raised)
    }

    /// Stores one signal's notification and audit event unless the actor
    /// had one of this kind within the window; then logs and counts it.
    async fn raise(
        &self,
        kind: MisuseKind,
        rule: SignalRule,
        burst: &ActorBurst,
        since: &chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<MisuseSignal>> {
        let window_seconds = whole_seconds(rule.window);
        let what = match kind {
            MisuseKind::OverrideBurst => "wrote overrides on alerts",
            MisuseKind::RepeatedDenials => "was refused privileged actions",
        };
        let message = format!(
            "{} {what} {} times in the last {window_seconds} s (threshold {})",
            burst.actor, burst.count, rule.threshold
        );
        let recipient = if burst.org_id.is_some() {
            Role::Admin
        } else {
            Role::PlatformAdmin
        };
        let entry = NotificationEntry {
            id: uuid::Uuid::now_v7().to_string(),
            org_id: burst.org_id.clone(),
            recipient: recipient.as_str().into(),
            kind: kind.notification_kind().into(),
            subject: Some(burst.actor.clone()),
            alert_id: None,
            message,
            created_at: store::now(),
            read_at: None,
            read_by: None,
        };

        // A burst of an org is that org's business; one of platform actors
        // (no org) writes platform rows, which only the cross-org scope reaches.
        let mut tx = match &burst.org_id {
            Some(org) => self.store.begin_in(&OrgScope::new(org.clone())).await?,
            None => self.store.begin_all().await?,
        };
        if !tx.insert_notification_once(&entry, Some(since)).await? {
            // Dropping the transaction rolls back its lock only.
            return Ok(None);
        }
        tx.append_audit(&store::NewAuditEvent {
            org_id: burst.org_id.clone(),
            actor: WATCH_ACTOR.into(),
            action: "misuse_signal".into(),
            target_kind: "actor".into(),
            target_id: burst.actor.clone(),
            outcome: Outcome::Ok,
            details: json!({
                "kind": kind.as_str(),
                "count": burst.count,
                "threshold": rule.threshold,
                "window_seconds": window_seconds,
                "notification": entry.id,
            }),
        })
        .await?;
        tx.commit().await?;

        self.watch.signalled(kind);
        tracing::warn!(
            kind = kind.as_str(),
            org = burst.org_id.as_ref().map_or("", |o| o.as_str()),
            actor = %burst.actor,
            count = burst.count,
            threshold = rule.threshold,
            window_seconds,
            "misuse signal"
        );
        Ok(Some(MisuseSignal {
            kind,
            org_id: burst.org_id.clone(),
            actor: burst.actor.clone(),
            count: burst.count,
            notification_id: entry.id,
        }))
    }

    /// Runs the watch until the future is dropped: the audit chain and the
    /// misuse scans, each on its interval (the first run at once). A failed
    /// run is logged and retried at the next tick. Returns at once when
    /// both intervals are zero.
    pub async fn run_watch(&self) {
        let config = self.config.watch;
        let audit = async {
            if config.audit_interval.is_zero() {
                return;
            }
            let mut ticks = tokio::time::interval(config.audit_interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                if let Err(error) = self.watch_audit_chain().await {
                    tracing::warn!(error = %error, "audit chain verification could not run");
                }
            }
        };
        let misuse = async {
            if config.misuse_interval.is_zero() {
                return;
            }
            let mut ticks = tokio::time::interval(config.misuse_interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                if let Err(error) = self.watch_misuse().await {
                    tracing::warn!(error = %error, "misuse scan could not run");
                }
            }
        };
        tokio::join!(audit, misuse);
    }

    /// A page of the notifications the actor reads, newest first: leads
    /// read the leads', admins also the admins' (misuse signals), platform
    /// admins also the platform's (a broken audit chain).
    pub async fn notification_page(
        &self,
        actor: &Actor,
        page: &PageRequest,
    ) -> Result<Page<NotificationView>> {
        self.authorize(actor, Action::ReadNotifications, ("notifications", "*"))
            .await?;
        let scope = actor.org.clone().map(OrgScope::new);
        let audience = NotificationAudience {
            org: scope.as_ref(),
            recipients: readable_recipients(actor.role),
            platform: actor.role == Role::PlatformAdmin,
        };
        let limit = page.effective_limit();

        // One extra row tells whether another page follows.
        let mut items = self
            .store
            .notification_entries(
                &audience,
                page.cursor.as_deref(),
                i64::try_from(limit + 1).unwrap_or(i64::MAX),
            )
            .await?;
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|n| n.id.clone())
        } else {
            None
        };
        Ok(Page {
            items: items.into_iter().map(view).collect(),
            next_cursor,
        })
    }

    /// Acknowledges a notification the actor reads; another org's answers
    /// `not_found` like a missing one, an acknowledged one `conflict`.
    pub async fn acknowledge_notification(
        &self,
        actor: &Actor,
        id: &str,
    ) -> Result<NotificationView> {
        self.authorize(actor, Action::ReadNotifications, ("notification", id))
            .await?;
        let scope = actor.org.clone().map(OrgScope::new);
        let audience = NotificationAudience {
            org: scope.as_ref(),
            recipients: readable_recipients(actor.role),
            platform: actor.role == Role::PlatformAdmin,
        };
        let not_found = || ServiceError::NotFound {
            kind: "notification",
            id: id.to_string(),
        };
        let entry = self
            .store
            .notification_entry(&audience, id)
            .await?
            .ok_or_else(not_found)?;
        if entry.read_at.is_some() {
            return Err(ServiceError::Conflict(format!(
                "notification {id} is already acknowledged"
            )));
        }

        let now = store::now();
        let mut tx = match &entry.org_id {
            Some(org) => self.store.begin_in(&OrgScope::new(org.clone())).await?,
            None => self.store.begin_all().await?,
        };
        if !tx.ack_notification(id, &actor.name, &now).await? {
            return Err(ServiceError::Conflict(format!(
                "notification {id} was acknowledged concurrently"
            )));
        }
        tx.append_audit(&store::NewAuditEvent {
            org_id: entry.org_id.clone(),
            ..crate::audit_event(
                actor,
                "notification_ack",
                ("notification", id),
                Outcome::Ok,
                json!({"kind": entry.kind, "subject": entry.subject}),
            )
        })
        .await?;
        tx.commit().await?;

        let acked = self
            .store
            .notification_entry(&audience, id)
            .await?
            .ok_or_else(not_found)?;
        Ok(view(acked))
    }
}
