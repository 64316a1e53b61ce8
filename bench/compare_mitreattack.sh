#!/usr/bin/env bash
# Side-by-side figures: nexus-attack's taxonomy crate vs mitreattack-python,
# on the same ATT&CK Enterprise files, in the same run.
#
#   bench/compare_mitreattack.sh
#
# Tasks: load 18.1; list every live technique with its tactics; the
# 17.1 -> 18.1 changelog; and Python's bare json.load of 18.1 for scale.
# Each task runs in its own process under /usr/bin/time -v (wall clock and
# peak RSS of that process, start-up included); the task's own time, measured
# inside the process, is printed beside it.
#
# mitreattack-python lives in a throwaway virtualenv outside the repository
# (MITRE_VENV, default /tmp/mitre-venv), installed on first use from PyPI; it
# is not a project dependency. It reads plain JSON files, so the gzipped
# releases are decompressed to a temporary directory first (not timed); the
# Rust side reads the .json.gz bytes and gunzips in the timed section.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${NEXUS_ATTACK_SHARED:-$ROOT/../shared}
VENV=${MITRE_VENV:-/tmp/mitre-venv}
OLD_GZ=$SHARED/attack/enterprise-attack-17.1.json.gz
NEW_GZ=$SHARED/attack/enterprise-attack-18.1.json.gz
TASKS=$ROOT/bench/mitreattack_tasks.py

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

if ! "$VENV/bin/python" -c 'import mitreattack' 2>/dev/null; then
    echo "installing mitreattack-python into $VENV ..." >&2
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet mitreattack-python
fi
PY=$VENV/bin/python
DIFF_STIX=$VENV/bin/diff_stix

mkdir -p "$WORK/old" "$WORK/new" "$WORK/out"
gzip -dc "$OLD_GZ" > "$WORK/old/enterprise-attack.json"
gzip -dc "$NEW_GZ" > "$WORK/new/enterprise-attack.json"

(cd "$ROOT" && cargo build --release --quiet -p taxonomy --example measure)
MEASURE=$ROOT/target/release/examples/measure

# run NAME CMD...: runs CMD under /usr/bin/time -v; sets WALL (s), RSS_MB and
# OUT (the command's stdout).
run() {
    local name=$1
    shift
    if ! /usr/bin/time -v -o "$WORK/$name.time" "$@" > "$WORK/$name.out" 2> "$WORK/$name.err"; then
        echo "$name failed:" >&2
        cat "$WORK/$name.err" >&2
        exit 1
    fi
    WALL=$(awk -F': ' '/Elapsed \(wall clock\)/ {
        n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; printf "%.3f", s }' \
        "$WORK/$name.time")
    RSS_MB=$(awk -F': ' '/Maximum resident set size/ { printf "%.1f", $2 / 1024 }' "$WORK/$name.time")
    OUT=$(cat "$WORK/$name.out")
}

# value KEY: the `KEY=...` figure from OUT (measure's or the Python tasks').
value() {
    grep -o "$1=[0-9.]*" <<< "$OUT" | head -n 1 | cut -d= -f2
}

ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.1fx", a / b; else print "n/a" }'
}

printf '%-34s %12s %10s %12s\n' "task" "task time s" "wall s" "peak RSS MB"
row() {
    printf '%-34s %12s %10s %12s\n' "$1" "$2" "$3" "$4"
}

run rust_load "$MEASURE" "$NEW_GZ"
R_LOAD=$(value parse_validate_seconds); R_LIST=$(value list_seconds)
R_LOAD_WALL=$WALL; R_LOAD_RSS=$RSS_MB
row "rust parse+validate 18.1 (gz)" "$R_LOAD" "$WALL" "$RSS_MB"
row "rust list techniques+tactics" "$R_LIST" "-" "-"

run rust_diff "$MEASURE" "$NEW_GZ" "$OLD_GZ"
R_DIFF=$(value diff_markdown_seconds)
R_DIFF_WALL=$WALL; R_DIFF_RSS=$RSS_MB
row "rust changelog 17.1->18.1" "$R_DIFF" "$WALL" "$RSS_MB"

run py_json "$PY" "$TASKS" jsonload "$WORK/new/enterprise-attack.json"
P_JSON=$(value seconds)
row "python json.load 18.1" "$P_JSON" "$WALL" "$RSS_MB"

run py_load "$PY" "$TASKS" load "$WORK/new/enterprise-attack.json"
P_LOAD=$(value seconds)
P_LOAD_WALL=$WALL; P_LOAD_RSS=$RSS_MB
row "mitreattack load 18.1" "$P_LOAD" "$WALL" "$RSS_MB"

run py_list "$PY" "$TASKS" list "$WORK/new/enterprise-attack.json"
P_LIST=$(value seconds)
row "mitreattack list techniques" "$P_LIST" "$WALL" "$RSS_MB"

run py_diff "$DIFF_STIX" --old "$WORK/old" --new "$WORK/new" --domains enterprise-attack \
    --markdown-file "$WORK/out/changelog.md" --json-file "$WORK/out/changelog.json" \
    --no-contributors
P_DIFF_WALL=$WALL; P_DIFF_RSS=$RSS_MB
row "mitreattack diff_stix 17.1->18.1" "$WALL" "$WALL" "$RSS_MB"

run py_check "$PY" "$TASKS" changelog-check "$WORK/out/changelog.json"
echo
echo "answers: rust $(grep -o '[0-9]* techniques added' "$WORK/rust_diff.out"); mitreattack $OUT"
echo
echo "ratios (mitreattack-python / rust):"
echo "  load 18.1:        time $(ratio "$P_LOAD" "$R_LOAD") (task), $(ratio "$P_LOAD_WALL" "$R_LOAD_WALL") (process wall), memory $(ratio "$P_LOAD_RSS" "$R_LOAD_RSS")"
echo "  list techniques:  time $(ratio "$P_LIST" "$R_LIST") (task)"
echo "  changelog:        time $(ratio "$P_DIFF_WALL" "$R_DIFF_WALL") (process wall, both parse included), memory $(ratio "$P_DIFF_RSS" "$R_DIFF_RSS")"
echo "  bare json.load vs rust parse+validate: $(ratio "$P_JSON" "$R_LOAD")"
