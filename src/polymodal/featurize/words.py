"""Words stage: offline speech recognition with word timings (:class:`SpeechRecognizer`).

:class:`SpeechRecognizer` runs pocketsphinx 5.1.1 (CMU Sphinx; the US-English acoustic
model, language model and dictionary ship inside its wheel) on a waveform and returns
:class:`Word` s timed by its word segmentation (100 frames per second).  Three searches:

* the general English language model (default);
* a JSGF grammar (``grammar``): ``"grid"`` is GRID's sentence grammar (:data:`GRID_GRAMMAR`);
* the general language model restricted to a vocabulary (``vocabulary``, e.g.
  :data:`GRID_WORDS`): only those words' pronunciations are loaded, so the model's n-gram
  probabilities still rank them.  (A free loop over the same words, a grammar ``(w1 | w2 |
  ...)+``, inserts so many words that its WER on GRID exceeds 100 %.)

This module also re-exports the rest of the words stage, so that everything is one import
away: :func:`read_subtitles` (``subtitles.py``: SRT and WebVTT cues as utterances) and
:class:`Word`, :class:`Utterance`, :func:`utterances_from_words`, :func:`word_error_rate`
(``transcript.py``: pure Python, no speech package).

Measured on the 11 GRID clips of ``grid_samples`` (3 s each, 66 words; word error rate over
all of them; decode time on a loaded 2-core machine, one thread):

==================================  ============  ==================  ===================
search                              whole clips   silero-vad segments  s per s of audio
==================================  ============  ==================  ===================
general language model (default)    80.3 %        75.8 %               0.4-0.6
``vocabulary=GRID_WORDS``           28.8 %        25.8 %               0.08
``grammar="grid"``                  13.6 %         7.6 %               0.03
==================================  ============  ==================  ===================

("silero-vad segments": each speech segment of :class:`~polymodal.featurize.voice.
VoiceAnalyzer` decoded on its own, as the pipeline does; leading noise is then not forced
into a word.)  On ``id2_vcd_swwp2s.mpg`` the grammar's and the vocabulary's word times are
within 0.025 s (median; 0.06 s at worst) of the corpus's forced alignment (``swwp2s.align``),
starts and ends alike.  GRID is read speech in quiet, pocketsphinx's best case; expect the
general model to miss most words of conversational speech.
"""

from __future__ import annotations

import contextlib
import math
import re
import tempfile
from collections.abc import Sequence
from numbers import Integral
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from polymodal.data.decode import resample_audio
from polymodal.featurize.subtitles import SUBTITLE_SUFFIXES, read_subtitles
from polymodal.featurize.transcript import Utterance, Word, utterances_from_words, word_error_rate

SAMPLE_RATE = 16000  # what the acoustic model was trained on
FRAME_RATE = 100.0  # pocketsphinx frames per second (10 ms hop)
_QUIET = "FATAL"  # pocketsphinx logs to stderr; errors become exceptions here instead
_INSTALL = 'pip install "polymodal[video]" (it installs pocketsphinx==5.1.1)'

# GRID (Cooke et al., JASA 2006): command colour preposition letter digit adverb; the
# letters are A-Z without W (its name has three syllables).
GRID_SLOTS: dict[str, tuple[str, ...]] = {
    "command": ("bin", "lay", "place", "set"),
    "color": ("blue", "green", "red", "white"),
    "preposition": ("at", "by", "in", "with"),
    "letter": tuple("abcdefghijklmnopqrstuvxyz"),
    "digit": ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"),
    "adverb": ("again", "now", "please", "soon"),
}
GRID_WORDS: tuple[str, ...] = tuple(w for words in GRID_SLOTS.values() for w in words)
GRID_GRAMMAR = (
    "#JSGF V1.0;\ngrammar grid;\n"
    f"public <sentence> = {' '.join(f'<{slot}>' for slot in GRID_SLOTS)};\n"
    + "".join(f"<{slot}> = {' | '.join(words)};\n" for slot, words in GRID_SLOTS.items())
)


def _import_pocketsphinx() -> Any:
    try:
        import pocketsphinx
    except ImportError as e:
        raise ImportError(f"Speech recognition needs pocketsphinx: {_INSTALL}.") from e
    return pocketsphinx


def _grammar_text(grammar: str) -> str:
    if grammar == "grid":
        return GRID_GRAMMAR
    if grammar.lstrip().startswith("#JSGF"):
        return grammar
    if Path(grammar).suffix.lower() in (".jsgf", ".gram"):
        if not Path(grammar).is_file():
            raise FileNotFoundError(f"Grammar file {grammar!r} does not exist; pass its path.")
        return Path(grammar).read_text(encoding="utf-8")
    raise ValueError(
        "The 'grammar' parameter must be 'grid', the path of a JSGF file (.jsgf or .gram) "
        f"or JSGF text starting with '#JSGF'; got {grammar[:60]!r}."
    )


def _grammar_words(jsgf: str) -> set[str]:
    """The words (terminals) of a JSGF grammar: what its rules say outside <refs>, {tags}."""
    text = re.sub(r"/\*.*?\*/|//[^\n]*", " ", jsgf, flags=re.S)
    words: set[str] = set()
    for statement in text.split(";"):
        _, eq, body = statement.partition("=")
        if eq:
            body = re.sub(r"<[^>]*>|\{[^}]*\}|/[^/]*/", " ", body)
            words.update(re.sub(r"[()\[\]|*+]", " ", body).split())
    return words


def _jsgf_error(ps: Any, jsgf: str) -> str:
    """What pocketsphinx's JSGF parser says about ``jsgf`` (its log, caught in a file)."""
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "pocketsphinx.log"
        with contextlib.suppress(ValueError, RuntimeError):
            ps.Decoder(loglevel="ERROR", lm=None, logfn=str(log)).add_jsgf_string("g", jsgf)
        lines = (
            log.read_text(encoding="utf-8", errors="replace").splitlines() if log.exists() else []
        )
    return "; ".join(re.sub(r'^\w+: "[^"]*", line \d+: ', "", line) for line in lines[:2])


def _repeats(jsgf: str) -> bool:
    """Whether a JSGF grammar repeats anything (``*`` or ``+`` outside comments and tags)."""
    text = re.sub(r"/\*.*?\*/|//[^\n]*|\{[^}]*\}", " ", jsgf, flags=re.S)
    return "*" in text or "+" in text


class SpeechRecognizer:
    """Offline English speech recognition with word timings (pocketsphinx 5.1.1).

    Args:
        grammar: ``None`` for the general language model; ``"grid"`` for GRID's sentence
            grammar; or a JSGF grammar (a ``.jsgf``/``.gram`` path or text starting with
            ``#JSGF``) whose first public rule is what is said.  Its words must be in the CMU
            dictionary, in lower case.
        vocabulary: restrict the general language model to these words (e.g.
            :data:`GRID_WORDS`): only their pronunciations are loaded.  Exclusive with
            ``grammar``.

    A recognizer holds a pocketsphinx decoder (built here: 0.2-0.6 s) and reuses it for every
    call; use one per thread or process (it pickles without its decoder and rebuilds it).

    Raises:
        ValueError: both options, an empty vocabulary, words missing from the dictionary, or a
            grammar pocketsphinx cannot parse.
        ImportError: pocketsphinx is not installed.
    """

    def __init__(self, grammar: str | None = None, vocabulary: Sequence[str] | None = None):
        if grammar is not None and vocabulary is not None:
            raise ValueError(
                "Pass either 'grammar' or 'vocabulary', not both: a grammar already fixes "
                "the words."
            )
        if isinstance(vocabulary, str):
            raise TypeError("The 'vocabulary' parameter must be a list of words, not a string.")
        self.grammar = grammar
        self.vocabulary = None if vocabulary is None else tuple(vocabulary)
        if self.vocabulary is not None and not self.vocabulary:
            raise ValueError("The 'vocabulary' parameter is empty; pass at least one word.")
        self._jsgf = None if grammar is None else _grammar_text(grammar)
        self._decoder: Any = self._build()

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_decoder": None}

    def _build(self) -> Any:
        ps = _import_pocketsphinx()
        model = Path(ps.get_model_path())
        if self._jsgf is not None:
            # The lattice (bestpath) pass helps a little (GRID: 13.6 % WER, 15.2 % without)
            # but takes minutes over a grammar that repeats (a 51-word loop: 60 s for 3 s).
            decoder = ps.Decoder(loglevel=_QUIET, lm=None, bestpath=not _repeats(self._jsgf))
            self._check_words(decoder, _grammar_words(self._jsgf), "grammar")
            try:
                decoder.add_jsgf_string("grammar", self._jsgf)
                decoder.activate_search("grammar")
            except (ValueError, RuntimeError) as e:
                raise ValueError(
                    f"pocketsphinx cannot parse the grammar: {_jsgf_error(ps, self._jsgf) or e}. "
                    "Fix: check the JSGF syntax (header '#JSGF V1.0;', then 'grammar name;', "
                    "then rules such as 'public <rule> = word (a | b) [c];')."
                ) from None
            return decoder
        if self.vocabulary is None:
            return ps.Decoder(loglevel=_QUIET)
        return self._vocabulary_decoder(ps, model / "en-us" / "cmudict-en-us.dict")

    def _vocabulary_decoder(self, ps: Any, dict_path: Path) -> Any:
        wanted = {w.lower() for w in self.vocabulary or ()}
        entries = [
            line
            for line in dict_path.read_text(encoding="utf-8").splitlines()
            if line and re.sub(r"\(\d+\)$", "", line.split(maxsplit=1)[0]) in wanted
        ]
        found = {re.sub(r"\(\d+\)$", "", line.split(maxsplit=1)[0]) for line in entries}
        self._missing(wanted - found, "vocabulary")
        with tempfile.TemporaryDirectory() as tmp:
            small = Path(tmp) / "vocabulary.dict"
            small.write_text("\n".join(entries) + "\n", encoding="utf-8")
            decoder = ps.Decoder(loglevel=_QUIET, dict=str(small))
        lm = decoder.get_lm()
        absent = [w for w in sorted(wanted) if lm.prob([w]) <= -(2**29)]  # log(0)
        if absent:  # in the dictionary but not in the language model: add as unigrams
            for w in absent:
                lm.add_word(w, 1.0)
            decoder.add_lm("vocabulary", lm)
            decoder.activate_search("vocabulary")
        return decoder

    def _check_words(self, decoder: Any, words: set[str], what: str) -> None:
        self._missing({w for w in words if decoder.lookup_word(w) is None}, what)

    @staticmethod
    def _missing(missing: set[str], what: str) -> None:
        if missing:
            shown = sorted(missing)
            raise ValueError(
                f"{len(shown)} word(s) of the {what} are not in pocketsphinx's dictionary: "
                f"{shown[:10]}. Fix: use lower-case words of the CMU dictionary "
                "(pocketsphinx.get_model_path()/en-us/cmudict-en-us.dict); spell numbers "
                "as words ('two', not '2')."
            )

    def __call__(
        self, wave: Tensor | np.ndarray, sample_rate: int, *, offset: float = 0.0
    ) -> list[Word]:
        """Recognise the words of a mono waveform.

        The waveform is resampled to 16 kHz (Kaiser-windowed sinc), clipped to [-1, 1] and
        converted to 16-bit PCM; pocketsphinx decodes it as one utterance.  Fillers
        (``<s>``, ``</s>``, ``<sil>``, ``[NOISE]``, ...) are dropped and pronunciation
        variants (``word(2)``) named by their word.

        Args:
            wave: floating samples in [-1, 1].
            sample_rate: its rate in Hz.
            offset: seconds added to every time (for a segment cut from a longer recording).

        Returns:
            The words in time order; a word spans ``[start_frame, end_frame + 1) / 100`` s
            from the start of ``wave`` (plus ``offset``), cut to the waveform's duration.

        Shape:
            wave: (N,).
        """
        if isinstance(wave, np.ndarray):
            wave = torch.from_numpy(wave)
        if not isinstance(wave, Tensor) or not wave.is_floating_point() or wave.dim() != 1:
            raise TypeError(
                "The 'wave' parameter must be a 1-D floating tensor (N,) of mono samples; got "
                f"{_describe(wave)}. Fix: mix channels with wave.mean(0); convert int16 PCM "
                "with wave.float() / 32768."
            )
        if (
            isinstance(sample_rate, bool)
            or not isinstance(sample_rate, Integral)
            or sample_rate <= 0
        ):
            raise ValueError(
                f"The 'sample_rate' parameter must be a positive int (Hz); got {sample_rate!r}."
            )
        if not math.isfinite(offset):
            raise ValueError(f"The 'offset' parameter must be finite seconds; got {offset!r}.")
        if not bool(torch.isfinite(wave).all()):
            raise ValueError("The waveform has NaN or infinite samples; fix or drop them first.")
        wave = resample_audio(wave.detach().cpu().float(), int(sample_rate), SAMPLE_RATE)
        duration = len(wave) / SAMPLE_RATE
        if len(wave) == 0:
            return []
        pcm = (wave.clamp(-1.0, 1.0) * 32767.0).round().to(torch.int16).numpy().tobytes()
        if self._decoder is None:
            self._decoder = self._build()
        d = self._decoder
        d.reinit_feat()  # reset the front end's running state: every call decodes alike
        d.start_utt()
        d.process_raw(pcm, full_utt=True)
        d.end_utt()
        words = []
        for seg in d.seg() or ():  # None when nothing in the grammar fits (e.g. silence)
            text = re.sub(r"\(\d+\)$", "", seg.word or "")
            if not text or text[0] in "<[(+" or seg.end_frame < seg.start_frame:
                continue
            start = min(seg.start_frame / FRAME_RATE, duration)
            end = min((seg.end_frame + 1) / FRAME_RATE, duration)
            if end > start:
                words.append(Word(start + offset, end + offset, text))
        return words


def _describe(x: object) -> str:
    if isinstance(x, Tensor):
        return f"a {x.dtype} tensor of shape {tuple(x.shape)}"
    return type(x).__name__


__all__ = [
    "FRAME_RATE",
    "GRID_GRAMMAR",
    "GRID_SLOTS",
    "GRID_WORDS",
    "SAMPLE_RATE",
    "SUBTITLE_SUFFIXES",
    "SpeechRecognizer",
    "Utterance",
    "Word",
    "read_subtitles",
    "utterances_from_words",
    "word_error_rate",
]
