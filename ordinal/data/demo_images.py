"""Synthetic images whose ordinal label is visible: how many shapes they show.

An image with label ``k`` shows ``k + 1`` filled shapes (circles, squares, triangles; random
colours, random sizes within bounds, rotations for the polygons), placed without overlap where
the canvas allows, on a randomly tinted background with Gaussian pixel noise over everything.
Shape colours are kept far from the background colour so the count can be recovered by a
colour-distance mask. About 5% of labels are one class off the count shown (label noise).
Counts are drawn uniformly, so every class is about equally frequent.

Generation is deterministic: layout is drawn from one ``random.Random(seed)`` and pixel noise
from one ``numpy.random.default_rng(seed)`` (never global random state), in record order, so a
smaller ``n`` gives a prefix of a larger one. ``write_shapes`` writes PNG files with fixed
Pillow options and no metadata, so the bytes are identical for the same arguments.

See ``docs/demo-data.md`` for the measured label distribution.
"""

from __future__ import annotations

import csv
import io
import math
import operator
import os
import random
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["SHAPE_LABELS", "make_shape_records", "write_shapes"]

SHAPE_LABELS = ("1 shape", "2 shapes", "3 shapes", "4 shapes", "5 shapes")
"""Class names for the default ``num_classes=5``: label ``k`` means ``k + 1`` shapes."""

_LABEL_NOISE = 0.05  # share of records whose label is one class off the count shown
_NOISE_SD = (4.0, 10.0)  # range of the per-image Gaussian pixel-noise standard deviation
_MIN_COLOUR_DISTANCE = 140.0  # Euclidean RGB distance of every shape colour from the background
_GAP = 3  # pixels kept free between shapes' bounding circles
_TRIES = 200  # placement attempts per shape before shrinking it, then allowing overlap
_KINDS = ("circle", "square", "triangle")
_PNG_OPTIONS = {"format": "PNG", "optimize": False, "compress_level": 6}


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


def _shape_colour(background: tuple[int, int, int], rng: random.Random) -> tuple[int, int, int]:
    """A random colour at least ``_MIN_COLOUR_DISTANCE`` away from ``background``."""
    while True:
        colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        if math.dist(colour, background) >= _MIN_COLOUR_DISTANCE:
            return colour


def _place(count: int, size: int, rng: random.Random) -> list[tuple[float, float, float]]:
    """Centres and radii of ``count`` bounding circles, non-overlapping where possible."""
    r_max = max(3.0, min(size * 0.18, size / (1.6 * math.sqrt(count) + 1.0)))
    r_min = max(2.5, min(r_max, size * 0.07))
    placed: list[tuple[float, float, float]] = []
    for _ in range(count):
        radius = rng.uniform(r_min, r_max)
        spot: tuple[float, float, float] | None = None
        while spot is None:
            for _ in range(_TRIES):
                x = rng.uniform(radius + 1, size - radius - 1)
                y = rng.uniform(radius + 1, size - radius - 1)
                if all(math.dist((x, y), (px, py)) >= radius + pr + _GAP for px, py, pr in placed):
                    spot = (x, y, radius)
                    break
            else:
                if radius > r_min * 0.6:
                    radius *= 0.85  # shrink and try again
                else:  # the canvas is full: allow overlap
                    x = rng.uniform(radius + 1, size - radius - 1)
                    y = rng.uniform(radius + 1, size - radius - 1)
                    spot = (x, y, radius)
        placed.append(spot)
    return placed


def _draw_shape(
    draw: ImageDraw.ImageDraw,
    kind: str,
    spot: tuple[float, float, float],
    colour: tuple[int, int, int],
    rng: random.Random,
) -> None:
    x, y, r = spot
    if kind == "circle":
        draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
        return
    corners = 4 if kind == "square" else 3  # a regular polygon inscribed in the circle
    start = rng.uniform(0.0, 2.0 * math.pi)
    points = [
        (
            x + r * math.cos(start + 2.0 * math.pi * k / corners),
            y + r * math.sin(start + 2.0 * math.pi * k / corners),
        )
        for k in range(corners)
    ]
    draw.polygon(points, fill=colour)


def _iter_shapes(
    n: int, seed: int, image_size: int, num_classes: int
) -> Iterator[tuple[dict[str, object], int]]:
    """Yield ``(record, clean_label)`` pairs; ``clean_label + 1`` shapes are drawn."""
    n = _check_int("n", n, 1)
    image_size = _check_int("image_size", image_size, 16)
    num_classes = _check_int("num_classes", num_classes, 2)
    rng = random.Random(seed)
    np_rng = np.random.default_rng(seed)
    for i in range(1, n + 1):
        clean = rng.randrange(num_classes)
        background = (rng.randrange(40, 236), rng.randrange(40, 236), rng.randrange(40, 236))
        image = Image.new("RGB", (image_size, image_size), background)
        draw = ImageDraw.Draw(image)
        for spot in _place(clean + 1, image_size, rng):
            _draw_shape(draw, rng.choice(_KINDS), spot, _shape_colour(background, rng), rng)
        noise_sd = rng.uniform(*_NOISE_SD)
        pixels = np.asarray(image, dtype=np.float32)
        pixels += np_rng.normal(0.0, noise_sd, size=pixels.shape).astype(np.float32)
        image = Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))
        label = clean
        if rng.random() < _LABEL_NOISE:
            if clean == 0:
                label = 1
            elif clean == num_classes - 1:
                label = clean - 1
            else:
                label = clean + rng.choice((-1, 1))
        yield {"id": f"img-{i:06d}", "image": image, "label": label}, clean


def make_shape_records(
    n: int = 1000, seed: int = 0, image_size: int = 64, num_classes: int = 5
) -> list[dict[str, object]]:
    """Generate synthetic images labelled by the number of shapes they show.

    Parameters
    ----------
    n : int, default 1000
        Number of images, at least 1.
    seed : int, default 0
        Seed of the ``random.Random`` (layout) and ``numpy.random.default_rng`` (pixel noise)
        instances. The same arguments give the same records; a smaller ``n`` gives a prefix of
        a larger one.
    image_size : int, default 64
        Width and height in pixels, at least 16.
    num_classes : int, default 5
        Number of classes, at least 2; label ``k`` shows ``k + 1`` shapes. Class names for the
        default are in :data:`SHAPE_LABELS`. Many classes on a small canvas may overlap shapes.

    Returns
    -------
    list of dict
        One dict per image: ``{"id": "img-000001", "image": PIL.Image.Image, "label": int}``
        with an RGB ``image_size`` x ``image_size`` image and a label in
        ``0..num_classes - 1`` (about 5% are one class off the count shown).

    Raises
    ------
    ValueError
        If ``n < 1``, ``image_size < 16`` or ``num_classes < 2``.

    Examples
    --------
    >>> records = make_shape_records(n=2, seed=0, image_size=32)
    >>> [r["id"] for r in records]
    ['img-000001', 'img-000002']
    >>> records[0]["image"].mode, records[0]["image"].size
    ('RGB', (32, 32))
    >>> all(r["label"] in range(5) for r in records)
    True
    """
    return [record for record, _ in _iter_shapes(n, seed, image_size, num_classes)]


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to a temp file next to ``path``, then ``os.replace`` it into place."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_shapes(directory: str | Path, n: int = 1000, seed: int = 0, image_size: int = 64) -> Path:
    """Write :func:`make_shape_records` output (5 classes) as PNG files plus a label CSV.

    Writes ``directory/images/{id}.png`` and ``directory/labels.csv`` with the header
    ``id,file,label`` (``file`` relative to ``directory``, with ``/`` separators; UTF-8,
    ``\\n`` line endings). PNGs are saved with fixed Pillow options and no metadata, so the
    bytes are identical for the same arguments. Every file is written atomically (a temp file
    in the same directory, then :func:`os.replace`). Files from an earlier, larger run are not
    removed; ``labels.csv`` lists only this run's images.

    Parameters
    ----------
    directory : str or pathlib.Path
        Output folder, created if missing.
    n : int, default 1000
        Number of images, at least 1.
    seed : int, default 0
        Generator seed, as in :func:`make_shape_records`.
    image_size : int, default 64
        Width and height in pixels, at least 16.

    Returns
    -------
    pathlib.Path
        ``directory``.

    Raises
    ------
    ValueError
        If ``n < 1`` or ``image_size < 16``.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> with tempfile.TemporaryDirectory() as tmp:  # doctest: +ELLIPSIS
    ...     out = write_shapes(Path(tmp) / "shapes", n=2, seed=0, image_size=32)
    ...     print((out / "labels.csv").read_text(encoding="utf-8").splitlines()[:2])
    ...     print(sorted(p.name for p in (out / "images").iterdir()))
    ['id,file,label', 'img-000001,images/img-000001.png,...']
    ['img-000001.png', 'img-000002.png']
    """
    records = make_shape_records(n=n, seed=seed, image_size=image_size)
    root = Path(directory)
    images_dir = root / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["id", "file", "label"])
    for record in records:
        name = f"{record['id']}.png"
        png = io.BytesIO()
        image = record["image"]
        assert isinstance(image, Image.Image)
        image.save(png, **_PNG_OPTIONS)
        _atomic_write_bytes(images_dir / name, png.getvalue())
        writer.writerow([record["id"], f"images/{name}", record["label"]])
    _atomic_write_bytes(root / "labels.csv", buf.getvalue().encode("utf-8"))
    return root
