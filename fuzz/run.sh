#!/usr/bin/env bash
# Runs one fuzz target with the project's standard limits and keeps its log.
#
#   bash fuzz/run.sh stix|alerts|rules|sigma [SECONDS]   (default 600)
#
# Needs cargo-fuzz and the nightly toolchain; seeds come from fuzz/seed.sh.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
target="${1:?usage: run.sh TARGET [SECONDS]}"
seconds="${2:-600}"
case "$target" in
    stix) max_len=65536 ;;
    *) max_len=16384 ;;
esac

cd "$here"
[[ -d "corpus/$target" ]] || bash seed.sh
mkdir -p logs
# nice: the machine is shared; rss and timeout limits turn a blow-up or a hang
# into a reported crash instead of a stuck run.
nice -n 15 cargo +nightly fuzz run "$target" "corpus/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -max_len="$max_len" \
    -print_final_stats=1 2>&1 | tee "logs/$target.log" | grep -E 'INITED|DONE|ERROR|SUMMARY|panicked|stat::' || true
