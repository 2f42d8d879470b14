"""The CLI answers ``--help``, argument errors and ``list`` without importing torch; help
shows plain text; ``train --device``; errors name the flags, not Python arguments."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from polymodal.cli import plain_text
from polymodal.cli.catalogue import CATALOGUE
from polymodal.cli.list_cmd import LISTABLE, format_rows, registry_for, registry_rows
from polymodal.cli.main import build_parser, main

HEAVY = ("torch", "numpy", "yaml", "polymodal.data", "polymodal.training")

# Every command and verb: its --help must not import torch.
COMMANDS = [
    [],
    ["datasets"],
    ["datasets", "list"],
    ["datasets", "info"],
    ["datasets", "check"],
    ["datasets", "download"],
    ["list"],
    ["train"],
    ["evaluate"],
    ["predict"],
    ["explain"],
    ["demo"],
    ["embed"],
    ["index"],
    ["index", "build"],
    ["search"],
    ["featurize"],
    ["shards"],
    ["shards", "write"],
    ["sentiment"],
    ["robustness"],
    ["serve"],
    ["caption"],
]


def _run_fresh(calls: list[list[str]]) -> dict[str, object]:
    """Run ``main(argv)`` for each of ``calls`` in a fresh interpreter; return the exit
    codes, the help texts and the heavy modules it had loaded at the end."""
    code = (
        "import contextlib, io, json, sys\n"
        "from polymodal.cli.main import main\n"
        "codes, out = [], []\n"
        f"for argv in {calls!r}:\n"
        "    buf = io.StringIO()\n"
        "    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(io.StringIO()):\n"
        "        try:\n"
        "            codes.append(main(argv))\n"
        "        except SystemExit as e:\n"
        "            codes.append(e.code)\n"
        "    out.append(buf.getvalue())\n"
        f"heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'numpy', 'yaml')"
        " or m.startswith(('polymodal.data', 'polymodal.training')))\n"
        "print(json.dumps({'codes': codes, 'out': out, 'heavy': heavy}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_help_of_every_command_imports_no_torch() -> None:
    result = _run_fresh([[*c, "--help"] for c in COMMANDS])
    assert result["codes"] == [0] * len(COMMANDS)
    assert result["heavy"] == []


def test_argument_errors_and_list_import_no_torch() -> None:
    calls = [
        ["trian"],
        ["train", "--bogus"],
        ["evaluate"],
        ["index", "build", "x", "--faiss", "nope"],
        ["explain", "run", "--target", "nope"],
        ["list", "encoders"],
        ["list", "fusions"],
        ["list", "encoders", "mlp"],
        ["list", "tasks"],
    ]
    result = _run_fresh(calls)
    assert result["codes"] == [2, 2, 2, 2, 2, 0, 0, 0, 0]
    assert result["heavy"] == []
    out = result["out"]
    assert isinstance(out, list)
    assert out[-1] == "\n".join(format_rows(CATALOGUE["tasks"])) + "\n"
    assert [line.split()[0] for line in out[-1].splitlines()] == [
        "name",
        "captioning",
        "context",
        "contrastive",
        "supervised",
    ]
    assert "    dim:           int = 128" in out[-2]


def test_list_shows_each_components_input_and_parameters(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["list", "encoders"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "input", "description"]
    mlp = next(i for i, line in enumerate(lines) if line.startswith("mlp "))
    assert lines[mlp].split()[:2] == ["mlp", "tabular,features"]
    column = lines[0].index("description")
    params = lines[mlp + 1]
    assert params[:column].strip() == "" and params.lstrip().startswith("dim=128  hidden_dim=null")
    assert all(len(line) <= 100 for line in lines if not line[:column].strip())
    assert main(["list", "fusions", "late"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("late (fusion; input: decision)\n")
    assert "parameters (model.fusion.params; name: type = default):" in out
    assert "    combine:    str = mean" in out and "in_dims" not in out  # polymodal's to give
    assert main(["list", "encoders", "mpl"]) == 2
    err = capsys.readouterr().err
    assert "Unknown encoder 'mpl'. Valid encoders: audio_cnn," in err and "'mlp'?" in err


def test_builder_params_read_the_signature() -> None:
    from polymodal.cli.list_cmd import builder_params, yaml_value

    def build(
        spec: object,
        dim: int = 8,
        sizes: tuple[int, ...] = (1, 2),
        *,
        name: str = "x",
        norm: bool | None = None,
    ) -> None: ...

    assert builder_params(build) == (
        ("dim", "int", "8"),
        ("sizes", "tuple[int, ...]", "[1, 2]"),
        ("name", "str", "x"),
        ("norm", "bool | None", "null"),
    )
    assert [yaml_value(v) for v in (True, 0.5, "", {"a": [1]})] == ["true", "0.5", "''", "{a: [1]}"]


def test_the_console_entry_point_answers_help_without_torch() -> None:
    code = (
        "import sys\n"
        "sys.argv = ['polymodal', '--help']\n"
        "try:\n"
        "    import polymodal.__main__\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "usage: polymodal" in done.stdout
    assert done.stdout.strip().endswith("False")


@pytest.mark.parametrize("what", sorted(LISTABLE))
def test_list_catalogue_matches_the_registries(what: str) -> None:
    live = tuple(registry_rows(registry_for(what)))
    assert CATALOGUE[what] == live, (
        f"polymodal/cli/catalogue.py is out of date for {what!r}: run "
        "`python -m polymodal.cli.list_cmd` then `ruff format src/polymodal/cli/catalogue.py`."
    )


def test_restated_choices_match_the_library() -> None:
    from polymodal.cli import explain, index_cmd
    from polymodal.retrieval.faiss_index import FAISS_KINDS
    from polymodal.robustness.shapley import MAX_MODALITIES, TARGETS

    assert index_cmd.FAISS_CHOICES == FAISS_KINDS
    assert explain.TARGETS == TARGETS
    assert explain.MAX_MODALITIES == MAX_MODALITIES


# --------------------------------------------------------------------------- plain help


@pytest.mark.parametrize(
    ("text", "plain"),
    [
        ("``polymodal embed`` writes ``DIR/x``", "polymodal embed writes DIR/x"),
        ("see :mod:`polymodal.joint.embed`'s", "see polymodal.joint.embed's"),
        ("exactly (:class:`~polymodal.retrieval.ExactIndex`)", "exactly (ExactIndex)"),
        (":ref:`the guide <guide-label>` and :py:func:`f`", "the guide and f"),
        ("For example::\n\n    x", "For example:\n\n    x"),
        ("plain `datasets list` 100%% kept", "plain `datasets list` 100%% kept"),
    ],
)
def test_plain_text_strips_rest_markup(text: str, plain: str) -> None:
    assert plain_text(text) == plain


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: "-".join(c) or "top")
def test_help_shows_no_rest_markup(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main([*command, "--help"])
    out = capsys.readouterr().out
    assert "usage: polymodal" in out
    assert "``" not in out
    for role in (":func:`", ":mod:`", ":class:`", ":meth:`"):
        assert role not in out


def test_help_strings_of_the_parser_are_plain() -> None:
    parser = build_parser()
    assert parser.description is not None and "``" not in parser.description
    (sub,) = [a for a in parser._actions if a.dest == "command"]
    embed = sub.choices["embed"]  # type: ignore[attr-defined]
    assert embed.description.startswith("SOURCE is a built-in data set name (flickr8k;")


# --------------------------------------------------------------------------- train --device


def _capture_train(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Replace the training entry point with one that records its config and stops."""
    import polymodal.training

    seen: list[object] = []

    def fake_train(cfg: object, resume: bool = False, overwrite: bool = False) -> None:
        seen.append(cfg)
        raise ValueError("stopped before training (test)")

    monkeypatch.setattr(polymodal.training, "train", fake_train)
    return seen


def _config(tmp_path: Path, device: str) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "data": {"dataset": "mosi", "options": {"modalities": ["text"]}},
                "model": {"encoders": {"text": {"name": "mlp"}}, "fusion": {"name": "early"}},
                "device": device,
            }
        )
    )
    return path


def test_train_device_overrides_the_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen = _capture_train(monkeypatch)
    config = _config(tmp_path, "auto")
    assert main(["train", str(config), "--device", "cpu"]) == 2  # the fake stops it
    assert "stopped before training" in capsys.readouterr().err
    assert [getattr(c, "device", None) for c in seen] == ["cpu"]
    seen.clear()
    assert main(["train", str(config)]) == 2
    assert [getattr(c, "device", None) for c in seen] == ["auto"]


def test_train_device_is_checked_and_named_as_the_flag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen = _capture_train(monkeypatch)
    assert main(["train", str(_config(tmp_path, "cpu")), "--device", "gpu0"]) == 2
    err = capsys.readouterr().err
    assert "--device gpu0 is not a device name" in err
    assert "device=" not in err
    assert seen == []  # refused before training


# --------------------------------------------------------------------------- CLI words


def test_device_errors_name_the_flag_or_the_argument() -> None:
    from polymodal.device import resolve_device

    with pytest.raises(ValueError, match=r"^--device nope is not a device name"):
        resolve_device("nope", "--device")
    with pytest.raises(ValueError, match=r"^device='nope' is not a device name"):
        resolve_device("nope")


def test_search_of_a_missing_index_names_the_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["search", str(tmp_path / "nothing"), "--text", "a dog"]) == 2
    err = capsys.readouterr().err
    assert "written by polymodal index build" in err


def test_manifest_split_error_names_the_flag(tmp_path: Path) -> None:
    from polymodal.data.manifest import ManifestDataset

    manifest = tmp_path / "m.csv"
    manifest.write_text("id,x,label\na,1.0,0\nb,2.0,1\n")
    with pytest.raises(ValueError, match="--split") as info:
        ManifestDataset(manifest, split="train")
    assert "ManifestDataset(" not in str(info.value)


def test_missing_data_set_names_root_flag(tmp_path: Path) -> None:
    from polymodal.data.paths import not_found

    text = not_found("mosi", "mosi", "x.npz", tmp_path)
    assert "--root PATH" in text and "data.options.download=true" in text
