"""Featurise many files into shards that ``polymodal train`` reads as a manifest.

Layout of an output folder ``OUT``::

    OUT/manifest.jsonl                one row per utterance (written last, rebuilt each run)
    OUT/utterances.jsonl              the same rows' source file, start, end and word timings
    OUT/files/<id>/<k>_<modality>.npy one array per utterance and modality
    OUT/files/<id>/rows.json          the file's rows; its presence marks the file done
    OUT/errors.jsonl                  one line per file that could not be featurised
    OUT/report.json                   counts, notes per file, seconds per stage

A manifest row holds only what a model reads: ``id`` (``<file id>#<k>``), ``group`` (the file
id: validation is carved by video), ``transcript`` (text), a ``.npy`` path per modality
(``face`` (F, D) and ``voice`` (T, D) sequences, ``face_words`` and ``voice_words`` (W, D)
pooled per word, ``speaker`` (256,); empty where the utterance has none, so the modality is
missing there: a presence mask, not an error) and the columns the input manifest gave the
file (``label``, ``split``, ...), so ``polymodal train`` reads it as it is (see
``configs/featurized.yaml``).  A file whose ``rows.json`` exists is skipped by the next run,
so a killed run resumes; one bad file is reported in ``errors.jsonl`` and never stops the
others.
"""

from __future__ import annotations

import csv
import json
import logging
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from polymodal.checkpoint import atomic_write_text
from polymodal.featurize.pipeline import (
    FeaturizeConfig,
    FeaturizeError,
    Featurizer,
    VideoFeatures,
)

logger = logging.getLogger("polymodal.featurize")

MEDIA_SUFFIXES = (
    ".mp4", ".mkv", ".mov", ".avi", ".webm", ".mpg", ".mpeg", ".m4v", ".flv",
    ".wav", ".flac", ".ogg", ".opus", ".mp3", ".m4a", ".aac",
)  # fmt: skip
MANIFEST_FILE = "manifest.jsonl"
UTTERANCES_FILE = "utterances.jsonl"
ERRORS_FILE = "errors.jsonl"
REPORT_FILE = "report.json"
ROWS_FILE = "rows.json"
MODALITIES = ("face", "voice", "face_words", "voice_words", "speaker")
#: Input manifest columns naming the media file, in order of preference.
FILE_COLUMNS = ("video", "file", "path", "audio")


@dataclass(frozen=True)
class Job:
    """One input file and what the input manifest says about it."""

    id: str
    path: Path
    subtitles: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "file"


def _unique_ids(paths: Sequence[Path]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for p in paths:
        base = _slug(p.stem)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.append(base if n == 0 else f"{base}_{n}")
    return out


def _read_table(path: Path) -> list[dict[str, Any]]:
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        rows = []
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}, line {n}: not JSON ({e}). Fix the line.") from e
        return rows
    with open(path, newline="", encoding="utf-8-sig") as f:
        delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
        return [dict(r) for r in csv.DictReader(f, delimiter=delimiter)]


def jobs_from(inputs: Sequence[str | Path]) -> list[Job]:
    """Jobs from media files, folders (searched for media) and manifests (CSV/JSONL with a
    ``video`` (or ``file``/``path``/``audio``) column, optional ``id``, ``transcript`` (a
    subtitle file) and any other columns, copied to every utterance row)."""
    jobs: list[Job] = []
    loose: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            loose += sorted(q for q in p.rglob("*") if q.suffix.lower() in MEDIA_SUFFIXES)
        elif p.suffix.lower() in (".csv", ".tsv", ".jsonl", ".ndjson"):
            jobs += _jobs_from_manifest(p)
        elif p.is_file():
            loose.append(p)
        else:
            raise FileNotFoundError(f"{p} does not exist; pass media files, folders or a manifest.")
    jobs += [Job(i, p) for i, p in zip(_unique_ids(loose), loose, strict=True)]
    ids = [j.id for j in jobs]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ValueError(
            f"Input files share the ids {dupes[:5]}; give each an 'id' in the manifest."
        )
    return jobs


def _jobs_from_manifest(path: Path) -> list[Job]:
    rows = _read_table(path)
    if not rows:
        raise ValueError(f"Manifest {path} has no rows.")
    column = next((c for c in FILE_COLUMNS if c in rows[0]), None)
    if column is None:
        raise ValueError(
            f"Manifest {path} has no column naming the media file; expected one of "
            f"{list(FILE_COLUMNS)}, got {list(rows[0])}."
        )
    base = path.parent
    paths = [base / str(r[column]) for r in rows]
    auto = _unique_ids(paths)
    jobs = []
    for n, (row, p, auto_id) in enumerate(zip(rows, paths, auto, strict=True), start=2):
        if not str(row.get(column) or "").strip():
            raise ValueError(f"Manifest {path}, row {n}: column {column!r} is empty.")
        sub = row.get("transcript")
        extra = {
            k: v
            for k, v in row.items()
            if k not in (column, "id", "transcript") and v not in ("", None)
        }
        jobs.append(
            Job(
                _slug(str(row["id"])) if row.get("id") else auto_id,
                p,
                base / str(sub) if sub else None,
                extra,
            )
        )
    return jobs


# --------------------------------------------------------------------------- writing


def write_file(out: Path, job: Job, features: VideoFeatures) -> list[dict[str, Any]]:
    """Write one file's arrays and ``rows.json`` (last, atomically); returns the rows.

    Each row is ``{"row": <manifest row>, "info": <utterance timing and words>}``.
    """
    folder = out / "files" / job.id
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for u in features.utterances:
        uid = f"{job.id}#{u.index}"
        row: dict[str, Any] = {"id": uid, "group": job.id, "transcript": u.text}
        for m in MODALITIES:
            array = u.arrays.get(m)
            if array is None or array.numel() == 0:
                row[m] = None
                continue
            name = f"{u.index}_{m}.npy"
            np.save(folder / name, array.detach().cpu().numpy().astype(np.float32))
            row[m] = f"files/{job.id}/{name}"
        info = {
            "id": uid,
            "file": str(job.path),
            "start": round(u.start, 3),
            "end": round(u.end, 3),
            "words": [[round(a, 3), round(b, 3), w] for a, b, w in u.words],
        }
        rows.append({"row": {**row, **job.extra}, "info": info})
    atomic_write_text(folder / ROWS_FILE, json.dumps(rows) + "\n")
    return rows


def done_rows(out: Path, job: Job) -> list[dict[str, Any]] | None:
    """The rows of a file an earlier run finished, or ``None``."""
    path = out / "files" / job.id / ROWS_FILE
    if not path.is_file():
        return None
    try:
        rows = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    return rows if isinstance(rows, list) else None


# --------------------------------------------------------------------------- workers

_FEATURIZER: Featurizer | None = None


def _init_worker(config: dict[str, Any]) -> None:
    import torch

    global _FEATURIZER
    torch.set_num_threads(1)
    _FEATURIZER = Featurizer(FeaturizeConfig.from_dict(config))


def _run(out: str, job: Job) -> dict[str, Any]:
    """Featurise and write one file in a worker; returns a summary (never raises)."""
    assert _FEATURIZER is not None, "worker not initialised"
    return _process(Path(out), job, _FEATURIZER)


def _process(out: Path, job: Job, featurizer: Featurizer) -> dict[str, Any]:
    start = time.perf_counter()
    try:
        features = featurizer(job.path, job.subtitles)
        rows = write_file(out, job, features)
    except FeaturizeError as e:
        return {"id": job.id, "file": str(job.path), "error": str(e), "stage": e.stage}
    except Exception as e:  # one bad file must never stop the others
        return {
            "id": job.id,
            "file": str(job.path),
            "error": f"{type(e).__name__}: {e}",
            "stage": "?",
        }
    return {
        "id": job.id,
        "file": str(job.path),
        "rows": len(rows),
        "duration": features.duration,
        "notes": features.notes,
        "words_from": features.words_from,
        "seconds": {**features.seconds, "total": time.perf_counter() - start},
    }


def featurize_many(
    inputs: Sequence[str | Path],
    out: str | Path,
    config: FeaturizeConfig | None = None,
    *,
    workers: int = 1,
    progress: bool = True,
) -> dict[str, Any]:
    """Featurise every input file into ``out`` (see the module docstring); resumable.

    Returns:
        The report: ``files``, ``done`` (now or before), ``skipped`` (done before),
        ``failed`` (list of error dicts), ``utterances``, ``seconds``, per-file ``notes``.
    """
    config = config if config is not None else FeaturizeConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = jobs_from(inputs)
    rows: dict[str, list[dict[str, Any]]] = {}
    todo = []
    for job in jobs:
        previous = done_rows(out, job)
        if previous is None:
            todo.append(job)
        else:
            rows[job.id] = previous
    logger.info("%d files, %d done by an earlier run", len(jobs), len(jobs) - len(todo))
    results = list(_map(out, todo, config, workers, progress))
    failed = [r for r in results if "error" in r]
    for r in results:
        if "error" in r:
            logger.warning("%s", r["error"])
        else:
            previous = done_rows(out, next(j for j in jobs if j.id == r["id"]))
            rows[r["id"]] = previous or []
    done = [r for job in jobs for r in rows.get(job.id, [])]
    manifest = [r["row"] for r in done]
    atomic_write_text(out / MANIFEST_FILE, "".join(json.dumps(r) + "\n" for r in manifest))
    atomic_write_text(out / UTTERANCES_FILE, "".join(json.dumps(r["info"]) + "\n" for r in done))
    atomic_write_text(out / ERRORS_FILE, "".join(json.dumps(r) + "\n" for r in failed))
    report = {
        "files": len(jobs),
        "done": len(jobs) - len(failed),
        "skipped": len(jobs) - len(todo),
        "failed": failed,
        "utterances": len(manifest),
        "results": [r for r in results if "error" not in r],
    }
    atomic_write_text(out / REPORT_FILE, json.dumps(report, indent=1) + "\n")
    return report


def _map(
    out: Path, jobs: Sequence[Job], config: FeaturizeConfig, workers: int, progress: bool
) -> Iterator[dict[str, Any]]:
    bar = tqdm(total=len(jobs), desc="featurize", unit="file", disable=not progress)
    try:
        if workers <= 1 or len(jobs) <= 1:
            featurizer = Featurizer(config)
            for job in jobs:
                yield _process(out, job, featurizer)
                bar.update()
            return
        with ProcessPoolExecutor(
            max_workers=workers,
            mp_context=get_context("spawn"),
            initializer=_init_worker,
            initargs=(config.to_dict(),),
        ) as pool:
            futures = [pool.submit(_run, str(out), job) for job in jobs]
            for fut in as_completed(futures):
                yield fut.result()
                bar.update()
    finally:
        bar.close()


def format_report(report: dict[str, Any]) -> str:
    """A few lines for the terminal: counts, then one line per failed file."""
    lines = [
        f"{report['done']} of {report['files']} files featurised ({report['skipped']} done "
        f"before), {report['utterances']} utterances"
    ]
    lines += [f"error: {r['error']}" for r in report["failed"]]
    return "\n".join(lines)


def iter_rows(out: str | Path) -> Iterable[dict[str, Any]]:
    """The manifest rows of a featurised folder."""
    text = (Path(out) / MANIFEST_FILE).read_text(encoding="utf-8")
    return (json.loads(line) for line in text.splitlines() if line.strip())


__all__ = [
    "MANIFEST_FILE",
    "MODALITIES",
    "UTTERANCES_FILE",
    "Job",
    "featurize_many",
    "format_report",
    "iter_rows",
    "jobs_from",
    "write_file",
]
