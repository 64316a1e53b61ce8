//! What each command prints: JSON with `--json`, short text otherwise.

use serde::Serialize;
use serde_json::json;
use service::{
    Activation, AuditEvent, AuditVerification, Dataset, DiffReport, MigrationSuggestion, NewToken,
    Org, ReferenceMigration, Rollback, SyncReport, TacticList, TechniqueDetail, ValidationSummary,
};
use taxonomy::Technique;

/// Prints answers in the chosen format on stdout.
pub struct Printer {
    json: bool,
}

fn print_json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn or_dash(value: Option<&str>) -> &str {
    value.unwrap_or("-")
}

impl Printer {
    /// JSON when `json`, text otherwise.
    pub fn new(json: bool) -> Self {
        Self { json }
    }

    /// `dataset load`: the contract's shape, exactly.
    pub fn loaded(&self, d: &Dataset) -> anyhow::Result<()> {
        if self.json {
            return print_json(&json!({
                "id": d.id,
                "domain": d.domain,
                "release": d.release,
                "state": d.state,
                "counts": {
                    "tactics": d.counts.tactics,
                    "techniques": d.counts.techniques,
                    "subtechniques": d.counts.subtechniques,
                    "deprecated": d.counts.deprecated,
                    "revoked": d.counts.revoked,
                },
            }));
        }
        println!(
            "loaded {} {} {} as dataset {} ({})",
            d.domain, d.release, d.sha256, d.id, d.state
        );
        println!(
            "  {} tactics, {} techniques, {} sub-techniques, {} deprecated, {} revoked",
            d.counts.tactics,
            d.counts.techniques,
            d.counts.subtechniques,
            d.counts.deprecated,
            d.counts.revoked
        );
        Ok(())
    }

    /// One dataset.
    pub fn dataset(&self, d: &Dataset) -> anyhow::Result<()> {
        if self.json {
            return print_json(d);
        }
        println!(
            "dataset {}: {} {} is {}",
            d.id, d.domain, d.release, d.state
        );
        println!("  source    {} (sha256 {})", d.source, d.sha256);
        println!("  loaded    by {} at {}", d.loaded_by, d.loaded_at);
        let stamps = [
            ("validated", d.validated_by.as_deref(), d.validated_at),
            ("approved", d.approved_by.as_deref(), d.approved_at),
            ("activated", d.activated_by.as_deref(), d.activated_at),
            ("rejected", d.rejected_by.as_deref(), d.rejected_at),
        ];
        for (what, by, at) in stamps {
            if let Some(at) = at {
                println!("  {what:<9} by {} at {at}", or_dash(by));
            }
        }
        if let Some(reason) = &d.rejection_reason {
            println!("  reason    {reason}");
        }
        Ok(())
    }

    /// Many datasets.
    pub fn datasets(&self, list: &[Dataset]) -> anyhow::Result<()> {
        if self.json {
            return print_json(list);
        }
        for d in list {
            println!(
                "{}  {:<17} {:<6} {:<11} loaded by {}",
                d.id, d.domain, d.release, d.state, d.loaded_by
            );
        }
        Ok(())
    }

    /// A Gate A report.
    pub fn validation(&self, r: &ValidationSummary) -> anyhow::Result<()> {
        if self.json {
            return print_json(r);
        }
        println!(
            "dataset {}: {} error(s), {} warning(s)",
            r.dataset_id, r.errors, r.warnings
        );
        for f in &r.findings {
            println!(
                "  {:<7} {:<28} {:<12} {}",
                f.severity,
                f.code,
                or_dash(f.attack_id.as_deref()),
                f.message
            );
        }
        Ok(())
    }

    /// An activation and its compatibility report.
    pub fn activation(&self, a: &Activation) -> anyhow::Result<()> {
        if self.json {
            return print_json(a);
        }
        let d = &a.dataset;
        println!("activated {} {} (dataset {})", d.domain, d.release, d.id);
        if let Some(retired) = &a.retired {
            println!("  retired dataset {retired}");
        }
        let c = &a.compatibility;
        println!(
            "  compatibility: {} stored reference(s) checked, {} affected",
            c.references_checked,
            c.issues.len()
        );
        for issue in &c.issues {
            println!(
                "  {} {} names {}: {:?}, replaced by {}",
                issue.kind,
                issue.id,
                issue.technique_id,
                issue.status,
                or_dash(issue.replaced_by.as_deref())
            );
        }
        Ok(())
    }

    /// A rollback.
    pub fn rollback(&self, r: &Rollback) -> anyhow::Result<()> {
        if self.json {
            return print_json(r);
        }
        println!(
            "rolled back {} {} (dataset {}); {} is active again (dataset {})",
            r.rolled_back.domain,
            r.rolled_back.release,
            r.rolled_back.id,
            r.reactivated.release,
            r.reactivated.id
        );
        Ok(())
    }

    /// A diff: Markdown unless JSON was asked for.
    pub fn diff(&self, r: &DiffReport) -> anyhow::Result<()> {
        if self.json {
            return print_json(&r.diff);
        }
        print!("{}", r.markdown);
        Ok(())
    }

    /// A sync pass.
    pub fn sync(&self, r: &SyncReport) -> anyhow::Result<()> {
        if self.json {
            return print_json(r);
        }
        for s in &r.loaded {
            println!(
                "loaded {} {} from {} as dataset {} ({})",
                s.dataset.domain, s.dataset.release, s.source, s.dataset.id, s.dataset.state
            );
            if let Some(summary) = &s.change_summary {
                println!("  changes: {summary}");
            }
        }
        for (source, id) in &r.skipped {
            println!("skipped {source}: already loaded as dataset {id}");
        }
        for (source, reason) in &r.failed {
            println!("failed {source}: {reason}");
        }
        Ok(())
    }

    /// Migration suggestions.
    pub fn migrations(&self, list: &[MigrationSuggestion]) -> anyhow::Result<()> {
        if self.json {
            return print_json(list);
        }
        for m in list {
            let state = if m.applied { "applied" } else { "pending" };
            println!(
                "{state:<8} {} {}: {} -> {}",
                m.ref_kind, m.ref_id, m.old_technique, m.new_technique
            );
        }
        Ok(())
    }

    /// Migrations just applied.
    pub fn applied_migrations(&self, list: &[ReferenceMigration]) -> anyhow::Result<()> {
        if self.json {
            return print_json(list);
        }
        println!("{} migration(s) applied", list.len());
        for m in list {
            println!(
                "  {} {}: {} -> {} (record {})",
                m.ref_kind, m.ref_id, m.old_technique, m.new_technique, m.id
            );
        }
        Ok(())
    }

    /// A new org.
    pub fn org(&self, org: &Org) -> anyhow::Result<()> {
        if self.json {
            return print_json(org);
        }
        println!("org {} created with id {}", org.name, org.id);
        Ok(())
    }

    /// The orgs, one per line.
    pub fn orgs(&self, orgs: &[Org]) -> anyhow::Result<()> {
        if self.json {
            return print_json(&orgs);
        }
        println!("{:<36}  {:<24}  name", "id", "created");
        for org in orgs {
            println!(
                "{:<36}  {:<24}  {}",
                org.id,
                org.created_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                org.name
            );
        }
        Ok(())
    }

    /// A new token: the only time its secret is shown.
    pub fn token(&self, t: &NewToken) -> anyhow::Result<()> {
        if self.json {
            return print_json(&json!({
                "id": t.id,
                "org": t.org.name,
                "org_id": t.org.id,
                "role": t.role,
                "label": t.label,
                "secret": t.secret.expose(),
            }));
        }
        println!("token {} ({}, org {})", t.id, t.role, t.org.name);
        println!("{}", t.secret.expose());
        eprintln!("the secret above is shown once; store it now");
        Ok(())
    }

    /// Audit chain verification.
    pub fn verification(&self, v: &AuditVerification) -> anyhow::Result<()> {
        if self.json {
            return print_json(v);
        }
        if v.ok {
            println!("audit chain OK: {} event(s) verified", v.events);
        }
        Ok(())
    }

    /// Audit events.
    pub fn audit_events(&self, events: &[AuditEvent]) -> anyhow::Result<()> {
        if self.json {
            return print_json(events);
        }
        for e in events {
            println!(
                "{:>6} {} {:<8} {:<20} {:<18} {}:{} {}",
                e.seq,
                e.at.format("%Y-%m-%dT%H:%M:%S%.3fZ"),
                e.outcome.as_str(),
                e.actor,
                e.action,
                e.target_kind,
                e.target_id,
                e.details
            );
        }
        Ok(())
    }

    /// Tactics.
    pub fn tactics(&self, list: &TacticList) -> anyhow::Result<()> {
        if self.json {
            return print_json(&list.tactics);
        }
        for t in &list.tactics {
            println!("{:<7} {:<22} {}", t.id, t.shortname, t.name);
        }
        Ok(())
    }

    /// Techniques.
    pub fn techniques(&self, list: &[Technique]) -> anyhow::Result<()> {
        if self.json {
            return print_json(list);
        }
        for t in list {
            println!("{:<10} {:<60} {}", t.id, t.name, t.tactics.join(","));
        }
        Ok(())
    }

    /// One technique.
    pub fn technique(&self, d: &TechniqueDetail) -> anyhow::Result<()> {
        if self.json {
            return print_json(d);
        }
        let t = &d.technique;
        println!("{} {} (version {})", t.id, t.name, t.version);
        println!("  tactics    {}", t.tactics.join(", "));
        println!("  platforms  {}", t.platforms.join(", "));
        if t.status.revoked {
            let by = d.replacement.as_ref().map(|r| r.id.as_str());
            println!("  revoked, replaced by {}", or_dash(by));
        } else if t.status.deprecated {
            println!("  deprecated");
        }
        if let Some(parent) = &d.parent {
            println!("  parent     {} {}", parent.id, parent.name);
        }
        for s in &d.subtechniques {
            println!("  sub        {} {}", s.id, s.name);
        }
        Ok(())
    }
}
