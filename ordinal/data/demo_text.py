"""Synthetic product reviews with 1-5 star ratings, so the text pipeline runs with no downloads.

Each review has a latent quality score drawn from its product category (headphones, blender,
novel, ...). The score sets the implied star rating and, with per-aspect jitter, the sentiment
level (very negative ... very positive) of every sentence, which is picked from graded lexicons
for the aspects quality, product feature, usability, price and delivery, plus an overall verdict.
Realistic noise is layered on top: off-topic openers, mixed-aspect reviews (delivery or price
disagreeing with the product), negations ("not bad"), hedges, typos, 1-6 sentences and some very
short texts, and ~8% label noise (the rating is one star off what the text implies). The label
distribution is skewed like real shop reviews: many 4-5 star ratings, few 2 star ones.

Generation is deterministic: everything is drawn from one ``random.Random(seed)`` instance
(never the global random state), in record order, so ``make_review_records(n=10, seed=s)`` is
the first ten records of ``make_review_records(n=3000, seed=s)``. ``write_reviews`` writes the
records as CSV or JSON Lines with byte-identical output for the same arguments.

See ``docs/demo-data.md`` for the measured label distribution and learnability.
"""

from __future__ import annotations

import csv
import io
import json
import math
import operator
import os
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["REVIEW_LABELS", "make_review_records", "write_reviews"]

REVIEW_LABELS = ("1 star", "2 stars", "3 stars", "4 stars", "5 stars")
"""Class names, in order: label ``k`` means ``k + 1`` stars."""

_NUM_LEVELS = 5
_LABEL_NOISE = 0.08  # share of records whose rating is one star off what the text implies
_SHORT_RATE = 0.10  # share of reviews that are one short phrase ("Love it!")
_TYPO_RATE = 0.12  # share of reviews with one or two typos
_HEDGE_RATE = 0.12  # per sentence
_OPENER_RATE = 0.35  # per multi-sentence review
_SENTENCE_WEIGHTS = (0.14, 0.22, 0.24, 0.19, 0.12, 0.09)  # 1..6 sentences
_DUD_MEAN, _DUD_SD = 0.2, 0.8  # latent score of a defective unit / bad experience
_FORMATS = ("csv", "jsonl")


@dataclass(frozen=True)
class _Category:
    noun: str  # "these headphones" / "this blender"
    plural: bool
    features: tuple[str, ...]  # singular noun phrases: "the sound"
    uses: tuple[str, ...]  # "on my commute"
    mean: float  # latent quality mean on the 0..4 (stars - 1) scale
    sd: float
    dud_rate: float  # chance of a defective unit (a score from the low mode)


_CATEGORIES = (
    _Category(
        "these headphones",
        True,
        ("the sound", "the battery life", "the noise cancelling", "the microphone"),
        ("on my commute", "at the gym", "for calls"),
        3.4,
        0.95,
        0.19,
    ),
    _Category(
        "this blender",
        False,
        ("the motor", "the lid", "the jug"),
        ("for smoothies", "for soups", "in the morning"),
        3.5,
        0.9,
        0.22,
    ),
    _Category(
        "this backpack",
        False,
        ("the zipper", "the padding", "the laptop sleeve"),
        ("for school", "on hikes", "for travel"),
        3.7,
        0.85,
        0.14,
    ),
    _Category(
        "this novel",
        False,
        ("the plot", "the ending", "the writing", "the pacing"),
        ("on holiday", "before bed", "as a light read"),
        3.6,
        1.05,
        0.12,
    ),
    _Category(
        "this phone case",
        False,
        ("the grip", "the fit", "the button cover"),
        ("every day", "with my phone"),
        3.2,
        1.0,
        0.24,
    ),
    _Category(
        "this coffee maker",
        False,
        ("the coffee", "the carafe", "the timer"),
        ("in the morning", "at the office"),
        3.4,
        0.95,
        0.20,
    ),
    _Category(
        "these running shoes",
        True,
        ("the cushioning", "the sole", "the fit"),
        ("on long runs", "on trails", "at the track"),
        3.6,
        0.9,
        0.14,
    ),
    _Category(
        "this desk lamp",
        False,
        ("the brightness", "the arm", "the switch"),
        ("for reading", "at my desk"),
        3.5,
        0.9,
        0.17,
    ),
    _Category(
        "this board game",
        False,
        ("the artwork", "the rulebook", "the replay value"),
        ("with friends", "on family nights"),
        3.8,
        0.9,
        0.10,
    ),
    _Category(
        "this vacuum cleaner",
        False,
        ("the suction", "the battery", "the filter"),
        ("on carpets", "around the house"),
        3.3,
        1.0,
        0.22,
    ),
    _Category(
        "this yoga mat",
        False,
        ("the grip", "the thickness", "the surface"),
        ("for hot yoga", "at home"),
        3.6,
        0.85,
        0.12,
    ),
    _Category(
        "this kitchen knife",
        False,
        ("the edge", "the handle", "the balance"),
        ("for vegetables", "every day"),
        3.7,
        0.9,
        0.14,
    ),
)

# Graded lexicons: one tuple of sentence templates per level, very negative (0) ... very
# positive (4). Placeholders: {noun} {Noun} {it} {It} {is} {works} {feels} {feature} {Feature}
# {use} {period}. Negations ("not bad", "can't complain") sit at the level they mean.
_ASPECTS: dict[str, tuple[tuple[str, ...], ...]] = {
    "quality": (
        (
            "{Noun} fell apart after {period}.",
            "{Noun} {is} cheaply made and broke almost immediately.",
            "The build quality is awful.",
            "Worst quality I have ever seen, total junk.",
            "The materials are flimsy garbage.",
        ),
        (
            "The quality is poor for what it is.",
            "{Noun} {feels} flimsy.",
            "Not great quality, there are already scratches.",
            "The materials feel cheap.",
            "Quality is disappointing.",
        ),
        (
            "The quality is okay, nothing special.",
            "Build quality is average.",
            "Not bad quality, not great either.",
            "Quality is acceptable for the price range.",
            "{Noun} {feels} decent enough.",
        ),
        (
            "The quality is good.",
            "{Noun} {feels} solid and well made.",
            "Build quality is better than expected.",
            "Not bad at all in terms of quality.",
            "Sturdy and well put together.",
        ),
        (
            "The build quality is excellent.",
            "Superb quality, {it} will last for years.",
            "{Noun} {is} beautifully made.",
            "Outstanding craftsmanship.",
            "Rock solid, top quality materials.",
        ),
    ),
    "feature": (
        (
            "{Feature} is terrible.",
            "{Feature} is completely useless.",
            "{Feature} is a joke.",
            "{Feature} is the worst part, just horrible.",
        ),
        (
            "{Feature} is weak.",
            "{Feature} is disappointing.",
            "{Feature} is not great.",
            "I can't say {feature} is any good.",
        ),
        (
            "{Feature} is fine.",
            "{Feature} is okay, I guess.",
            "{Feature} is not bad.",
            "{Feature} is average.",
        ),
        (
            "{Feature} is really good.",
            "{Feature} is impressive.",
            "I like {feature} a lot.",
            "Can't complain about {feature}.",
        ),
        (
            "{Feature} is amazing.",
            "{Feature} is absolutely fantastic.",
            "{Feature} is the best I have had.",
            "I love {feature}.",
        ),
    ),
    "usability": (
        (
            "{It} {is} impossible to use.",
            "Stopped working after {period}.",
            "Completely unusable {use}.",
            "A nightmare to use, I gave up.",
        ),
        (
            "{It} {is} awkward to use.",
            "Hard to use {use}.",
            "Setup was frustrating.",
            "Not very practical {use}.",
        ),
        (
            "Easy enough to use once you figure it out.",
            "Usable {use}, but nothing more.",
            "Setup took a while but it works.",
            "{It} {works} okay {use}.",
        ),
        (
            "Easy to use {use}.",
            "{It} {works} well {use}.",
            "Simple to set up and use.",
            "Very practical {use}.",
        ),
        (
            "Incredibly easy to use.",
            "{It} {works} perfectly {use}.",
            "Effortless to use, it just works.",
            "Perfect {use}.",
        ),
    ),
    "price": (
        (
            "Total waste of money.",
            "Way overpriced for what you get.",
            "A complete rip-off.",
            "I want my money back.",
        ),
        (
            "Overpriced.",
            "Not worth the price.",
            "Too expensive for the quality.",
            "You can find better for less.",
        ),
        (
            "Fair price, I suppose.",
            "The price is okay.",
            "Reasonably priced, not a bargain.",
            "Worth it only on sale.",
        ),
        (
            "Good value for money.",
            "Worth the price.",
            "Fairly priced for the quality.",
            "Not bad for the price.",
        ),
        (
            "Incredible value for money.",
            "Worth every penny.",
            "An absolute bargain.",
            "Best value I have found.",
        ),
    ),
    "delivery": (
        (
            "Arrived damaged and two weeks late.",
            "Shipping took forever and the box was crushed.",
            "The package was lost and support ignored me.",
        ),
        (
            "Delivery was slow.",
            "Arrived a few days late.",
            "The packaging was damaged.",
        ),
        (
            "Delivery was fine.",
            "Arrived on time.",
            "Shipping was okay, nothing to report.",
        ),
        (
            "Fast delivery.",
            "Arrived quickly and well packaged.",
            "Shipping was quicker than expected.",
        ),
        (
            "Arrived the next day, super fast shipping.",
            "Lightning fast delivery and perfect packaging.",
            "Delivery was amazingly quick.",
        ),
    ),
}

# How strongly each aspect follows the latent score (1 = fully), and its jitter in levels.
_ASPECT_COUPLING = {
    "quality": (1.0, 0.55),
    "feature": (1.0, 0.6),
    "usability": (0.9, 0.65),
    "price": (0.8, 0.7),
    "delivery": (0.35, 0.9),
}

_OVERALL = (
    (
        "Do not buy.",
        "Returning it immediately.",
        "One star is generous.",
        "Avoid.",
        "I absolutely regret this purchase.",
    ),
    (
        "Pretty disappointed overall.",
        "I would not buy again.",
        "Expected much more.",
        "Not good enough, sadly.",
        "Can't recommend it.",
    ),
    (
        "It's okay overall.",
        "Mixed feelings.",
        "Does the job, nothing more.",
        "Average, I might keep it.",
        "Not bad, not great.",
    ),
    (
        "Happy with it overall.",
        "Would recommend.",
        "Pretty good purchase.",
        "I'd buy it again.",
        "Not bad at all.",
    ),
    (
        "Absolutely love it!",
        "Highly recommend!",
        "Best purchase I have made this year.",
        "Couldn't be happier.",
        "Five stars, no question.",
    ),
)

_SHORT = (
    ("Garbage.", "Waste of money.", "Broke immediately.", "Do not buy!", "Awful."),
    ("Disappointing.", "Not great.", "Meh, expected more.", "Poor.", "Not worth it."),
    ("It's okay.", "Does the job.", "Not bad.", "Average.", "Fine, I guess."),
    ("Good value.", "Pretty good.", "Works well.", "Solid buy.", "Nice."),
    ("Love it!", "Perfect!", "Absolutely fantastic.", "Excellent!", "Amazing, buy it."),
)

_OPENERS = (
    "Bought {noun} {use}.",
    "I have had {noun} for {period} now.",
    "Ordered {noun} after reading the reviews.",
    "This was a gift for my {relation}.",
    "Got {noun} on sale.",
    "Replaced my old one with {noun}.",
)
_CONTRAST = ("But ", "That said, ", "On the other hand, ", "However, ")
_HEDGES = ("Honestly, ", "To be fair, ", "Personally, ", "In my opinion, ", "For what it's worth, ")
_HEDGE_TAGS = (", I think.", ", I guess.", ", mostly.", ", for now at least.", ", more or less.")
_PERIODS = ("a week", "two weeks", "a month", "three months", "half a year", "a year")
_RELATIONS = ("sister", "dad", "partner", "son", "friend", "mum")


def _check_int(name: str, value: object, minimum: int) -> int:
    """Return ``value`` as an int, or raise naming the parameter and value."""
    try:
        as_int = operator.index(value)  # type: ignore[call-overload]
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {value!r}") from None
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if as_int < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return as_int


def _clip_level(x: float) -> int:
    return min(_NUM_LEVELS - 1, max(0, math.floor(x + 0.5)))


def _lower_first(sentence: str) -> str:
    """Lower-case the first letter (or placeholder, ``{Noun}`` -> ``{noun}``) of a sentence."""
    if sentence.startswith(("I ", "I'")):
        return sentence
    if sentence.startswith("{"):
        return "{" + sentence[1:2].lower() + sentence[2:]
    return sentence[:1].lower() + sentence[1:]


def _hedge(sentence: str, rng: random.Random) -> str:
    """Soften a sentence: a hedging prefix, or a trailing ", I think." style tag."""
    if sentence.endswith(".") and rng.random() < 0.4:
        return sentence[:-1] + rng.choice(_HEDGE_TAGS)
    return rng.choice(_HEDGES) + _lower_first(sentence)


def _typo(word: str, rng: random.Random) -> str:
    i = rng.randrange(1, len(word) - 1)
    kind = rng.randrange(3)
    if kind == 0:  # swap two neighbours
        return word[: i - 1] + word[i] + word[i - 1] + word[i + 1 :]
    if kind == 1:  # drop a letter
        return word[:i] + word[i + 1 :]
    return word[:i] + word[i] + word[i:]  # double a letter


def _add_typos(text: str, rng: random.Random) -> str:
    words = text.split(" ")
    candidates = [i for i, w in enumerate(words) if len(w) >= 4 and w.isalpha()]
    if not candidates:
        return text
    for i in rng.sample(candidates, min(len(candidates), rng.choice((1, 1, 2)))):
        words[i] = _typo(words[i], rng)
    return " ".join(words)


def _review_text(cat: _Category, q: float, implied: int, rng: random.Random) -> str:
    """Compose one review whose sentiment follows the latent score ``q``."""
    if rng.random() < _SHORT_RATE:
        text = rng.choice(_SHORT[implied])
    else:
        slots = rng.choices(range(1, 7), weights=_SENTENCE_WEIGHTS)[0]
        sentences: list[str] = []
        if slots >= 2 and rng.random() < _OPENER_RATE:
            sentences.append(rng.choice(_OPENERS))
        overall = rng.random() < (0.3 if slots == 1 else 0.6)
        n_aspects = min(len(_ASPECTS), slots - len(sentences) - int(overall))
        if n_aspects + len(sentences) + int(overall) < slots:
            overall = True
        aspects = rng.sample(list(_ASPECTS), n_aspects)
        prev_level: int | None = None
        for aspect in aspects:
            weight, jitter = _ASPECT_COUPLING[aspect]
            level = _clip_level(2.0 + weight * (q - 2.0) + rng.gauss(0.0, jitter))
            sentence = rng.choice(_ASPECTS[aspect][level])
            if prev_level is not None and abs(level - prev_level) >= 2:
                sentence = rng.choice(_CONTRAST) + _lower_first(sentence)
            elif rng.random() < _HEDGE_RATE:
                sentence = _hedge(sentence, rng)
            sentences.append(sentence)
            prev_level = level
        if overall:
            sentence = rng.choice(_OVERALL[implied])
            if rng.random() < _HEDGE_RATE:
                sentence = _hedge(sentence, rng)
            sentences.append(sentence)
        text = " ".join(sentences)
    noun = cat.noun
    feature = rng.choice(cat.features)
    fields = {
        "noun": noun,
        "Noun": noun[:1].upper() + noun[1:],
        "it": "they" if cat.plural else "it",
        "It": "They" if cat.plural else "It",
        "is": "are" if cat.plural else "is",
        "works": "work" if cat.plural else "works",
        "feels": "feel" if cat.plural else "feels",
        "feature": feature,
        "Feature": feature[:1].upper() + feature[1:],
        "use": rng.choice(cat.uses),
        "period": rng.choice(_PERIODS),
        "relation": rng.choice(_RELATIONS),
    }
    text = text.format_map(fields)
    if rng.random() < _TYPO_RATE:
        text = _add_typos(text, rng)
    return text


def make_review_records(n: int = 3000, seed: int = 0) -> list[dict[str, object]]:
    """Generate synthetic product reviews with star-rating labels.

    Parameters
    ----------
    n : int, default 3000
        Number of reviews, at least 1.
    seed : int, default 0
        Seed of the ``random.Random`` instance that draws everything. The same ``(n, seed)``
        gives the same records; a smaller ``n`` gives a prefix of a larger one.

    Returns
    -------
    list of dict
        One dict per review: ``{"id": "rev-000001", "text": str, "label": int}`` where the
        label is ``stars - 1`` in ``0..4`` (class names in :data:`REVIEW_LABELS`). Ids are
        unique, zero-padded and numbered from 1 in order.

    Raises
    ------
    ValueError
        If ``n < 1``.

    Examples
    --------
    >>> records = make_review_records(n=3, seed=0)
    >>> [r["id"] for r in records]
    ['rev-000001', 'rev-000002', 'rev-000003']
    >>> all(r["label"] in range(5) and isinstance(r["text"], str) for r in records)
    True
    >>> records == make_review_records(n=3, seed=0)
    True
    """
    n = _check_int("n", n, 1)
    rng = random.Random(seed)
    records: list[dict[str, object]] = []
    for i in range(1, n + 1):
        cat = rng.choice(_CATEGORIES)
        if rng.random() < cat.dud_rate:
            q = rng.gauss(_DUD_MEAN, _DUD_SD)
        else:
            q = rng.gauss(cat.mean, cat.sd)
        implied = _clip_level(q)
        text = _review_text(cat, q, implied, rng)
        label = implied
        if rng.random() < _LABEL_NOISE:
            if implied == 0:
                label = 1
            elif implied == _NUM_LEVELS - 1:
                label = implied - 1
            else:
                label = implied + rng.choice((-1, 1))
        records.append({"id": f"rev-{i:06d}", "text": text, "label": label})
    return records


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to a temp file next to ``path``, then ``os.replace`` it into place."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_reviews(path: str | Path, n: int = 3000, seed: int = 0, fmt: str = "csv") -> Path:
    """Write :func:`make_review_records` output to a CSV or JSON Lines file.

    The output is byte-identical for the same arguments: UTF-8, ``\\n`` line endings, CSV
    written by the :mod:`csv` module with the header ``id,text,label``, or one JSON object per
    line with sorted keys. The file is written atomically (a temp file in the same directory,
    then :func:`os.replace`); missing parent directories are created.

    Parameters
    ----------
    path : str or pathlib.Path
        Destination file.
    n : int, default 3000
        Number of reviews, at least 1.
    seed : int, default 0
        Generator seed, as in :func:`make_review_records`.
    fmt : {"csv", "jsonl"}, default "csv"
        Output format.

    Returns
    -------
    pathlib.Path
        The path written.

    Raises
    ------
    ValueError
        If ``n < 1`` or ``fmt`` is not ``"csv"`` or ``"jsonl"``.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     out = write_reviews(Path(tmp) / "reviews.csv", n=2, seed=0)
    ...     out.read_text(encoding="utf-8").splitlines()[0]
    'id,text,label'
    """
    if fmt not in _FORMATS:
        raise ValueError(f"fmt must be one of {', '.join(_FORMATS)}, got {fmt!r}")
    records = make_review_records(n=n, seed=seed)
    buf = io.StringIO(newline="")
    if fmt == "csv":
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["id", "text", "label"])
        for r in records:
            writer.writerow([r["id"], r["text"], r["label"]])
    else:
        for r in records:
            buf.write(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write_bytes(out, buf.getvalue().encode("utf-8"))
    return out
