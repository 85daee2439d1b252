#!/usr/bin/env python3
"""Markdown tables from e2e/bench/run.sh's results.jsonl: medians over rounds, issue 14's targets
checked for both of hal0's paths (`hal0`: a local slot; `hal0-up`: an openai-compatible slot)."""

import json
import statistics
import sys
from collections import defaultdict


def med(xs):
    return statistics.median(xs) if xs else float("nan")


TARGETS = ("direct", "nginx", "hal0", "hal0-up")
HAL0 = ("hal0", "hal0-up")


def main(path):
    rows = [json.loads(line) for line in open(path) if line.strip()]
    machine = next(r for r in rows if r["kind"] == "machine")
    wrk = defaultdict(list)  # (c, target) -> [result]
    sse = defaultdict(list)
    for r in rows:
        if r["kind"] == "wrk":
            wrk[(r["c"], r["target"])].append(r)
        elif r["kind"] == "sse":
            sse[(r["c"], r["target"])].append(r)
    concs = sorted({c for c, _ in wrk} | {c for c, _ in sse})
    out = []
    p = out.append
    p(f"Machine: {machine['cpus']} CPUs ({machine['cpu']}), {machine['mem_mib']} MiB, "
      f"kernel {machine['kernel']}; {machine['nginx']}; {machine['wrk']}; "
      + (f"hal0 binary {machine['hal0_bin']} (HAL0_BIN; the tree was at {machine['git']}); "
         if machine.get("hal0_bin") else
         f"hal0 built from {machine['git']} ({machine['dirty_src_files']} uncommitted files under "
         f"src/ or Cargo.toml in the tree); ")
      + (f"hal0 environment: {machine['hal0_env']}; " if machine.get("hal0_env") else "")
      + (f"scheduling groups: {machine['sched_groups']}; " if machine.get("sched_groups") else
         "scheduling groups not recorded (before round 5 nginx ran daemonized, in a session and "
         "so an autogroup of its own); ")
      + f"load at start {' '.join(machine['load_at_start'])}.")
    p(f"wrk runs of {machine['duration_s']} s, {machine['rounds']} rounds, medians over rounds "
      f"(range in brackets).")
    p("")

    def cpu_us(r, who):
        c = r.get("cpu_ticks")
        if not c or who not in c or not r["r"]["requests"]:
            return float("nan")
        return c[who] / c["hz"] * 1e6 / r["r"]["requests"]

    def sched(r, who):
        """Run-queue wait of the proxy's threads in µs per request, and their preemptions per
        second (from /proc/*/task/*/schedstat and status; '—' for runs without them)."""
        x = (r.get("sched") or {}).get("nginx" if who == "nginx" else "hal0")
        if x is None or who == "direct" or not r["r"]["requests"]:
            return None
        secs = r["r"]["duration_us"] / 1e6
        return (x["wait_ns"] / 1000 / r["r"]["requests"], x["preempted"] / secs,
                x["wait_ns"] / 1000 / max(1, x["preempted"] + x.get("slept", 0)), x.get("slept", 0) / secs)

    def rps(r):
        return r["r"]["requests"] / r["r"]["duration_us"] * 1e6

    verdicts = []
    for c in concs:
        p(f"### {c} concurrent connection{'s' if c > 1 else ''}: small JSON POST")
        p("")
        p("| target | req/s | p50 ms | p99 ms | proxy CPU µs/req | upstream CPU µs/req "
          "| proxy run-queue wait µs/req (µs per switch) | proxy preemptions / sleeps per s "
          "| errors | load avg (1m) before runs |")
        p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        summary = {}
        for t in TARGETS:
            rs = wrk.get((c, t), [])
            if not rs:
                continue
            v = [rps(r) for r in rs]
            p50 = [r["r"]["p50_us"] / 1000 for r in rs]
            p99 = [r["r"]["p99_us"] / 1000 for r in rs]
            errs = sum(r["r"]["socket_errors"] + r["r"]["non2xx"] for r in rs)
            loads = ", ".join(r["load"].split()[0] for r in rs)
            summary[t] = (med(v), med(p50), med(p99), med([cpu_us(r, t) for r in rs]))
            pcpu = "—" if t == "direct" else f"{med([cpu_us(r, t) for r in rs]):.0f}"
            ucpu = f"{med([cpu_us(r, 'upstream') for r in rs]):.0f}"
            sch = [x for x in (sched(r, t) for r in rs) if x is not None]
            wait = f"{med([x[0] for x in sch]):.1f} ({med([x[2] for x in sch]):.0f})" if sch else "—"
            pre = f"{med([x[1] for x in sch]):,.0f} / {med([x[3] for x in sch]):,.0f}" if sch else "—"
            p(f"| {t} | {med(v):,.0f} [{min(v):,.0f}–{max(v):,.0f}] | {med(p50):.3f} | "
              f"{med(p99):.3f} [{min(p99):.3f}–{max(p99):.3f}] | {pcpu} | {ucpu} | {wait} | {pre} "
              f"| {errs} | {loads} |")
        p("")
        for h in HAL0:
            if "nginx" not in summary or h not in summary:
                continue
            ratio = summary[h][0] / summary["nginx"][0]
            dp99 = summary[h][2] - summary["nginx"][2]
            cpu_ratio = summary[h][3] / summary["nginx"][3]
            cpu_max = 1.3 if c == 1 else 1.0
            verdicts.append((f"c={c}: {h} proxy CPU µs/req ≤ {cpu_max}× nginx", cpu_ratio <= cpu_max,
                             f"{summary[h][3]:.1f} vs {summary['nginx'][3]:.1f} µs ({cpu_ratio:.2f}×)"))
            verdicts.append((f"c={c}: {h} req/s ≥ 90% of nginx", ratio >= 0.9,
                             f"{ratio:.0%} of nginx"))
            if c == 16:
                verdicts.append((f"c={c}: {h} p99 within 0.5 ms of nginx", dp99 <= 0.5,
                                 f"{h} p99 − nginx p99 = {dp99:+.3f} ms"))
        s = sse
        if any((c, t) in s for t in TARGETS):
            p(f"SSE, {c} concurrent stream{'s' if c > 1 else ''}: per-chunk transit "
              f"(upstream write → client read) and what each proxy adds to it")
            p("")
            p("| target | chunks | transit p50 ms | transit p99 ms | added p50 ms | added p99 ms "
              "| inter-arrival p99 ms | errors |")
            p("|---|---:|---:|---:|---:|---:|---:|---:|")
            base = s.get((c, "direct"), [])
            added = {}
            for t in TARGETS:
                rs = s.get((c, t), [])
                if not rs:
                    continue
                n = sum(r["r"]["transit_us"]["n"] for r in rs)
                t50 = med([r["r"]["transit_us"]["p50"] / 1000 for r in rs])
                t99 = med([r["r"]["transit_us"]["p99"] / 1000 for r in rs])
                g99 = med([r["r"]["gap_us"]["p99"] / 1000 for r in rs])
                errs = sum(r["r"]["errors"] for r in rs)
                if t == "direct" or not base:
                    a50 = a99 = "—"
                else:
                    # Same-round differences, then the median over rounds.
                    by_round = {r["round"]: r for r in base}
                    d50 = [(r["r"]["transit_us"]["p50"] - by_round[r["round"]]["r"]["transit_us"]["p50"]) / 1000
                           for r in rs if r["round"] in by_round]
                    d99 = [(r["r"]["transit_us"]["p99"] - by_round[r["round"]]["r"]["transit_us"]["p99"]) / 1000
                           for r in rs if r["round"] in by_round]
                    a50, a99 = f"{med(d50):+.3f}", f"{med(d99):+.3f}"
                    added[t] = med(d99)
                    if t in HAL0 and "nginx" in added:
                        limit = added["nginx"] + 0.1
                        verdicts.append((f"c={c}: {t} per-chunk added latency p99 ≤ nginx's + 0.1 ms",
                                         med(d99) <= limit,
                                         f"{med(d99):+.3f} ms vs nginx {added['nginx']:+.3f} ms"))
                p(f"| {t} | {n} | {t50:.3f} | {t99:.3f} | {a50} | {a99} | {g99:.3f} | {errs} |")
            p("")

    p("### Memory (VmRSS of the hal0 process; nginx = master + workers)")
    p("")
    p("| when | hal0 VmRSS MiB | of which anon / file-backed MiB | hal0 VmHWM MiB | hal0 threads | nginx RSS MiB | streams held | load avg |")
    p("|---|---:|---:|---:|---:|---:|---|---|")
    for r in rows:
        if r["kind"] != "rss":
            continue
        split = (f"{r['hal0_anon_kb'] / 1024:.1f} / {r['hal0_file_kb'] / 1024:.1f}"
                 if "hal0_anon_kb" in r else "—")
        p(f"| {r['phase']} | {r['hal0_rss_kb'] / 1024:.1f} | {split} | {r['hal0_hwm_kb'] / 1024:.1f} | "
          f"{r['hal0_threads']} | {r['nginx_rss_kb'] / 1024:.1f} | {r.get('held', '')} | {r['load']} |")
        if r["phase"] in ("streams_hal0", "streams_hal0-up"):
            mib = r["hal0_rss_kb"] / 1024
            via = "a local slot" if r["phase"] == "streams_hal0" else "the openai-compatible slot"
            verdicts.append((f"hal0 RSS < 40 MB with {machine['hold_streams']} open streams via {via}",
                             mib < 40 * 1e6 / 2**20, f"{mib:.1f} MiB ({r['hal0_rss_kb'] * 1024 / 1e6:.1f} MB)"))
        if r["phase"] == "streams_nginx":
            p(f"| (nginx with the same streams: {r['nginx_rss_kb'] / 1024:.1f} MiB = "
              f"{r['nginx_rss_kb'] * 1024 / 1e6:.1f} MB) | | | | | | | |")
    p("")
    p("### Targets")
    p("")
    p("| target | met? | measured |")
    p("|---|---|---|")
    for name, ok, what in verdicts:
        p(f"| {name} | {'met' if ok else '**missed**'} | {what} |")
    print("\n".join(out))


if __name__ == "__main__":
    main(sys.argv[1])
