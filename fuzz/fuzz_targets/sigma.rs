//! Sigma import of one rule file (one or more YAML documents, with
//! `action: global` merging), checked against Enterprise 18.1. Every mapping
//! rule the import derives must be a valid rule of the rule language.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mapping::rules::parse_rule_value;
use mapping::sigma::{SigmaOptions, import_files};
use nexus_attack_fuzz::release;

fuzz_target!(|data: &[u8]| {
    let [flags, rest @ ..] = data else {
        return;
    };
    let options = SigmaOptions {
        include_deprecated: flags % 2 == 1,
    };
    let release = release();

    let import = import_files(
        [("rules/fuzz.yml".to_string(), rest.to_vec())],
        release,
        options,
    );

    assert_eq!(import.report.rules, import.rules.len());
    assert_eq!(import.report.mapped_rules, import.mapping_rules.len());
    for rule in &import.mapping_rules {
        let written = rule.to_value();
        if let Err(e) = parse_rule_value(&written, release) {
            panic!("Sigma-derived rule is not a valid mapping rule {written}: {e}");
        }
    }
});
