"""Where each built-in data set's files come from upstream: :data:`SOURCES`.

One :class:`Source` per source folder (``mosi/``, ``fsdd/``, ``mnist/``, ``flickr8k/``,
``har_phone_watch/``, ``ravdess_speech/``): its upstream (GitHub repositories at pinned
commits, the MNIST IDX files), how local paths map to upstream URLs, which files are not
upstream's bytes, and how those are rewritten into the form the loaders read.
:mod:`polymodal.data.download` fetches and verifies them.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field

from polymodal.errors import unknown_name_error


def _raw(owner_repo: str, commit: str, prefix: str = "") -> str:
    return f"https://raw.githubusercontent.com/{owner_repo}/{commit}/{prefix}"


@dataclass(frozen=True)
class Source:
    """Where one source folder comes from.

    Args:
        name: the folder name under a data root, and the manifest's name.
        upstream: one line naming the upstream, for messages and ``datasets info``.
        marker: the file whose presence tells ``locate`` the folder is there (the loader's
            ``DatasetInfo.marker``); it is fetched last, so an interrupted download is
            not mistaken for a complete one.
        layout: ``(local_prefix, url_prefix)`` pairs, first match wins: local file ``rel``
            starting with ``local_prefix`` is fetched from ``url_prefix + rel[len(prefix):]``.
        differs: local path prefixes whose bytes are not upstream's (see the module doc);
            fetched from upstream, such a file is checked by the sha256 of its decompressed
            content (the manifest's ``content_sha256``) where one is known, else by the
            sha256 of its bytes after ``transform`` (the manifest's), unless ``unchecked``.
        unchecked: local path prefixes (within ``differs``) for which no sha256 of upstream's
            bytes is known: fetched from upstream they are checked only by ``transform``
            (which decodes them) and named in a warning.
        transform: rewrites the bytes of a file fetched from upstream (local path, bytes) into
            the form the loaders read, or ``None``; it raises ``ValueError`` on bytes that
            are not what they should be.
        upstream_name: maps a local path (after its layout prefix) to upstream's name for
            it, when the two differ (RAVDESS: the local ``.ogg`` is upstream's ``.wav``), or
            ``None``.
    """

    name: str
    upstream: str
    marker: str
    layout: tuple[tuple[str, str], ...]
    differs: tuple[str, ...] = ()
    unchecked: tuple[str, ...] = ()
    transform: Callable[[str, bytes], bytes] | None = field(default=None, compare=False)
    upstream_name: Callable[[str], str] | None = field(default=None, compare=False)

    def upstream_url(self, rel: str) -> str:
        for local_prefix, url_prefix in self.layout:
            if rel.startswith(local_prefix):
                tail = rel[len(local_prefix) :]
                if self.upstream_name is not None:
                    tail = self.upstream_name(tail)
                return url_prefix + urllib.parse.quote(tail)
        raise ValueError(  # a manifest/layout mismatch inside polymodal, not a user error
            f"No upstream location for {self.name}/{rel}; add a layout entry in SOURCES."
        )

    def matches_upstream(self, rel: str) -> bool:
        return not any(rel.startswith(p) for p in self.differs)

    def is_unchecked(self, rel: str) -> bool:
        """Whether no sha256 of upstream's bytes is known for ``rel`` (see ``unchecked``)."""
        return any(rel.startswith(p) for p in self.unchecked)


_FLICKR8K_NAME = re.compile(r"^\d+_[0-9a-f]+\.jpg$")


def _keep_flickr8k_lines(rel: str, data: bytes) -> bytes:
    """Drop lines naming images that are not Flickr8k's from upstream's caption/split files.

    Upstream (edwardcruzcruz/Describiendo_imagenes_keras) appended bird pictures named
    ``e<id>_<hash>.jpg``/``.png`` to Flickr8k's files; Flickr8k's own names are
    ``<flickr id>_<10 hex>.jpg``.  This is the filter the reference copy applied.
    """
    if not rel.endswith(".txt"):
        return data
    out: list[str] = []
    for line in data.decode("utf-8").splitlines():
        name = line.split("#", 1)[0].strip() if "#" in line else line.strip()
        if _FLICKR8K_NAME.match(name):
            out.append(line.rstrip() if "#" in line else name)
    return ("\n".join(out) + "\n").encode("utf-8")


def _flickr8k_from_upstream(rel: str, data: bytes) -> bytes:
    """Flickr8k's download transform: text files filtered, images checked to be images.

    No sha256 of upstream's images is known (the reference copy holds re-encoded ones), so
    each is at least opened and verified by Pillow (an HTML error page or a cut file fails); the caption and split files are
    filtered (:func:`_keep_flickr8k_lines`) and then checked against the manifest.
    """
    if rel.endswith(".jpg"):
        import io

        from PIL import Image

        try:
            with Image.open(io.BytesIO(data)) as im:
                im.verify()
        except Exception as e:  # Pillow raises many types for bytes that are not an image
            raise ValueError(
                f"Flickr8k download {rel}: upstream's file is not a readable image ({e}); "
                "download again, or use a mirror (base_url=/POLYMODAL_MIRROR)."
            ) from e
        return data
    return _keep_flickr8k_lines(rel, data)


_MOSI = _raw("declare-lab/contextual-utterance-level-multimodal-sentiment-analysis", "3874cf2")
_FSDD = _raw("Jakobovski/free-spoken-digit-dataset", "26eb9aa")
_HAR = _raw("GeoTecINIT/sp-sw-har-dataset", "1408d85")
# Flickr8k images: the 224x224 copy in RlNZLER/Image-Text-Matching, folder data/images/.
_FLICKR_IMAGES = _raw("RlNZLER/Image-Text-Matching", "3d5693b", "data/images/")
# Captions and the standard split lists: edwardcruzcruz/Describiendo_imagenes_keras, folder
# Flickr8k_text/.  The data README names no commit for it; this is the commit that holds
# the files (the repository has a single content commit).
_FLICKR_TEXT = _raw(
    "edwardcruzcruz/Describiendo_imagenes_keras",
    "5c9a0ffed365098d0df880dd73c1908d2228cc28",
    "Flickr8k_text/",
)
# MNIST's original IDX files, as the PyTorch project mirrors them.
_MNIST = "https://ossci-datasets.s3.amazonaws.com/mnist/"
_RAVDESS = _raw(
    "ZenvilleErasmus/RAVDESS-emotions-speech-audio-only", "29dc10e", "Audio_Speech_Actors_01-24/"
)


def _ravdess_wav_name(rel: str) -> str:
    """Upstream's name of a RAVDESS clip: the local ``.ogg`` is a re-encoded ``.wav``."""
    return rel[: -len(".ogg")] + ".wav" if rel.endswith(".ogg") else rel


def _reencode_ravdess(rel: str, data: bytes) -> bytes:
    """Upstream's 48 kHz WAV as the shared copy stores it (16 kHz Opus; see the loader).

    Raises:
        ValueError: a clip's bytes are not a WAV file (an error page, a cut file).
    """
    from polymodal.data.datasets.ravdess_speech import reencode_upstream_wav

    if rel.endswith(".ogg") and data[:4] != b"RIFF":
        raise ValueError(
            f"RAVDESS download {rel}: upstream's file is not a WAV file (it starts with "
            f"{data[:16]!r}); download again, or use a mirror (base_url=/POLYMODAL_MIRROR)."
        )
    return reencode_upstream_wav(rel, data)


#: Every source folder polymodal can fetch.  GitHub commits are the short ids the data
#: README pins; raw.githubusercontent.com resolves abbreviated commit ids.
SOURCES: dict[str, Source] = {
    s.name: s
    for s in (
        Source(
            "mosi",
            "github.com/declare-lab/contextual-utterance-level-multimodal-sentiment-analysis"
            "@3874cf2 (data/)",
            "data/transcripts.csv",
            (("UPSTREAM_README.md", _MOSI + "README.md"), ("", _MOSI)),
        ),
        Source(
            "fsdd",
            "github.com/Jakobovski/free-spoken-digit-dataset@26eb9aa (recordings/)",
            "recordings/0_george_0.wav",
            (("UPSTREAM_README.md", _FSDD + "README.md"), ("", _FSDD)),
        ),
        Source(
            "mnist",
            "MNIST IDX files (ossci-datasets.s3.amazonaws.com/mnist, the PyTorch mirror)",
            "t10k-labels-idx1-ubyte.gz",
            (("", _MNIST),),
            differs=("",),
        ),
        Source(
            "flickr8k",
            "images: github.com/RlNZLER/Image-Text-Matching@3d5693b; captions and splits: "
            "github.com/edwardcruzcruz/Describiendo_imagenes_keras",
            "Flickr8k.token.txt",
            (("images/", _FLICKR_IMAGES), ("", _FLICKR_TEXT)),
            differs=("",),
            unchecked=("images/",),
            transform=_flickr8k_from_upstream,
        ),
        Source(
            "har_phone_watch",
            "github.com/GeoTecINIT/sp-sw-har-dataset@1408d85 (Zenodo 10.5281/zenodo.8398688)",
            "DATA/subjects_info.csv",
            (
                ("UPSTREAM_README.md", _HAR + "README.md"),
                ("zenodo.json", _HAR + ".zenodo.json"),
                ("", _HAR),
            ),
        ),
        Source(
            "ravdess_speech",
            "github.com/ZenvilleErasmus/RAVDESS-emotions-speech-audio-only@29dc10e "
            "(Audio_Speech_Actors_01-24/; RAVDESS, Zenodo 10.5281/zenodo.1188976)",
            "Actor_24/03-01-08-02-02-02-24.ogg",
            (("", _RAVDESS),),
            differs=("",),
            unchecked=("",),
            transform=_reencode_ravdess,
            upstream_name=_ravdess_wav_name,
        ),
    )
}

#: The source folders each built-in data set reads; the first is the one ``locate`` returns.
DATASET_SOURCES: dict[str, tuple[str, ...]] = {
    "mosi": ("mosi",),
    "av_digits": ("fsdd", "mnist"),
    "flickr8k": ("flickr8k",),
    "mnist": ("mnist",),
    "har_phone_watch": ("har_phone_watch",),
    "ravdess_speech": ("ravdess_speech",),
}


def _sources_of(name: str) -> list[Source]:
    if name in DATASET_SOURCES:
        return [SOURCES[s] for s in DATASET_SOURCES[name]]
    if name in SOURCES:
        return [SOURCES[name]]
    raise unknown_name_error("downloadable data set", name, [*DATASET_SOURCES, *SOURCES])


__all__ = ["DATASET_SOURCES", "SOURCES", "Source"]
