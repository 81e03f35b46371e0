"""One agent process of the chaos test: files escalated payments for a while and logs how each one ended.

    python chaos_agent.py URL CREDENTIAL AGENT POLICY LOG SECONDS

Every line of LOG is JSON, flushed and fsynced: `{"event": "ran", "rid": ...}` when the tool body runs
(written by the body itself, before it returns), and `{"event": "end", "rid": ..., "how": ...}` when the
gate returned or refused. A call whose submission failed has no request id and is logged as `unfiled`.
"""

from __future__ import annotations

import json
import os
import random
import sys
import threading
import time

from gatekit import Denied, Gate, load_policy


def main() -> None:
    url, credential, agent, policy, log_path, seconds = sys.argv[1:7]
    gate = Gate(load_policy(policy), mode="enforce", approvals=url, credential=credential, agent=agent,
                user=f"u-{agent}", timeout=15, poll=0.05)
    lock = threading.Lock()
    log = open(log_path, "a", encoding="utf-8")

    def write(**event: object) -> None:
        with lock:
            log.write(json.dumps(event) + "\n")
            log.flush()
            os.fsync(log.fileno())

    def worker(n: int) -> None:
        rng = random.Random(f"{agent}-{n}")
        end = time.monotonic() + float(seconds)
        i = 0
        while time.monotonic() < end:
            i += 1
            amount = rng.choice([150, 250, 400, 20000])
            call = {"tool": "payment.send", "args": {"amount": amount, "recipient": f"{agent}-{n}-{i}"}}
            try:
                pending = gate.submit(call)
            except Denied as exc:
                write(event="unfiled", code=exc.code)
                time.sleep(0.2)
                continue
            rid = pending.request_id

            def body(action: object, rid: str = rid) -> str:
                write(event="ran", rid=rid)
                return "paid"
            try:
                pending.run(body)
                write(event="end", rid=rid, how="executed")
            except Denied as exc:
                write(event="end", rid=rid, how=exc.code)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()


if __name__ == "__main__":
    main()
