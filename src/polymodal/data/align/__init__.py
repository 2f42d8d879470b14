"""Put streams with their own clocks on one timeline, cut windows, pool over words.

Streams are ``(values, timestamps)`` pairs: ``values`` is (T, C) (or (T,)), ``timestamps``
is (T,) in seconds, increasing.  Times are kept in float64 throughout (epoch seconds need
it); values keep their floating dtype.

* :func:`timing_stats` measures a stream's rate, jitter and gaps.
* :func:`merge_duplicate_times` collapses rows that share a timestamp (sensors that deliver
  in bursts stamp several rows with the same time).
* :func:`resample_stream` interpolates one stream onto a uniform grid ``t_k = start + k/rate``.
* :func:`align_streams` puts several streams on one grid over the overlap of their spans,
  marking grid points that fall in a long gap of any stream as invalid.
* :func:`sliding_windows` and :func:`window_labels` cut a uniform grid into fixed-length
  windows (in seconds) and give each window the majority label.
* :func:`read_align_file` reads GRID-style word timings and :func:`pool_intervals` pools any
  frame-rate stream inside each word.

Which file holds what:

* ``checks.py``: input checks (timestamps, values, rates) and the uniform grid.
* ``timing.py``: :class:`StreamTiming`, :func:`timing_stats`, :func:`merge_duplicate_times`.
* ``resample.py``: :func:`resample_stream`, :class:`AlignedStreams`, :func:`align_streams`.
* ``windows.py``: :class:`Windows`, :func:`sliding_windows`, :class:`WindowLabels`,
  :func:`window_labels`.
* ``words.py``: :class:`WordInterval`, :func:`read_align_file`, :func:`pool_intervals`.
"""

from polymodal.data.align.resample import RESAMPLE_METHODS as RESAMPLE_METHODS
from polymodal.data.align.resample import AlignedStreams, align_streams, resample_stream
from polymodal.data.align.timing import MERGE_REDUCTIONS as MERGE_REDUCTIONS
from polymodal.data.align.timing import StreamTiming, merge_duplicate_times, timing_stats
from polymodal.data.align.windows import LABEL_REDUCTIONS as LABEL_REDUCTIONS
from polymodal.data.align.windows import WindowLabels, Windows, sliding_windows, window_labels
from polymodal.data.align.words import POOL_REDUCTIONS as POOL_REDUCTIONS
from polymodal.data.align.words import WordInterval, pool_intervals, read_align_file

__all__ = [
    "AlignedStreams",
    "StreamTiming",
    "WindowLabels",
    "Windows",
    "WordInterval",
    "align_streams",
    "merge_duplicate_times",
    "pool_intervals",
    "read_align_file",
    "resample_stream",
    "sliding_windows",
    "timing_stats",
    "window_labels",
]
