"""Generated alerts for the issue #7 checks, the idea of `nexus-attack bench
ingest`: the shared sample alerts, each copy with its own uid, host and time.

Alert `n` of run `run` is fully determined by (run, n), so a check can name
every uid of a batch without keeping the bodies, and a batch can be sent
again after a crash and must then count as duplicates, not new alerts.
"""

import datetime
import json

_UID = "@@uid@@"
_HOST = "@@host@@"
_TIME = "@@time@@"


def _set(doc, path, value):
    """Sets `path` in `doc` if every parent exists (absent keys stay absent,
    so OCSF, ECS and native samples each keep their own shape)."""
    at = doc
    for key in path[:-1]:
        if not isinstance(at, dict) or key not in at:
            return
        at = at[key]
    if isinstance(at, dict):
        at[path[-1]] = value


class AlertGenerator:
    """NDJSON lines built from sample alerts by string substitution (json
    encoding a million documents would cost more CPU than the server)."""

    def __init__(self, sample_path, run, days=30):
        self.run = run
        self.days = days
        # Times fall in the `days` days before now, so that the default
        # 30-day matrix shows the generated activity.
        self.now = int(datetime.datetime.now(datetime.timezone.utc).timestamp())
        self.templates = []
        with open(sample_path, encoding="utf-8") as sample:
            for line in sample:
                if not line.strip():
                    continue
                doc = json.loads(line)
                for path in (["finding_info", "uid"], ["metadata", "uid"], ["event", "id"], ["uid"]):
                    _set(doc, path, _UID)
                for path in (["device", "hostname"], ["host", "name"]):
                    _set(doc, path, _HOST)
                _set(doc, ["time_dt"], _TIME)
                _set(doc, ["@timestamp"], _TIME)
                self.templates.append(json.dumps(doc, separators=(",", ":")))
        if not self.templates:
            raise SystemExit(f"{sample_path} holds no JSON alert to vary")

    def uid(self, n):
        """The source uid of alert `n`."""
        return f"{self.run}-{n:08d}"

    def line(self, n):
        """Alert `n` as one NDJSON line (without the newline)."""
        seconds = self.now - 60 - (n * 7919) % (self.days * 86400 - 120)
        time = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
        return (
            self.templates[n % len(self.templates)]
            .replace(_UID, self.uid(n))
            .replace(_HOST, f"host-{n % 50000:05d}.bench.example")
            .replace(_TIME, time.strftime("%Y-%m-%dT%H:%M:%SZ"))
        )

    def body(self, first, count):
        """Alerts `first .. first + count` as one NDJSON body."""
        return ("\n".join(self.line(n) for n in range(first, first + count)) + "\n").encode()
