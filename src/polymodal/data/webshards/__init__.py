"""A data set's splits as WebDataset tar shards: written once, read by index or streamed.

``polymodal shards write SOURCE -o DIR`` (:func:`write_shards`) decodes every example of
a manifest or built-in data set once and stores its decoded arrays in
``DIR/<split>-000000.tar``, ... with ``DIR/<split>.json`` (schema, count, ids, groups,
targets, each shard's sha256).  Two readers give back the source's :class:`Sample`
exactly, so collate and models are unchanged:

* :class:`ShardDataset`, map-style (seeks to an example's arrays): ``len``, targets and
  groups from the index; what ``data.shards: DIR`` in a run config trains on, with the same
  batches as the source;
* :class:`ShardStream`, an ``IterableDataset`` read with the ``webdataset`` package
  (``pip install 'polymodal[shards]'``), split across ranks and DataLoader workers,
  shuffled through a seeded buffer.

(Not to be confused with :mod:`polymodal.featurize.shards`, featurize's own output
folders.)
"""

from polymodal.data.webshards.codec import ShardError, read_index
from polymodal.data.webshards.reader import ShardDataset
from polymodal.data.webshards.stream import ShardStream, distributed_rank
from polymodal.data.webshards.write import write_shards

__all__ = [
    "ShardDataset",
    "ShardError",
    "ShardStream",
    "distributed_rank",
    "read_index",
    "write_shards",
]
