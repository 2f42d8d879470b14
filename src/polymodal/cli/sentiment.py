"""``polymodal sentiment VIDEO``: a sentiment timeline from face, voice and words.

Prints one line per utterance (time, label, the fused score and each modality's score, the
words and the voice's emotion) and writes ``OUT/sentiment.json`` and ``OUT/timeline.png``.
The default reading combines a MOSI transcript model, a RAVDESS voice-emotion model and the
face's smile cue (see :mod:`polymodal.apps.sentiment`); they train on first use into the
cache.  ``--model RUN`` reads the utterances with your own model instead: a run trained on
``polymodal featurize`` shards (the same modality columns), whose fusion weights are shown as
the modalities' contributions when it has them.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from polymodal.cli import setup_logging


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "sentiment",
        help="a sentiment timeline of a video from face, voice and words",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("video", metavar="VIDEO", help="a video (or audio) file")
    p.add_argument("--transcript", default=None, metavar="F.srt", help="subtitles (SRT/WebVTT)")
    p.add_argument("--model", default=None, metavar="RUN", help="your model trained on shards")
    p.add_argument("--text-model", default=None, metavar="RUN", help="replace the MOSI text model")
    p.add_argument(
        "--voice-model", default=None, metavar="RUN", help="replace the RAVDESS voice model"
    )
    p.add_argument("-o", "--output", default=None, metavar="OUT", help="folder for JSON + PNG")
    p.add_argument("--fps", type=float, default=5.0, help="face frames per second (default 5)")
    p.add_argument("--asr", choices=("lm", "grammar", "none"), default="lm")
    p.add_argument("--grammar", default=None, metavar="FILE", help="JSGF grammar (--asr grammar)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:

    from polymodal.apps import sentiment as app
    from polymodal.featurize.pipeline import FeaturizeConfig, Featurizer

    setup_logging()
    video = Path(args.video)
    if not video.is_file():
        raise FileNotFoundError(f"{video} does not exist; pass a video or audio file.")
    config = FeaturizeConfig(
        fps=args.fps, embed_faces=args.model is not None, asr=args.asr, grammar=args.grammar
    )
    if args.model is not None:
        rows = _with_model(video, args.model, config, args.transcript)
    else:
        models = app.load_models(args.text_model, args.voice_model)
        rows = app.analyse(video, models, Featurizer(config), args.transcript)
    print(app.format_table(rows))
    if args.output is not None:
        out = Path(args.output)
        out.mkdir(parents=True, exist_ok=True)
        (out / "sentiment.json").write_text(app.to_json(rows, video) + "\n", encoding="utf-8")
        app.plot_timeline(rows, out / "timeline.png", title=video.name)
        print(f"wrote {out / 'sentiment.json'} and {out / 'timeline.png'}")
    return 0


def _with_model(video: Path, run_dir: str, config: Any, transcript: str | None) -> list[Any]:
    """Featurise into a temporary shard folder and read it with a trained run."""
    import torch

    from polymodal.apps import sentiment as app
    from polymodal.data.manifest import ManifestDataset
    from polymodal.featurize.shards import featurize_many, iter_rows
    from polymodal.inference import load_trained

    trained = load_trained(run_dir)
    used = [m for m in trained.schema.names if m in trained.config["model"]["encoders"]]
    with tempfile.TemporaryDirectory() as tmp:
        inputs: list[str | Path] = [video]
        if transcript is not None:
            manifest = Path(tmp) / "input.jsonl"
            manifest.write_text(
                json.dumps(
                    {"video": str(video.resolve()), "transcript": str(Path(transcript).resolve())}
                )
                + "\n"
            )
            inputs = [manifest]
        report = featurize_many(inputs, Path(tmp) / "shards", config, progress=False)
        if report["failed"]:
            raise ValueError(report["failed"][0]["error"])
        shards = Path(tmp) / "shards"
        infos = [json.loads(x) for x in (shards / "utterances.jsonl").read_text().splitlines()]
        texts = {r["id"]: r.get("transcript", "") for r in iter_rows(shards)}
        dataset = ManifestDataset(shards / "manifest.jsonl", schema=trained.schema.select(used))
        batch = dataset.batch(range(len(dataset)))
        with torch.no_grad():
            out = trained.model(batch)
        probs = torch.softmax(out.logits.float(), dim=-1)
    names = list(trained.schema.target.class_names or [])
    known = set(app.VALENCE) | {"positive", "negative"}
    if not known & set(names):
        raise ValueError(
            f"polymodal sentiment --model {run_dir}: the model's classes {names} carry no "
            "sentiment; train it on labels named 'positive'/'negative' (and 'neutral'), or on "
            f"emotions among {sorted(app.VALENCE)}."
        )
    rows = []
    for i, info in enumerate(infos):
        p = probs[i]
        if "positive" in names:
            score = float(p[names.index("positive")])
            score -= float(p[names.index("negative")]) if "negative" in names else 1.0 - score
        else:
            score = float(
                sum(app.VALENCE.get(n, 0.0) * float(q) for n, q in zip(names, p, strict=True))
            )
        scores = {}
        if out.weights is not None:
            for m, w in zip(sorted(used), out.weights[i].tolist(), strict=True):
                scores[m] = app.ModalityScore(score=float("nan"), confidence=float("nan"), weight=w)
        rows.append(
            app.UtteranceSentiment(
                start=info["start"],
                end=info["end"],
                text=texts.get(info["id"], ""),
                score=score,
                label=app.label_of(score),
                modalities=scores,
            )
        )
    return rows
