"""Built-in real data sets, built by name: ``load_dataset("mosi", split="train")``."""

from __future__ import annotations

from polymodal.data.datasets._common import DATASETS, DatasetInfo, load_dataset

# Importing each module registers its data set.
from polymodal.data.datasets import av_digits, flickr8k, har_phone_watch, mnist, mosi  # noqa: F401  # isort: skip
from polymodal.data.datasets import ravdess_speech  # noqa: F401  # isort: skip

__all__ = ["DATASETS", "DatasetInfo", "load_dataset"]
