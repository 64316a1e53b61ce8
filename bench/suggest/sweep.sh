#!/bin/sh
# Parameter sweep over the Rust evaluation: one JSON config override a line.
B=${B:-/work/shared/attack/enterprise-attack-18.1.json.gz}
while read -r c; do
  printf '%s ' "$c"
  /work/main/target/release/examples/evaluate "$B" "$c" | python3 -c 'import json,sys; r=json.load(sys.stdin); print(*[f"{k[:12]}={r[k]:.4f}" for k in ["recall_at_1","recall_at_3","recall_at_5","parent_recall_at_1","ece","capped_share","build_seconds","suggestions_per_second"]])'
done
