#!/usr/bin/env python3
"""The 30-day per-org matrix aggregation in SQLite, PostgreSQL and DuckDB
over the raw mappings `nexus-attack matrix-bench --raw-csv` wrote, timed
side by side, with each engine's answer checked against the product's.

Usage: compare.py --csv RAW.csv --view VIEW.json --product PRODUCT.json
                  [--pg postgres://...] [--queries 200] [--work DIR]

RAW.csv: org,ts,tactic,technique,source,severity,connector,platform,band,confidence
VIEW.json: the API's answer for the first org (`--view-json`), the
           reference every engine's per-cell counts must equal.
PRODUCT.json: matrix-bench's report (its p50/p95/p99 over HTTP).

Needs the Python packages duckdb and psycopg (pip install duckdb
'psycopg[binary]'); the PostgreSQL database named by --pg is dropped and
created again, so give it one of its own.
"""

import argparse
import datetime as dt
import json
import os
import random
import sqlite3
import sys
import time

import duckdb
import psycopg

# The product's default severity weights (docs/matrix.md).
WEIGHT = """CASE severity WHEN 'critical' THEN 3.0 WHEN 'fatal' THEN 3.0
  WHEN 'high' THEN 2.0 WHEN 'medium' THEN 1.0 WHEN 'low' THEN 0.5 ELSE 0.25 END"""

QUERY = f"""SELECT tactic, technique, COUNT(*) AS n,
  SUM({WEIGHT} * confidence) AS intensity,
  SUM(CASE WHEN band = 'low' THEN 1 ELSE 0 END) AS low
FROM mappings WHERE org = {{p}} AND ts >= {{p}} AND ts < {{p}}
GROUP BY tactic, technique"""


def quantile(sorted_ms, q):
    rank = max(1, min(len(sorted_ms), -(-int(q * len(sorted_ms) * 1000) // 1000)))
    return sorted_ms[rank - 1]


def figures(ms):
    ms = sorted(ms)
    return {"p50_ms": quantile(ms, 0.5), "p95_ms": quantile(ms, 0.95), "p99_ms": quantile(ms, 0.99)}


def time_queries(run, orgs, start, end, queries):
    rng = random.Random(11)
    ms = []
    for _ in range(queries):
        org = rng.choice(orgs)
        t0 = time.perf_counter()
        run(org, start, end)
        ms.append((time.perf_counter() - t0) * 1000)
    return ms


def cells_of(rows):
    return {(r[0], r[1]): int(r[2]) for r in rows}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--csv", required=True)
    ap.add_argument("--view", required=True)
    ap.add_argument("--product", required=True)
    ap.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432/nexus_matrix_compare")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--work", default="/tmp/nexus-matrix-compare")
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)

    view = json.load(open(args.view))["data"]
    product = json.load(open(args.product))
    f = view["filter"]
    start, end = f["from"] + " 00:00:00", f["to"] + " 00:00:00"
    # The reference: the product's cells, tactic as shortname.
    shortname = {t["id"]: t["shortname"] for t in view["tactics"]}
    reference = {(shortname[c["tactic"]], c["technique"]): c["count"] for c in view["cells"]}
    first_org = "bench-000"

    report = {"product_http": {k: product[k] for k in ("p50_ms", "p95_ms", "p99_ms")}}
    report["product_http"]["first_request_per_org"] = product["first_request_per_org"]

    # --- SQLite: rows in file order, a covering index on (org, ts, ...).
    path = os.path.join(args.work, "raw.sqlite")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    lite = sqlite3.connect(path)
    lite.execute("PRAGMA journal_mode=WAL")
    lite.execute("""CREATE TABLE mappings (org TEXT, ts TEXT, tactic TEXT, technique TEXT,
        source TEXT, severity TEXT, connector TEXT, platform TEXT, band TEXT, confidence REAL)""")
    t0 = time.perf_counter()
    with open(args.csv) as fh:
        lite.executemany("INSERT INTO mappings VALUES (?,?,?,?,?,?,?,?,?,?)",
                         (line.rstrip("\n").split(",") for line in fh))
    lite.execute("""CREATE INDEX mappings_cover ON mappings
        (org, ts, tactic, technique, severity, band, confidence)""")
    lite.commit()
    rows = lite.execute("SELECT COUNT(*), COUNT(DISTINCT org) FROM mappings").fetchone()
    print(f"sqlite: {rows[0]} mappings of {rows[1]} orgs loaded in {time.perf_counter() - t0:.0f}s",
          file=sys.stderr)
    orgs = [r[0] for r in lite.execute("SELECT DISTINCT org FROM mappings")]
    q_lite = QUERY.format(p="?")
    run = lambda org, s, e: lite.execute(q_lite, (org, s, e)).fetchall()
    check = cells_of(run(first_org, start, end))
    assert check == reference, "SQLite's cells differ from the product's"
    run(orgs[0], start, end)
    report["sqlite"] = figures(time_queries(run, orgs, start, end, args.queries))
    report["mappings"] = rows[0]

    # --- PostgreSQL: COPY, an index on (org, ts).
    admin, db = args.pg.rsplit("/", 1)
    with psycopg.connect(admin + "/postgres", autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{db}"')
        c.execute(f'CREATE DATABASE "{db}"')
    pg = psycopg.connect(args.pg, autocommit=True)
    pg.execute("""CREATE TABLE mappings (org TEXT, ts TIMESTAMP, tactic TEXT, technique TEXT,
        source TEXT, severity TEXT, connector TEXT, platform TEXT, band TEXT, confidence FLOAT8)""")
    t0 = time.perf_counter()
    with pg.cursor().copy("COPY mappings FROM STDIN (FORMAT csv)") as copy, open(args.csv, "rb") as fh:
        while chunk := fh.read(1 << 20):
            copy.write(chunk)
    pg.execute("CREATE INDEX mappings_org_ts ON mappings (org, ts)")
    pg.execute("VACUUM ANALYZE mappings")
    print(f"postgres: loaded in {time.perf_counter() - t0:.0f}s", file=sys.stderr)
    q_pg = QUERY.format(p="%s")
    parse = lambda s: dt.datetime.fromisoformat(s)
    run = lambda org, s, e: pg.execute(q_pg, (org, parse(s), parse(e)), prepare=True).fetchall()
    check = cells_of(run(first_org, start, end))
    assert check == reference, "PostgreSQL's cells differ from the product's"
    run(orgs[0], start, end)
    report["postgres"] = figures(time_queries(run, orgs, start, end, args.queries))
    pg.close()
    with psycopg.connect(admin + "/postgres", autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{db}"')

    # --- DuckDB: a table sorted by org and time, so zone maps skip the rest.
    duck = duckdb.connect(os.path.join(args.work, "raw.duckdb"))
    duck.execute("DROP TABLE IF EXISTS mappings")
    t0 = time.perf_counter()
    duck.execute(f"""CREATE TABLE mappings AS SELECT * FROM read_csv('{args.csv}', header=false,
        columns={{'org':'VARCHAR','ts':'TIMESTAMP','tactic':'VARCHAR','technique':'VARCHAR',
        'source':'VARCHAR','severity':'VARCHAR','connector':'VARCHAR','platform':'VARCHAR',
        'band':'VARCHAR','confidence':'DOUBLE'}}) ORDER BY org, ts""")
    print(f"duckdb: loaded in {time.perf_counter() - t0:.0f}s", file=sys.stderr)
    q_duck = QUERY.format(p="?")
    run = lambda org, s, e: duck.execute(q_duck, (org, parse(s), parse(e))).fetchall()
    check = cells_of(run(first_org, start, end))
    assert check == reference, "DuckDB's cells differ from the product's"
    run(orgs[0], start, end)
    report["duckdb"] = figures(time_queries(run, orgs, start, end, args.queries))
    duck.close()

    duck_p50 = report["duckdb"]["p50_ms"]
    for name in ("product_http", "sqlite", "postgres", "duckdb"):
        report[name]["p50_vs_duckdb"] = round(report[name]["p50_ms"] / duck_p50, 3)
    report["cells_checked"] = len(reference)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
