"""A user's own data set as a CSV or JSONL manifest.

One row per example, one column per modality::

    id,audio,image,caption,age,height,label,split,group
    a1,wav/0_jackson_0.wav,img/1.jpg,a dog runs,31,1.80,zero,train,jackson
    a2,wav/1_nicolas_0.wav,,a cat sleeps,27,,one,test,nicolas

* file paths are relative to the manifest's folder (or ``base_dir``); absolute paths work too;
* inline text, inline numbers, and (JSONL, or a JSON string in CSV) inline feature lists;
* a label column (``label``), an optional split column (``split``), id column (``id``)
  and group column (``group``, the unit a validation split must not cut through).

An empty cell means "this example lacks this modality": the :class:`Sample` value is
``None`` and the batch's presence mask is False there.  It is never an error.

Column kinds are inferred (:func:`infer_schema`) unless a schema says otherwise, and only
when the values leave no doubt:

* every non-empty value that has a known file extension maps to one kind, and at least
  half of the values do -> a modality of that kind (``.wav`` audio, ``.jpg`` image,
  ``.mp4`` video, ``.csv`` time series, ``.npy`` features, see
  :data:`polymodal.data.decode.EXTENSIONS`);
* EVERY value a number -> one ``tabular`` modality named ``"tabular"`` holding ALL numeric
  columns as a (n,) vector, in column order (``tabular="separate"``: one (1,) modality per
  column).  If any of its cells is empty in a row, the whole vector is missing for that row;
* EVERY value a list of numbers -> ``features``;
* numbers (or lists) mixed with other values -> an error naming the odd rows: one typo must
  not turn a numeric column into text that no encoder reads.  Fix the cells, or state the
  column's kind in a schema file (``kinds``);
* anything else -> ``text``.  A text cell holds the text itself: a cell that names an
  existing file (``notes/1.txt``, ``/etc/passwd``) or a device is an error, never read.

The task is inferred from the labels only when unambiguous: all JSON lists -> multilabel;
no number with a fractional part -> classification (classes sorted from the values,
numerically when all are integers); all numbers, at least half of them fractional ->
regression.  Anything else (one ``0.5`` among 0/1 labels) is an error naming the label
column and the odd rows; state the task in a schema file.  Multilabel cells are JSON lists
or ``;``-separated strings.  :class:`ManifestDataset` logs (INFO) how each column is read
and whether that was inferred or stated; ``polymodal datasets check`` prints it.

A schema file (YAML or JSON) fixes what inference would guess, in one of two ways.  Every
modality spelled out (other columns are not read)::

    modalities:                       # ModalitySpec.to_dict() fields
      - {name: voice, kind: audio, sample_rate: 8000}
      - {name: caption, kind: text}
      - {name: tabular, kind: tabular}
    target: {task: classification, class_names: [one, zero]}
    columns: {voice: audio, caption: caption, tabular: [age, height]}   # optional
    required: [voice]                 # optional: modalities check_manifest wants present

or only what inference cannot tell, the rest inferred::

    kinds: {age: tabular, comment: text, scratch: ignore}   # column -> kind, or ignore
    target: {task: regression}

A modality reads the column of its own name unless ``columns`` maps it elsewhere; a
``tabular`` modality whose name is not a column takes every numeric column no other
modality claims.  The schema target's ``name`` (if given) is the label column.

What training read is recorded in the resolved :class:`Schema` (the run's ``schema.json``),
so ``predict`` reads new data the same way, or says what differs: each modality's
``columns`` (read by name: tabular columns in another order give the same vector); an
image's ``shape`` (every image is resized to it); and for a time series (``.csv`` with a
``timestamp`` column in milliseconds, unless ``time_unit`` says otherwise) its
``channels`` (read by name, in any order), ``time_unit``, ``sample_rate`` (the rate the
first files' timestamps imply; a file more than 20% off is an error that names a likely unit
mix-up) and ``length`` (when the first files are windows of one length, a series shorter
than half of it is an error).  A schema file may state any of these; a trained schema is
never refilled from new data.

:func:`check_manifest` decodes every row and file and returns ALL problems found
(missing or corrupt files, NaN, unknown labels, wrong shapes, unknown columns, columns
and tasks that cannot be inferred, a manifest without rows) as :class:`Problem` records
instead of stopping at the first; ``polymodal datasets check`` prints them.  It reads the
manifest with the same reader, schema resolution and cell checks as
:class:`ManifestDataset` (which runs every check that needs no file when it is built), so
what the check passes, ``train`` and ``predict`` read.  A manifest that cannot be read at
all (not UTF-8, a cell over the CSV field limit, a folder or FIFO) raises, naming the file
and row.

Layout of this package (each file imports only from files listed above it):

* ``problems.py``: :class:`Problem` and ``ManifestError``;
* ``table.py``: reading CSV/TSV/JSONL into raw cells (:class:`ManifestTable`,
  :func:`read_manifest`);
* ``cells.py``: single cells as numbers, lists, file kinds, label keys; a column's kind;
* ``schema_file.py``: YAML/JSON schema files (:class:`SchemaFile`, :func:`load_schema_file`);
* ``decoding.py``: decoding cells to values and labels to targets, and the ``_Plan``
  that holds everything decoding a row needs;
* ``target.py``: the task the labels imply and the classes;
* ``infer.py``: kind inference, column mapping, building the ``_Plan``, describing it;
* ``check.py``: :func:`check_manifest` and the row checks the data set shares;
* ``dataset.py``: :class:`ManifestDataset` and :func:`infer_schema`.
"""

from polymodal.data.manifest.check import CheckReport, check_manifest, check_manifest_report
from polymodal.data.manifest.dataset import ManifestDataset, infer_schema
from polymodal.data.manifest.infer import describe_plan
from polymodal.data.manifest.problems import ManifestError as ManifestError
from polymodal.data.manifest.problems import Problem
from polymodal.data.manifest.schema_file import SchemaFile, load_schema_file
from polymodal.data.manifest.table import MANIFEST_SUFFIXES, ManifestTable, read_manifest

__all__ = [
    "MANIFEST_SUFFIXES",
    "CheckReport",
    "ManifestDataset",
    "ManifestTable",
    "Problem",
    "SchemaFile",
    "check_manifest",
    "check_manifest_report",
    "describe_plan",
    "infer_schema",
    "load_schema_file",
    "read_manifest",
]
