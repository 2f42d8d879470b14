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


def test_cache_mb_keeps_decoded_files_within_its_bound(csv_manifest: Path) -> None:
    ds = ManifestDataset(csv_manifest, cache_mb=4.0)
    first = ds[0]
    # Every file is read once: with the files gone, cached rows still decode, identically.
    shutil.rmtree(csv_manifest.parent / "wav")
    again = ds[0]
    assert torch.equal(again.modalities["audio"], first.modalities["audio"])  # type: ignore[arg-type]
    assert again.meta["files"] == first.meta["files"]
    assert ds.cache.hits == 2 and ds.cache.nbytes <= ds.cache.max_bytes
    with pytest.raises(FileNotFoundError):
        ds[1]  # never read: not cached
    small = ManifestDataset(csv_manifest, cache_mb=0.5)  # less than one 224x224 image
    small[3]
    assert small.cache.nbytes <= small.cache.max_bytes and len(small.cache) == 0
    uncached = ManifestDataset(csv_manifest)
    assert uncached.cache.max_bytes == 0
    with pytest.raises(ValueError, match=r"'cache_mb' parameter of ManifestDataset.*got -1"):
        ManifestDataset(csv_manifest, cache_mb=-1)


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
    with pytest.raises(
        ValueError, match=r"(?s)m\.csv' has 1 problem.*row 3, column 'label': label is empty"
    ):
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
    assert "shape (2,) differs from (3,), the most common shape" in problems[1].message


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


# --------------------------------------------------------------------------- nothing silent


def _csv(tmp_path: Path, text: str, name: str = "m.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_typo_in_a_numeric_column_is_refused_naming_file_row_column_value(
    tmp_path: Path,
) -> None:
    path = _csv(tmp_path, "caption,age,label\nhi,1,0\nyo,abc,1\nho,3,0\n")
    with pytest.raises(
        ValueError,
        match=r"m\.csv': column 'age' mixes numbers \(2 rows\) with other values \(1 row\)"
        r".*row 3: 'abc'.*state its kind in a schema file \(kinds: \{age: text\}",
    ):
        ManifestDataset(path)
    problems = check_manifest(path)
    assert [(p.row, p.column) for p in problems] == [(3, "age")]
    assert "value 'abc' is not a number, but the column's 2 other values are" in str(problems[0])
    # stated kinds: the rest is still inferred
    (tmp_path / "text.yaml").write_text("kinds: {age: text}\n")
    ds = ManifestDataset(path, schema=tmp_path / "text.yaml")
    assert {m.name: m.kind for m in ds.schema.modalities} == {
        "caption": ModalityKind.TEXT,
        "age": ModalityKind.TEXT,
    }
    (tmp_path / "tab.yaml").write_text("kinds: {age: tabular}\n")
    with pytest.raises(ValueError, match=r"row 3, column 'age': expected a number, got 'abc'"):
        ManifestDataset(path, schema=tmp_path / "tab.yaml")
    (tmp_path / "ign.yaml").write_text("kinds: {age: ignore}\n")
    ds = ManifestDataset(path, schema=tmp_path / "ign.yaml")
    assert ds.schema.names == ["caption"]


def test_stray_numbers_in_a_text_column_are_named_too(tmp_path: Path) -> None:
    path = _csv(tmp_path, "note,label\nhello,a\nworld,b\n42,a\nfoo,b\n")
    with pytest.raises(ValueError, match=r"column 'note' mixes numbers \(1 row\).*row 4: '42'"):
        infer_schema(path)
    (p,) = check_manifest(path)
    assert (p.row, p.column) == (4, "note") and "is a number, but the column's 3" in p.message


def test_a_schema_with_tabular_modality_names_a_numeric_column_with_a_typo(
    csv_manifest: Path,
) -> None:
    path = csv_manifest.parent / "typo.csv"
    path.write_text(CSV.replace(",27,", ",twenty,"))  # row 3's age
    schema_path = csv_manifest.parent / "s.yaml"
    schema_path.write_text(
        "modalities: [{name: caption, kind: text}, {name: body, kind: tabular}]\n"
    )
    with pytest.raises(ValueError, match=r"column 'age' mixes numbers.*row 3: 'twenty'"):
        ManifestDataset(path, schema=schema_path)


def test_an_ambiguous_task_is_an_error_naming_column_rows_and_the_fix(tmp_path: Path) -> None:
    path = _csv(tmp_path, "caption,label\na,0\nb,1\nc,0.5\nd,1\n")
    with pytest.raises(
        ValueError,
        match=r"m\.csv': the task of label column 'label' cannot be inferred: 3 labels have "
        r"no fractional part \(classes 0, 1: classification\?\) and 1 label has one "
        r"\(regression\?\); the fewer: row 4: '0\.5'.*target: \{task: classification\}",
    ):
        ManifestDataset(path)
    (p,) = check_manifest(path)
    assert (p.row, p.column) == (None, "label") and "row 4: '0.5'" in p.message
    (tmp_path / "reg.yaml").write_text("target: {task: regression}\n")
    ds = ManifestDataset(path, schema=tmp_path / "reg.yaml")
    assert ds.schema.target.task == "regression" and ds.targets() == [0.0, 1.0, 0.5, 1.0]
    assert ds.schema.names == ["caption"]  # modalities still inferred
    (tmp_path / "cls.yaml").write_text("target: {task: classification}\n")
    ds = ManifestDataset(path, schema=tmp_path / "cls.yaml")
    assert ds.schema.target.class_names == ("0", "0.5", "1")
    # lists among single labels
    mixed = tmp_path / "m.jsonl"
    mixed.write_text(
        "\n".join(
            json.dumps(r)
            for r in [
                {"t": "a", "label": ["x", "y"]},
                {"t": "b", "label": "x"},
                {"t": "c", "label": ["y"]},
            ]
        )
        + "\n"
    )
    with pytest.raises(ValueError, match=r"2 labels have lists \(multilabel\?\).*row 2: 'x'"):
        ManifestDataset(mixed)


def test_unambiguous_tasks_are_inferred_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="polymodal")
    ds = ManifestDataset(_csv(tmp_path, "caption,label\nhello,0.5\nworld,-1.25\nyo,2\n"))
    assert ds.schema.target.task == "regression"
    assert "target: regression <- column 'label' (inferred: every label is a number" in caplog.text
    assert "modality 'caption': text <- column 'caption' (inferred:" in caplog.text
    ds = ManifestDataset(_csv(tmp_path, "caption,label\nhello,1\nworld,2\n", "c.csv"))
    assert ds.schema.target.task == "classification"
    assert "classification, 2 classes (1, 2) <- column 'label' (inferred: no label" in caplog.text


def test_schema_file_kinds_and_task_are_validated(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text("kinds: {age: numbr}\n")
    with pytest.raises(ValueError, match=r"'kinds.age': Unknown kind 'numbr'.*Valid kinds"):
        load_schema_file(tmp_path / "s.yaml")
    (tmp_path / "s.yaml").write_text("target: {task: regresion}\n")
    with pytest.raises(ValueError, match=r"Unknown task 'regresion'.*Did you mean 'regression'"):
        load_schema_file(tmp_path / "s.yaml")
    (tmp_path / "s.yaml").write_text("modalities: [{name: a, kind: text}]\nkinds: {a: text}\n")
    with pytest.raises(ValueError, match=r"not both"):
        load_schema_file(tmp_path / "s.yaml")
    path = _csv(tmp_path, "caption,label\nhello,a\n")
    (tmp_path / "s.yaml").write_text("kinds: {captoin: text}\n")
    with pytest.raises(ValueError, match=r"'kinds' names column 'captoin'.*Did you mean 'caption'"):
        ManifestDataset(path, schema=tmp_path / "s.yaml")


def test_a_cell_over_the_csv_limit_names_file_and_row(tmp_path: Path) -> None:
    path = _csv(tmp_path, "caption,label\nshort,0\n" + "x" * 140_000 + ",1\n")
    with pytest.raises(
        ValueError, match=r"m\.csv': row 3 cannot be read as CSV \(field larger.*never closed"
    ):
        check_manifest(path)
    path.write_text('caption,label\nshort,0\n"unclosed,1\n' + "more,0\n" * 30_000)
    with pytest.raises(ValueError, match=r"row 3 cannot be read as CSV"):
        ManifestDataset(path)


def test_a_latin1_manifest_names_file_offset_line_and_says_save_as_utf8(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_bytes("caption,label\nok,0\ncaf\xe9,1\n".encode("latin-1"))
    with pytest.raises(
        ValueError,
        match=r"m\.csv' is not UTF-8: byte 0xe9 at byte offset 22 \(line 3: 'caf.,1'\).*"
        r"Save it as UTF-8",
    ):
        ManifestDataset(path)
    path.write_bytes("caption,label\nok,0\n".encode("utf-16"))
    with pytest.raises(ValueError, match=r"m\.csv' is UTF-16 text.*Save it as UTF-8"):
        check_manifest(path)
    jl = tmp_path / "m.jsonl"
    jl.write_bytes('{"t": "ok"}\n{"t": "caf\xe9"}\n'.encode("latin-1"))
    with pytest.raises(ValueError, match=r"m\.jsonl' is not UTF-8: .*\(line 2"):
        read_manifest(jl)


def test_a_header_only_manifest_fails_check_and_build(tmp_path: Path) -> None:
    path = _csv(tmp_path, "caption,label\n")
    (p,) = check_manifest(path)
    assert p.row is None and "no rows of data" in p.message
    with pytest.raises(ValueError, match=r"m\.csv' has no rows of data"):
        ManifestDataset(path)


def test_text_cells_naming_files_or_devices_are_refused(tmp_path: Path) -> None:
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("the real text")
    path = _csv(tmp_path, "caption,label\nnotes/a.txt,0\n/dev/zero,1\nand/or a dog,0\nnotes,1\n")
    problems = check_manifest(path)
    assert [(p.row, p.column) for p in problems] == [(2, "caption"), (3, "caption")]
    assert "'notes/a.txt' is the path of an existing file" in problems[0].message
    assert "does not read text from files" in problems[0].message
    assert "'/dev/zero' names a device" in problems[1].message
    with pytest.raises(ValueError, match=r"row 2, column 'caption': text cell 'notes/a\.txt'"):
        ManifestDataset(path)


@pytest.mark.skipif(not hasattr(__import__("os"), "mkfifo"), reason="needs FIFOs")
def test_fifos_are_refused_never_opened(tmp_path: Path) -> None:
    import os

    os.mkfifo(tmp_path / "pipe.wav")
    path = _csv(tmp_path, "audio,label\npipe.wav,0\n")
    (p,) = check_manifest(path)
    assert (p.row, p.column, p.file) == (2, "audio", "pipe.wav")
    assert "is a FIFO (named pipe), not a regular file" in p.message
    ds = ManifestDataset(path)
    with pytest.raises(ValueError, match=r"m\.csv: row 2, column 'audio': 'pipe\.wav' is a FIFO"):
        ds[0]
    os.mkfifo(tmp_path / "fifo.csv")
    with pytest.raises(ValueError, match=r"fifo\.csv' is a FIFO \(named pipe\), not a regular"):
        read_manifest(tmp_path / "fifo.csv")
    (tmp_path / "dir.csv").mkdir()
    with pytest.raises(ValueError, match=r"dir\.csv' is a folder; give the manifest file"):
        read_manifest(tmp_path / "dir.csv")


def test_a_bad_first_row_is_blamed_not_the_good_ones(media: Path) -> None:
    path = media / "m.jsonl"
    rows = [{"emb": [1, 2], "label": "a"}] + [{"emb": [1, 2, 3], "label": "b"}] * 3
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (p,) = check_manifest(path)
    assert (p.row, p.column) == (1, "emb")
    assert "shape (2,) differs from (3,), the most common shape in the column" in p.message
    # a corrupt first image: the shape comes from the files that decode
    (media / "img" / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg " * 20)
    img = media / "i.csv"
    img.write_text("image,label\nimg/bad.jpg,a\n" + "".join(f"img/{j},b\n" for j in JPGS))
    assert infer_schema(img)["image"].shape == (3, 224, 224)
    assert [(p.row, p.file) for p in check_manifest(img)] == [(2, "img/bad.jpg")]


def test_labels_false_ignores_the_label_column(tmp_path: Path) -> None:
    path = _csv(tmp_path, "caption,label\nhello,cat\nworld,never-seen\n")
    schema = Schema.from_dict(
        {
            "modalities": [{"name": "caption", "kind": "text"}],
            "target": {"task": "classification", "num_classes": 2, "class_names": ["cat", "dog"]},
        }
    )
    with pytest.raises(ValueError, match=r"label 'never-seen' is not one of"):
        ManifestDataset(path, schema=schema)
    ds = ManifestDataset(path, schema=schema, labels=False)
    assert ds.targets() == [None, None]
    assert ds.schema.target.class_names == ("cat", "dog")  # the model's, for predictions
    assert check_manifest(path, schema=schema, labels=False) == []


def test_duplicate_ids_fail_the_build_as_they_fail_the_check(tmp_path: Path) -> None:
    path = _csv(tmp_path, "id,caption\na,x\nb,y\na,z\n")
    assert [(p.row, p.column) for p in check_manifest(path)] == [(4, "id")]
    with pytest.raises(ValueError, match=r"row 4, column 'id': id 'a' repeats row 2"):
        ManifestDataset(path)


def test_a_split_without_labels_is_unlabelled_data_not_a_problem(tmp_path: Path) -> None:
    path = _csv(tmp_path, "caption,label,split\na,x,train\nb,,train\nc,,new\n")
    assert [(p.row, p.column) for p in check_manifest(path)] == [(3, "label")]
    assert ManifestDataset(path, split="new").targets() == [None]


def test_check_progress_bar_and_log_lines(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    from polymodal.data.manifest import check as check_mod

    path = _csv(tmp_path, "caption\n" + "".join(f"t{i}\n" for i in range(10)))
    assert check_manifest(path, progress=True) == []
    err = capsys.readouterr().err
    assert "checking m.csv" in err and "10/10" in err
    monkeypatch.setattr(check_mod, "LOG_EVERY_ROWS", 4)
    caplog.set_level("INFO", logger="polymodal")
    assert check_manifest(path, progress=None) == []  # stderr is no terminal under pytest
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["m.csv: checked 4 of 10 rows (40%)", "m.csv: checked 8 of 10 rows (80%)"]


def test_task_states_the_label_columns_task(tmp_path: Path) -> None:
    from polymodal.data.manifest import ManifestDataset

    path = tmp_path / "m.csv"
    path.write_text("id,x,label\n" + "".join(f"r{i},{i / 3:.2f},{i % 3}\n" for i in range(9)))
    assert ManifestDataset(path).schema.target.task == "classification"
    reg = ManifestDataset(path, task="regression")
    assert reg.schema.target.task == "regression" and reg.targets()[:3] == [0.0, 1.0, 2.0]
    with pytest.raises(ValueError, match="Unknown task 'ranking'"):
        ManifestDataset(path, task="ranking")
