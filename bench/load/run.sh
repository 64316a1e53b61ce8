#!/usr/bin/env bash
# Issue #7 check (b): 200 concurrent clients on loopback for 5 minutes,
# mixing bulk ingest, matrix and drilldown, against a release build serving
# a SQLite database with Enterprise 18.1 active, the first Sigma pack
# imported and alerts ingested. Needs wrk (Debian: apt-get install wrk).
#
#   bash bench/load/run.sh
#
# Environment: BIN (default target/release/nexus-attack), CLIENTS (200),
# DURATION seconds (300), ALERTS generated before the run (100000, on top
# of the 111 shared ones), BULK_LINES per bulk request (20), WORK folder
# (/tmp/nexus-load, emptied first), PORT (18472).
#
# Clients: 10% bulk ingest (engineer tokens), 60% matrix and 30% drilldown
# (analyst tokens); each client has a token of its own, so the per-token
# rate limit (50 requests/s, bursts of 100) stays at its default.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
bin=${BIN:-$here/../../target/release/nexus-attack}
shared=${NEXUS_ATTACK_SHARED:-$here/../../../shared}
clients=${CLIENTS:-200}
duration=${DURATION:-300}
alerts=${ALERTS:-100000}
bulk_lines=${BULK_LINES:-20}
work=${WORK:-/tmp/nexus-load}
port=${PORT:-18472}
sample=$shared/alerts/sigma-regression-alerts.ndjson
addr=127.0.0.1:$port

bulk_clients=$((clients / 10))
drilldown_clients=$((clients * 3 / 10))
matrix_clients=$((clients - bulk_clients - drilldown_clients))

rm -rf "$work"
mkdir -p "$work"
export NEXUS_ATTACK_DATABASE=sqlite://$work/load.db
na() { "$bin" "$@"; }
log() { echo "[$(date +%T)] $*" | tee -a "$work/report.txt"; }
secret() { na token create --org load --role "$1" --json | python3 -c "import json, sys; print(json.load(sys.stdin)['secret'])"; }

# The database: release, rules, the shared alerts and generated ones.
bash "$here/../setup_org.sh" "$bin" "$NEXUS_ATTACK_DATABASE" load 2>>"$work/report.txt"
na alerts ingest "$sample" --org load --json >/dev/null
BENCH_DIR=$here/.. python3 - "$sample" "$alerts" >"$work/generated.ndjson" <<'PY'
import os, sys
sys.dont_write_bytecode = True
sys.path.insert(0, os.environ["BENCH_DIR"])
from alertgen import AlertGenerator
generator = AlertGenerator(sys.argv[1], "seed")
for n in range(int(sys.argv[2])):
    print(generator.line(n))
PY
na alerts ingest "$work/generated.ndjson" --org load --json >/dev/null
rm "$work/generated.ndjson"
for _ in $(seq "$bulk_clients"); do secret engineer; done >"$work/tokens-engineer.txt"
for _ in $(seq $((matrix_clients + drilldown_clients))); do secret analyst; done >"$work/tokens-analyst.txt"
log "database ready: $(sqlite3 "$work/load.db" 'SELECT count(*) FROM alerts') alerts; $bulk_clients engineer and $((matrix_clients + drilldown_clients)) analyst tokens"

if curl -s "http://$addr/healthz" >/dev/null; then
    echo "$addr is already taken; set PORT" >&2
    exit 1
fi
"$bin" serve --addr "$addr" >"$work/serve.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
for _ in $(seq 300); do curl -sf "http://$addr/healthz" >/dev/null && break; sleep 0.1; done
python3 "$here/prepare.py" "$work" "$addr" "$(head -n 1 "$work/tokens-analyst.txt")" "$sample" | tee -a "$work/report.txt"

# One wrk per route group, all at once; a request may take up to 60 s
# before wrk counts it as a timeout.
wrk_group() {
    LOAD_KIND=$1 LOAD_DIR=$work LOAD_CONNECTIONS=$2 LOAD_BULK_LINES=$bulk_lines LOAD_RUN=load$(date +%s) \
        wrk -t "$3" -c "$2" -d "${duration}s" --timeout 60s -s "$here/route.lua" "http://$addr" \
        >"$work/wrk-$1.txt" 2>&1
}
log "load: $bulk_clients bulk ($bulk_lines lines each), $matrix_clients matrix, $drilldown_clients drilldown clients for $duration s"
alerts_before=$(sqlite3 "$work/load.db" 'SELECT count(*) FROM alerts')
wrk_group bulk "$bulk_clients" 2 &
bulk=$!
wrk_group matrix "$matrix_clients" 2 &
matrix=$!
wrk_group drilldown "$drilldown_clients" 2 &
drilldown=$!
# The server's CPU and memory every 10 s.
(
    while kill -0 "$matrix" 2>/dev/null; do
        echo "$(date +%T) $(ps -o rss=,pcpu= -p "$server") load $(cut -d' ' -f1-3 /proc/loadavg)"
        sleep 10
    done
) >"$work/server-samples.txt" &
wait "$bulk" "$matrix" "$drilldown"

log "results (latency in ms):"
for group in bulk matrix drilldown; do
    tail -n 1 "$work/wrk-$group.txt" | tee -a "$work/report.txt"
done
log "alerts stored during the run: $(($(sqlite3 "$work/load.db" 'SELECT count(*) FROM alerts') - alerts_before))"
log "server peak RSS: $(awk '/VmHWM/ { print $2 / 1024 " MiB" }' "/proc/$server/status"); status answers in the server log:"
grep -o 'request finished status=[0-9]*' "$work/serve.log" | sort | uniq -c | tee -a "$work/report.txt"
