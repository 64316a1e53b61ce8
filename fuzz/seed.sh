#!/usr/bin/env bash
# Seeds fuzz/corpus/<target>/ with small samples cut from the real shared data
# at run time (the shared data itself is never copied into the repository;
# fuzz/corpus is git-ignored). Safe to re-run: it rewrites only its own seeds.
#
#   NEXUS_ATTACK_SHARED=/path/to/shared bash fuzz/seed.sh
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
shared="${NEXUS_ATTACK_SHARED:-$here/../../shared}"
corpus="$here/corpus"
mkdir -p "$corpus"/{stix,alerts,rules,sigma}

for f in attack/enterprise-attack-18.1.json.gz attack/ics-attack-18.1.json.gz \
    alerts/sigma-regression-alerts.ndjson sigma/sigma-rules-c5e6d0ecd.tar.gz; do
    [[ -f "$shared/$f" ]] || { echo "seed.sh: missing $shared/$f" >&2; exit 1; }
done

# stix: small bundles that keep the shapes the parser cares about (matrix,
# tactics, techniques with sub-techniques, revoked-by and deprecated objects,
# procedures), from a STIX 2.0 release (identity from the hints) and a STIX 2.1
# one (identity from x-mitre-collection). Each seed starts with two selector
# bytes: mode (0 plain, 1 gzip in the target) and hint (0 none, 1 file name).
python3 - "$shared" "$corpus/stix" <<'PY'
import gzip, json, sys
shared, out = sys.argv[1], sys.argv[2]

def cut(path, n_techniques):
    bundle = json.load(gzip.open(f"{shared}/{path}"))
    objs = bundle["objects"]
    keep = [o for o in objs if o["type"] in ("x-mitre-matrix", "x-mitre-tactic", "x-mitre-collection")]
    patterns = [o for o in objs if o["type"] == "attack-pattern"]
    ext = lambda o: next((r.get("external_id", "") for r in o.get("external_references", [])
                          if r.get("source_name", "").startswith("mitre")), "")
    chosen = {}
    for o in patterns:
        if len(chosen) >= n_techniques:
            break
        if not o.get("revoked") and "." not in ext(o):
            chosen[o["id"]] = o
    parents = {ext(o) for o in chosen.values()}
    subs = [o for o in patterns if ext(o).split(".")[0] in parents and "." in ext(o)][:n_techniques]
    revoked = [o for o in patterns if o.get("revoked")][:2]
    deprecated = [o for o in patterns if o.get("x_mitre_deprecated")][:2]
    for o in subs + revoked + deprecated:
        chosen[o["id"]] = o
    rels = [o for o in objs if o["type"] == "relationship"]
    ids = set(chosen)
    picked = [r for r in rels if r["relationship_type"] in ("subtechnique-of", "revoked-by")
              and r["source_ref"] in ids]
    uses = [r for r in rels if r["relationship_type"] == "uses" and r["target_ref"] in ids][:3]
    actors = {r["source_ref"] for r in uses}
    keep += [o for o in objs if o["id"] in actors]
    targets = {r["target_ref"] for r in picked}
    keep += [o for o in patterns if o["id"] in targets and o["id"] not in ids]
    for o in list(chosen.values()) + keep:
        # Long prose is not what the parser branches on; shorter seeds fuzz faster.
        if "description" in o:
            o["description"] = o["description"][:80]
        if "x_mitre_contents" in o:
            # The collection lists every object of the release; a few suffice.
            o["x_mitre_contents"] = o["x_mitre_contents"][:5]
    small = dict(bundle, objects=keep + list(chosen.values()) + picked + uses)
    return json.dumps(small, separators=(",", ":")).encode()

samples = {
    "enterprise-18.1-hinted": (b"\x00\x01", cut("attack/enterprise-attack-18.1.json.gz", 3)),
    "enterprise-18.1-gzip": (b"\x01\x01", cut("attack/enterprise-attack-18.1.json.gz", 2)),
    "ics-18.1-collection": (b"\x00\x00", cut("attack/ics-attack-18.1.json.gz", 3)),
}
for name, (prefix, body) in samples.items():
    with open(f"{out}/{name}", "wb") as f:
        f.write(prefix + body)
    print(f"stix/{name}: {len(prefix) + len(body)} bytes")
PY

# alerts: real OCSF lines from the shared feed (one, and three with a blank
# line), plus the repository's own ECS, Kibana and native fixtures.
alerts="$shared/alerts/sigma-regression-alerts.ndjson"
sed -n 1p "$alerts" > "$corpus/alerts/ocsf-one"
{ sed -n 2,3p "$alerts"; echo; sed -n 4p "$alerts"; } > "$corpus/alerts/ocsf-three"
for f in "$here"/../crates/mapping/tests/fixtures/*.json; do
    # One JSON document per line, as NDJSON wants.
    jq -c . "$f" > "$corpus/alerts/fixture-$(basename "$f" .json)"
done

# rules: the rule language's documented example and variants touching every
# operator, written here (they are the product's own syntax, not shared data).
cat > "$corpus/rules/doc-example.yml" <<'YML'
id: encoded-powershell
version: 3
title: Encoded PowerShell command line
author: detection-team
rationale: -enc hides the script; this is PowerShell execution.
evidence_pattern: process.cmd_line contains -enc
effective_date: 2026-01-15
confidence: 0.8
match:
  all:
    - field: process.file.path
      suffix: \powershell.exe
    - any:
        - { field: process.cmd_line, contains: [" -enc ", " -encodedcommand "] }
        - { field: process.cmd_line, regex: "-e(nc?)?\\s+[A-Za-z0-9+/=]{20,}" }
    - not: { field: alert.user, in: [svc-deploy] }
techniques:
  - { id: T1059.001, tactic: execution }
  - T1059
YML
cat > "$corpus/rules/operators.json" <<'JSON'
{"id":"ops","version":1,"title":"operators","author":"fuzz","confidence":0.5,"match":{"any":[{"field":"alert.severity","equals":"high","case_sensitive":true},{"field":"severity_id","gte":4},{"field":"severity_id","lt":2.5},{"field":"metadata.product.name","prefix":["Micro","Sys"]},{"field":"unmapped.x","exists":false},{"field":"alert.analytic_uid","equals":"5cc90652-4cbd-4241-aa3b-4b462fa5a248"}]},"techniques":[{"id":"T1003.001","tactic":"TA0006"},"T1078"]}
JSON

# sigma: a few real rules from the 2026-01-01 pack (one flag byte first:
# odd imports deprecated rules too), including a deprecated one.
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
tar xzf "$shared/sigma/sigma-rules-c5e6d0ecd.tar.gz" -C "$tmp"
i=0
while IFS= read -r rule; do
    { printf '\x00'; cat "$rule"; } > "$corpus/sigma/rule-$i.yml"
    i=$((i + 1))
done < <(find "$tmp" -name '*.yml' -path '*process_creation*' | sort | head -8)
# Regression seed for the bug this target found (fuzz/README.md): a real rule
# with technique tags but without its title.
tagged="$(grep -l 'attack\.t[0-9]' "$corpus"/sigma/rule-*.yml | head -1)"
{ printf '\x00'; tail -c +2 "$tagged" | grep -v '^title:'; } > "$corpus/sigma/regression-untitled-rule.yml"
dep="$(find "$tmp" -name '*.yml' -path '*deprecated*' | sort | head -1)"
{ printf '\x01'; cat "$dep"; } > "$corpus/sigma/deprecated.yml"
echo "seeded: $(for t in stix alerts rules sigma; do printf '%s=%s ' "$t" "$(ls "$corpus/$t" | wc -l)"; done)"
