"""``polymodal caption RUN IMAGE_OR_VIDEO...``: caption images and videos with a trained model.

``RUN`` is a ``task: captioning`` run folder (its best checkpoint) or a checkpoint
folder.  Each image gets one caption.  A video is captioned from its keyframes: frames
sampled at ``--fps`` (default 1 per second), of which those that differ from the last
keyframe by more than ``--scene-threshold`` are captioned (a new shot); consecutive
frames with the same caption are merged into one time range.  ``--json`` prints one JSON object per file instead of text.
Decoding defaults to the run's (``decode`` in its config); ``--beam`` overrides the
beam size (1: greedy).
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def add_parser(subparsers: Any) -> None:
    """Add ``caption`` to the top-level ``subparsers``."""
    p = subparsers.add_parser(
        "caption",
        help="caption images and videos with a captioning run",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run", metavar="RUN", help="a captioning run folder or checkpoint folder")
    p.add_argument("files", nargs="+", metavar="IMAGE_OR_VIDEO", help="images or videos")
    p.add_argument("--beam", type=int, default=None, metavar="K", help="beam size (1: greedy)")
    p.add_argument(
        "--fps", type=float, default=1.0, help="video frames captioned per second (default 1)"
    )
    p.add_argument(
        "--scene-threshold",
        type=float,
        default=0.05,
        metavar="D",
        help="a sampled frame is captioned when its grey 32x32 thumbnail differs from the last "
        "captioned frame's by more than D (mean absolute, pixels in [0, 1]; 0: every frame; "
        "default 0.05)",
    )
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or mps")
    p.add_argument("--json", action="store_true", help="one JSON object per file")
    p.set_defaults(func=run)


def _clock(seconds: float) -> str:
    m, s = divmod(seconds, 60.0)
    return f"{int(m):02d}:{s:05.2f}"


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from polymodal.captioning.captioner import is_image_file, load_captioner

    if args.beam is not None and args.beam < 1:
        raise ValueError(f"--beam must be >= 1, got {args.beam}.")
    if not args.fps > 0:
        raise ValueError(f"--fps must be > 0, got {args.fps}.")
    if not args.scene_threshold >= 0:
        raise ValueError(f"--scene-threshold must be >= 0, got {args.scene_threshold}.")
    for f in args.files:
        if not Path(f).is_file():
            raise FileNotFoundError(f"{f!r} is not a file; pass image or video files.")
    captioner = load_captioner(args.run, args.device)
    decode = captioner.decode
    if args.beam is not None:
        decode = decode.replace(beam_size=args.beam)
    images = [f for f in args.files if is_image_file(f)]
    by_image = dict(zip(images, captioner.caption_images(images, decode), strict=True))
    for f in args.files:
        if f in by_image:
            if args.json:
                print(json.dumps({"file": f, "caption": by_image[f]}))
            else:
                print(f"{f}\t{by_image[f]}")
            continue
        ranges = captioner.caption_video(f, args.fps, decode, args.scene_threshold)
        if args.json:
            print(json.dumps({"file": f, "segments": ranges}))
        else:
            for r in ranges:
                print(f"{f}\t{_clock(r['start'])}-{_clock(r['end'])}\t{r['caption']}")
    return 0
