"""Sender of bench/kill_ingest.sh: posts generated alerts to
POST /api/v1/alerts/bulk in batches from several connections at once and
records each acknowledged batch (a 2xx answer whose `accepted` count covers
every line) in the ack file, one line per batch: `batch first count accepted
ingested duplicates`.

When the server dies the in-flight requests fail; each is recorded in the
lost file and the sender stops. `--resume` sends only the batches the ack
file does not hold yet.
"""

import argparse
import http.client
import json
import os
import queue
import sys
import threading
import time

# No __pycache__ in the checkout.
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from alertgen import AlertGenerator  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--addr", required=True, help="host:port of the server")
    parser.add_argument("--token", required=True)
    parser.add_argument("--sample", required=True)
    parser.add_argument("--run", required=True, help="uid prefix shared by every alert of the run")
    parser.add_argument("--total", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--senders", type=int, default=2)
    parser.add_argument("--ack", required=True, help="file of acknowledged batches (appended)")
    parser.add_argument("--lost", required=True, help="file of requests that got no answer")
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()

    generator = AlertGenerator(args.sample, args.run)
    done = set()
    if args.resume and os.path.exists(args.ack):
        with open(args.ack, encoding="utf-8") as acked:
            done = {int(line.split()[0]) for line in acked if line.strip()}
    batches = queue.Queue()
    for index in range((args.total + args.batch - 1) // args.batch):
        if index not in done:
            batches.put(index)

    lock = threading.Lock()
    ack = open(args.ack, "a", encoding="utf-8")
    lost = open(args.lost, "a", encoding="utf-8")
    stop = threading.Event()
    host, port = args.addr.rsplit(":", 1)

    def sender():
        connection = http.client.HTTPConnection(host, int(port), timeout=600)
        while not stop.is_set():
            try:
                index = batches.get_nowait()
            except queue.Empty:
                return
            first = index * args.batch
            count = min(args.batch, args.total - first)
            body = generator.body(first, count)
            started = time.monotonic()
            try:
                connection.request(
                    "POST",
                    "/api/v1/alerts/bulk",
                    body=body,
                    headers={
                        "Authorization": f"Bearer {args.token}",
                        "Content-Type": "application/x-ndjson",
                    },
                )
                response = connection.getresponse()
                answer = response.read()
            except (OSError, http.client.HTTPException) as error:
                # The server died with this request in flight: it was never
                # acknowledged, so nothing about its alerts is promised.
                with lock:
                    lost.write(f"{index} {first} {count} {time.monotonic() - started:.3f} {error!r}\n")
                    lost.flush()
                stop.set()
                return
            if response.status // 100 != 2:
                with lock:
                    lost.write(f"{index} {first} {count} status {response.status} {answer[:200]!r}\n")
                    lost.flush()
                stop.set()
                return
            data = json.loads(answer)["data"]
            if data["accepted"] != count or data["rejected"] != 0:
                with lock:
                    lost.write(f"{index} {first} {count} partial {json.dumps(data)[:300]}\n")
                    lost.flush()
                continue
            with lock:
                ack.write(
                    f"{index} {first} {count} {data['accepted']} {data['ingested']} {data['duplicates']}\n"
                )
                ack.flush()

    threads = [threading.Thread(target=sender) for _ in range(args.senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ack.close()
    lost.close()


if __name__ == "__main__":
    main()
