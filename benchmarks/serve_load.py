"""Load test of ``polymodal serve``: ``/predict`` and ``/search`` at concurrency 1, 8, 32,
batched (``--max-batch 32``) and unbatched (``--max-batch 1``), on 127.0.0.1 only.

Each setting starts ``python -m polymodal serve RUN INDEX`` as a subprocess (the
checkout's ``src`` first), waits for ``/health``, sends ``--warmup`` then ``--requests``
requests from ``C`` concurrent asyncio workers (one kept-alive connection each, raw
HTTP/1.1 on asyncio streams: a light client, as it shares the cores with the server), and
records ``requests_per_s``,
``p50_ms``, ``p99_ms`` (per request, client side) and ``errors`` (any answer but 200, or a
failed connection).  ``batching_speedup`` is batched over unbatched ``requests_per_s`` of
``/predict`` at the highest concurrency.

The model is the MOSI transcript model of ``polymodal sentiment`` (configs/
mosi_transcript.yaml: frozen MiniLM + MLP; ``--epochs`` of it, as load does not depend on
accuracy) and the index a 32-d Flickr8k image/text space (frozen EfficientNet-Lite0 and
MiniLM, 1 epoch on 8 images) over ``--index-images`` test images: both are trained in a
temporary folder unless ``--run`` / ``--index`` name existing ones.  Every request carries
a distinct text (MOSI transcripts and Flickr8k captions, numbered), so MiniLM's caches of
texts already seen never answer for the model; the server runs with
``POLYMODAL_FEATURE_CACHE=off``.

Run (about 4 minutes on 2 shared cores)::

    python benchmarks/serve_load.py --requests 256

Writes benchmarks/results/serve_load.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from _common import REPO_ROOT, record, write_results

NAME = "serve_load"
HOST = "127.0.0.1"  # never anything else: this benchmark loads only its own machine
MODES = {"batched": 32, "unbatched": 1}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _texts() -> tuple[list[str], list[str]]:
    """MOSI transcripts (for /predict) and Flickr8k captions (for /search)."""
    from polymodal import load_dataset

    mosi = load_dataset("mosi", split="test", modalities=("transcript",))
    transcripts = [str(mosi[i].modalities["transcript"]) for i in range(200)]
    captions_file = Path(os.environ["POLYMODAL_DATA"]) / "flickr8k" / "Flickr8k.token.txt"
    lines = captions_file.read_text(encoding="utf-8").splitlines()[:1000]
    captions = [line.split("\t", 1)[1] for line in lines if "\t" in line]
    return transcripts, captions


def build_run(tmp: Path, epochs: int) -> Path:
    from polymodal.cli.main import main

    run = tmp / "mosi_transcript"
    config = REPO_ROOT / "configs" / "mosi_transcript.yaml"
    argv = ["train", str(config), f"output_dir={run}", f"optim.epochs={epochs}", "device=cpu"]
    if main([*argv, "progress=false"]) != 0:
        raise RuntimeError("training the MOSI transcript model failed")
    return run


def build_index(tmp: Path, images: int) -> Path:
    from polymodal.cli.main import main

    linear = {"projection": "linear"}
    config = {
        "task": "contrastive",
        "output_dir": str(tmp / "joint"),
        "model": {
            "dim": 32,
            "anchor": "image",
            "modalities": {
                "image": {
                    "spec": {"kind": "image", "shape": [3, 224, 224]},
                    "encoder": {"name": "efficientnet_lite0"},
                    **linear,
                },
                "text": {"spec": {"kind": "text"}, "encoder": {"name": "minilm"}, **linear},
            },
        },
        "pairs": {"flickr8k": {"dataset": "flickr8k", "other": "text", "test_split": None}},
        "optim": {"epochs": 1, "batch_size": 8, "warmup_steps": 0},
    }
    path = tmp / "joint.yaml"
    path.write_text(yaml.safe_dump(config))
    overrides = ["pairs.flickr8k.limit=8", f"feature_cache={tmp / 'features'}", "progress=false"]
    if main(["train", str(path), *overrides]) != 0:
        raise RuntimeError("training the joint model failed")
    emb, index = tmp / "emb", tmp / "flickr8k_index"
    embed = ["embed", str(tmp / "joint"), "flickr8k", "--split", "test", "--limit", str(images)]
    if main([*embed, "--modalities", "image", "-o", str(emb)]) != 0:
        raise RuntimeError("embedding failed")
    if main(["index", "build", str(emb), "-o", str(index)]) != 0:
        raise RuntimeError("index build failed")
    return index


class Server:
    """``polymodal serve`` in a subprocess on 127.0.0.1."""

    def __init__(self, paths: list[Path], max_batch: int, log: Path) -> None:
        self.port = _free_port()
        self.url = f"http://{HOST}:{self.port}"
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT / "src"), env.get("PYTHONPATH", "")])
        env["POLYMODAL_FEATURE_CACHE"] = "off"
        argv = [sys.executable, "-m", "polymodal", "serve", *map(str, paths)]
        argv += ["--host", HOST, "--port", str(self.port), "--max-batch", str(max_batch)]
        argv += ["--queue", "1024"]
        self._log = log.open("w")
        self.proc = subprocess.Popen(argv, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    def wait(self, timeout: float = 180) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError("the server did not answer /health")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> bool:
    """Send one HTTP/1.1 request on a kept-alive connection; whether the answer was 200."""
    writer.write(request)
    status = (await reader.readline()).split(b" ", 2)
    length = None
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length is None:
        raise ConnectionError("an answer without Content-Length")
    await reader.readexactly(length)
    return len(status) > 1 and status[1] == b"200"


async def load(
    url: str, route: str, bodies: list[dict[str, Any]], concurrency: int
) -> dict[str, float]:
    """Send ``bodies`` to ``url + route`` from ``concurrency`` workers; the statistics.

    Each worker holds one kept-alive connection and writes pre-encoded HTTP/1.1 requests
    on it with asyncio streams: a client that costs the shared cores a fraction of a
    millisecond per request (httpx's AsyncClient cost ~5-7 ms of CPU per request here,
    which the server's numbers then paid for).
    """
    host, port = url.removeprefix("http://").rsplit(":", 1)
    requests: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        payload = json.dumps(body).encode()
        head = (
            f"POST {route} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
        )
        requests.put_nowait(head.encode() + payload)
    latencies: list[float] = []
    errors = 0

    async def worker() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while not requests.empty():
                request = requests.get_nowait()
                start = time.perf_counter()
                try:
                    ok = await asyncio.wait_for(_exchange(reader, writer, request), 60)
                except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError):
                    ok = False
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, int(port))
                latencies.append(time.perf_counter() - start)
                errors += 0 if ok else 1
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - start
    ordered = sorted(latencies)
    p99 = ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]
    return {
        "requests_per_s": len(bodies) / wall,
        "p50_ms": statistics.median(ordered) * 1000,
        "p99_ms": p99 * 1000,
        "errors": float(errors),
        "seconds": wall,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=256, help="per setting")
    parser.add_argument("--warmup", type=int, default=16)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--run", type=Path, default=None, help="a trained transcript run")
    parser.add_argument("--index", type=Path, default=None, help="an index folder")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--index-images", type=int, default=64)
    parser.add_argument("--results-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    os.environ.setdefault("POLYMODAL_DATA", str((REPO_ROOT.parent / "shared" / "data").resolve()))
    transcripts, captions = _texts()
    records: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="serve_load-") as tmp_name:
        tmp = Path(tmp_name)
        run = args.run or build_run(tmp, args.epochs)
        index = args.index or build_index(tmp, args.index_images)
        n = args.requests
        for mode, max_batch in MODES.items():
            server = Server([run, index], max_batch, tmp / f"server-{mode}.log")
            try:
                server.wait()
                for route, dataset in (("/predict", "mosi"), ("/search", "flickr8k")):
                    for c in args.concurrency:
                        # numbered texts, distinct across settings: no cache answers
                        first = c * 1_000_000
                        bodies = [
                            {"inputs": {"transcript": f"{transcripts[i % len(transcripts)]} {i}"}}
                            if route == "/predict"
                            else {"text": f"{captions[i % len(captions)]} {i}", "k": 5}
                            for i in range(first, first + args.warmup + n)
                        ]
                        asyncio.run(load(server.url, route, bodies[: args.warmup], c))
                        stats = asyncio.run(load(server.url, route, bodies[args.warmup :], c))
                        print(
                            f"{route:9} {mode:9} c={c:<3} {stats['requests_per_s']:8.1f} req/s  "
                            f"p50 {stats['p50_ms']:7.1f} ms  p99 {stats['p99_ms']:7.1f} ms  "
                            f"errors {int(stats['errors'])}",
                            flush=True,
                        )
                        for metric in ("requests_per_s", "p50_ms", "p99_ms", "errors"):
                            records.append(
                                record(
                                    NAME,
                                    dataset,
                                    f"{route} c={c} {mode}",
                                    metric,
                                    stats[metric],
                                    seconds=round(stats["seconds"], 3),
                                    route=route,
                                    concurrency=c,
                                    max_batch=max_batch,
                                    requests=n,
                                )
                            )
                metrics = httpx.get(server.url + "/metrics", timeout=10).json()
                print(f"  batch sizes ({mode}): {metrics['batch_sizes']}")
            finally:
                server.stop()
    top = max(args.concurrency)

    def rps(mode: str) -> float:
        method = f"/predict c={top} {mode}"
        return next(
            float(r["value"])
            for r in records
            if r["method"] == method and r["metric"] == "requests_per_s"
        )

    speedup = rps("batched") / rps("unbatched")
    records.append(
        record(NAME, "mosi", f"/predict c={top} batched/unbatched", "batching_speedup", speedup)
    )
    print(f"batching speedup at concurrency {top} (/predict): {speedup:.2f}x")
    errors = sum(r["value"] for r in records if r["metric"] == "errors")
    notes = (
        f"{n} requests per setting after {args.warmup} warm-up ones, from C concurrent asyncio "
        "workers (one kept-alive connection each, pre-encoded HTTP/1.1 on asyncio streams, "
        "~0.2 ms of client CPU per request) on the same shared cores as the server; the "
        "server runs its forward passes on 1 torch thread (serve's default on 2 cores: the "
        "cores but one). /predict: the MOSI transcript model (frozen MiniLM + MLP); "
        "/search: text queries embedded with MiniLM against a Flickr8k image index. Targets: "
        f"0 errors at every concurrency (measured: {int(errors)} in all); batching >= 3x "
        f"unbatched at concurrency {top} for /predict (measured: {speedup:.2f}x)."
    )
    command = "python benchmarks/serve_load.py " + " ".join(argv or sys.argv[1:])
    write_results(
        NAME,
        records,
        title="polymodal serve under load",
        notes=notes,
        command=command.strip(),
        results_dir=args.results_dir,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
