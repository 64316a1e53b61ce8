#!/usr/bin/env bash
# Issue #6 matrix figures: the product's 30-day per-org matrix over HTTP on
# generated rollups (SQLite and PostgreSQL), then the same aggregation in
# SQLite, PostgreSQL and DuckDB over the same mappings, side by side.
#
#   ORGS=50 DAYS=90 ROWS=200 MAX_COUNT=20   the product's 10M-mapping run
#   DRILLDOWN=1 HOT_SHARE=0.1               it also stores every mapping as an
#                                           alert and times the drilldown of
#                                           each org's busiest cell (0: off)
#   CMP_MAX_COUNT=10                        the ~5M-mapping comparison run
#   BIN, WORK, PGURL (a server URL without database; databases of our own
#   are created and dropped), SHARED
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
BIN=${BIN:-$here/../../target/release/nexus-attack}
WORK=${WORK:-/tmp/nexus-matrix-bench}
PGURL=${PGURL:-postgres://postgres@127.0.0.1:5432}
SHARED=${SHARED:-$here/../../../shared}
ORGS=${ORGS:-50} DAYS=${DAYS:-90} ROWS=${ROWS:-200} MAX_COUNT=${MAX_COUNT:-20}
CMP_MAX_COUNT=${CMP_MAX_COUNT:-10} REQUESTS=${REQUESTS:-1000}
DRILLDOWN=${DRILLDOWN:-1} HOT_SHARE=${HOT_SHARE:-0.1}
product_args=()
if [ "$DRILLDOWN" = 1 ]; then product_args=(--drilldown --hot-share "$HOT_SHARE"); fi
rm -rf "$WORK" && mkdir -p "$WORK"

bench() { # database-url max-count extra-args...
  local url=$1 max=$2; shift 2
  "$BIN" --database "$url" matrix-bench --shared "$SHARED" --orgs "$ORGS" --days "$DAYS" \
    --rows-per-day "$ROWS" --max-count "$max" --requests "$REQUESTS" "$@"
}
pgdb() { psql -q "$PGURL/postgres" -c "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1"; }

echo "== product, ${ORGS} orgs x ${DAYS} days, max count ${MAX_COUNT}: SQLite" >&2
bench "sqlite://$WORK/product.db" "$MAX_COUNT" "${product_args[@]}" > "$WORK/product-sqlite.json"
rm -f "$WORK"/product.db*   # about 12 GB with the drilldown's alerts
echo "== product: PostgreSQL" >&2
pgdb nexus_matrix_bench
bench "$PGURL/nexus_matrix_bench" "$MAX_COUNT" "${product_args[@]}" > "$WORK/product-postgres.json"
psql -q "$PGURL/postgres" -c "DROP DATABASE nexus_matrix_bench"

echo "== comparison, max count ${CMP_MAX_COUNT}: product on SQLite, raw mappings to CSV" >&2
bench "sqlite://$WORK/compare.db" "$CMP_MAX_COUNT" --raw-csv "$WORK/raw.csv" \
  --view-json "$WORK/view.json" > "$WORK/product-compare.json"
python3 "$here/compare.py" --csv "$WORK/raw.csv" --view "$WORK/view.json" \
  --product "$WORK/product-compare.json" --pg "$PGURL/nexus_matrix_compare" \
  --work "$WORK" > "$WORK/compare.json"

for f in product-sqlite product-postgres compare; do echo "== $f"; cat "$WORK/$f.json"; done
