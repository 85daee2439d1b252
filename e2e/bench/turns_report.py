#!/usr/bin/env python3
"""Markdown report of a turn-taking benchmark run: turns_report.py RESULTS.jsonl

Prints one table row per scenario and checks issue 10's targets for the "hal0" scenario
against the "router" one: >= 5x fewer loads, >= 3x the answers, each client >= 40% of the
answers, p99 below max_wait plus one (mean) load.
"""

import json
import re
import sys

DEFAULT_MAX_WAIT_S = 60.0


def seconds(text):
    """'60s', '1m30s', '500ms' -> seconds."""
    total = 0.0
    for num, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text):
        total += float(num) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    return total


def fmt(ms):
    return "-" if ms is None else (f"{ms / 1000:.2f} s" if ms >= 1000 else f"{ms:.0f} ms")


rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
meta = next((r for r in rows if r.get("kind") == "meta"), {})
runs = {r["scenario"]: r for r in rows if "scenario" in r}
print(
    f"{meta.get('duration_s')} s per scenario, two clients back to back, --threads {meta.get('threads')}, "
    f"{meta.get('nproc')} CPUs; hal0 {meta.get('git')} (dirty files: {meta.get('dirty')}); "
    f"{meta.get('llama_server')}\n"
)
print("| scenario | loads | answers alpha / beta (share) | errors | p50 | p99 | max | load avg before |")
print("|---|---|---|---|---|---|---|---|")
for name, r in runs.items():
    s = r["summary"]
    a, b = s["alpha"]["answers"], s["beta"]["answers"]
    total = a + b
    share = f"{100 * min(a, b) / total:.0f}% min" if total else "-"
    errors = {}
    for c in ("alpha", "beta"):
        for k, v in s[c]["errors"].items():
            errors[k] = errors.get(k, 0) + v
    err = ", ".join(f"{v}x {k}" for k, v in errors.items()) or "none"
    label = name
    if "min_residency" in r:
        label += f" (min_residency {r['min_residency']}, max_wait {r['max_wait']})"
    print(
        f"| {label} | {r['loads']} | {a} / {b} ({share}) | {err} | {fmt(s['all']['p50_ms'])} | "
        f"{fmt(s['all']['p99_ms'])} | {fmt(s['all']['max_ms'])} | {r['load_before']} |"
    )

hal0, router = runs.get("hal0"), runs.get("router")
if hal0 and router:
    s, rs = hal0["summary"], router["summary"]
    a, b = s["alpha"]["answers"], s["beta"]["answers"]
    mw = hal0.get("max_wait", "default")
    max_wait = DEFAULT_MAX_WAIT_S if mw == "default" else seconds(mw)
    load_s = hal0["load_s_sum"] / hal0["load_count"] if hal0.get("load_count") else 0.0
    p99 = (s["all"]["p99_ms"] or 0) / 1000
    checks = [
        ("loads at least 5x fewer than the router",
         hal0["loads"] * 5 <= router["loads"], f"{hal0['loads']} vs {router['loads']}"),
        ("answers at least 3x the router's",
         s["all"]["answers"] >= 3 * rs["all"]["answers"],
         f"{s['all']['answers']} vs {rs['all']['answers']}"),
        ("each client at least 40% of the answers",
         a + b > 0 and min(a, b) >= 0.4 * (a + b), f"alpha {a}, beta {b}"),
        ("p99 below max_wait plus one load",
         p99 < max_wait + load_s, f"p99 {p99:.2f} s vs {max_wait:.0f} s + {load_s:.2f} s"),
    ]
    print("\nTargets (hal0 vs router):\n")
    for what, ok, detail in checks:
        print(f"- {'met' if ok else 'MISSED'}: {what} ({detail})")
