#!/usr/bin/env python3
"""How long from a rename-save of hal0.toml that adds an `autoload` slot until that slot leaves
`stopped`, as a client of /api/events sees it.

    e2e/bench/reload_latency.py [N]

Runs hal0 (HAL0_BIN, default target/release/hal0) on a fresh config in a temp dir with the fake
provider (FAKE_BIN, default target/release/hal0-fake-provider) as llama.cpp (or, with
MODEL=<gguf> LLAMA_SERVER=<llama-server>, the real one loading that model), then N times (default
30): write hal0.toml plus one more `[slots.sN] autoload = true` to a temp file, rename it over
hal0.toml, and time until /api/events reports sN in a phase other than `stopped`. Prints p50, p90
and max in ms, and hal0's log lines for the last edit (with timestamps) to show where the time
goes. Standard library only.
"""
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HAL0 = os.environ.get("HAL0_BIN", os.path.join(ROOT, "target/release/hal0"))
FAKE = os.environ.get("FAKE_BIN", os.path.join(ROOT, "target/release/hal0-fake-provider"))
N = int(sys.argv[1]) if len(sys.argv) > 1 else 30


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    d = tempfile.mkdtemp(prefix="hal0-reload-")
    port = free_port()
    lo = 30000 + (os.getpid() % 200) * 100
    model = os.environ.get("MODEL")
    if model:
        provider = ""  # the real llama-server (on PATH or [providers] in the default config)
        if os.environ.get("LLAMA_SERVER"):
            provider = f'[providers."llama.cpp"]\ncommand = ["{os.environ["LLAMA_SERVER"]}"]\n'
    else:
        model = os.path.join(d, "model.gguf")
        with open(model, "wb") as f:
            f.write(b"GGUF")
        provider = f'[providers."llama.cpp"]\ncommand = ["{FAKE}", "--load-delay", "60000"]\n'
    head = (
        f'[server]\nlisten = "127.0.0.1:{port}"\nport_range = [{lo}, {lo + N + 5}]\n'
        f'state_dir = "{d}/state"\nmodels_dir = "{d}/models"\n\n{provider}'
    )
    config = os.path.join(d, "hal0.toml")
    with open(config, "w") as f:
        f.write(head)
    log = open(os.path.join(d, "hal0.log"), "w")
    env = dict(os.environ, HAL0_LOG=os.environ.get("HAL0_LOG", "info"), NO_COLOR="1")
    hal0 = subprocess.Popen([HAL0, "serve", "--config", config], stderr=log, stdout=subprocess.DEVNULL, env=env)
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(base + "/health", timeout=1)
            break
        except Exception:
            time.sleep(0.05)

    seen = {}  # slot -> monotonic time it left stopped
    cond = threading.Condition()

    def follow():
        r = urllib.request.urlopen(base + "/api/events", timeout=3600)
        event = None
        for raw in r:
            line = raw.decode().rstrip("\n")
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:") and event in ("slot", "snapshot"):
                data = json.loads(line[5:])
                views = data["slots"] if event == "snapshot" else [data]
                now = time.monotonic()
                with cond:
                    for v in views:
                        if v.get("phase") != "stopped" and v["name"] not in seen:
                            seen[v["name"]] = now
                    cond.notify_all()

    threading.Thread(target=follow, daemon=True).start()
    time.sleep(0.5)
    text = head
    times = []
    for i in range(N):
        name = f"s{i}"
        text += f'\n[slots.{name}]\nprovider = "llama.cpp"\nmodel = "file:{model}"\nautoload = true\n'
        tmp = os.path.join(d, ".hal0.toml.swp")
        with open(tmp, "w") as f:
            f.write(text)
        t0 = time.monotonic()
        os.rename(tmp, config)
        with cond:
            if not cond.wait_for(lambda: name in seen, timeout=10):
                sys.exit(f"{name} did not leave stopped within 10 s; log in {d}/hal0.log")
            times.append((seen[name] - t0) * 1000)
        time.sleep(0.3)
    hal0.terminate()
    hal0.wait(timeout=30)
    times.sort()
    p = lambda q: times[min(len(times) - 1, int(q * len(times)))]
    print(f"rename-save -> autoload slot leaves stopped, {N} edits: "
          f"p50 {statistics.median(times):.1f} ms, p90 {p(0.9):.1f} ms, max {times[-1]:.1f} ms")
    print(f"hal0 {HAL0}; log: {d}/hal0.log")


if __name__ == "__main__":
    main()
