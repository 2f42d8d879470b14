"""Manifests: CSV/JSONL data sets built in tmp_path from a few real FSDD WAVs and Flickr JPEGs."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from polymodal.data import ModalityKind, Schema
from polymodal.data.manifest import (
    ManifestDataset,
    Problem,
    check_manifest,
    infer_schema,
    load_schema_file,
    read_manifest,
)

WAVS = ("0_george_0.wav", "1_george_0.wav", "0_jackson_0.wav", "1_jackson_0.wav")
JPGS = ("1000268201_693b08cb0e.jpg", "1001773457_577c3a7d70.jpg", "1002674143_1b742ab4b8.jpg")

# Row numbers count the header as row 1.  Empty cells: b.image, b.height, c.caption, d.audio.
CSV = """\
id,audio,image,caption,age,height,label,split,group
a,wav/0_george_0.wav,img/1000268201_693b08cb0e.jpg,a child climbs the stairs,31,1.80,zero,train,george
b,wav/1_george_0.wav,,"a dog runs, fast",27,,one,train,george
c,wav/0_jackson_0.wav,img/1001773457_577c3a7d70.jpg,,40,1.70,zero,test,jackson
d,,img/1002674143_1b742ab4b8.jpg,two dogs play,22,1.60,one,test,jackson
"""


@pytest.fixture
def media(tmp_path: Path, data_root: Path) -> Path:
    """tmp_path/wav/*.wav and tmp_path/img/*.jpg copied from the shared data."""
    (tmp_path / "wav").mkdir()
    (tmp_path / "img").mkdir()
    for w in WAVS:
        shutil.copy(data_root / "fsdd" / "recordings" / w, tmp_path / "wav" / w)
    for j in JPGS:
        shutil.copy(data_root / "flickr8k" / "images" / j, tmp_path / "img" / j)
    return tmp_path


@pytest.fixture
def csv_manifest(media: Path) -> Path:
    path = media / "train.csv"
    path.write_text(CSV)
    return path


def test_infer_schema_kinds_shapes_and_classes(csv_manifest: Path) -> None:
    schema = infer_schema(csv_manifest)
    kinds = {m.name: m.kind for m in schema.modalities}
    assert kinds == {
        "audio": ModalityKind.AUDIO,
        "image": ModalityKind.IMAGE,
        "caption": ModalityKind.TEXT,
        "tabular": ModalityKind.TABULAR,
    }
    assert schema["tabular"].shape == (2,)  # age, height grouped into one vector
    assert schema["image"].shape == (3, 224, 224)
    assert schema["audio"].sample_rate == 8000
    assert schema.target.task == "classification"
    assert schema.target.class_names == ("one", "zero")


def test_tabular_separate_gives_one_modality_per_numeric_column(csv_manifest: Path) -> None:
    schema = infer_schema(csv_manifest, tabular="separate")
    assert [m.name for m in schema.modalities if m.kind is ModalityKind.TABULAR] == [
        "age",
        "height",
    ]
    assert schema["age"].shape == (1,)
    with pytest.raises(ValueError, match=r"tabular mode.*'group'"):
        infer_schema(csv_manifest, tabular="grouped")


def test_getitem_decodes_cells_and_empty_cells_are_missing(csv_manifest: Path) -> None:
    ds = ManifestDataset(csv_manifest)
    assert len(ds) == 4
    assert ds.targets() == [1, 0, 1, 0]  # zero -> 1, one -> 0 (sorted names)
    assert ds.groups() == ["george", "george", "jackson", "jackson"]
    b = ds[1]
    assert b.id == "b"
    assert b.modalities["image"] is None
    assert b.modalities["tabular"] is None  # height is empty in this row
    assert b.modalities["caption"] == "a dog runs, fast"
    audio = b.modalities["audio"]
    assert isinstance(audio, torch.Tensor) and audio.dim() == 1 and audio.numel() > 1000
    a = ds[0]
    assert torch.allclose(a.modalities["tabular"], torch.tensor([31.0, 1.8]))  # type: ignore[arg-type]
    assert a.modalities["image"].shape == (3, 224, 224)  # type: ignore[union-attr]
    assert a.meta["row"] == 2 and a.meta["files"]["audio"] == "wav/0_george_0.wav"


def test_decoding_is_lazy_and_errors_name_manifest_row_column_file(csv_manifest: Path) -> None:
    ds = ManifestDataset(csv_manifest)
    (csv_manifest.parent / "wav" / "0_jackson_0.wav").unlink()  # row 4's audio
    assert ds[0].id == "a"  # other rows still decode
    with pytest.raises(
        FileNotFoundError, match=r"0_jackson_0\.wav.*train\.csv: row 4, column 'audio'"
    ):
        ds[2]


def test_collate_gives_presence_masks(csv_manifest: Path) -> None:
    batch = ManifestDataset(csv_manifest).batch([0, 1, 2, 3])
    assert batch.ids == ["a", "b", "c", "d"]
    assert batch["audio"].present.tolist() == [True, True, True, False]
    assert batch["image"].present.tolist() == [True, False, True, True]
    assert batch["caption"].present.tolist() == [True, True, False, True]
    assert batch["caption"].values[2] == ""
    assert batch["tabular"].present.tolist() == [True, False, True, True]
    assert batch["image"].values.shape == (4, 3, 224, 224)
    assert batch["image"].values[1].abs().sum() == 0
    assert batch["audio"].lengths[3] == 0
    assert batch.target.tolist() == [1, 0, 1, 0]  # type: ignore[union-attr]


def test_all_missing_in_batch_zero_fills_from_inferred_shape(csv_manifest: Path) -> None:
    batch = ManifestDataset(csv_manifest).batch([1])  # row b has no image, no tabular
    assert batch["image"].values.shape == (1, 3, 224, 224)
    assert batch["tabular"].values.shape == (1, 2)
    assert batch["image"].present.tolist() == [False]


def test_split_column_selects_rows_and_keeps_global_classes(csv_manifest: Path) -> None:
    test = ManifestDataset(csv_manifest, split="test")
    assert [test[i].id for i in range(len(test))] == ["c", "d"]
    assert test.schema.target.class_names == ("one", "zero")
    assert test.splits == ("test", "train")
    with pytest.raises(ValueError, match=r"Unknown split 'tset'.*Did you mean 'test'"):
        ManifestDataset(csv_manifest, split="tset")


def test_dataloader_with_two_workers(csv_manifest: Path) -> None:
    ds = ManifestDataset(csv_manifest)
    pickle.loads(pickle.dumps(ds))  # workers receive a pickled copy
    batches = list(ds.loader(batch_size=2, num_workers=2))
    assert [b.ids for b in batches] == [["a", "b"], ["c", "d"]]
    assert batches[1]["audio"].present.tolist() == [True, False]
    assert batches[0]["image"].values.shape == (2, 3, 224, 224)


def test_jsonl_manifest_with_inline_features_and_line_numbers(media: Path) -> None:
    rows = [
        {
            "id": "x1",
            "audio": "wav/0_george_0.wav",
            "emb": [0.1, 0.2, 0.3],
            "text": "hi",
            "label": 0,
        },
        {"id": "x2", "audio": None, "emb": [1.0, 2.0, 3.0], "text": "", "label": 2},
        None,  # a blank line: line numbers still count it
        {"id": "x3", "audio": "wav/1_george_0.wav", "text": "yo", "label": 1},
    ]
    path = media / "m.jsonl"
    path.write_text("\n".join("" if r is None else json.dumps(r) for r in rows) + "\n")
    table = read_manifest(path)
    assert table.lines == (1, 2, 4)
    ds = ManifestDataset(path)
    kinds = {m.name: m.kind for m in ds.schema.modalities}
    assert kinds == {
        "audio": ModalityKind.AUDIO,
        "emb": ModalityKind.FEATURES,
        "text": ModalityKind.TEXT,
    }
    assert ds.schema["emb"].shape == (3,)
    assert ds.schema.target.class_names == ("0", "1", "2")
    batch = ds.batch([0, 1, 2])
    assert batch["audio"].present.tolist() == [True, False, True]
    assert batch["emb"].present.tolist() == [True, True, False]
    assert batch["text"].present.tolist() == [True, False, True]
    assert torch.allclose(batch["emb"].values[1], torch.tensor([1.0, 2.0, 3.0]))
    assert batch.target.tolist() == [0, 2, 1]  # type: ignore[union-attr]
    (media / "wav" / "1_george_0.wav").unlink()
    with pytest.raises(FileNotFoundError, match=r"m\.jsonl: row 4, column 'audio'"):
        ds[2]


def test_schema_file_maps_columns_and_sets_regression(csv_manifest: Path) -> None:
    schema_path = csv_manifest.parent / "schema.yaml"
    schema_path.write_text(
        "modalities:\n"
        "  - {name: voice, kind: audio, sample_rate: 8000}\n"
        "  - {name: body, kind: tabular}\n"
        "target: {task: regression, name: age}\n"
        "columns: {voice: audio, body: [height]}\n"
    )
    sf = load_schema_file(schema_path)
    assert sf.columns == {"voice": ("audio",), "body": ("height",)}
    ds = ManifestDataset(csv_manifest, schema=schema_path)
    assert ds.schema.names == ["voice", "body"]
    assert ds.schema.target.task == "regression"
    assert ds.targets() == [31.0, 27.0, 40.0, 22.0]
    assert ds.schema["body"].shape == (1,)
    s = ds[0]
    assert set(s.modalities) == {"voice", "body"}
    assert ds.batch([0, 1]).target.dtype == torch.float32  # type: ignore[union-attr]


def test_schema_object_round_trips(csv_manifest: Path) -> None:
    schema = infer_schema(csv_manifest)
    again = Schema.from_dict(json.loads(json.dumps(schema.to_dict())))
    ds = ManifestDataset(csv_manifest, schema=again)
    assert ds.schema.names == schema.names
    assert ds.columns["tabular"] == ("age", "height")


def test_unknown_schema_column_lists_columns_and_suggests(csv_manifest: Path) -> None:
    schema_path = csv_manifest.parent / "schema.json"
    schema_path.write_text(
        json.dumps({"modalities": [{"name": "captoin", "kind": "text"}], "target": {}})
    )
    with pytest.raises(
        ValueError,
        match=r"column 'captoin'.*Available columns: audio, image.*Did you mean 'caption'",
    ):
        ManifestDataset(csv_manifest, schema=schema_path)
    problems = check_manifest(csv_manifest, schema=schema_path)
    assert [(p.row, p.column) for p in problems] == [(None, "captoin")]


def test_unknown_schema_key_fails_fast(csv_manifest: Path) -> None:
    schema_path = csv_manifest.parent / "schema.yaml"
    schema_path.write_text("modalities: [{name: audio, kind: audio}]\ntargets: {}\n")
    with pytest.raises(
        ValueError, match=r"schema\.yaml': Unknown config key 'targets'.*Did you mean 'target'"
    ):
        load_schema_file(schema_path)
    schema_path.write_text("modalities: [{name: audio, kind: audio}]\ntarget: {class_name: [a]}\n")
    with pytest.raises(ValueError, match=r"'target.class_name'.*Did you mean 'class_names'"):
        ManifestDataset(csv_manifest, schema=schema_path)
    schema_path.write_text("modalities: [{name: audio, kind: audio}]\ncolumns: {adio: wav}\n")
    with pytest.raises(ValueError, match=r"'columns': Unknown modality 'adio'"):
        ManifestDataset(csv_manifest, schema=schema_path)


def test_unknown_label_raises_on_build_naming_row(csv_manifest: Path) -> None:
    schema_path = csv_manifest.parent / "schema.yaml"
    schema_path.write_text(
        "modalities: [{name: caption, kind: text}]\n"
        "target: {task: classification, class_names: [zero, uno]}\n"
    )
    with pytest.raises(ValueError, match=r"row 3, column 'label': label 'one' is not one of"):
        ManifestDataset(csv_manifest, schema=schema_path)


def test_unlabelled_rows_among_labelled_raise(media: Path) -> None:
    path = media / "m.csv"
    path.write_text("caption,label\nhello,a\nworld,\n")
    with pytest.raises(ValueError, match=r"rows \[3\] have an empty 'label'"):
        ManifestDataset(path)


def test_groups_fall_back_to_ids_and_row_ids(media: Path) -> None:
    path = media / "m.csv"
    path.write_text("caption,score\nhello,0.5\nworld,1.25\n")
    ds = ManifestDataset(path)
    assert ds.groups() == ["row2", "row3"]
    assert ds.schema.target.task == "classification" and ds.targets() == [None, None]
    assert ds.schema["tabular"].shape == (1,)


def test_float_labels_are_inferred_as_regression(media: Path) -> None:
    path = media / "m.csv"
    path.write_text("caption,label\nhello,0.5\nworld,-1.25\n")
    ds = ManifestDataset(path)
    assert ds.schema.target.task == "regression"
    assert ds.targets() == [0.5, -1.25]


def test_bad_manifest_path_and_suffix(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ManifestDataset(tmp_path / "nope.csv")
    (tmp_path / "m.xlsx").write_text("x")
    with pytest.raises(ValueError, match=r"suffix '\.xlsx'; expected one of \.csv"):
        ManifestDataset(tmp_path / "m.xlsx")


def _damage(media: Path) -> None:
    wav = (media / "wav" / "0_jackson_0.wav").read_bytes()
    (media / "wav" / "short.wav").write_bytes(wav[:30])  # cut inside the header
    (media / "img" / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg " * 20)


def test_check_manifest_reports_every_damaged_row(csv_manifest: Path) -> None:
    media = csv_manifest.parent
    _damage(media)
    path = media / "damaged.csv"
    path.write_text(
        CSV
        + "e,wav/missing.wav,,fine,30,1.5,one,train,x\n"  # row 6: missing file
        + "f,wav/short.wav,,fine,30,1.5,one,train,x\n"  # row 7: truncated WAV
        + "g,,img/bad.jpg,fine,30,1.5,zero,train,x\n"  # row 8: corrupt JPEG
        + "h,,,fine,nan,1.5,zero,train,x\n"  # row 9: NaN
        + "i,,,fine,30,1.5,two,train,x\n"  # row 10: label not in the schema
    )
    schema_path = media / "schema.yaml"
    schema_path.write_text(
        "modalities:\n"
        "  - {name: audio, kind: audio}\n"
        "  - {name: image, kind: image, shape: [3, 224, 224]}\n"
        "  - {name: caption, kind: text}\n"
        "  - {name: tabular, kind: tabular}\n"
        "target: {class_names: [one, zero]}\n"
    )
    problems = check_manifest(path, schema=schema_path)
    found = {(p.row, p.column, p.file) for p in problems}
    assert found == {
        (6, "audio", "wav/missing.wav"),
        (7, "audio", "wav/short.wav"),
        (8, "image", "img/bad.jpg"),
        (9, "age", None),
        (10, "label", None),
    }
    by_row = {p.row: p for p in problems}
    assert "not found" in by_row[6].message.lower()
    assert "NaN" in by_row[9].message
    assert "'two'" in by_row[10].message
    assert str(by_row[8]).startswith("row 8, column 'image', file 'img/bad.jpg': ")
    assert all(isinstance(p, Problem) for p in problems)


def test_check_manifest_jsonl_reports_bad_lines_and_shapes(media: Path) -> None:
    path = media / "m.jsonl"
    path.write_text(
        json.dumps({"emb": [1, 2, 3], "label": "a"})
        + "\n{not json\n"
        + json.dumps({"emb": [1, 2], "label": "b"})
        + "\n"
        + json.dumps({"emb": [1, 2, 3], "label": "a", "id": "dup"})
        + "\n"
        + json.dumps({"emb": [1, 2, 3], "label": "b", "id": "dup"})
        + "\n"
    )
    problems = check_manifest(path)
    found = [(p.row, p.column) for p in problems]
    assert found == [(2, None), (3, "emb"), (5, "id")]
    assert "not valid JSON" in problems[0].message
    assert "shape (2,) differs from the schema's (3,)" in problems[1].message


def test_check_manifest_clean_is_empty(csv_manifest: Path) -> None:
    assert check_manifest(csv_manifest) == []


def test_multilabel_from_schema_with_lists_and_separators(media: Path) -> None:
    path = media / "m.jsonl"
    path.write_text(
        json.dumps({"text": "a", "label": ["cat", "dog"]})
        + "\n"
        + json.dumps({"text": "b", "label": "dog;bird"})
        + "\n"
    )
    schema_path = media / "s.yaml"
    schema_path.write_text(
        "modalities: [{name: text, kind: text}]\n"
        "target: {task: multilabel, class_names: [bird, cat, dog]}\n"
    )
    ds = ManifestDataset(path, schema=schema_path)
    assert ds.batch([0, 1]).target.tolist() == [[0.0, 1.0, 1.0], [1.0, 0.0, 1.0]]  # type: ignore[union-attr]


def test_column_mixing_file_kinds_is_an_error(media: Path) -> None:
    path = media / "m.csv"
    path.write_text("media,label\nwav/0_george_0.wav,a\nimg/1000268201_693b08cb0e.jpg,b\n")
    with pytest.raises(
        ValueError, match=r"column 'media' holds files of several kinds \(audio,image\)"
    ):
        infer_schema(path)
