"""Start-up time of ``python app.py``: seconds from the process start to the first HTTP 200 (target <= 8 s).

Each repeat starts the app on a fresh workspace and a free loopback port and polls its page. Baseline in
the same run: a process that only imports torch and gradio (what any start pays before app code runs),
so the ratio says how much the app itself adds. ``--before DIR`` also starts the app of another checkout
(e.g. ``git archive <commit> | tar -x -C DIR``) with the same Python, interleaved with this one, for a
before/after in one run. Prints the CPU (from /proc/cpuinfo) and the load.

Usage: python bench/app_startup.py [--repeats 3] [--before DIR] [app.py arguments, e.g. --model DIR]
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc); steadier than wall time on a busy machine."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def first_200(url: str, process: subprocess.Popen, start: float, limit: float = 120.0) -> tuple[float, float]:
    """(wall seconds from ``start``, the process's CPU seconds) when ``url`` first answers 200 (polled every 50 ms)."""
    while time.perf_counter() - start < limit:
        if process.poll() is not None:
            raise RuntimeError(f"app exited with code {process.returncode} before serving")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return time.perf_counter() - start, cpu_seconds(process.pid)
        except OSError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"no HTTP 200 from {url} within {limit:.0f} s")


def app_start(extra: list[str], root: Path = ROOT) -> tuple[float, float]:
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as ws:
        start = time.perf_counter()
        process = subprocess.Popen([sys.executable, "app.py", "--port", str(port), "--workspace", ws, *extra],
                                   cwd=root, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            return first_200(f"http://127.0.0.1:{port}/", process, start)
        finally:
            process.terminate()
            process.wait(30)


def imports_only() -> tuple[float, float]:
    start = time.perf_counter()
    before = os.times()
    subprocess.run([sys.executable, "-c", "import torch, gradio"], cwd=ROOT, env=ENV, check=True)
    after = os.times()
    return time.perf_counter() - start, (after.children_user + after.children_system
                                         - before.children_user - before.children_system)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--before", type=Path, default=None, help="another checkout whose app.py is timed alongside")
    args, extra = parser.parse_known_args()
    load = os.getloadavg()[0]
    rows = [("import torch + gradio only (baseline)", []), ("python app.py -> first HTTP 200", [])]
    if args.before:
        rows.append((f"  before: {args.before}", []))
    for _ in range(args.repeats):  # interleaved, so a change in load hits every row alike
        rows[0][1].append(imports_only())
        rows[1][1].append(app_start(extra))
        if args.before:
            rows[2][1].append(app_start(extra, args.before))
    print(f"{cpu_name()}, {os.cpu_count()} CPUs, load average {load:.2f} at start, {os.getloadavg()[0]:.2f} at end; "
          f"app arguments: {' '.join(extra) or '(defaults)'}")
    print(f"{'measurement':40s} {'best wall s':>11s} {'median wall s':>13s} {'best cpu s':>10s}  all wall s")
    best = {}
    for name, times in rows:
        walls = sorted(w for w, _ in times)
        best[name] = (walls[0], min(c for _, c in times))
        print(f"{name:40s} {walls[0]:11.2f} {walls[len(walls) // 2]:13.2f} {best[name][1]:10.2f}  "
              f"{', '.join(f'{w:.2f}' for w, _ in times)}")
    (_, base), (_, now) = best[rows[0][0]], best[rows[1][0]]
    print(f"ratio app / baseline (best wall {best[rows[1][0]][0] / best[rows[0][0]][0]:.2f}x, "
          f"best cpu {now / base:.2f}x)")
    if args.before:
        then = best[rows[2][0]]
        print(f"ratio before / now (best wall {then[0] / best[rows[1][0]][0]:.2f}x, best cpu {then[1] / now:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
