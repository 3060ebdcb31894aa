"""Load on the HTTP service: N concurrent clients posting audio files for a bounded time.

    python benchmarks/serve_load.py RUN_DIR --data ../shared/data/ravdess [--clients 8] [--seconds 60]
        [--max-batch 8] [--batch-wait-ms 5] [--baseline] [--json OUT.json]

Starts ``abhinaya serve RUN_DIR`` on 127.0.0.1 (a free port) in its own process, waits until it answers, runs a
short warm-up, then ``--clients`` client threads post the corpus's audio files (read into memory once, taken in
turn) to ``POST /predict`` until ``--seconds`` have passed; each client waits for its answer before it sends the
next file. Reports requests per second, seconds of audio answered per second, latency p50 / p95 / p99 / max,
failed requests (any answer other than 200, or no answer), and the server's batching counters. The server is
stopped at the end (SIGINT, then killed if it lingers). ``--baseline`` runs the same load a second time against a
server with ``--max-batch 1`` (no batching) and reports the throughput ratio of the two, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")


def audio_files(data: Path, limit: int) -> list[Path]:
    files = sorted(p for p in data.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
    if not files:
        raise SystemExit(f"{data}: no audio files")
    step = max(1, len(files) // limit)
    return files[::step][:limit]


def start_server(run_dir: str, options: list[str], timeout: float) -> tuple[subprocess.Popen, str]:
    command = [sys.executable, "-m", "abhinaya.cli", "serve", run_dir, "--port", "0", *options]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    found: list[str] = []
    reader = threading.Thread(target=lambda: found.append(process.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if not found or not found[0].startswith("serving "):
        stop_server(process)
        raise SystemExit(f"the server did not start within {timeout:.0f} s: {found[0] if found else ''}"
                         f"{process.stderr.read()[-2000:] if process.stderr else ''}")
    return process, found[0].split(" at ")[1].split()[0]


def stop_server(process: subprocess.Popen) -> int | None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    return process.returncode


def wait_ready(url: str, timeout: float) -> dict:
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        try:
            return httpx.get(f"{url}/health", timeout=5).json()
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise SystemExit(f"{url} did not answer within {timeout:.0f} s") from None
            time.sleep(0.2)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def load(url: str, uploads: list[tuple[str, bytes, float]], clients: int, seconds: float) -> dict:
    """``clients`` threads posting ``uploads`` (name, bytes, duration) in turn for ``seconds``."""
    import httpx

    lock = threading.Lock()
    counter = iter(range(10**12))
    latencies: list[float] = []
    audio = [0.0]
    failures: list[str] = []
    start_line = threading.Barrier(clients)
    deadline = [0.0]

    def client() -> None:
        with httpx.Client(base_url=url, timeout=httpx.Timeout(120.0)) as http:
            start_line.wait()
            while time.monotonic() < deadline[0]:
                with lock:
                    name, body, duration = uploads[next(counter) % len(uploads)]
                sent = time.perf_counter()
                try:
                    answer = http.post("/predict", files={"file": (name, body)})
                    ok = answer.status_code == 200
                    reason = None if ok else f"{answer.status_code} {answer.text[:200]}"
                except httpx.HTTPError as err:
                    ok, reason = False, f"{type(err).__name__}: {err}"
                took = time.perf_counter() - sent
                with lock:
                    if ok:
                        latencies.append(took)
                        audio[0] += duration
                    else:
                        failures.append(reason)

    before = httpx.get(f"{url}/health", timeout=10).json()["batching"]
    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    deadline[0] = time.monotonic() + seconds
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 180)
    wall = time.perf_counter() - began
    after = httpx.get(f"{url}/health", timeout=10).json()["batching"]
    done = len(latencies)
    batches = after["batches"] - before["batches"]
    return {
        "clients": clients,
        "seconds": round(wall, 2),
        "requests": done + len(failures),
        "ok": done,
        "failed": len(failures),
        "failures": failures[:5],
        "requests_per_second": round(done / wall, 3),
        "audio_seconds_per_second": round(audio[0] / wall, 3),
        "latency_p50_s": round(percentile(latencies, 0.50), 4),
        "latency_p95_s": round(percentile(latencies, 0.95), 4),
        "latency_p99_s": round(percentile(latencies, 0.99), 4),
        "latency_max_s": round(max(latencies), 4) if latencies else None,
        "latency_mean_s": round(statistics.fmean(latencies), 4) if latencies else None,
        "batches": batches,
        "mean_batch": round((after["files"] - before["files"]) / batches, 2) if batches else None,
        "largest_batch": after["largest_batch"],
        "refused_busy": after["refused_busy"] - before["refused_busy"],
    }


def phase(args, uploads, max_batch: int) -> dict:
    options = ["--max-batch", str(max_batch), "--batch-wait-ms", str(args.batch_wait_ms), "--device", args.device]
    started = time.perf_counter()
    process, url = start_server(args.run_dir, options, args.start_timeout)
    try:
        health = wait_ready(url, args.start_timeout)
        print(f"[max-batch {max_batch}] serving {health['run']} ({health['kind']}) at {url}; ready in "
              f"{time.perf_counter() - started:.1f} s", file=sys.stderr)
        warm = load(url, uploads, args.clients, args.warmup)
        print(f"[max-batch {max_batch}] warm-up: {warm['ok']} requests", file=sys.stderr)
        result = load(url, uploads, args.clients, args.seconds)
    finally:
        code = stop_server(process)
    result.update(max_batch=max_batch, batch_wait_ms=args.batch_wait_ms, server_exit=code)
    print(f"[max-batch {max_batch}] {result['ok']} ok, {result['failed']} failed in {result['seconds']} s: "
          f"{result['requests_per_second']} req/s, p50 {result['latency_p50_s']} s, p95 {result['latency_p95_s']} s, "
          f"mean batch {result['mean_batch']}", file=sys.stderr)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", help="member or system run folder to serve")
    parser.add_argument("--data", default="../shared/data/ravdess", help="folder of audio files to post")
    parser.add_argument("--files", type=int, default=200, help="how many of its files to use (spread evenly)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long the load runs (default 60)")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of load before measuring (default 5)")
    parser.add_argument("--max-batch", type=int, default=8, help="the server's --max-batch (default 8)")
    parser.add_argument("--batch-wait-ms", type=float, default=5.0, help="the server's --batch-wait-ms (default 5)")
    parser.add_argument("--device", default="cpu", help="the server's --device (default cpu)")
    parser.add_argument("--baseline", action="store_true",
                        help="also run the same load against --max-batch 1 (no batching) and report the ratio")
    parser.add_argument("--start-timeout", type=float, default=300.0, help="seconds to wait for the server")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)

    import soundfile as sf

    files = audio_files(Path(args.data), args.files)
    uploads = [(f.name, f.read_bytes(), sf.info(str(f)).duration) for f in files]
    print(f"{len(uploads)} files ({sum(u[2] for u in uploads):.0f} s of audio) from {args.data}; "
          f"{args.clients} clients for {args.seconds:g} s on {os.cpu_count()} CPU cores", file=sys.stderr)
    results = {"run": str(args.run_dir), "cores": os.cpu_count(), "files": len(uploads),
               "batched": phase(args, uploads, args.max_batch)}
    if args.baseline:
        results["unbatched"] = phase(args, uploads, 1)
        unbatched = results["unbatched"]["requests_per_second"]
        results["throughput_ratio_batched_over_unbatched"] = (
            round(results["batched"]["requests_per_second"] / unbatched, 3) if unbatched else None)
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n", encoding="utf-8")
    failed = results["batched"]["failed"] + (results["unbatched"]["failed"] if args.baseline else 0)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
