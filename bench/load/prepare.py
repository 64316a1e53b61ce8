"""Inputs of the wrk clients of bench/load/run.sh, written to OUT:

- matrix-paths.txt: GET /api/v1/matrix with varied filters (time range,
  source, severity, band), seeded so every run asks the same questions;
- drilldown-paths.txt: GET /api/v1/matrix/drilldown of cells the matrix
  shows with activity, plain or with one of the filters above;
- bulk-templates.ndjson: the shared sample alerts with a `@@uid@@`
  placeholder that route.lua fills per line, hosts and times varied.

    python3 prepare.py OUT ADDR ANALYST_TOKEN SAMPLE
"""

import datetime
import http.client
import json
import os
import random
import sys

# No __pycache__ in the checkout.
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from alertgen import AlertGenerator  # noqa: E402

PAIRS = 400


def get(addr, token, path):
    host, port = addr.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=120)
    connection.request("GET", path, headers={"Authorization": f"Bearer {token}"})
    response = connection.getresponse()
    body = response.read()
    if response.status != 200:
        raise SystemExit(f"GET {path}: {response.status} {body[:300]!r}")
    return json.loads(body)["data"]


def filters(rng, today):
    """One random filter combination as query pairs."""
    pairs = []
    days = rng.choice([None, 1, 7, 14, 30, 90])
    if days is not None:
        pairs.append(("from", (today - datetime.timedelta(days=days)).isoformat()))
        if days > 3 and rng.random() < 0.3:
            pairs.append(("to", (today - datetime.timedelta(days=rng.choice([0, 1, 3]))).isoformat()))
    if rng.random() < 0.4:
        pairs.append(("severity", rng.choice(["high", "medium", "low", "high,medium", "critical,high"])))
    if rng.random() < 0.3:
        pairs.append(("source", rng.choice(["rule", "rule,ai", "manual,rule", "ai"])))
    if rng.random() < 0.3:
        pairs.append(("band", rng.choice(["high", "medium", "low,medium", "high,medium"])))
    return pairs


def query(pairs):
    return "&".join(f"{key}={value}" for key, value in pairs)


def main():
    out, addr, token, sample = sys.argv[1:5]
    rng = random.Random(7)
    today = datetime.datetime.now(datetime.timezone.utc).date() + datetime.timedelta(days=1)

    matrix = sorted({query(filters(rng, today)) for _ in range(PAIRS * 3)})[:PAIRS]
    with open(os.path.join(out, "matrix-paths.txt"), "w", encoding="utf-8") as paths:
        for q in matrix:
            paths.write(f"/api/v1/matrix?{q}\n" if q else "/api/v1/matrix\n")

    cells = [c for c in get(addr, token, "/api/v1/matrix")["cells"] if c["count"] > 0]
    if not cells:
        raise SystemExit("the matrix shows no activity: ingest alerts first")
    with open(os.path.join(out, "drilldown-paths.txt"), "w", encoding="utf-8") as paths:
        for _ in range(PAIRS):
            cell = rng.choice(cells)
            tactic = cell["tactic"] if rng.random() < 0.7 else cell["tactic_shortname"]
            pairs = [("tactic", tactic), ("technique", cell["technique"])]
            if rng.random() < 0.5:
                pairs += filters(rng, today)
            if rng.random() < 0.3:
                pairs.append(("limit", rng.choice([10, 100, 200])))
            paths.write(f"/api/v1/matrix/drilldown?{query(pairs)}\n")

    generator = AlertGenerator(sample, "@@uid@@")
    with open(os.path.join(out, "bulk-templates.ndjson"), "w", encoding="utf-8") as templates:
        for n in range(len(generator.templates) * 5):
            # uid(n) is "@@uid@@-NNNNNNNN": keep only the placeholder.
            templates.write(generator.line(n).replace(generator.uid(n), "@@uid@@") + "\n")
    print(f"{len(matrix)} matrix queries, {len(cells)} active cells, drilldowns and bulk templates in {out}")


if __name__ == "__main__":
    main()
