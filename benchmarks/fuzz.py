"""Fuzz benchmark: damaged files, manifests, configs and checkpoints through the library.

Each generated case starts from a small valid input (a PNG, a JPEG, a WAV, a time-series
CSV, a ``.npy`` feature file, a video, a CSV manifest, a YAML config, a trained run's
checkpoint folder) and damages it the way files get damaged: truncation, flipped bits,
another format's header, extreme sizes, NaN/inf values, odd text encodings, special files.
It is then read through the library's public entry points (the decoders, the manifest
reader and ``datasets check``'s :func:`check_manifest`, :func:`load_config`,
:func:`load_trained` plus a prediction), and the outcome is classified:

* ``ok``: accepted, and the result is valid (a decoded value that is finite and in range;
  a damage that leaves the input valid, such as a flipped bit in a text cell);
* ``clear_error``: refused with an error raised by polymodal itself (the innermost frame of
  the traceback inside the package) whose message names the place: the file, and for
  manifests the row or column, for configs the key;
* ``traceback``: an error raised inside another library (Pillow, soundfile, safetensors,
  the csv module...) or one that does not name the place;
* ``silent``: accepted although the input is invalid (a case that must fail), or a decoded
  value that is not finite or out of range;
* ``hang``: still running after ``--timeout`` seconds; ``memory``: the case needed more
  than ``--memory-mb`` MiB above the worker's baseline (an address-space limit).

Cases run in worker processes (a crash of a native library loses only its chunk, which is
then re-run case by case).  Metrics (shared format, dataset = the input family):
``cases``, ``clear_error_rate`` (clear errors over all errors), ``tracebacks``, ``hangs``,
``silent``, ``memory`` (cases stopped by the address-space limit) and ``peak_memory_mb``
(the largest growth of a worker's peak resident memory during one case: an upper bound of
what a case added); ``benchmarks/results/fuzz.md`` lists every failing case.

    POLYMODAL_DATA=../shared/data python benchmarks/fuzz.py              # 1,200 cases
    POLYMODAL_DATA=../shared/data python benchmarks/fuzz.py --cases 200 --families image
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import random
import resource
import signal
import struct
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

NAME = "fuzz"
PACKAGE = str(Path(__file__).resolve().parents[1] / "src" / "polymodal")


# --------------------------------------------------------------------------- cases


@dataclass
class Case:
    """One damaged input and how to read it.

    Attributes:
        family: the input family (``image``, ``audio``, ... ``checkpoint``).
        damage: what was done to it (``truncate@120``, ``nan``, ...).
        run: reads the input through the library; returns what it produced.
        must_fail: the input is invalid, so acceptance is ``silent``.
        valid: checks a produced value (``None``: anything is fine).
        places: an error must name one of these (file name, key, column).
    """

    family: str
    damage: str
    run: Callable[[], Any]
    must_fail: bool
    valid: Callable[[Any], bool] | None
    places: tuple[str, ...]


def _finite(x: Any, lo: float = -math.inf, hi: float = math.inf) -> bool:
    import torch

    t = torch.as_tensor(x, dtype=torch.float64)
    return bool(torch.isfinite(t).all()) and (
        t.numel() == 0 or (lo <= float(t.min()) and float(t.max()) <= hi)
    )


def _mutate_bytes(data: bytes, rng: random.Random) -> tuple[bytes, str, bool]:
    """A damaged copy of ``data``: (bytes, what was done, whether it must fail)."""
    choice = rng.randrange(7)
    if choice == 0:
        cut = rng.randrange(0, max(1, len(data) - 1))
        return data[:cut], f"truncate@{cut}", False
    if choice == 1:
        out = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(len(out))
            out[i] ^= 1 << rng.randrange(8)
        return bytes(out), "bitflip", False
    if choice == 2:
        head = rng.choice(
            [
                b"\x89PNG\r\n\x1a\n",
                b"RIFF\x00\x00\x00\x00WAVE",
                b"\xff\xd8\xff",
                b"PK\x03\x04",
                b"\x93NUMPY",
            ]
        )
        return head + data[len(head) :], f"header:{head[:4]!r}", False
    if choice == 3:
        return b"", "empty", True
    if choice == 4:
        return bytes(rng.randrange(256) for _ in range(rng.randint(1, 2048))), "garbage", True
    if choice == 5:
        i = rng.randrange(len(data))
        return data[:i] + bytes(rng.randint(1, 64)) + data[i:], "zeros-inserted", False
    return data * 2, "doubled", False


class Assets:
    """Valid small inputs, written once per worker into ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        import soundfile as sf
        from PIL import Image

        rs = np.random.RandomState(0)
        img = Image.fromarray((rs.rand(24, 32, 3) * 255).astype("uint8"))
        buf = io.BytesIO()
        img.save(buf, "PNG")
        self.png = buf.getvalue()
        buf = io.BytesIO()
        img.save(buf, "JPEG")
        self.jpg = buf.getvalue()
        wave = (0.3 * np.sin(np.arange(4000) / 8.0)).astype("float32")
        buf = io.BytesIO()
        sf.write(buf, wave, 8000, format="WAV", subtype="PCM_16")
        self.wav = buf.getvalue()
        buf = io.BytesIO()
        sf.write(buf, wave, 8000, format="WAV", subtype="FLOAT")
        self.wav_float = buf.getvalue()
        rows = ["timestamp,ax,ay,az"] + [
            f"{20 * i},{rs.randn():.4f},{rs.randn():.4f},{rs.randn():.4f}" for i in range(40)
        ]
        self.ts = ("\n".join(rows) + "\n").encode()
        buf = io.BytesIO()
        np.save(buf, rs.randn(16).astype("float32"))
        self.npy = buf.getvalue()
        self.video = self._video()
        self.run, self.manifest = self._trained_run()
        self.config = (
            Path(__file__).resolve().parents[1] / "configs" / "har_phone_watch.yaml"
        ).read_text()

    def _video(self) -> bytes:
        import av

        path = self.root / "clip.mp4"
        with av.open(str(path), "w") as out:
            stream = out.add_stream("mpeg4", rate=5)
            stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
            for i in range(5):
                frame = av.VideoFrame.from_ndarray(
                    np.full((32, 32, 3), 40 * i, "uint8"), format="rgb24"
                )
                for packet in stream.encode(frame):
                    out.mux(packet)
            for packet in stream.encode():
                out.mux(packet)
        return path.read_bytes()

    def _trained_run(self) -> tuple[Path, Path]:
        """A tiny run trained on a CSV manifest of numbers and text (a few seconds)."""
        import yaml

        from polymodal.training import load_config, train

        rs = random.Random(0)
        manifest = self.root / "train.csv"
        lines = ["id,x1,x2,text,label"]
        for i in range(48):
            y = i % 2
            lines.append(
                f"r{i},{y + rs.gauss(0, 0.3):.3f},{rs.gauss(0, 1):.3f},{'good' if y else 'bad'} film,{'pos' if y else 'neg'}"
            )
        manifest.write_text("\n".join(lines) + "\n")
        cfg = {
            "data": {
                "manifest": str(manifest),
                "train_split": None,
                "test_split": None,
                "val_fraction": 0.25,
                "batch_size": 16,
            },
            "model": {
                "encoders": {
                    "tabular": {"name": "mlp", "params": {"dim": 8}},
                    "text": {"name": "text_transformer", "params": {"dim": 8, "num_layers": 1}},
                },
                "fusion": {"name": "early", "params": {"hidden_dim": 8}},
            },
            "optim": {"epochs": 1},
            "device": "cpu",
            "progress": False,
            "output_dir": str(self.root / "run"),
        }
        path = self.root / "run.yaml"
        path.write_text(yaml.safe_dump(cfg))
        return train(load_config(path)).run_dir, manifest


def _file(tmp: Path, name: str, data: bytes) -> Path:
    path = tmp / name
    path.write_bytes(data)
    return path


def gen_decoder(family: str) -> Callable[[random.Random, Path, Assets], Case]:
    def make(rng: random.Random, tmp: Path, a: Assets) -> Case:
        from polymodal.data import decode as d

        base, name, read, valid = {
            "image": (
                rng.choice([a.png, a.jpg]),
                "x.png",
                lambda p: d.decode_image(p),
                lambda v: _finite(v, -5, 5),
            ),
            "audio": (
                rng.choice([a.wav, a.wav_float]),
                "x.wav",
                lambda p: d.decode_audio(p),
                lambda v: _finite(v, -2.0, 2.0),
            ),
            "video": (
                a.video,
                "x.mp4",
                lambda p: d.decode_video(p).frames,
                lambda v: _finite(v, -5, 5),
            ),
            "timeseries": (
                a.ts,
                "x.csv",
                lambda p: d.decode_timeseries(p),
                lambda v: _finite(v.values) and _finite(v.timestamps),
            ),
            "features": (a.npy, "x.npy", lambda p: d.decode_features(p), lambda v: _finite(v)),
        }[family]
        special = rng.random() < 0.08
        if special:  # a directory, a device or a FIFO where a file is expected
            what = rng.choice(["dir", "fifo", "devzero"])
            path = tmp / name
            if what == "dir":
                path.mkdir()
            elif what == "fifo":
                os.mkfifo(path)
            else:
                path.symlink_to("/dev/zero")
            return Case(family, what, lambda: read(path), True, valid, (name,))
        if family == "timeseries" and rng.random() < 0.4:
            data, damage, must = _mutate_timeseries(a.ts, rng)
        elif family == "features" and rng.random() < 0.4:
            data, damage, must = _mutate_npy(rng)
        elif family == "image" and rng.random() < 0.2:
            data, damage, must = _huge_png(rng), "huge-dimensions", False
        else:
            data, damage, must = _mutate_bytes(base, rng)
        path = _file(tmp, name, data)
        return Case(family, damage, lambda: read(path), must, valid, (name,))

    return make


def _huge_png(rng: random.Random) -> bytes:
    """A valid PNG header claiming a huge image, with a tiny (too short) body."""
    import zlib

    w, h = rng.choice([(100_000, 100_000), (10_000, 10_000), (1, 10_000_000), (65_535, 65_535)])
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    chunk = lambda t, b: struct.pack(">I", len(b)) + t + b + struct.pack(">I", zlib.crc32(t + b))  # noqa: E731
    body = zlib.compress(b"\x00" * 1000)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def _mutate_timeseries(data: bytes, rng: random.Random) -> tuple[bytes, str, bool]:
    lines = data.decode().splitlines()
    choice = rng.randrange(7)
    if choice == 0:
        i = rng.randrange(1, len(lines))
        lines[i] = lines[i].replace(lines[i].split(",")[1], rng.choice(["nan", "inf", "-inf"]), 1)
        return ("\n".join(lines) + "\n").encode(), "nan-cell", True
    if choice == 1:
        i = rng.randrange(1, len(lines))
        lines[i] = lines[i].replace(lines[i].split(",")[2], "abc", 1)
        return ("\n".join(lines) + "\n").encode(), "text-cell", True
    if choice == 2:
        return (lines[0] + "\n").encode(), "header-only", True
    if choice == 3:
        i = rng.randrange(2, len(lines))
        lines[i], lines[i - 1] = lines[i - 1], lines[i]
        return ("\n".join(lines) + "\n").encode(), "time-backwards", True
    if choice == 4:
        i = rng.randrange(1, len(lines))
        lines[i] = lines[i] + ",1,2"
        return ("\n".join(lines) + "\n").encode(), "ragged-row", True
    if choice == 5:
        return ("\n".join(lines)).encode("utf-16"), "utf-16", False
    return (
        b"timestamp,ax\n" + b"1," + b"9" * rng.randint(10_000, 300_000) + b"\n",
        "huge-cell",
        False,
    )


def _mutate_npy(rng: random.Random) -> tuple[bytes, str, bool]:
    buf = io.BytesIO()
    choice = rng.randrange(5)
    if choice == 0:
        arr = np.ones(8, "float32")
        arr[rng.randrange(8)] = rng.choice([np.nan, np.inf])
        np.save(buf, arr)
        return buf.getvalue(), "nan", True
    if choice == 1:
        np.save(buf, np.array(["a", "b"]))
        return buf.getvalue(), "strings", True
    if choice == 2:
        np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
        return buf.getvalue(), "object-pickle", True
    if choice == 3:
        np.save(buf, np.ones((2, 3, 4, 5), "float32"))
        return buf.getvalue(), "4-d", True
    np.save(buf, np.array([], "float32"))
    return buf.getvalue(), "empty-array", True


def gen_text(rng: random.Random, tmp: Path, a: Assets) -> Case:
    from polymodal.data import decode as d

    value: Any = rng.choice(
        [
            "\x00\x01 nul bytes",
            "\ud800 lone surrogate",
            "x" * rng.randint(200_000, 2_000_000),
            b"\xff\xfe bytes",
            None,
            float("nan"),
            12,
            ["a", "b"],
            "   ",
        ]
    )
    must = isinstance(value, bytes | list) or (isinstance(value, float) and math.isnan(value))
    return Case(
        "text",
        type(value).__name__,
        lambda: d.decode_text(value, where="row 3, column 'text'"),
        must,
        lambda v: isinstance(v, str) and len(v) <= 1_000_000,
        ("row 3",),
    )


MANIFEST_DAMAGES = (
    "abc-in-numeric",
    "fraction-label",
    "header-only",
    "huge-cell",
    "latin-1",
    "nul-byte",
    "ragged",
    "duplicate-column",
    "dev-zero-cell",
    "missing-file",
    "formula-id",
    "empty-label",
)


def gen_manifest(rng: random.Random, tmp: Path, a: Assets) -> Case:
    from polymodal.data.manifest import ManifestDataset, check_manifest

    lines = a.manifest.read_text().splitlines()
    damage = rng.choice(MANIFEST_DAMAGES)
    must = True
    i = rng.randrange(1, len(lines))
    cells = lines[i].split(",")
    if damage == "abc-in-numeric":
        cells[rng.choice([1, 2])] = "abc"
    elif damage == "fraction-label":
        for j in range(1, len(lines)):
            c = lines[j].split(",")
            c[4] = "1" if c[4] == "pos" else "0"
            lines[j] = ",".join(c)
        cells = lines[i].split(",")
        cells[4] = "0.5"
    elif damage == "header-only":
        lines = lines[:1]
    elif damage == "huge-cell":
        cells[3] = "word " * rng.randint(30_000, 100_000)
    elif damage == "nul-byte":
        cells[3] = "bad\x00text"
        must = False
    elif damage == "ragged":
        cells.append("extra")
    elif damage == "duplicate-column":
        lines[0] = "id,x1,x1,text,label"
    elif damage == "dev-zero-cell":
        lines[0] += ",sensor"
        for j in range(1, len(lines)):
            lines[j] += ",/dev/zero" if j == i else ","
    elif damage == "missing-file":
        lines[0] += ",image"
        for j in range(1, len(lines)):
            lines[j] += ",missing_image.png"
    elif damage == "formula-id":
        cells[0] = '=HYPERLINK("http://x")'
        must = False
    elif damage == "empty-label":
        cells[4] = ""
        must = False
    if damage not in (
        "header-only",
        "duplicate-column",
        "dev-zero-cell",
        "missing-file",
    ):
        lines[i] = ",".join(cells)
    text = "\n".join(lines) + "\n"
    path = tmp / "manifest.csv"
    if damage == "latin-1":
        path.write_bytes(text.replace("film", "fïlm").encode("latin-1"))
    else:
        path.write_text(text)

    def run() -> Any:
        problems = check_manifest(path)
        if problems:
            raise _Problems(problems)
        ds = ManifestDataset(path)
        return [ds[k] for k in range(len(ds))], ds.schema

    return Case("manifest", damage, run, must, None, ("manifest.csv",))


class _Problems(Exception):
    """``check_manifest``'s problems, as one error (each names its row and column)."""

    def __init__(self, problems: list[Any]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems[:3]))


CONFIG_KEYS = (
    ("optim.lr", ["nan", "inf", "-1", "abc", "[1, 2]", "1e999"]),
    ("optim.weight_decay", ["nan", "-0.5", "inf"]),
    ("optim.grad_clip", ["nan", "-1", "inf"]),
    ("optim.epochs", ["0", "-3", "2.5", "nan", "1e12"]),
    ("data.batch_size", ["0", "-1", "abc", "1.5"]),
    ("data.val_fraction", ["1.5", "-0.1", "nan"]),
    ("model.modality_dropout", ["{phone: 1.0}", "{phone: nan}", "{nope: 0.1}"]),
    ("patience", ["-1", "abc"]),
    ("monitor", ["acuracy"]),
    ("optim.balance", ["nope", "{method: ogm_ge, alpha: nan}"]),
)


def gen_config(rng: random.Random, tmp: Path, a: Assets) -> Case:
    import yaml

    from polymodal.training import load_config

    choice = rng.randrange(4)
    path = tmp / "cfg.yaml"
    if choice < 2:
        key, values = rng.choice(CONFIG_KEYS)
        value = rng.choice(values)
        d = yaml.safe_load(a.config)
        node = d
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = yaml.safe_load(value)
        path.write_text(yaml.safe_dump(d))
        return Case("config", f"{key}={value}", lambda: load_config(path), True, None, (parts[-1],))
    if choice == 2:
        data, damage, _ = _mutate_bytes(a.config.encode(), rng)
        path.write_bytes(data)
        return Case("config", damage, lambda: load_config(path), False, None, ("cfg.yaml",))
    bad = rng.choice(
        ["optim: [1, 2\n", "\tmodel: x\n", "a: b: c\n", "- 1\n- 2\n", "optim:\n  lrr: 0.1\n"]
    )
    path.write_text(a.config + bad if bad.startswith("optim:\n") else bad)
    return Case(
        "config",
        f"yaml:{bad.strip()[:12]}",
        lambda: load_config(path),
        True,
        None,
        ("cfg.yaml", "lrr"),
    )


CHECKPOINT_DAMAGES = (
    "weights-truncated",
    "weights-garbage",
    "weights-nan",
    "weights-int",
    "weights-missing",
    "trainer-state-truncated",
    "trainer-state-poisoned",
    "schema-empty",
    "schema-garbage",
    "state-wrong-type",
    "config-garbage",
    "config-missing",
    "best-missing",
)


def gen_checkpoint(rng: random.Random, tmp: Path, a: Assets) -> Case:
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    from polymodal.data.manifest import ManifestDataset
    from polymodal.inference import load_trained, predict

    run = tmp / "run"
    shutil.copytree(a.run, run, symlinks=True)
    best = run / "checkpoints" / "best"
    damage = rng.choice(CHECKPOINT_DAMAGES)
    place = {
        "weights": "model.safetensors",
        "trainer": "trainer_state.pt",
        "schema": "schema.json",
        "state": "state.json",
        "config": "config.yaml",
        "best": "best",
    }[damage.split("-")[0]]
    weights = best / "model.safetensors"
    if damage == "weights-truncated":
        data = weights.read_bytes()
        weights.write_bytes(data[: rng.randrange(len(data))])
    elif damage == "weights-garbage":
        weights.write_bytes(bytes(rng.randrange(256) for _ in range(512)))
    elif damage in ("weights-nan", "weights-int"):
        w = load_file(str(weights))
        key = rng.choice(sorted(w))
        if damage == "weights-nan":
            w[key] = w[key].clone()
            w[key].view(-1)[0] = float("nan")
        else:
            w[key] = w[key].round().to(torch.int64)
        save_file(w, str(weights))
    elif damage == "weights-missing":
        weights.unlink()
    elif damage == "trainer-state-truncated":
        p = best / "trainer_state.pt"
        p.write_bytes(p.read_bytes()[:100])
    elif damage == "trainer-state-poisoned":
        import pickle

        class Evil:
            def __reduce__(self) -> Any:
                return (os.system, ("echo pwned",))

        torch.save({"optimizer": Evil()}, best / "trainer_state.pt", pickle_module=pickle)
    elif damage == "schema-empty":
        (best / "schema.json").write_text("")
    elif damage == "schema-garbage":
        (best / "schema.json").write_text('{"modalities": 3}')
    elif damage == "state-wrong-type":
        (best / "state.json").write_text('{"epoch": "three", "best": [1]}')
    elif damage == "config-garbage":
        (best / "config.yaml").write_text("model: [unclosed\n")
    elif damage == "config-missing":
        (best / "config.yaml").unlink()
    elif damage == "best-missing":
        shutil.rmtree(best)
    # trainer-state damage matters only when resuming, which load_trained does not read
    must = not damage.startswith("trainer-state")

    def read() -> Any:
        trained = load_trained(run)
        if damage.startswith("trainer-state"):
            from polymodal.checkpoint import load_checkpoint

            load_checkpoint(trained.path, with_trainer_state=True)
        ds = ManifestDataset(a.manifest, schema=trained.schema)
        return predict(trained.model, ds).outputs

    return Case("checkpoint", damage, read, must, lambda v: _finite(v), (place,))


GENERATORS: dict[str, Callable[[random.Random, Path, Assets], Case]] = {
    "image": gen_decoder("image"),
    "audio": gen_decoder("audio"),
    "video": gen_decoder("video"),
    "timeseries": gen_decoder("timeseries"),
    "features": gen_decoder("features"),
    "text": gen_text,
    "manifest": gen_manifest,
    "config": gen_config,
    "checkpoint": gen_checkpoint,
}
# relative weights: checkpoint cases copy and reload a run, so fewer of them
WEIGHTS = {
    "image": 3,
    "audio": 3,
    "video": 1,
    "timeseries": 3,
    "features": 2,
    "text": 1,
    "manifest": 3,
    "config": 3,
    "checkpoint": 2,
}


# --------------------------------------------------------------------------- running


class _Timeout(Exception):
    pass


def _alarm(signum: int, frame: Any) -> None:
    raise _Timeout()


def _raised_in_polymodal(e: BaseException) -> bool:
    """Whether the innermost frame of ``e``'s traceback is polymodal's own code."""
    tb = e.__traceback__
    last = None
    while tb is not None:
        last = tb.tb_frame.f_code.co_filename
        tb = tb.tb_next
    return last is not None and ("/polymodal/" in last)


def classify(case: Case, timeout: float) -> tuple[str, str]:
    """Run ``case``; returns (outcome, detail)."""
    signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        value = case.run()
    except _Timeout:
        return "hang", f"> {timeout:g} s"
    except MemoryError:
        return "memory", "MemoryError"
    except _Problems as e:
        named = all(
            getattr(p, "row", None) is not None
            or getattr(p, "column", None) is not None
            or any(pl in str(p) for pl in case.places)
            for p in e.problems
        )
        return ("clear_error" if named else "traceback"), str(e)[:300]
    except Exception as e:
        msg = f"{type(e).__name__}: {e}"
        own = _raised_in_polymodal(e) and isinstance(
            e, ValueError | TypeError | OSError | KeyError | RuntimeError
        )
        named = any(p in str(e) for p in case.places)
        if own and named:
            return "clear_error", msg[:300]
        where = traceback.extract_tb(e.__traceback__)[-1]
        return "traceback", f"{msg[:240]} [raised at {Path(where.filename).name}:{where.lineno}]"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    if case.must_fail:
        return "silent", "accepted an invalid input"
    if case.valid is not None and not case.valid(value):
        return "silent", "returned a non-finite or out-of-range value"
    return "ok", ""


_ASSETS: Assets | None = None


def _init_worker(root: str, memory_mb: int) -> None:
    global _ASSETS
    import torch

    torch.set_num_threads(1)
    os.environ.setdefault(
        "POLYMODAL_DATA", str(Path(__file__).resolve().parents[2] / "shared" / "data")
    )
    _ASSETS = Assets(Path(root) / f"assets-{os.getpid()}")
    if memory_mb > 0:  # the address space a case may add, above what the worker holds now
        with open("/proc/self/status") as fh:
            vm = next(int(line.split()[1]) for line in fh if line.startswith("VmSize"))
        limit = vm * 1024 + memory_mb * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def run_chunk(jobs: list[tuple[int, str, int]], root: str, timeout: float) -> list[dict[str, Any]]:
    """Generate and classify ``(index, family, seed)`` cases in this worker."""
    assert _ASSETS is not None
    out = []
    for index, family, seed in jobs:
        rng = random.Random(seed)
        with tempfile.TemporaryDirectory(dir=root) as tmp:
            t0 = time.perf_counter()
            try:
                case = GENERATORS[family](rng, Path(tmp), _ASSETS)
            except Exception as e:
                out.append(
                    {
                        "index": index,
                        "family": family,
                        "seed": seed,
                        "damage": "?",
                        "outcome": "generator_error",
                        "detail": repr(e)[:300],
                        "seconds": 0.0,
                    }
                )
                continue
            before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            outcome, detail = classify(case, timeout)
            after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            out.append(
                {
                    "index": index,
                    "family": family,
                    "seed": seed,
                    "damage": case.damage,
                    "outcome": outcome,
                    "detail": detail,
                    "seconds": time.perf_counter() - t0,
                    # growth of the worker's peak resident memory (KiB on Linux) during the
                    # case: an upper bound of what the case added, 0 below an earlier peak
                    "memory_mb": max(0, after - before) / 1024,
                }
            )
    return out


def plan(n: int, families: list[str], seed: int) -> list[tuple[int, str, int]]:
    rng = random.Random(seed)
    weights = [WEIGHTS[f] for f in families]
    return [(i, rng.choices(families, weights)[0], rng.randrange(2**31)) for i in range(n)]


def run_all(
    jobs: list[tuple[int, str, int]], workers: int, timeout: float, memory_mb: int, chunk: int = 40
) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="polymodal-fuzz-") as root:
        chunks = [jobs[i : i + chunk] for i in range(0, len(jobs), chunk)]
        retry: list[tuple[int, str, int]] = []

        def pool() -> ProcessPoolExecutor:
            return ProcessPoolExecutor(
                workers,
                mp_context=get_context("spawn"),
                initializer=_init_worker,
                initargs=(root, memory_mb),
            )

        with pool() as ex:
            futures = [(c, ex.submit(run_chunk, c, root, timeout)) for c in chunks]
            for c, fut in futures:
                try:
                    results += fut.result()
                except BrokenProcessPool:
                    retry += c
                print(f"{len(results)} / {len(jobs)} cases", flush=True)
        for job in retry:  # case by case, a fresh worker each: find the one that crashed
            with pool() as ex:
                try:
                    results += ex.submit(run_chunk, [job], root, timeout).result()
                except BrokenProcessPool:
                    results.append(
                        {
                            "index": job[0],
                            "family": job[1],
                            "seed": job[2],
                            "damage": "?",
                            "outcome": "crash",
                            "detail": "the worker process died",
                            "seconds": 0.0,
                        }
                    )
    return sorted(results, key=lambda r: r["index"])


def summarise(results: list[dict[str, Any]], seconds: float) -> list[dict[str, Any]]:
    from _common import record

    out = []
    families = sorted({r["family"] for r in results})
    for fam in [*families, "all"]:
        rows = [r for r in results if fam in ("all", r["family"])]
        c = Counter(r["outcome"] for r in rows)
        errors = c["clear_error"] + c["traceback"]
        metrics = {
            "cases": len(rows),
            "clear_error_rate": c["clear_error"] / errors if errors else 1.0,
            "tracebacks": c["traceback"] + c["crash"] + c["generator_error"],
            "hangs": c["hang"],
            "silent": c["silent"],
            "memory": c["memory"],
            "peak_memory_mb": max((r.get("memory_mb", 0.0) for r in rows), default=0.0),
        }
        for metric, value in metrics.items():
            out.append(
                record(
                    NAME,
                    fam,
                    "library",
                    metric,
                    float(value),
                    seconds=seconds if fam == "all" else None,
                )
            )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--cases", type=int, default=1200)
    ap.add_argument("--families", nargs="+", default=list(GENERATORS), choices=list(GENERATORS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=20.0, help="seconds per case")
    ap.add_argument("--memory-mb", type=int, default=1024, help="address space a case may add")
    ap.add_argument("--results-dir", default=None)
    args = ap.parse_args(argv)
    from _common import print_table, write_results

    t0 = time.perf_counter()
    results = run_all(
        plan(args.cases, args.families, args.seed), args.workers, args.timeout, args.memory_mb
    )
    seconds = time.perf_counter() - t0
    records = summarise(results, seconds)
    print_table(records)
    bad = [r for r in results if r["outcome"] not in ("ok", "clear_error")]
    lines = [
        f"| {r['family']} | {r['damage']} | {r['seed']} | {r['outcome']} | {r['detail'].replace('|', '/')[:200]} |"
        for r in bad
    ]
    counts = Counter((r["family"], r["outcome"]) for r in results)
    notes = (
        f"{len(results)} cases in {seconds / 60:.1f} min ({args.workers} workers, timeout "
        f"{args.timeout:g} s, memory limit {args.memory_mb} MiB above each worker's baseline).\n\n"
        "Outcomes per family: "
        + ", ".join(f"{f} {o} {n}" for (f, o), n in sorted(counts.items()))
        + "\n\nEvery case that was neither `ok` nor a `clear_error` (rerun one with its family and seed):\n\n"
        + (
            "| family | damage | seed | outcome | detail |\n| --- | --- | --- | --- | --- |\n"
            + "\n".join(lines)
            if lines
            else "(none)"
        )
    )
    for line in lines[:40]:
        print(line)
    write_results(
        NAME,
        records,
        title="Fuzz: damaged inputs through the library",
        notes=notes,
        results_dir=args.results_dir,
    )
    if args.results_dir is None:
        (Path(__file__).resolve().parent / "results" / "fuzz_cases.json").write_text(
            json.dumps(results, indent=0) + "\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
