"""Documents into passages, and the text-search configuration of a job's language.

A passage is a run of whole paragraphs of about PASSAGE_CHARS characters: long enough to
hold a fact with its context, short enough that a few of them fit a section's prompt.
A paragraph longer than MAX_PASSAGE_CHARS is cut at sentence ends, and a sentence longer
than that at spaces. Markdown headings stay in the text: they often name what the passage
is about, which is what search should find.
"""

from __future__ import annotations

import re
from typing import Final

PASSAGE_CHARS: Final = 700
MAX_PASSAGE_CHARS: Final = 1200

_PARAGRAPH_BREAK: Final = re.compile(r"\n\s*\n")
_SENTENCE_END: Final = re.compile(r"(?<=[.!?;])\s+")

# PostgreSQL's text-search configurations (snowball stemmers), by the language's name in
# English and in itself. A report in any other language is searched with `simple`: words
# lower-cased, not stemmed, no stop words.
_CONFIGS: Final = {
    "arabic": ("arabic", "العربية"),
    "armenian": ("armenian", "հայերեն"),
    "basque": ("basque", "euskara"),
    "catalan": ("catalan", "català"),
    "danish": ("danish", "dansk"),
    "dutch": ("dutch", "nederlands"),
    "english": ("english",),
    "finnish": ("finnish", "suomi"),
    "french": ("french", "français", "francais"),
    "german": ("german", "deutsch"),
    "greek": ("greek", "ελληνικά"),
    "hindi": ("hindi", "हिन्दी", "हिंदी"),
    "hungarian": ("hungarian", "magyar"),
    "indonesian": ("indonesian", "bahasa indonesia"),
    "irish": ("irish", "gaeilge"),
    "italian": ("italian", "italiano"),
    "lithuanian": ("lithuanian", "lietuvių"),
    "nepali": ("nepali", "नेपाली"),
    "norwegian": ("norwegian", "norsk", "bokmål", "nynorsk"),
    "portuguese": ("portuguese", "português", "portugues"),
    "romanian": ("romanian", "română", "romana"),
    "russian": ("russian", "русский"),
    "serbian": ("serbian", "српски", "srpski"),
    "spanish": ("spanish", "español", "espanol", "castellano"),
    "swedish": ("swedish", "svenska"),
    "tamil": ("tamil", "தமிழ்"),
    "turkish": ("turkish", "türkçe", "turkce"),
    "yiddish": ("yiddish", "ייִדיש"),
}
_CONFIG_BY_NAME: Final = {name: config for config, names in _CONFIGS.items() for name in names}


def search_config(language: str | None) -> str:
    """The text-search configuration for a report in `language` (None: English)."""
    if language is None:
        return "english"
    return _CONFIG_BY_NAME.get(language.casefold(), "simple")


def split_passages(text: str) -> list[str]:
    """`text` as passages, in order; none for a text without words."""
    pieces: list[str] = []
    for paragraph in _PARAGRAPH_BREAK.split(text.replace("\r\n", "\n")):
        if stripped := paragraph.strip():
            pieces.extend(_cut(stripped))
    return _pack(pieces, "\n\n", PASSAGE_CHARS)


def _cut(paragraph: str) -> list[str]:
    """A paragraph in pieces of at most MAX_PASSAGE_CHARS: whole sentences where it can."""
    if len(paragraph) <= MAX_PASSAGE_CHARS:
        return [paragraph]
    parts = [part for sentence in _SENTENCE_END.split(paragraph) for part in _by_words(sentence)]
    return _pack(parts, " ", MAX_PASSAGE_CHARS)


def _by_words(sentence: str) -> list[str]:
    """A sentence in pieces of at most MAX_PASSAGE_CHARS, cut at spaces (and inside a word
    longer than that, which has no space to cut at)."""
    if len(sentence) <= MAX_PASSAGE_CHARS:
        return [sentence]
    size = MAX_PASSAGE_CHARS
    words = [w[i : i + size] for w in sentence.split() for i in range(0, len(w), size)]
    return _pack(words, " ", size)


def _pack(pieces: list[str], separator: str, limit: int) -> list[str]:
    """`pieces` joined by `separator` into as few runs of at most `limit` characters as
    they go, in order (a piece longer than `limit` stays a run of its own)."""
    runs: list[str] = []
    current = ""
    for piece in pieces:
        if current and len(current) + len(separator) + len(piece) > limit:
            runs.append(current)
            current = piece
        else:
            current = f"{current}{separator}{piece}" if current else piece
    if current:
        runs.append(current)
    return runs
