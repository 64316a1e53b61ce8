"""One timed mitreattack-python (or bare json) task, for compare_mitreattack.sh.

Each task runs in its own process under /usr/bin/time -v so its peak memory
is its own. Prints one line: `TASK seconds=<s>` (the task alone, after
imports) plus a short result check so a wrong answer shows.

usage:
  mitreattack_tasks.py jsonload FILE.json
  mitreattack_tasks.py load FILE.json
  mitreattack_tasks.py list FILE.json
  mitreattack_tasks.py changelog-check CHANGELOG.json

The changelog itself is timed by running mitreattack-python's `diff_stix`
tool directly from the shell script; `changelog-check` only reads its JSON.
"""

import json
import sys
import time


def jsonload(path):
    start = time.perf_counter()
    with open(path, encoding="utf-8") as f:
        bundle = json.load(f)
    elapsed = time.perf_counter() - start
    print(f"jsonload seconds={elapsed:.3f} objects={len(bundle['objects'])}")


def load(path):
    from mitreattack.stix20 import MitreAttackData

    start = time.perf_counter()
    data = MitreAttackData(stix_filepath=path)
    elapsed = time.perf_counter() - start
    techniques = data.get_techniques(remove_revoked_deprecated=True)
    print(f"load seconds={elapsed:.3f} live_attack_patterns={len(techniques)}")


def list_techniques(path):
    from mitreattack.stix20 import MitreAttackData

    data = MitreAttackData(stix_filepath=path)
    start = time.perf_counter()
    rows = []
    for technique in data.get_techniques(remove_revoked_deprecated=True):
        tactics = data.get_tactics_by_technique(technique["id"])
        rows.append((data.get_attack_id(technique["id"]), [t["x_mitre_shortname"] for t in tactics]))
    elapsed = time.perf_counter() - start
    print(f"list seconds={elapsed:.3f} techniques={len(rows)}")




def changelog_check(path):
    with open(path, encoding="utf-8") as f:
        report = json.load(f)
    techniques = report.get("enterprise-attack", {}).get("techniques", {})
    print(f"changelog technique additions={len(techniques.get('additions', []))}")


def main():
    task, *args = sys.argv[1:]
    tasks = {
        "jsonload": jsonload,
        "load": load,
        "list": list_techniques,
        "changelog-check": changelog_check,
    }
    tasks[task](*args)


if __name__ == "__main__":
    main()
