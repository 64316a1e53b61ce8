#!/usr/bin/env bash
# Prepares a database for the issue #7 checks (bench/kill_ingest.sh and
# bench/load/run.sh): Enterprise 18.1 loaded, validated, approved by a
# second person and activated; one org with the first Sigma pack
# (sigma-rules-c5e6d0ecd) imported as mapping rules.
#
#   bash bench/setup_org.sh BIN DATABASE_URL ORG
set -euo pipefail

bin=$1
database=$2
org=$3
shared=${NEXUS_ATTACK_SHARED:-$(dirname "$0")/../../shared}

na() { "$bin" --database "$database" "$@"; }
json_field() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

id=$(na dataset load "$shared/attack/enterprise-attack-18.1.json.gz" --actor alice --json |
    json_field "['id']")
na dataset validate "$id" --actor alice >/dev/null
na dataset approve "$id" --actor bob >/dev/null
na dataset activate "$id" --actor bob >/dev/null
na org create "$org" >/dev/null
na rules import-sigma "$shared/sigma/sigma-rules-c5e6d0ecd.tar.gz" --org "$org" --actor erin \
    --json >/dev/null
echo "dataset $id active, org $org with sigma-rules-c5e6d0ecd" >&2
