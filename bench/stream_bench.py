"""Streaming benchmark: the real server (gunicorn, gevent workers) against the fake provider.

For each concurrency level, N clients each send one message and read the whole SSE answer
(`chunks` chunks, `delay` ms apart). The same streams sent straight to the fake provider are the
baseline. Reported: time to first content (p50/p99), total stream time (p50), server CPU per stream,
server RSS, errors; also idle RSS per worker and start-up time to healthy. Each level runs `--repeat`
times and the medians are reported (the machine is shared and noisy).

    .venv/bin/python bench/stream_bench.py --levels 1,50,200 --repeat 3
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402
import requests  # noqa: E402
from requests.adapters import HTTPAdapter  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.fake_provider import FakeProvider  # noqa: E402
from tests.live_server import LiveServer  # noqa: E402

PASSWORD = "bench-password-1"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def _session(pool: int) -> requests.Session:
    http = requests.Session()
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool)
    http.mount("http://", adapter)
    return http


def minor_faults(pids: list[int]) -> int:
    """Minor page faults of these processes (fresh memory being touched)."""
    total = 0
    for pid in pids:
        try:
            total += int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[7])
        except (OSError, IndexError, ValueError):
            continue
    return total


def cpu_times(pids: list[int]) -> tuple[float, float]:
    """(user, system) CPU seconds of these processes."""
    user = system = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        user, system = user + int(fields[11]), system + int(fields[12])
    return user / CLK_TCK, system / CLK_TCK


def io_counts(pids: list[int]) -> dict[str, int]:
    """Read and write system calls of these processes (sockets and files alike)."""
    totals = {"syscr": 0, "syscw": 0}
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/io").read_text().splitlines():
                name, _, value = line.partition(": ")
                if name in totals:
                    totals[name] += int(value)
        except OSError:
            continue
    return totals


def cpu_seconds(pids: list[int]) -> float:
    return sum(cpu_times(pids))


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def one_server_stream(http, url: str, headers: dict, session_id: int) -> tuple[float, float, bool]:
    """(time to first content, total time, ok) for one /api/chat/stream request."""
    started = time.perf_counter()
    first = None
    ok = False
    with http.post(url + "/api/chat/stream", headers=headers, json={"sessionId": session_id, "content": "bench"},
                   stream=True, timeout=120) as response:
        if response.status_code != 200:
            return float("nan"), float("nan"), False
        for line in response.iter_lines():
            if first is None and line.startswith(b'data: {"type":"content"'):
                first = time.perf_counter() - started
            if line == b"data: [DONE]":
                ok = True
                break
            if line.startswith(b'data: {"type":"error"'):
                ok = False
    return (first if first is not None else float("nan")), time.perf_counter() - started, ok and first is not None


def one_direct_stream(http, base: str, model: str) -> tuple[float, float, bool]:
    """The same stream straight from the fake provider (the baseline)."""
    started = time.perf_counter()
    first = None
    ok = False
    body = {"model": model, "stream": True, "messages": [{"role": "user", "content": "bench"}]}
    with http.post(base + "/chat/completions", json=body, stream=True, timeout=120) as response:
        for line in response.iter_lines():
            if first is None and b'"content"' in line:
                first = time.perf_counter() - started
            if line == b"data: [DONE]":
                ok = True
                break
    return (first if first is not None else float("nan")), time.perf_counter() - started, ok


def run_level(fn, args_list: list[tuple]) -> dict:
    started = time.perf_counter()
    jobs = [gevent.spawn(fn, *args) for args in args_list]
    gevent.joinall(jobs)
    wall = time.perf_counter() - started
    results = [job.value if job.successful() else (float("nan"), float("nan"), False) for job in jobs]
    firsts = [r[0] for r in results if r[2]]
    totals = [r[1] for r in results if r[2]]
    return {
        "first_content_p50_ms": percentile(firsts, 0.5) * 1000,
        "first_content_p99_ms": percentile(firsts, 0.99) * 1000,
        "total_p50_ms": percentile(totals, 0.5) * 1000,
        "errors": sum(1 for r in results if not r[2]),
        "wall_s": wall,
    }


def setup(server: LiveServer, fake: FakeProvider, model: str, sessions: int) -> tuple[dict, list[int]]:
    http = requests.Session()
    token = http.post(server.url + "/api/auth/register", json={"username": "bench", "password": PASSWORD},
                      timeout=10).json()["data"]["token"]
    headers = {"Authorization": f"Bearer {token}"}
    created = http.post(server.url + "/api/connections", headers=headers, timeout=10, json={
        "displayName": "Fake", "provider": "openai", "baseUrl": fake.openai_base_url, "authType": "bearer",
        "apiKey": "sk-bench-0001", "modelIds": [model]})
    created.raise_for_status()
    settings = http.put(server.url + "/api/settings/system", headers=headers, timeout=10,
                        json={"chat_max_concurrent_streams": max(sessions, 1)})
    settings.raise_for_status()
    ids = []
    for _ in range(sessions):
        reply = http.post(server.url + "/api/sessions", headers=headers, json={"modelId": model}, timeout=10)
        reply.raise_for_status()
        ids.append(reply.json()["data"]["id"])
    return headers, ids


def median_of(runs: list[dict]) -> dict:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", default="1,50,200")
    parser.add_argument("--chunks", type=int, default=50)
    parser.add_argument("--delay", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (the default deployment: 2)")
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    model = f"fake-bench@chunks={args.chunks},delay={args.delay}"
    report: dict = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "levels": {}}

    fake = FakeProvider().start()
    data_dir = Path(tempfile.mkdtemp(prefix="parley-bench-")) / "data"
    server = LiveServer(data_dir, workers=args.workers, env={"LOG_LEVEL": "WARNING"})
    report["startup_to_healthy_s"] = server.start(timeout=30)
    try:
        workers = server.worker_pids()
        time.sleep(1.0)
        report["idle_rss_mb_per_worker"] = max(rss_mb(pid) for pid in workers)
        headers, session_ids = setup(server, fake, model, max(levels))
        http = _session(max(levels) + 10)
        # Warm-up, a few streams at once so that every worker loads its tokenizer, pools and catalog
        # before anything is measured.
        run_level(one_server_stream, [(http, server.url, headers, sid) for sid in session_ids[:4 * args.workers]])
        pids = [server.process.pid, *workers]
        for level in levels:
            server_runs, direct_runs = [], []
            for _ in range(args.repeat):
                fake_before = cpu_seconds([fake._proc.pid])
                direct = run_level(one_direct_stream, [(http, fake.openai_base_url, model)] * level)
                direct["provider_cpu_ms_per_stream"] = (cpu_seconds([fake._proc.pid]) - fake_before) * 1000 / level
                direct_runs.append(direct)
                io_before, faults_before = io_counts(workers), minor_faults(workers)
                user_before, system_before = cpu_times(pids)
                run = run_level(one_server_stream, [(http, server.url, headers, sid) for sid in session_ids[:level]])
                user_after, system_after = cpu_times(pids)
                user_ms, system_ms = (user_after - user_before) * 1000, (system_after - system_before) * 1000
                run["server_cpu_ms_per_stream"] = (user_ms + system_ms) / level
                run["server_system_cpu_ms_per_stream"] = system_ms / level
                io_after = io_counts(workers)
                run["server_minor_faults_per_stream"] = (minor_faults(workers) - faults_before) / level
                for name in io_after:
                    run[f"server_{name}_per_stream"] = (io_after[name] - io_before[name]) / level
                run["server_rss_mb"] = sum(rss_mb(pid) for pid in workers)
                server_runs.append(run)
                gevent.sleep(0.5)
            report["levels"][level] = {"server": median_of(server_runs), "direct": median_of(direct_runs)}
            print(json.dumps({level: report["levels"][level]}, indent=1), flush=True)
    finally:
        server.stop()
        fake.stop()
    print(json.dumps(report, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
