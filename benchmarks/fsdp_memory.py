"""What one process holds when MiniLM is fine-tuned data-parallel: DDP against FSDP.

``configs/mosi_transcript.yaml`` with the whole MiniLM trainable
(``model.encoders.transcript.params.freeze=false``, ``cache=false``) is set up by the
library (:func:`polymodal.training.tasks.build_strategy`, the loop's
:class:`~polymodal.training.distributed.DataParallel` with ``distributed.parallel`` =
``ddp`` or ``fsdp``) under ``python -m torch.distributed.run --standalone
--nproc_per_node N`` (gloo, CPU), takes one AdamW step on its share of a batch of 8, and
counts the bytes each rank keeps of the trainable parameters, their gradients and AdamW's
moments (under FSDP a parameter's local shard; the full weights an FSDP unit gathers while
it runs are transient and not counted).  Deterministic: no timing.

    POLYMODAL_DATA=../shared/data python benchmarks/fsdp_memory.py [--processes 2]

Writes ``benchmarks/results/fsdp_memory.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

NAME = "fsdp_memory"
REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "mosi_transcript.yaml"
OVERRIDES = [
    "device=cpu",
    "data.batch_size=8",
    "model.encoders.transcript.params.freeze=false",
    "model.encoders.transcript.params.cache=false",
]


def worker(parallel: str, out: Path) -> None:
    """One rank: set up, one step, write this rank's byte counts to ``out.rank<N>``."""
    import torch
    from torch.distributed.tensor import DTensor

    from polymodal.training import distributed as dist
    from polymodal.training import load_config
    from polymodal.training.params import param_groups
    from polymodal.training.tasks import build_strategy

    torch.set_num_threads(1)
    info = dist.init_distributed("cpu")
    cfg = load_config(CONFIG, [*OVERRIDES, f"distributed.parallel={parallel}"])
    strategy = build_strategy(cfg)
    strategy.setup(torch.device("cpu"))
    step = dist.DataParallel(strategy, info, cfg)
    optimizer = torch.optim.AdamW(param_groups(strategy.trainable(), 0.01), lr=1e-4)
    step(next(iter(strategy.batches(0, 0)))).loss.backward()
    optimizer.step()

    def nbytes(t: torch.Tensor) -> int:
        local = t.to_local() if isinstance(t, DTensor) else t
        return local.numel() * local.element_size()

    params = [p for p in strategy.trainable().parameters() if p.requires_grad]
    counts = {
        "params_mb": sum(nbytes(p) for p in params) / 2**20,
        "grads_mb": sum(nbytes(p.grad) for p in params if p.grad is not None) / 2**20,
        "adamw_mb": sum(
            nbytes(v)
            for state in optimizer.state.values()
            for v in state.values()
            if isinstance(v, torch.Tensor) and v.dim()
        )
        / 2**20,
        "trainable_params": sum(
            p.full_tensor().numel() if isinstance(p, DTensor) else p.numel() for p in params
        ),
    }
    Path(f"{out}.rank{info.rank}").write_text(json.dumps(counts))
    dist.shutdown()


def launch(parallel: str, processes: int, out: Path) -> list[dict[str, Any]]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    cmd = [sys.executable, *launcher, __file__, "--worker", parallel, str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(
            f"{parallel} launch failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return [json.loads(Path(f"{out}.rank{r}").read_text()) for r in range(processes)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--worker", nargs=2, metavar=("PARALLEL", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--results-dir", default=None, help="default benchmarks/results")
    args = parser.parse_args(argv)
    os.environ.setdefault("POLYMODAL_DATA", str(REPO.parent / "shared" / "data"))
    if args.worker:
        worker(args.worker[0], Path(args.worker[1]))
        return 0

    from _common import print_table, record, write_results

    records = []
    with tempfile.TemporaryDirectory(prefix="polymodal-fsdp-memory-") as tmp:
        for parallel in ("ddp", "fsdp"):
            ranks = launch(parallel, args.processes, Path(tmp) / parallel)
            for rank, c in enumerate(ranks):
                total = c["params_mb"] + c["grads_mb"] + c["adamw_mb"]
                records.append(
                    record(
                        NAME,
                        "mosi",
                        f"minilm {parallel} rank {rank}",
                        "training_state_mb",
                        total,
                        params_mb=round(c["params_mb"], 1),
                        grads_mb=round(c["grads_mb"], 1),
                        adamw_mb=round(c["adamw_mb"], 1),
                        trainable_params=c["trainable_params"],
                        processes=args.processes,
                    )
                )
    print_table(records)
    notes = (
        f"configs/mosi_transcript.yaml, {' '.join(OVERRIDES)}, under torch.distributed.run "
        f"with {args.processes} processes (gloo, CPU): bytes each rank holds of the trainable "
        "parameters, their gradients and AdamW's two moments after one step (value: their "
        "sum, MiB; under FSDP the local shards; the weights a unit gathers while it runs "
        "are transient and not counted). Deterministic: no timing."
    )
    json_path, md_path = write_results(
        NAME,
        records,
        title="Fine-tuning MiniLM: per-rank training state, DDP vs FSDP (MiB)",
        notes=notes,
        results_dir=args.results_dir,
    )
    print(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
