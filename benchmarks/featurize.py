"""Featurize benchmark: speed and quality of ``polymodal featurize`` on the GRID samples.

On the 11 GRID clips of ``../shared/data/grid_samples`` (3 s each, 25 fps video, one speaker
reading a fixed-grammar sentence), through the library only (``polymodal.featurize``):

* ``realtime_factor``: seconds of video featurised per wall-clock second by
  :func:`~polymodal.featurize.shards.featurize_many` with 2 worker processes (face at 5 fps
  with the EfficientNet-Lite0 crop embedding, voice activity, pitch, energy, log-mel,
  speaker embeddings, and words), once with the general language model and once with GRID's
  grammar; ``seconds_per_s`` per stage (one process, summed over the clips);
* ``face_frames`` (the share of frames with the speaker's face) and ``tracks`` per clip;
* ``speech_coverage``: the share of the corpus's aligned words (``swwp2s.align``) whose
  midpoint lies inside a silero-vad speech segment, and the share of words that
  grammar-constrained recognition finds over each *whole* clip that lie inside a segment;
* ``wer``: word error rate of the recognised words against ``transcripts.csv``, general
  language model and GRID grammar (per clip and over all 66 words);
* ``timing_error_s``: median absolute error of word starts and ends against
  ``swwp2s.align`` (grammar decoding of the clip's speech segments).

    POLYMODAL_DATA=../shared/data python benchmarks/featurize.py

Writes ``benchmarks/results/featurize.{json,md}``.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import print_table, record, write_results
from polymodal.data.align import read_align_file
from polymodal.data.decode import decode_audio_track
from polymodal.featurize import FeaturizeConfig, Featurizer, featurize_many
from polymodal.featurize.words import SpeechRecognizer, word_error_rate

REPO = Path(__file__).resolve().parents[1]
ALIGNED = "id2_vcd_swwp2s.mpg"


def grid_root() -> Path:
    root = Path(os.environ.get("POLYMODAL_DATA", REPO.parent / "shared" / "data"))
    return root / "grid_samples"


def references(root: Path) -> dict[str, str]:
    with open(root / "transcripts.csv", newline="", encoding="utf-8") as f:
        return {r["file"]: r["transcript"] for r in csv.DictReader(f)}


def realtime(clips: list[Path], config: FeaturizeConfig, workers: int) -> tuple[float, float]:
    """(seconds of media, wall seconds) of featurize_many over ``clips`` in a fresh folder."""
    media = 0.0
    for c in clips:
        wave = decode_audio_track(c, 16000)
        media += 0.0 if wave is None else len(wave) / 16000
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        report = featurize_many(clips, tmp, config, workers=workers, progress=False)
        wall = time.perf_counter() - start
    if report["failed"]:
        raise RuntimeError(f"featurize failed: {report['failed']}")
    return media, wall


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--results-dir", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    root = grid_root()
    refs = references(root)
    clips = [root / name for name in sorted(refs)]
    records: list[dict[str, Any]] = []
    t_all = time.perf_counter()

    # -- speed: the whole featurizer, 2 workers, two word searches
    for label, cfg in (
        ("general language model", FeaturizeConfig()),
        ("GRID grammar", FeaturizeConfig(asr="grammar", grammar="grid")),
    ):
        media, wall = realtime(clips, cfg, args.workers)
        records.append(
            record(
                "featurize",
                "grid_samples",
                f"face 5 fps + embedding, voice, words ({label}), {args.workers} workers",
                "realtime_factor",
                media / wall,
                seconds=wall,
                media_seconds=round(media, 2),
            )
        )
        print(f"{label}: {media:.1f} s of media in {wall:.1f} s", flush=True)

    # -- per clip, one process: stages, faces, segments, words
    featurizer = Featurizer(FeaturizeConfig(asr="grammar", grammar="grid"))
    lm = SpeechRecognizer()
    grammar = SpeechRecognizer(grammar="grid")
    stage_seconds: dict[str, float] = {}
    media_total = 0.0
    face_share, tracks, covered, total_words = [], [], 0, 0
    wer_lm, wer_grammar = [], []
    hyp_lm_all, hyp_gr_all, ref_all = [], [], []
    for clip in clips:
        features = featurizer(clip)
        media_total += features.duration
        for stage, s in features.seconds.items():
            stage_seconds[stage] = stage_seconds.get(stage, 0.0) + s
        face = features.face
        face_share.append(float(face.present.float().mean()))
        tracks.append(int(face.n_tracks))
        wave = decode_audio_track(clip, 16000)
        assert wave is not None
        segments = features.voice.segments
        whole = grammar(wave, 16000)  # over the whole clip: an independent check of the VAD
        inside = [any(a <= (w.start + w.end) / 2 < b for a, b in segments) for w in whole]
        covered += sum(inside)
        total_words += len(inside)
        ref = refs[clip.name]
        hyp_lm = " ".join(w.text for w in lm(wave, 16000))
        hyp_gr = " ".join(u.text for u in features.utterances)
        wer_lm.append(word_error_rate(ref, hyp_lm))
        wer_grammar.append(word_error_rate(ref, hyp_gr))
        ref_all.append(ref)
        hyp_lm_all.append(hyp_lm)
        hyp_gr_all.append(hyp_gr)
        print(
            f"{clip.name}: face {face_share[-1]:.0%} ({tracks[-1]} track), "
            f"{len(segments)} segment(s), WER lm {wer_lm[-1]:.2f} grammar {wer_grammar[-1]:.2f}",
            flush=True,
        )
    for stage, s in sorted(stage_seconds.items()):
        records.append(
            record(
                "featurize",
                "grid_samples",
                f"stage {stage}, one process, one thread",
                "seconds_per_s",
                s / media_total,
                seconds=s,
            )
        )
    records.append(
        record(
            "featurize",
            "grid_samples",
            "face frames with the speaker's face (mediapipe, 5 fps), mean of clips",
            "face_frames",
            statistics.mean(face_share),
            min_clip=min(face_share),
        )
    )
    records.append(
        record(
            "featurize",
            "grid_samples",
            "face tracks per clip, max over clips",
            "tracks",
            float(max(tracks)),
        )
    )
    records.append(
        record(
            "featurize",
            "grid_samples",
            "grammar-recognised words (whole clips) inside a speech segment",
            "speech_coverage",
            covered / max(1, total_words),
            words=total_words,
        )
    )
    for name, per_clip, hyps in (
        ("general language model", wer_lm, hyp_lm_all),
        ("GRID grammar, speech segments", wer_grammar, hyp_gr_all),
    ):
        pooled = word_error_rate(" ".join(ref_all), " ".join(hyps))
        records.append(
            record(
                "featurize",
                "grid_samples",
                f"ASR word error rate, {name}, all 66 words",
                "wer",
                pooled,
                per_clip_mean=round(statistics.mean(per_clip), 4),
            )
        )

    # -- the two face detectors side by side (geometry only, no crop embedding, no words)
    for detector in ("mediapipe", "haar"):
        det = Featurizer(FeaturizeConfig(detector=detector, embed_faces=False, asr="none"))
        shares, n_tracks, face_s, media = [], [], 0.0, 0.0
        for clip in clips:
            features = det(clip)
            shares.append(float(features.face.present.float().mean()))
            n_tracks.append(int(features.face.n_tracks))
            face_s += features.seconds.get("face", 0.0)
            media += features.duration
        for metric, value, extra in (
            ("face_frames", statistics.mean(shares), {"min_clip": round(min(shares), 4)}),
            ("tracks", float(max(n_tracks)), {}),
            ("seconds_per_s", face_s / media, {"stage": "face, geometry only"}),
        ):
            records.append(
                record(
                    "featurize",
                    "grid_samples",
                    f"face detector {detector} (5 fps, geometry only)",
                    metric,
                    value,
                    seconds=face_s,
                    **extra,
                )
            )
        print(
            f"{detector}: faces in {statistics.mean(shares):.1%} of frames, {face_s:.1f} s",
            flush=True,
        )

    # -- the corpus's forced alignment of one clip
    aligned = read_align_file(root / "swwp2s.align")
    features = featurizer(root / ALIGNED)
    segments = features.voice.segments
    inside = [any(a <= (w.start + w.end) / 2 < b for a, b in segments) for w in aligned]
    records.append(
        record(
            "featurize",
            ALIGNED,
            "aligned words (swwp2s.align) inside a speech segment",
            "speech_coverage",
            sum(inside) / len(inside),
            words=len(inside),
        )
    )
    words = [w for u in features.utterances for w in u.words]
    if len(words) == len(aligned):
        # an utterance's words are (start, end, word) triples
        starts = [abs(w[0] - a.start) for w, a in zip(words, aligned, strict=True)]
        ends = [abs(w[1] - a.end) for w, a in zip(words, aligned, strict=True)]
        for which, errors in (("start", starts), ("end", ends)):
            records.append(
                record(
                    "featurize",
                    ALIGNED,
                    f"word {which} vs swwp2s.align, median absolute error (GRID grammar)",
                    "timing_error_s",
                    statistics.median(errors),
                    worst=round(max(errors), 4),
                )
            )
    else:
        print(
            f"{ALIGNED}: {len(words)} recognised words against {len(aligned)} aligned ones; "
            "timing errors need a one-to-one match",
            flush=True,
        )
    print_table(records)
    write_results(
        "featurize",
        records,
        title="Featurize: raw video to face, voice and words (GRID samples)",
        notes=NOTES.format(minutes=(time.perf_counter() - t_all) / 60),
        command="POLYMODAL_DATA=../shared/data python benchmarks/featurize.py",
        results_dir=args.results_dir,
    )
    return 0


NOTES = """
GRID clips are 3 s of one speaker in front of a camera reading a fixed-grammar sentence in a
quiet room: the easy case for every stage.  ``realtime_factor`` counts the whole
``featurize_many`` run, model loading in each worker included (a longer video amortises it).
The two face detectors are compared on the same frames (geometry only): Haar finds a box that
MediaPipe's mesh then reads; MediaPipe is the default.  ``seconds_per_s`` splits one process's time by stage (``face`` includes decoding the frames
at 5 fps, MediaPipe's face mesh and the EfficientNet-Lite0 embedding of each crop; ``voice``
silero-vad, YIN, energy, log-mel and the GE2E speaker embeddings; ``words`` speech
recognition).  The general language model is pocketsphinx's US-English model: it reads GRID's
made-up sentences ("bin blue at f two now") poorly, and conversational speech worse; the GRID
grammar shows what a constrained vocabulary gives.  This run took {minutes:.1f} min.
"""


if __name__ == "__main__":
    raise SystemExit(main())
