"""Deterministic text corpora for the serving tests: tokenizer parity and replay.

The parity corpus mixes plain English with the cases that break tokenizers: accents and
case mappings (``İ``, final ``Σ``, ``ß``), CJK ideographs (including the extension-E range
where ``tokenizers`` and the Python BERT disagree), Hangul/kana, emoji with ZWJ sequences and
modifiers, control, format and zero-width characters, private use, the replacement
character, special-token look-alikes, words longer than ``max_input_chars_per_word``, texts
far longer than ``max_length`` and empty or white-space-only strings. Lone surrogates are
left out: they cannot be encoded as UTF-8, so no HTTP client can send them.
"""

from __future__ import annotations

import random

__all__ = ["CATEGORIES", "parity_texts", "replay_texts"]

_WORDS = (  # noqa: SIM905 - one readable word list
    "the quick brown fox jumps over lazy dog service model ordinal rating review product "
    "terrible awful okay fine good great excellent delivery arrived late broken perfect "
    "unaffable tokenization international transformers runtime latency throughput batch "
    "café naïve résumé façade jalapeño Ångström Straße ΣΟΦΙΑ ΟΔΟΣ İstanbul Türkçe "
    "Москва привет Ελληνικά español niño crème brûlée Œuvre Ǆemal ﬁnance ½ ² ™ №"
).split()
_PUNCT = list(".,;:!?-—–()[]{}\"'«»„“”‘’…·•/\\@#$%^&*_+=<>|~`¿¡、。，！？「」")  # noqa: RUF001 - look-alike punctuation on purpose
_CJK = [chr(c) for c in range(0x4E00, 0x4E00 + 400)] + [
    chr(c)
    for c in (
        0x3400,
        0x4DBF,
        0x20000,
        0x2A6DF,
        0x2A700,
        0x2B740,
        0x2B81F,
        0x2B820,
        0x2B8FF,
        0x2B91F,
        0x2B920,
        0x2CEAF,
        0xF900,
        0xFAFF,
        0x2F800,
        0x2FA1F,
        0x30000,
    )
]
_KANA_HANGUL = [chr(c) for c in range(0x3041, 0x3097)] + [
    chr(c) for c in range(0xAC00, 0xAC00 + 200)
]
_EMOJI = [
    "😀",
    "😂",
    "🥲",
    "🫠",
    "🫶🏽",
    "👍",
    "👍🏿",
    "👩‍👩‍👧",
    "🏳️‍🌈",
    "🇫🇷",
    "❤️",
    "✨",
    "🤖",
    "🧑🏻‍💻",
    "☕",
    "1️⃣",
]
_INVISIBLE = [
    "\x00",
    "\x01",
    "\x07",
    "\x0b",
    "\x0c",
    "\x1b",
    "\x7f",
    "\x85",
    "\xa0",
    "\xad",
    "\u200b",
    "\u200c",
    "\u200d",
    "\u200e",
    "\u2028",
    "\u2029",
    "\u2060",
    "\u3000",
    "\ufeff",
    "\ufffd",
    "\ue000",
    "\U000f0000",
    "\t",
    "\n",
    "\r\n",
    "\u0301",
    "\u0308",
    "\u20dd",
]
_SPECIALS = ["[CLS]", "[SEP]", "[MASK]", "[PAD]", "[UNK]", "[mask]", "[ CLS ]", "[CLS", "##ing"]

CATEGORIES = (
    "english",
    "accents",
    "cjk",
    "emoji",
    "invisible",
    "specials",
    "long",
    "long_word",
    "empty",
    "random_unicode",
    "mixed",
)


def _random_char(rng: random.Random) -> str:
    while True:
        code = rng.choice((rng.randrange(0x20, 0x3000), rng.randrange(0x3000, 0x30000)))
        if not 0xD800 <= code <= 0xDFFF:
            return chr(code)


def _sentence(rng: random.Random, n: int) -> str:
    words = []
    for _ in range(n):
        w = rng.choice(_WORDS)
        style = rng.random()
        if style < 0.15:
            w = w.upper()
        elif style < 0.3:
            w = w.capitalize()
        words.append(w)
        if rng.random() < 0.2:
            words.append(rng.choice(_PUNCT))
    sep = rng.choice([" ", " ", " ", "  ", "\t", "\n"])
    return sep.join(words)


def _text(category: str, rng: random.Random) -> str:
    if category == "english":
        return _sentence(rng, rng.randint(1, 25))
    if category == "accents":
        return "".join(
            rng.choice(_WORDS[40:]) + rng.choice(["", " ", "-", "'"])
            for _ in range(rng.randint(1, 8))
        )
    if category == "cjk":
        pool = _CJK + _KANA_HANGUL
        return "".join(
            rng.choice([*pool, " ", "\uff0c", "a", "1"]) for _ in range(rng.randint(1, 40))
        )
    if category == "emoji":
        return " ".join(
            rng.choice(_EMOJI) + rng.choice(["", rng.choice(_WORDS)])
            for _ in range(rng.randint(1, 8))
        )
    if category == "invisible":
        parts = []
        for _ in range(rng.randint(1, 12)):
            parts.append(rng.choice(_INVISIBLE) if rng.random() < 0.5 else rng.choice(_WORDS))
        return "".join(parts)
    if category == "specials":
        return "".join(
            rng.choice([*_SPECIALS, " ", rng.choice(_WORDS)]) for _ in range(rng.randint(1, 8))
        )
    if category == "long":
        return _sentence(rng, rng.randint(80, 400))
    if category == "long_word":
        stem = rng.choice(["a", "ab", "é", "中", "x1", "supercalifragilistic"])
        return stem * rng.randint(40, 120) + rng.choice(["", " end", "!"])
    if category == "empty":
        return rng.choice(["", " ", "\t", "\n", "   ", "\u200b", "\u3000", "\x00", "\ufeff"])
    if category == "random_unicode":
        return "".join(_random_char(rng) for _ in range(rng.randint(1, 30)))
    parts = [_text(rng.choice(CATEGORIES[:6]), rng) for _ in range(rng.randint(2, 4))]
    return rng.choice([" ", "", "\n"]).join(parts)


def parity_texts(n: int = 10_000, seed: int = 0) -> list[tuple[str, str]]:
    """``n`` ``(category, text)`` pairs, cycling through :data:`CATEGORIES`.

    >>> texts = parity_texts(22)
    >>> [c for c, _ in texts[:3]]
    ['english', 'accents', 'cjk']
    >>> parity_texts(22) == texts
    True
    """
    rng = random.Random(seed)
    return [
        (CATEGORIES[i % len(CATEGORIES)], _text(CATEGORIES[i % len(CATEGORIES)], rng))
        for i in range(n)
    ]


def replay_texts(n: int = 500, seed: int = 1) -> list[str]:
    """``n`` held-out texts for the Rust-versus-Python replay (a different seed from parity)."""
    return [text for _, text in parity_texts(n, seed)]
