//! Staleness: which changes to a subject make its canonical mapping stale
//! until mapping runs again (issue 3 part 7, issue 4 part 5).
//!
//! The store marks the mapping stale and queues it for review when any
//! reason applies; re-mapping through precedence clears the mark.

use serde::{Deserialize, Serialize};

use crate::alert::NormalizedAlert;

/// Why a mapping is stale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum StaleReason {
    /// The alert's severity changed.
    SeverityShift {
        /// Severity before.
        from: String,
        /// Severity after.
        to: String,
    },
    /// The alert's fields (its evidence) changed.
    EvidenceUpdate {
        /// Dotted paths added, removed or changed, sorted.
        fields: Vec<String>,
    },
    /// The detection rule that raised the alert changed.
    AnalyticChanged,
    /// The techniques the alert declares changed.
    DeclarationsChanged,
    /// A new version of a mapping rule that matched the subject.
    RuleVersion {
        /// The rule id.
        rule_id: String,
    },
    /// A new ATT&CK release became active for the domain.
    ReleaseActivated {
        /// The new release.
        release: String,
    },
    /// The incident was reopened.
    Reopened,
    /// The incident absorbed another one.
    Merged,
    /// Alerts were split out of the incident.
    Split,
}

/// What changed between two versions of the same alert that can change its
/// mapping. An empty answer means the mapping still holds.
pub fn alert_changes(before: &NormalizedAlert, after: &NormalizedAlert) -> Vec<StaleReason> {
    let mut reasons = Vec::new();
    if before.severity != after.severity {
        reasons.push(StaleReason::SeverityShift {
            from: before.severity.as_str().to_string(),
            to: after.severity.as_str().to_string(),
        });
    }

    let mut fields: Vec<String> = before
        .fields
        .iter()
        .filter(|(k, v)| after.fields.get(*k) != Some(v))
        .map(|(k, _)| k.clone())
        .collect();
    fields.extend(
        after
            .fields
            .keys()
            .filter(|k| !before.fields.contains_key(*k))
            .cloned(),
    );
    // Rules match the normalized attributes too (`alert.title`,
    // `alert.host`, ...), so a changed one is evidence as much as a changed
    // raw field; severity and the analytic have reasons of their own, and
    // the source uid is what makes the two one alert.
    fields.extend(
        crate::alert::ATTRIBUTES
            .iter()
            .filter(|a| !matches!(**a, "source_uid" | "severity" | "analytic_uid"))
            .map(|a| format!("alert.{a}"))
            .filter(|path| before.field(path) != after.field(path)),
    );
    fields.sort();
    if !fields.is_empty() {
        reasons.push(StaleReason::EvidenceUpdate { fields });
    }

    if before.analytic_uid != after.analytic_uid {
        reasons.push(StaleReason::AnalyticChanged);
    }
    if before.declared != after.declared {
        reasons.push(StaleReason::DeclarationsChanged);
    }
    reasons
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::decode_alert;
    use serde_json::json;

    fn alert(severity: &str, cmd: &str, extra: Option<&str>) -> NormalizedAlert {
        let mut fields = json!({"process": {"cmd_line": cmd}});
        if let Some(x) = extra {
            fields["user"] = json!({"name": x});
        }
        decode_alert(&json!({
            "uid": "a", "title": "t", "severity": severity, "rule_uid": "r1", "fields": fields
        }))
        .unwrap()
    }

    #[test]
    fn unchanged_alert_is_not_stale() {
        let a = alert("low", "whoami", None);
        assert!(alert_changes(&a, &a.clone()).is_empty());
    }

    #[test]
    fn severity_and_evidence_changes_are_named() {
        let before = alert("low", "whoami", None);
        let after = alert("HIGH", "whoami /all", Some("bob"));
        assert_eq!(
            alert_changes(&before, &after),
            vec![
                StaleReason::SeverityShift {
                    from: "low".into(),
                    to: "high".into()
                },
                StaleReason::EvidenceUpdate {
                    fields: vec!["process.cmd_line".into(), "user.name".into()]
                },
            ]
        );
        let json = serde_json::to_value(&alert_changes(&before, &after)[0]).unwrap();
        assert_eq!(json["reason"], "severity_shift");
    }

    #[test]
    fn a_changed_attribute_that_rules_match_is_evidence() {
        let before = alert("low", "whoami", None);
        let mut after = before.clone();
        after.title = "t, renamed".into();
        after.host = Some("ws-9".into());
        assert_eq!(
            alert_changes(&before, &after),
            vec![StaleReason::EvidenceUpdate {
                fields: vec!["alert.host".into(), "alert.title".into()]
            }]
        );
    }
}
