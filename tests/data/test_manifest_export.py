"""``export_manifest`` / ``polymodal datasets export``: built-in data sets written as manifests
and read back exactly, on the shared real data."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from polymodal.cli.main import main
from polymodal.data.datasets import load_dataset
from polymodal.data.manifest import ManifestDataset
from polymodal.data.manifest.export import export_manifest
from polymodal.training.config import load_config

REPO = Path(__file__).resolve().parents[2]


def _same(a: object, b: object) -> bool:
    if isinstance(b, str) or b is None:
        return a == b
    assert isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)
    return a.shape == b.shape and torch.equal(a, b)


@pytest.mark.parametrize(
    ("name", "options", "modalities"),
    [
        ("av_digits", {"normalize": False}, None),  # audio (WAV) + image (PNG)
        ("har_phone_watch", {}, None),  # time series (CSV with timestamps)
        ("mosi", {}, ("transcript", "audio")),  # inline text + features (.npy)
    ],
)
def test_export_reads_back_exactly(
    data_root: Path,
    tmp_path: Path,
    name: str,
    options: dict[str, object],
    modalities: tuple[str, ...] | None,
) -> None:
    extra = {"modalities": modalities} if modalities else {}
    splits = {s: load_dataset(name, split=s, **options, **extra) for s in ("train", "test")}
    summary = export_manifest(splits, tmp_path, limit=3, show_progress=False)
    assert summary.rows == {"train": 3, "test": 3}
    for split, source in splits.items():
        reread = ManifestDataset(summary.manifest, split=split, schema=str(summary.schema))
        plain = load_dataset(name, split=split, **extra)  # normalised, as training reads it
        n = len(source)
        assert len(reread) == 3
        assert reread.groups() == [source.groups()[i * n // 3] for i in range(3)]
        for k in range(3):
            got, want = reread[k], plain[k * n // 3]
            assert got.id == want.id
            assert got.target == want.target
            assert set(got.modalities) == set(want.modalities)
            for m, value in want.modalities.items():
                assert _same(got.modalities[m], value), (split, k, m)


def test_limit_spreads_over_the_split_and_the_manifest_infers_alone(
    data_root: Path, tmp_path: Path
) -> None:
    splits = {"train": load_dataset("av_digits", split="train", normalize=False)}
    summary = export_manifest(splits, tmp_path, limit=40, show_progress=False)
    with summary.manifest.open() as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["id", "audio", "image", "label", "split", "group"]
    # train is sorted by speaker, then digit: every 50th row has each digit of each speaker
    assert {r["label"] for r in rows} == {str(d) for d in range(10)}
    assert {r["group"] for r in rows} == {"george", "jackson", "lucas", "nicolas"}
    assert summary.files == 80 and all((tmp_path / r["audio"]).is_file() for r in rows)
    inferred = ManifestDataset(summary.manifest, split="train")  # no schema file
    assert [s.name for s in inferred.schema.modalities] == ["audio", "image"]
    assert inferred.schema.modalities[0].sample_rate == 8000
    assert inferred.schema.target.num_classes == 10


def test_export_never_replaces_a_manifest_unless_told(data_root: Path, tmp_path: Path) -> None:
    splits = {"test": load_dataset("mosi", split="test", modalities=("transcript",))}
    export_manifest(splits, tmp_path, limit=2, show_progress=False)
    before = (tmp_path / "manifest.csv").read_text()
    with pytest.raises(ValueError, match=r"manifest\.csv already exists.*overwrite=True"):
        export_manifest(splits, tmp_path, limit=3, show_progress=False)
    assert (tmp_path / "manifest.csv").read_text() == before
    export_manifest(splits, tmp_path, limit=3, overwrite=True, show_progress=False)
    assert len((tmp_path / "manifest.csv").read_text().splitlines()) == 4


def test_export_refuses_normalised_images_and_mixed_schemas(
    data_root: Path, tmp_path: Path
) -> None:
    normalised = {"test": load_dataset("av_digits", split="test")}
    with pytest.raises(ValueError, match=r"image 'image' has values in .*normalize=False"):
        export_manifest(normalised, tmp_path / "a", limit=1, show_progress=False)
    mixed = {
        "train": load_dataset("mosi", split="train", modalities=("transcript",)),
        "test": load_dataset("mosi", split="test", modalities=("audio",)),
    }
    with pytest.raises(ValueError, match="Split 'test' has another schema than split 'train'"):
        export_manifest(mixed, tmp_path / "b", show_progress=False)
    with pytest.raises(ValueError, match="'limit' parameter must be a positive int"):
        export_manifest(mixed, tmp_path / "c", limit=0, show_progress=False)


def test_cli_export_then_train_the_shipped_manifest_config(
    data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "av"
    assert main(["datasets", "export", "av_digits", "-o", str(out), "--limit", "24"]) == 0
    printed = capsys.readouterr().out
    assert "24 train, 24 test rows; 96 files" in printed
    assert f"polymodal train {out / 'manifest.csv'} --label label" in printed
    assert main(["datasets", "export", "av_digits", "-o", str(out)]) == 2
    assert "already exists; export into an empty folder, or pass --overwrite" in (
        capsys.readouterr().err
    )
    assert main(["datasets", "export", "av_digits", "-o", str(out), "--split", "dev"]) == 2
    assert "has splits train, test, all" in capsys.readouterr().err

    config = REPO / "configs" / "av_digits_manifest.yaml"
    cfg = load_config(config)
    assert cfg.data.manifest == "manifests/av_digits/manifest.csv"  # type: ignore[attr-defined]
    run = tmp_path / "run"
    code = main(
        [
            "train",
            str(config),
            f"data.manifest={out / 'manifest.csv'}",
            f"data.schema={out / 'schema.yaml'}",
            "optim.epochs=1",
            "data.batch_size=8",
            f"output_dir={run}",
        ]
    )
    assert code == 0
    results = json.loads((run / "results.json").read_text())
    assert results["epochs_run"] == 1
    assert 0.0 <= results["test"]["accuracy"] <= 1.0  # the held-out speakers were evaluated
    saved = json.loads((run / "schema.json").read_text())
    assert [m["name"] for m in saved["modalities"]] == ["audio", "image"]
