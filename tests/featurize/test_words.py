"""The words stage: subtitles, pocketsphinx on real GRID clips, utterances, word error rate."""

from __future__ import annotations

import csv
import itertools
import pickle
import statistics
from pathlib import Path

import pytest
import torch
from torch import Tensor

from polymodal.data.align import read_align_file
from polymodal.data.decode import decode_video
from polymodal.featurize.words import (
    GRID_GRAMMAR,
    GRID_WORDS,
    SpeechRecognizer,
    Utterance,
    Word,
    read_subtitles,
    utterances_from_words,
    word_error_rate,
)
from tests.conftest import require

SR = 16000


def _write(path: Path, text: str, encoding: str = "utf-8", newline: str = "\n") -> Path:
    path.write_bytes(text.replace("\n", newline).encode(encoding))
    return path


def _triples(words: list[Word]) -> list[tuple[float, float, str]]:
    return [(round(w.start, 6), round(w.end, 6), w.text) for w in words]


# ------------------------------------------------------------------------------ subtitles

SRT = """1
00:00:01,000 --> 00:00:02,000
<i>ab</i> cdef

2
00:00:02,500 --> 00:00:04,500
{\\an8}Hello,
<font color="red">world!</font>

3
00:00:05.000 --> 00:00:05,600 X1:10 X2:20
...
"""


@pytest.mark.parametrize(
    ("encoding", "newline"),
    [("utf-8", "\n"), ("utf-8-sig", "\r\n"), ("utf-8", "\r")],
    ids=["lf", "bom-crlf", "cr"],
)
def test_srt_cues_words_spread_by_length(tmp_path: Path, encoding: str, newline: str) -> None:
    cues = read_subtitles(_write(tmp_path / "a.srt", SRT, encoding, newline))
    assert [(c.start, c.end, c.text) for c in cues] == [
        (1.0, 2.0, "ab cdef"),
        (2.5, 4.5, "Hello, world!"),
        (5.0, 5.6, "..."),  # text without words: kept, no words
    ]
    # "ab" (2 chars) and "cdef" (4 chars) share one second 1:2
    assert _triples(cues[0].words) == [(1.0, 1.333333, "ab"), (1.333333, 2.0, "cdef")]
    # punctuation is not part of a word; "Hello" 5 chars, "world" 5 chars
    assert _triples(cues[1].words) == [(2.5, 3.5, "Hello"), (3.5, 4.5, "world")]
    assert cues[2].words == []


VTT = """WEBVTT - a title
Kind: captions

NOTE a comment
spanning two lines

STYLE
::cue { color: lime }

intro
00:01.000 --> 00:02.500 align:start position:10%
<v Roger Bingham>We are &amp; <c.loud>here</c>

00:00:00.250 --> 00:00:00.750
<00:00:00.300>first

01:00:00.000 --> 01:00:01.000

"""


def test_vtt_header_notes_styles_ids_settings_and_tags(tmp_path: Path) -> None:
    cues = read_subtitles(_write(tmp_path / "b.VTT", VTT, "utf-8-sig", "\r\n"))
    assert [(c.start, c.end, c.text) for c in cues] == [
        (0.25, 0.75, "first"),  # sorted by start; the timestamp tag is stripped
        (1.0, 2.5, "We are & here"),  # the empty last cue is dropped
    ]
    # 2 + 3 + 4 characters over 1.5 s; '&' is no word
    assert _triples(cues[1].words) == [
        (1.0, 1.333333, "We"),
        (1.333333, 1.833333, "are"),
        (1.833333, 2.5, "here"),
    ]


def test_empty_srt_has_no_cues(tmp_path: Path) -> None:
    assert read_subtitles(_write(tmp_path / "e.srt", "\n\n")) == []


@pytest.mark.parametrize(
    ("name", "text", "match"),
    [
        (
            "bad.srt",
            "1\n00:00:1,000 --> 00:00:02,000\nhi\n",
            r"bad\.srt:2: '00:00:1,000' is not a time",
        ),
        (
            "back.srt",
            "1\n00:00:03,000 --> 00:00:02,000\nhi\n",
            r"back\.srt:2: the cue ends .* Fix: swap",
        ),
        (
            "min.srt",
            "00:61:00,000 --> 00:62:00,000\nhi\n",
            r"min\.srt:1: .* minutes or seconds >= 60",
        ),
        (
            "nonum.srt",
            "\n\nhello\n00:00:01,000 --> 00:00:02,000\n",
            r"nonum\.srt:3: expected a cue number",
        ),
        (
            "notime.srt",
            "1\nhello\n",
            r"notime\.srt:2: expected the timing line .* after cue number 1",
        ),
        (
            "join.srt",
            "1\n00:00:01,000 --> 00:00:02,000\nhi\n2\n00:00:03,000 --> 00:00:04,000\nyo\n",
            r"join\.srt:5: a new cue starts here .* Fix: put an empty line",
        ),
        (
            "nohead.vtt",
            "00:01.000 --> 00:02.000\nhi\n",
            r"nohead\.vtt:1: .* starts with the line 'WEBVTT'",
        ),
        (
            "glued.vtt",
            "WEBVTT\n00:01.000 --> 00:02.000\nhi\n",
            r"glued\.vtt:2: .* inside the WEBVTT header",
        ),
        ("orphan.vtt", "WEBVTT\n\nhello\nthere\n", r"orphan\.vtt:3: expected a cue"),
        ("arrow.vtt", "WEBVTT\n\n --> 00:02.000\nhi\n", r"arrow\.vtt:3: expected 'start --> end'"),
        ("subs.txt", "", r"must end in one of \['.srt', '.vtt'\]"),
    ],
)
def test_malformed_subtitles_name_file_line_and_fix(
    tmp_path: Path, name: str, text: str, match: str
) -> None:
    with pytest.raises(ValueError, match=match) as info:
        read_subtitles(_write(tmp_path / name, text))
    assert "Fix:" in str(info.value)


def test_subtitles_not_utf8_or_missing(tmp_path: Path) -> None:
    p = tmp_path / "latin.srt"
    p.write_bytes("1\n00:00:01,000 --> 00:00:02,000\ncaf\xe9\n".encode("cp1252"))
    with pytest.raises(ValueError, match=r"latin\.srt:3: the file is not UTF-8 .* Fix: re-save"):
        read_subtitles(p)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_subtitles(tmp_path / "missing.vtt")


# ----------------------------------------------------------------------- word error rate


@pytest.mark.parametrize(
    ("ref", "hyp", "wer"),
    [
        ("the cat sat", "the cat sat", 0.0),
        ("the cat sat", "the cat sat down", 1 / 3),  # one insertion
        ("a b c d", "a x c", 2 / 4),  # one substitution, one deletion
        ("a b c", "", 1.0),  # all deleted
        ("a", "b c d", 3.0),  # one substitution, two insertions
        ("Don't, STOP!", "dont stop", 0.0),  # case and punctuation ignored
        ("well-known fact", "well known fact", 0.0),  # marks other than apostrophes split
        ("bin blue at f two now", "been good enough to know", 1.0),  # 5 subs + 1 deletion
        ("", "", 0.0),
    ],
)
def test_word_error_rate_hand_computed(ref: str, hyp: str, wer: float) -> None:
    assert word_error_rate(ref, hyp) == pytest.approx(wer)


def test_word_error_rate_corpus_and_errors() -> None:
    # 0 + 2 edits over 2 + 3 reference words
    assert word_error_rate(["a b", "c d e"], ["a b", "c"]) == pytest.approx(2 / 5)
    with pytest.raises(ValueError, match="reference has no words"):
        word_error_rate("", "hello")
    with pytest.raises(ValueError, match="same length"):
        word_error_rate(["a"], ["a", "b"])
    with pytest.raises(ValueError, match="two strings, or two lists"):
        word_error_rate("a", ["a"])


# --------------------------------------------------------------------------- utterances


def test_utterances_group_words_by_segment_midpoint() -> None:
    words = [
        Word(2.9, 3.3, "c"),  # midpoint 3.1: inside segment 2 although it starts in 1
        Word(1.0, 1.4, "a"),
        Word(1.5, 2.0, "b"),
        Word(4.2, 4.6, "d"),  # midpoint 4.4: outside; nearest is segment 2 (0.4 s away)
        Word(9.0, 9.5, "e"),  # far after everything: the last segment
    ]
    segments = [(0.9, 3.0), (3.05, 4.0), (5.0, 6.0), (7.0, 8.0)]
    utts = utterances_from_words(words, segments)
    assert [(u.start, u.end, u.text) for u in utts] == [
        (0.9, 3.0, "a b"),
        (2.9, 4.6, "c d"),  # stretched to cover its words
        (5.0, 6.0, ""),  # speech without words is kept
        (7.0, 9.5, "e"),
    ]
    assert [w.text for w in utts[1].words] == ["c", "d"]
    assert utts[2].words == []


def test_utterances_ties_overlaps_and_no_segments() -> None:
    # midpoint 2.0 is 1 s from both segments: the earlier wins; overlap: the first wins
    tie = utterances_from_words([Word(1.9, 2.1, "x")], [(0.0, 1.0), (3.0, 4.0)])
    assert [u.text for u in tie] == ["x", ""]
    overlap = utterances_from_words([Word(1.4, 1.6, "y")], [(1.0, 2.0), (1.2, 3.0)])
    assert [u.text for u in overlap] == ["y", ""]
    one = utterances_from_words([Word(3.0, 3.5, "b"), Word(1.0, 1.5, "a")], [])
    assert one == [Utterance(1.0, 3.5, "a b", [Word(1.0, 1.5, "a"), Word(3.0, 3.5, "b")])]
    assert utterances_from_words([], []) == []
    assert [u.text for u in utterances_from_words([], [(0.0, 1.0)])] == [""]


def test_utterances_reject_bad_segments() -> None:
    with pytest.raises(ValueError, match=r"segments\[1\] = \(3\.0, 2\.0\) must be finite"):
        utterances_from_words([], [(0.0, 1.0), (3.0, 2.0)])
    with pytest.raises(ValueError, match=r"sorted by start.*Fix: sorted\(segments\)"):
        utterances_from_words([], [(2.0, 3.0), (0.0, 1.0)])
    with pytest.raises(ValueError, match="must be finite"):
        utterances_from_words([], [(0.0, float("nan"))])


# ------------------------------------------------------------------ speech recognition

GRID_DIR = "grid_samples"


@pytest.fixture(scope="module")
def grid_audio(data_root: Path) -> dict[str, Tensor]:
    """16 kHz mono audio of the GRID clips the ASR tests use (3 s each)."""
    out = {}
    for name in ("bbaf2n", "id2_vcd_swwp2s", "lbbc2a"):
        clip = decode_video(data_root / GRID_DIR / f"{name}.mpg", fps=1.0, audio_rate=SR)
        assert clip.audio is not None
        out[name] = clip.audio
    return out


@pytest.fixture(scope="module")
def grid_asr() -> SpeechRecognizer:
    require("pocketsphinx")
    return SpeechRecognizer(grammar="grid")


def _check_timings(words: list[Word], duration: float) -> None:
    assert words
    for w in words:
        assert 0.0 <= w.start < w.end <= duration, w
    for a, b in itertools.pairwise(words):
        assert a.end <= b.start + 1e-9, (a, b)


def test_grid_grammar_reads_bbaf2n_exactly(
    grid_asr: SpeechRecognizer, grid_audio: dict[str, Tensor], data_root: Path
) -> None:
    wave = grid_audio["bbaf2n"]
    words = grid_asr(wave, SR)
    rows = csv.DictReader((data_root / GRID_DIR / "transcripts.csv").open(encoding="utf-8"))
    ref = {r["file"]: r["transcript"] for r in rows}["bbaf2n.mpg"]
    hyp = " ".join(w.text for w in words)
    assert hyp == ref == "bin blue at f two now"
    assert word_error_rate(ref, hyp) == 0.0
    _check_timings(words, len(wave) / SR)
    # frame times (10 ms), measured: speech from 0.92 s to 2.10 s (silero-vad: 0.96-2.17 s)
    assert [w.start for w in words] == pytest.approx([0.92, 1.18, 1.38, 1.45, 1.61, 1.86])
    assert words[-1].end == pytest.approx(2.10)


def test_grid_word_times_match_forced_alignment(
    grid_asr: SpeechRecognizer, grid_audio: dict[str, Tensor], data_root: Path
) -> None:
    ref = read_align_file(data_root / GRID_DIR / "swwp2s.align")
    words = grid_asr(grid_audio["id2_vcd_swwp2s"], SR)
    assert (
        [w.text for w in words]
        == [r.word for r in ref]
        == ["set", "white", "with", "p", "two", "soon"]
    )
    start_err = [abs(w.start - r.start) for w, r in zip(words, ref, strict=True)]
    end_err = [abs(w.end - r.end) for w, r in zip(words, ref, strict=True)]
    # measured: 0.020 and 0.020 s median, 0.05 s at worst (the issue asks for 0.1 s median)
    assert statistics.median(start_err) <= 0.03
    assert statistics.median(end_err) <= 0.03
    assert max(start_err + end_err) <= 0.06


def test_any_rate_numpy_input_and_offset(
    grid_asr: SpeechRecognizer, grid_audio: dict[str, Tensor], data_root: Path
) -> None:
    base = _triples(grid_asr(grid_audio["bbaf2n"], SR))
    clip = decode_video(data_root / GRID_DIR / "bbaf2n.mpg", fps=1.0, audio_rate=44100)
    assert clip.audio is not None
    native = grid_asr(clip.audio, 44100)  # resampled to 16 kHz inside
    assert [w.text for w in native] == [t for _, _, t in base]
    assert [w.start for w in native] == pytest.approx([s for s, _, _ in base], abs=0.011)
    shifted = grid_asr(grid_audio["bbaf2n"].double().numpy(), SR, offset=10.0)
    assert [(round(w.start - 10, 6), round(w.end - 10, 6), w.text) for w in shifted] == base


def test_silence_gives_no_words(grid_asr: SpeechRecognizer) -> None:
    assert grid_asr(torch.zeros(SR), SR) == []  # nothing in the grammar fits
    assert grid_asr(torch.zeros(0), SR) == []


def test_general_language_model_runs_with_valid_timings(grid_audio: dict[str, Tensor]) -> None:
    require("pocketsphinx")
    wave = grid_audio["bbaf2n"]
    asr = SpeechRecognizer()
    words = asr(wave, SR)
    _check_timings(words, len(wave) / SR)
    # every call decodes alike, whatever came before (the features' state is reset: without
    # that, decoding lbbc2a first turned this into "didn't have to know")
    asr(grid_audio["lbbc2a"], SR)
    assert _triples(asr(wave, SR)) == _triples(words)
    # the general model hears words where the speech is (0.92-2.10 s) but misreads them:
    # 80 % WER over the 11 clips; on this one "been good enough to know" (pocketsphinx 5.1.1)
    assert words[0].start >= 0.85 and words[-1].end <= 2.2
    assert all(w.text == w.text.lower() and "(" not in w.text for w in words)
    assert word_error_rate("bin blue at f two now", " ".join(w.text for w in words)) >= 0.5


def test_vocabulary_restricts_the_language_model(grid_audio: dict[str, Tensor]) -> None:
    require("pocketsphinx")
    asr = SpeechRecognizer(vocabulary=GRID_WORDS)
    words = asr(grid_audio["id2_vcd_swwp2s"], SR)
    assert " ".join(w.text for w in words) == "set white with p two soon"  # measured
    assert {w.text for w in asr(grid_audio["bbaf2n"], SR)} <= set(GRID_WORDS)
    # a dictionary word the language model lacks is added to it; case is folded
    SpeechRecognizer(vocabulary=["Lathrop", "set"])


def test_custom_grammar_file_and_pickling(tmp_path: Path, grid_audio: dict[str, Tensor]) -> None:
    require("pocketsphinx")
    gram = _write(
        tmp_path / "two.jsgf",
        "#JSGF V1.0;\ngrammar two;\n// either sentence\n"
        "public <s> = set white with p two soon | bin blue at f two now;\n",
    )
    asr = SpeechRecognizer(grammar=str(gram))
    assert " ".join(w.text for w in asr(grid_audio["id2_vcd_swwp2s"], SR)) == (
        "set white with p two soon"
    )
    clone = pickle.loads(pickle.dumps(asr))  # travels to worker processes without its decoder
    assert _triples(clone(grid_audio["bbaf2n"], SR)) == _triples(asr(grid_audio["bbaf2n"], SR))
    assert "public <sentence> = <command> <color>" in GRID_GRAMMAR


def test_recognizer_errors(tmp_path: Path) -> None:
    require("pocketsphinx")
    with pytest.raises(ValueError, match="either 'grammar' or 'vocabulary'"):
        SpeechRecognizer(grammar="grid", vocabulary=["set"])
    with pytest.raises(ValueError, match=r"not in pocketsphinx's dictionary: \['qzxv'\]"):
        SpeechRecognizer(vocabulary=["set", "qzxv"])
    with pytest.raises(ValueError, match=r"grammar are not in .*\['Set'\].*lower-case"):
        SpeechRecognizer(grammar="#JSGF V1.0;\ngrammar g;\npublic <s> = Set white;\n")
    with pytest.raises(ValueError, match=r"cannot parse the grammar: syntax error.*Fix: check"):
        SpeechRecognizer(grammar="#JSGF V1.0;\ngrammar g;\npublic <s> = set ( white;\n")
    with pytest.raises(ValueError, match="must be 'grid', the path of a JSGF file"):
        SpeechRecognizer(grammar="set white")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        SpeechRecognizer(grammar=str(tmp_path / "none.jsgf"))
    with pytest.raises(TypeError, match="list of words, not a string"):
        SpeechRecognizer(vocabulary="set")
    with pytest.raises(ValueError, match="is empty"):
        SpeechRecognizer(vocabulary=[])


def test_recognizer_rejects_bad_waves(grid_asr: SpeechRecognizer) -> None:
    with pytest.raises(TypeError, match=r"1-D floating tensor .* shape \(2, 100\).*mean\(0\)"):
        grid_asr(torch.zeros(2, 100), SR)
    with pytest.raises(TypeError, match=r"torch\.int16 tensor.*wave\.float\(\) / 32768"):
        grid_asr(torch.zeros(100, dtype=torch.int16), SR)
    with pytest.raises(ValueError, match="'sample_rate' parameter must be a positive int"):
        grid_asr(torch.zeros(100), 0)
    with pytest.raises(ValueError, match="'sample_rate' parameter must be a positive int"):
        grid_asr(torch.zeros(100), 16000.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="NaN or infinite"):
        grid_asr(torch.full((100,), float("nan")), SR)
