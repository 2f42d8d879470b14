"""Runs that ``tests/training/test_distributed.py`` starts under torchrun (and in-process).

``python -m torch.distributed.run ... tests/training/dist_driver.py MODE ARGS``:

* ``modes OUT``: a contrastive run on in-memory paired features into ``OUT/joint`` (and
  with three positives per anchor into ``OUT/joint_multi``) and a
  context run on MOSI's text and audio features into ``OUT/context``, one after the other
  in one process group (one start-up for both).
* ``hold CONFIG HELD KEY=VALUE...``: ``polymodal train CONFIG`` whose rank 0 holds (sleeps)
  once its first ``checkpoints/last`` is written and says so in file ``HELD``; every rank
  writes its pid to ``HELD.rank<N>`` first, so the test can SIGKILL any rank there (an
  event, not a time).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import torch


def joint_run(out: Path, positives: int = 1) -> None:
    """Train 2 epochs of a tiny joint space on 32 synthetic anchors into ``out`` (the same
    data and model on every rank and in one process); with ``positives > 1`` each anchor
    has that many rows of the other modality, all positives of one loss
    (``optim.all_positives``)."""
    from polymodal.data.modality import ModalitySpec
    from polymodal.joint.model import JointConfig, JointEmbeddingModel, JointModalityConfig
    from polymodal.joint.pairs import PairedFeatures, PairSetConfig
    from polymodal.joint.train import ContrastiveOptim, ContrastiveStrategy, JointTrainConfig
    from polymodal.models.config import EncoderConfig
    from polymodal.training.loop import Trainer

    def mod(name: str, projection: str) -> JointModalityConfig:
        spec = ModalitySpec(name, "tabular", shape=(5,))
        return JointModalityConfig(spec, EncoderConfig("mlp", {"dim": 12}), projection, 16)

    g = torch.Generator().manual_seed(7)
    latent = torch.randn(48, 4, generator=g)
    a = latent @ torch.randn(4, 12, generator=g) + 0.1 * torch.randn(48, 12, generator=g)
    rows = 48 * positives  # each anchor's rows are consecutive: anchor i owns i*P ... i*P+P-1
    owner = torch.arange(rows) // positives
    b = latent[owner] @ torch.randn(4, 12, generator=g) + 0.1 * torch.randn(rows, 12, generator=g)
    cut = 32 * positives
    train = {"image-text": PairedFeatures("image", "text", a[:32], b[:cut], owner[:cut])}
    val = {"image-text": PairedFeatures("image", "text", a[32:], b[cut:], owner[cut:] - 32)}
    config = JointConfig((mod("image", "linear"), mod("text", "mlp")), dim=8)
    cfg = JointTrainConfig(
        model=config,
        pairs={"image-text": PairSetConfig(dataset="in-memory", other="text")},
        optim=ContrastiveOptim(
            lr=1e-2, warmup_steps=2, epochs=2, batch_size=8, all_positives=positives > 1
        ),
        patience=None,
        device="cpu",
        progress=False,
        output_dir=str(out),
    )
    torch.manual_seed(0)
    strategy = ContrastiveStrategy(cfg, JointEmbeddingModel(config), train=train, val=val)
    Trainer(cfg, strategy).fit()


#: MOSI in context (videos of utterances), text and audio features, small MLP encoders.
CONTEXT = [
    "data.options.modalities=[text,audio]",
    "model.encoders={text: {name: mlp}, audio: {name: mlp}}",
    "model.fusion.params.dropout=0.0",
    "context.dropout=0.0",
    "optim.epochs=2",
    "device=cpu",
    "progress=false",
    "patience=null",
]


def context_run(out: Path) -> None:
    """Train ``configs/mosi_context.yaml`` (made tiny) into ``out``: 13 steps an epoch,
    the last batch a single video (padded by wrapping under two ranks)."""
    from polymodal.training import load_config
    from polymodal.training.loop import Trainer
    from polymodal.training.tasks import build_strategy

    config = Path(__file__).parents[2] / "configs" / "mosi_context.yaml"
    cfg = load_config(config, [*CONTEXT, f"output_dir={out}"])
    Trainer(cfg, build_strategy(cfg)).fit()


def modes(out: Path) -> None:
    """:func:`joint_run` and :func:`context_run` in one process group (if torchrun's)."""
    from polymodal.training import distributed

    distributed.init_distributed("cpu")
    ok = False
    try:
        joint_run(out / "joint")
        joint_run(out / "joint_multi", positives=3)
        context_run(out / "context")
        ok = True
    finally:
        distributed.shutdown(ok)


def hold(config: str, held: str, overrides: list[str]) -> None:
    from polymodal.training import Callback, load_config, train

    Path(f"{held}.rank{os.environ['RANK']}").write_text(str(os.getpid()))

    class HoldAfterFirstCheckpoint(Callback):  # called on rank 0, the one that saves
        def on_checkpoint(self, trainer: Any, which: str, path: Path) -> None:
            if which == "last":
                Path(held).write_text(str(path))
                time.sleep(3600)

    train(load_config(config, overrides), callbacks=[HoldAfterFirstCheckpoint()])


if __name__ == "__main__":
    torch.set_num_threads(1)
    if sys.argv[1] == "modes":
        modes(Path(sys.argv[2]))
    elif sys.argv[1] == "hold":
        hold(sys.argv[2], sys.argv[3], sys.argv[4:])
    else:
        raise SystemExit(f"unknown mode {sys.argv[1]!r}")
