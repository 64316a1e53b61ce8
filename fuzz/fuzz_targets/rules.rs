//! The mapping rule language: `parse_rule` on arbitrary text (JSON or YAML),
//! validated against Enterprise 18.1. A rule that parses must evaluate on
//! real alerts and read back unchanged from its own JSON form, which is what
//! the store saves and the API returns.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mapping::RuleSet;
use mapping::rules::{parse_rule, parse_rule_value};
use nexus_attack_fuzz::{alerts, release};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let release = release();
    let Ok(rule) = parse_rule(text, release) else {
        return;
    };

    let written = rule.to_value();
    match parse_rule_value(&written, release) {
        Ok(again) => assert_eq!(again, rule, "rule changed through its JSON form: {written}"),
        Err(e) => panic!("rule does not read back from its JSON form {written}: {e}"),
    }

    let set = RuleSet::new([rule]);
    for alert in alerts().iter().take(16) {
        let _ = set.evaluate(alert);
    }
});
