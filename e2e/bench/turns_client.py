#!/usr/bin/env python3
"""Clients for the turn-taking benchmark (e2e/bench/turns.sh).

    turns_client.py BASE_URL DURATION_S OUT.jsonl MODEL [MODEL ...]

One thread per MODEL sends chat completions for that model back to back (keep-alive, one
request at a time) for DURATION_S seconds. Every request is written to OUT.jsonl as
{"client", "start", "ms", "status", "code"}; a summary per client (answers, errors by status,
p50/p99 latency of answers and of every request) is printed as JSON on stdout.
Only the standard library: the benchmark needs nothing installed.
"""

import http.client
import json
import sys
import threading
import time
import urllib.parse


def percentile(values, q):
    if not values:
        return None
    s = sorted(values)
    k = min(len(s) - 1, max(0, int(round(q / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


def client(base, model, deadline, out, lock):
    url = urllib.parse.urlparse(base)
    conn = None
    body = json.dumps(
        {
            "model": model,
            "messages": [{"role": "user", "content": "Say hi"}],
            "max_tokens": 8,
            "temperature": 0,
        }
    )
    while time.monotonic() < deadline:
        if conn is None:
            conn = http.client.HTTPConnection(url.hostname, url.port, timeout=600)
        t0 = time.monotonic()
        status, code = 0, None
        try:
            conn.request(
                "POST",
                "/v1/chat/completions",
                body=body,
                headers={"Content-Type": "application/json"},
            )
            resp = conn.getresponse()
            data = resp.read()
            status = resp.status
            if status != 200:
                try:
                    code = json.loads(data)["error"].get("code")
                except (ValueError, KeyError, TypeError, AttributeError):
                    code = None
        except (OSError, http.client.HTTPException) as e:
            code = type(e).__name__
            conn.close()
            conn = None
        ms = (time.monotonic() - t0) * 1000.0
        with lock:
            out.write(
                json.dumps(
                    {"client": model, "start": t0, "ms": round(ms, 2), "status": status, "code": code}
                )
                + "\n"
            )
        if status != 200 and status != 0:
            # An error answer comes back at once; do not spin on it.
            time.sleep(0.2)


def main():
    base, duration, path = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    models = sys.argv[4:]
    deadline = time.monotonic() + duration
    lock = threading.Lock()
    with open(path, "w") as out:
        threads = [
            threading.Thread(target=client, args=(base, m, deadline, out, lock)) for m in models
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    rows = [json.loads(line) for line in open(path)]
    summary = {}
    for m in models:
        mine = [r for r in rows if r["client"] == m]
        ok = [r["ms"] for r in mine if r["status"] == 200]
        errors = {}
        for r in mine:
            if r["status"] != 200:
                key = f'{r["status"]} {r["code"]}'
                errors[key] = errors.get(key, 0) + 1
        summary[m] = {
            "requests": len(mine),
            "answers": len(ok),
            "errors": errors,
            "p50_ms": percentile(ok, 50),
            "p99_ms": percentile(ok, 99),
            "max_ms": max(ok) if ok else None,
            "p99_all_ms": percentile([r["ms"] for r in mine], 99),
        }
    every = [r["ms"] for r in rows if r["status"] == 200]
    summary["all"] = {
        "requests": len(rows),
        "answers": len(every),
        "p50_ms": percentile(every, 50),
        "p99_ms": percentile(every, 99),
        "max_ms": max(every) if every else None,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
