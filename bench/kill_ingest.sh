#!/usr/bin/env bash
# Issue #7 check (a): SIGKILL the server in the middle of a bulk ingest,
# restart it on the same database, and check that every alert it
# acknowledged is stored, that no alert is half-mapped, and that the audit
# chain verifies. Then the unacknowledged batches are sent again and the
# same checks run on the complete run.
#
#   bash bench/kill_ingest.sh [sqlite|postgres]
#
# Environment: BIN (default target/release/nexus-attack), TOTAL alerts
# (1000000), BATCH lines per request (5000), SENDERS concurrent requests (2),
# KILL_AFTER acknowledged alerts before the kill (TOTAL / 2), WORK folder
# (/tmp/nexus-kill-ingest-BACKEND, emptied first), PORT (18471), PGURL
# server for the postgres case (postgres://postgres@127.0.0.1:5432), where a
# database of its own is created and dropped at the end.
set -euo pipefail

backend=${1:-sqlite}
here=$(cd "$(dirname "$0")" && pwd)
bin=${BIN:-$here/../target/release/nexus-attack}
shared=${NEXUS_ATTACK_SHARED:-$here/../../shared}
total=${TOTAL:-1000000}
batch=${BATCH:-5000}
senders=${SENDERS:-2}
kill_after=${KILL_AFTER:-$((total / 2))}
work=${WORK:-/tmp/nexus-kill-ingest-$backend}
port=${PORT:-18471}
pgurl=${PGURL:-postgres://postgres@127.0.0.1:5432}
sample=$shared/alerts/sigma-regression-alerts.ndjson
run=kill$(date +%s)

rm -rf "$work"
mkdir -p "$work"
case $backend in
sqlite) database=sqlite://$work/kill.db ;;
postgres)
    pgdb=nexus_kill_$$
    createdb -h 127.0.0.1 -U postgres "$pgdb"
    database=$pgurl/$pgdb
    ;;
*) echo "usage: $0 [sqlite|postgres]" >&2 && exit 2 ;;
esac
export NEXUS_ATTACK_DATABASE=$database
na() { "$bin" "$@"; }
log() { echo "[$(date +%T)] $*" | tee -a "$work/report.txt"; }

server=
serve() {
    if curl -s "http://127.0.0.1:$port/healthz" >/dev/null; then
        echo "127.0.0.1:$port is already taken; set PORT" >&2
        return 1
    fi
    # The binary itself, not a shell function, so that $! is the server.
    "$bin" serve --addr "127.0.0.1:$port" --audit-verify-interval 0 >>"$work/serve.log" 2>&1 &
    server=$!
    for _ in $(seq 300); do
        curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && return 0
        sleep 0.1
    done
    echo "the server did not come up, see $work/serve.log" >&2
    return 1
}
cleanup() {
    [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
    if [ "$backend" = postgres ]; then dropdb -h 127.0.0.1 -U postgres "$pgdb"; fi
}
trap cleanup EXIT

acked_alerts() { awk '{ n += $3 } END { print n + 0 }' "$work/ack"; }

# Every check row; all but the counts must read 0.
check() {
    python3 - "$work/ack" "$run" >"$work/acked.txt" <<'PY'
import sys
for line in open(sys.argv[1]):
    index, first, count = map(int, line.split()[:3])
    for n in range(first, first + count):
        print(f"{sys.argv[2]}-{n:08d}")
PY
    case $backend in
    sqlite)
        {
            echo "CREATE TEMP TABLE acked (uid TEXT PRIMARY KEY);"
            echo ".import $work/acked.txt acked"
            cat "$here/kill_ingest_checks.sql"
            echo "SELECT 'audit_ingested_minus_alerts', (SELECT coalesce(sum(json_extract(details, '\$.ingested')), 0)
                  FROM audit_log WHERE action = 'alert_ingest') - (SELECT count(*) FROM alerts);"
        } | sqlite3 -readonly "$work/kill.db"
        ;;
    postgres)
        {
            echo "CREATE TEMP TABLE acked (uid TEXT PRIMARY KEY);"
            echo "\\copy acked FROM '$work/acked.txt'"
            cat "$here/kill_ingest_checks.sql"
            echo "SELECT 'audit_ingested_minus_alerts', (SELECT coalesce(sum((details::jsonb->>'ingested')::bigint), 0)
                  FROM audit_log WHERE action = 'alert_ingest') - (SELECT count(*) FROM alerts);"
        } | psql -q -X -A -t -v ON_ERROR_STOP=1 "$database" | grep -v '^$'
        ;;
    esac | tee -a "$work/report.txt"
    na audit verify 2>&1 | tee -a "$work/report.txt"
}

log "backend $backend, $total alerts in batches of $batch from $senders connections, kill after $kill_after acknowledged"
bash "$here/setup_org.sh" "$bin" "$database" kill 2>>"$work/report.txt"
token=$(na token create --org kill --role engineer --json |
    python3 -c "import json, sys; print(json.load(sys.stdin)['secret'])")
serve

sender() {
    python3 "$here/kill_ingest.py" --addr "127.0.0.1:$port" --token "$token" --sample "$sample" \
        --run "$run" --total "$total" --batch "$batch" --senders "$senders" \
        --ack "$work/ack" --lost "$work/lost" "$@"
}
touch "$work/ack" "$work/lost"
started=$(date +%s.%N)
sender &
sending=$!
while [ "$(acked_alerts)" -lt "$kill_after" ] && kill -0 "$sending" 2>/dev/null; do sleep 0.2; done
# Into the middle of a request (a 5,000-line request takes two to three
# seconds and commits every 1,000 lines; with two connections one is always
# in flight), at a random point so that runs also catch a request with
# part of its lines committed.
sleep "$((RANDOM % 2)).$((RANDOM % 9 + 1))"
kill -KILL "$server"
wait "$server" 2>/dev/null || true
server=
killed=$(date +%s.%N)
wait "$sending" || true
log "SIGKILL after $(echo "$killed - $started" | bc) s: $(acked_alerts) alerts acknowledged in $(wc -l <"$work/ack") batches"
if [ -s "$work/lost" ]; then
    log "requests in flight at the kill (never acknowledged):"
    tee -a "$work/report.txt" <"$work/lost"
else
    log "WARNING: no request was in flight at the kill; raise TOTAL or lower KILL_AFTER"
fi

restart=$(date +%s.%N)
serve
log "restarted in $(echo "$(date +%s.%N) - $restart" | bc) s; checks after the kill:"
check

log "sending the batches never acknowledged again"
: >"$work/lost"
resumed=$(date +%s.%N)
sender --resume
log "resumed run took $(echo "$(date +%s.%N) - $resumed" | bc) s: $(acked_alerts) alerts acknowledged in $(wc -l <"$work/ack") batches; duplicates in resent batches: $(awk '{ d += $6 } END { print d + 0 }' "$work/ack")"
[ -s "$work/lost" ] && log "lost on resume:" && tee -a "$work/report.txt" <"$work/lost"
log "checks on the complete run:"
check
log "report in $work/report.txt"
