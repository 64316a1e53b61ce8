//! Sigma pack import against Enterprise 18.1.

use std::collections::BTreeSet;

use mapping::sigma::{SigmaOptions, TagKind, TagStatus, import_path};

use crate::{enterprise_18_1, first_pack, pack, raw_rules};

#[test]
fn first_pack_every_technique_tag_is_valid() {
    let raw = raw_rules("sigma-rules-c5e6d0ecd.tar.gz");
    let release = enterprise_18_1();
    let kept: Vec<_> = raw.values().filter(|r| !r.retired()).collect();
    let technique_tags: usize = kept.iter().map(|r| r.technique_ids().len()).sum();
    // Independently: each tag names a live attack-pattern of the release.
    for r in &kept {
        for id in r.technique_ids() {
            let t = release
                .techniques
                .iter()
                .find(|t| t.id == id && t.status.is_live());
            assert!(t.is_some(), "{id} of rule {} is live in 18.1", r.id);
        }
    }
    let mapped = kept
        .iter()
        .filter(|r| !r.technique_ids().is_empty())
        .count();

    let report = &first_pack().report;
    assert_eq!(report.rules, kept.len());
    assert_eq!(report.skipped, raw.len() - kept.len());
    assert_eq!(report.mapped_rules, mapped);
    assert_eq!(report.tags_by_kind.technique.valid, technique_tags);
    assert_eq!(report.tags_by_kind.technique.unknown, 0);
    assert_eq!(report.tags_by_kind.technique.revoked, 0);
    assert_eq!(report.tags_by_kind.technique.deprecated, 0);
    assert!(
        report.problems.is_empty(),
        "{:?}",
        &report.problems[..report.problems.len().min(5)]
    );
    assert!(report.unreadable.is_empty(), "{:?}", report.unreadable);
    assert_eq!(first_pack().mapping_rules.len(), mapped);
}

#[test]
fn first_pack_with_retired_rules_reports_the_one_revoked_tag() {
    let raw = raw_rules("sigma-rules-c5e6d0ecd.tar.gz");
    let release = enterprise_18_1();
    // Independently: retired rules' technique tags that are revoked in 18.1.
    let mut expected = BTreeSet::new();
    for r in raw.values().filter(|r| r.retired()) {
        for id in r.technique_ids() {
            let live = release
                .techniques
                .iter()
                .any(|t| t.id == id && t.status.is_live());
            if !live {
                let revoked_by = release
                    .techniques
                    .iter()
                    .find(|t| t.id == id && t.status.revoked)
                    .and_then(|t| t.status.revoked_by.clone());
                expected.insert((
                    r.id.clone(),
                    format!("attack.{}", id.to_lowercase()),
                    revoked_by,
                ));
            }
        }
    }
    assert_eq!(
        expected.len(),
        1,
        "the pack holds one revoked tag: {expected:?}"
    );

    let import = import_path(
        &pack("sigma-rules-c5e6d0ecd.tar.gz"),
        release,
        SigmaOptions {
            include_deprecated: true,
        },
    )
    .unwrap();
    assert_eq!(import.report.rules, raw.len());
    assert_eq!(import.report.skipped, 0);
    let got: BTreeSet<_> = import
        .report
        .problems
        .iter()
        .map(|p| {
            assert_eq!(p.status, TagStatus::Revoked);
            (p.rule.clone(), p.tag.to_lowercase(), p.replaced_by.clone())
        })
        .collect();
    assert_eq!(got, expected);
    assert_eq!(import.report.tags.revoked, 1);
}

#[test]
fn second_pack_reports_tags_unknown_to_18_1() {
    let raw = raw_rules("sigma-rules-8eaafff1f.tar.gz");
    let kept: Vec<_> = raw.values().filter(|r| !r.retired()).collect();
    let with_tag = |tag: &str| kept.iter().filter(|r| r.attack_tags.contains(tag)).count();
    let t1685 = with_tag("attack.t1685");
    let stealth = with_tag("attack.stealth");
    assert!(t1685 > 0 && stealth > 0, "the pack uses both tags");

    let import = import_path(
        &pack("sigma-rules-8eaafff1f.tar.gz"),
        enterprise_18_1(),
        SigmaOptions::default(),
    )
    .unwrap();
    let reported = |tag: &str| {
        import
            .report
            .problems
            .iter()
            .filter(|p| p.tag.eq_ignore_ascii_case(tag))
            .inspect(|p| assert_eq!(p.status, TagStatus::Unknown, "{p:?}"))
            .count()
    };
    assert_eq!(reported("attack.t1685"), t1685);
    assert_eq!(reported("attack.stealth"), stealth);

    // Every unknown technique tag is reported, and nothing else is unknown
    // among techniques: count independently which technique ids 18.1 lacks.
    let release = enterprise_18_1();
    let unknown_techniques: usize = kept
        .iter()
        .flat_map(|r| r.technique_ids())
        .filter(|id| !release.techniques.iter().any(|t| &t.id == id))
        .count();
    assert_eq!(
        import.report.tags_by_kind.technique.unknown,
        unknown_techniques
    );

    // A rule keeps its valid tags only: no mapping rule names an unknown technique.
    for rule in &import.mapping_rules {
        for t in &rule.techniques {
            assert!(release.technique(t.id.as_str()).is_some(), "{}", t.id);
        }
    }
    let stealth_rule = import
        .rules
        .iter()
        .find(|r| r.checks.iter().any(|c| c.tag == "attack.stealth"))
        .unwrap();
    let check = stealth_rule
        .checks
        .iter()
        .find(|c| c.tag == "attack.stealth")
        .unwrap();
    assert_eq!(check.kind, TagKind::Tactic);
}

#[test]
fn a_folder_pack_imports_like_the_same_files_from_the_archive() {
    // The first 300 rule files of the archive, written out as a folder tree.
    let file = std::fs::File::open(pack("sigma-rules-c5e6d0ecd.tar.gz")).unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        if !name.ends_with(".yml") || files.len() == 300 {
            continue;
        }
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
        let target = dir.path().join(&name);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::write(&target, &bytes).unwrap();
        files.push((name, bytes));
    }
    // A broken file beside the rules is reported, not fatal; so is a file
    // too big to be a rule.
    std::fs::write(dir.path().join("broken.yml"), "title: [unclosed\n").unwrap();
    let huge = "#".repeat(mapping::sigma::MAX_RULE_FILE_BYTES as usize + 1);
    std::fs::write(dir.path().join("huge.yml"), huge).unwrap();

    let release = enterprise_18_1();
    let from_folder = import_path(dir.path(), release, SigmaOptions::default()).unwrap();
    let from_memory = mapping::sigma::import_files(files, release, SigmaOptions::default());
    assert_eq!(from_folder.report.rules, from_memory.report.rules);
    assert_eq!(
        from_folder.report.mapped_rules,
        from_memory.report.mapped_rules
    );
    assert_eq!(from_folder.report.tags, from_memory.report.tags);
    assert_eq!(from_folder.mapping_rules, from_memory.mapping_rules);
    let unreadable: Vec<&str> = from_folder
        .report
        .unreadable
        .iter()
        .map(|p| p.file.as_str())
        .collect();
    assert_eq!(unreadable, vec!["broken.yml", "huge.yml"]);
}

#[test]
fn first_pack_against_an_older_release_reports_what_it_lacks() {
    let bytes =
        std::fs::read(crate::shared().join("attack/enterprise-attack-15.1.json.gz")).unwrap();
    let hints = taxonomy::LoadHints {
        file_name: Some("enterprise-attack-15.1.json.gz".into()),
        ..taxonomy::LoadHints::default()
    };
    let release = taxonomy::parse(&bytes, &hints).unwrap();

    // Independently: classify each technique tag of the kept rules by the
    // release's own objects.
    let raw = raw_rules("sigma-rules-c5e6d0ecd.tar.gz");
    let mut expected = mapping::sigma::TagCounts::default();
    for r in raw.values().filter(|r| !r.retired()) {
        for id in r.technique_ids() {
            let objects: Vec<_> = release.techniques.iter().filter(|t| t.id == id).collect();
            if objects.iter().any(|t| t.status.is_live()) {
                expected.valid += 1;
            } else if objects.iter().any(|t| t.status.revoked) {
                expected.revoked += 1;
            } else if objects.is_empty() {
                expected.unknown += 1;
            } else {
                expected.deprecated += 1;
            }
        }
    }
    assert!(expected.unknown + expected.revoked + expected.deprecated > 0);

    let import = import_path(
        &pack("sigma-rules-c5e6d0ecd.tar.gz"),
        &release,
        SigmaOptions::default(),
    )
    .unwrap();
    assert_eq!(import.report.tags_by_kind.technique, expected);
    // Every revoked tag names the live technique that replaces it, if any.
    for p in import
        .report
        .problems
        .iter()
        .filter(|p| p.status == TagStatus::Revoked)
    {
        if let Some(r) = &p.replaced_by {
            let live = release
                .techniques
                .iter()
                .any(|t| &t.id == r && t.status.is_live());
            assert!(live, "{} -> {r}", p.tag);
        }
    }
}
