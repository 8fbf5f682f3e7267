"""Tests of the deterministic demo data generators (reviews text, shape-count images)."""

from __future__ import annotations

import csv
import hashlib
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage
from scipy.stats import spearmanr
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import Ridge

from ordinal.data.demo_images import SHAPE_LABELS, _iter_shapes, make_shape_records, write_shapes
from ordinal.data.demo_text import REVIEW_LABELS, make_review_records, write_reviews


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tree_digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): _sha256(p) for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def reviews() -> list[dict[str, object]]:
    return make_review_records()


# --------------------------------------------------------------------------------------- text


def test_review_labels_constant() -> None:
    assert REVIEW_LABELS == ("1 star", "2 stars", "3 stars", "4 stars", "5 stars")


def test_reviews_same_seed_identical_different_seed_differs() -> None:
    a = make_review_records(n=300, seed=7)
    assert a == make_review_records(n=300, seed=7)
    b = make_review_records(n=300, seed=8)
    assert [r["text"] for r in a] != [r["text"] for r in b]
    # a smaller n is a prefix of a larger one, so ids are stable
    assert make_review_records(n=50, seed=7) == a[:50]


def test_review_records_shape(reviews: list[dict[str, object]]) -> None:
    assert len(reviews) == 3000
    ids = [r["id"] for r in reviews]
    assert len(set(ids)) == len(ids)
    assert ids[0] == "rev-000001"
    assert ids[-1] == "rev-003000"
    for r in reviews:
        assert set(r) == {"id", "text", "label"}
        assert isinstance(r["text"], str)
        assert r["text"].strip()
        assert "\n" not in r["text"]
        assert type(r["label"]) is int
        assert 0 <= r["label"] <= 4


def test_review_texts_vary(reviews: list[dict[str, object]]) -> None:
    texts = [str(r["text"]) for r in reviews]
    sentences = [t.count(". ") + t.count("! ") + 1 for t in texts]
    assert min(sentences) == 1
    assert max(sentences) >= 6
    assert sum(len(t) < 25 for t in texts) > 100  # some very short reviews
    assert len(set(texts)) > 0.8 * len(texts)
    assert any("not bad" in t.lower() for t in texts)  # negations


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_review_label_distribution_is_skewed(seed: int) -> None:
    # Measured with the defaults (n=3000, seed=0): 1★ 9.8%, 2★ 7.1%, 3★ 11.0%, 4★ 30.6%,
    # 5★ 41.5% (docs/demo-data.md). Asserted loosely: J-shaped like real shop reviews.
    counts = Counter(r["label"] for r in make_review_records(n=3000, seed=seed))
    share = [counts[k] / 3000 for k in range(5)]
    assert all(s > 0.04 for s in share)  # every label present
    assert share[4] == max(share)
    assert share[1] == min(share)
    assert share[3] + share[4] > 0.6
    assert share[0] > share[1]


def test_review_ordinal_signal_is_learnable_but_noisy(reviews: list[dict[str, object]]) -> None:
    texts = [str(r["text"]) for r in reviews]
    y = np.array([r["label"] for r in reviews])
    vectorizer = TfidfVectorizer()
    model = Ridge(alpha=1.0).fit(vectorizer.fit_transform(texts[:2000]), y[:2000])
    pred = model.predict(vectorizer.transform(texts[2000:]))
    rho = spearmanr(pred, y[2000:]).statistic
    accuracy = float(np.mean(np.clip(np.rint(pred), 0, 4) == y[2000:]))
    # Measured (seeds 0, 1, 2): Spearman 0.85 / 0.85 / 0.84, rounded accuracy 0.68 / 0.67 /
    # 0.67. Thresholds keep a wide margin both ways: learnable (> 0.75, the bar asked for is
    # 0.6) but not trivially separable (< 0.85, the bar asked for is 0.95).
    assert rho > 0.75
    assert accuracy < 0.85


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_write_reviews_is_byte_identical(tmp_path: Path, fmt: str) -> None:
    a = write_reviews(tmp_path / "a" / f"reviews.{fmt}", n=200, seed=5, fmt=fmt)
    b = write_reviews(tmp_path / "b" / f"reviews.{fmt}", n=200, seed=5, fmt=fmt)
    c = write_reviews(tmp_path / "c" / f"reviews.{fmt}", n=200, seed=6, fmt=fmt)
    assert a == tmp_path / "a" / f"reviews.{fmt}"
    assert _sha256(a) == _sha256(b)
    assert _sha256(a) != _sha256(c)
    data = a.read_bytes()
    assert b"\r" not in data
    data.decode("utf-8")
    # rewriting in place replaces the file and leaves no temp files behind
    write_reviews(a, n=200, seed=5, fmt=fmt)
    assert _sha256(a) == _sha256(b)
    assert [p.name for p in a.parent.iterdir()] == [a.name]


def test_write_reviews_round_trips(tmp_path: Path) -> None:
    records = make_review_records(n=150, seed=9)
    csv_path = write_reviews(str(tmp_path / "r.csv"), n=150, seed=9, fmt="csv")
    with csv_path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == ["id", "text", "label"]
        rows = [{"id": r["id"], "text": r["text"], "label": int(r["label"])} for r in reader]
    assert rows == records
    jsonl_path = write_reviews(tmp_path / "r.jsonl", n=150, seed=9, fmt="jsonl")
    lines = jsonl_path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == records
    assert lines[0].startswith('{"id": ')  # sorted keys


# ------------------------------------------------------------------------------------- images


def _count_shapes(image: Image.Image) -> int:
    """Connected components of pixels far (in RGB) from the background colour."""
    pixels = np.asarray(image, dtype=np.float32)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    background = np.median(border, axis=0)
    mask = np.linalg.norm(pixels - background, axis=2) > 70.0
    mask = ndimage.binary_opening(mask)
    labelled, count = ndimage.label(mask)
    sizes = ndimage.sum(mask, labelled, range(1, count + 1))
    return int(np.sum(np.asarray(sizes) >= 4))


def test_shape_labels_constant() -> None:
    assert SHAPE_LABELS == ("1 shape", "2 shapes", "3 shapes", "4 shapes", "5 shapes")


def test_shapes_same_seed_identical_different_seed_differs() -> None:
    def key(records: list[dict[str, object]]) -> list[tuple[object, bytes, object]]:
        return [(r["id"], r["image"].tobytes(), r["label"]) for r in records]  # type: ignore[union-attr]

    a = make_shape_records(n=40, seed=3)
    assert key(a) == key(make_shape_records(n=40, seed=3))
    assert key(a) != key(make_shape_records(n=40, seed=4))
    assert key(make_shape_records(n=10, seed=3)) == key(a[:10])


@pytest.mark.parametrize("image_size", [16, 32, 64])
def test_shape_records_mode_and_size(image_size: int) -> None:
    records = make_shape_records(n=30, seed=1, image_size=image_size)
    assert [r["id"] for r in records] == [f"img-{i:06d}" for i in range(1, 31)]
    for r in records:
        assert set(r) == {"id", "image", "label"}
        image = r["image"]
        assert isinstance(image, Image.Image)
        assert image.mode == "RGB"
        assert image.size == (image_size, image_size)
        assert 0 <= r["label"] <= 4


def test_shape_label_distribution_and_count_signal() -> None:
    pairs = list(_iter_shapes(n=500, seed=0, image_size=64, num_classes=5))
    counts = Counter(r["label"] for r, _ in pairs)
    assert set(counts) == set(range(5))
    assert min(counts.values()) > 0.12 * 500  # uniform classes
    # Measured (n=1000, seed=0): count matches the clean label on 100% of images and the
    # (noisy) label on 95.6%; label noise 4.4%.
    noisy = sum(r["label"] != clean for r, clean in pairs)
    assert 0.01 * 500 < noisy < 0.10 * 500
    assert all(abs(r["label"] - clean) == 1 for r, clean in pairs if r["label"] != clean)
    counted = [_count_shapes(r["image"]) for r, _ in pairs]  # type: ignore[arg-type]
    clean_match = np.mean([c == clean + 1 for c, (_, clean) in zip(counted, pairs, strict=True)])
    label_match = np.mean([c == r["label"] + 1 for c, (r, _) in zip(counted, pairs, strict=True)])
    assert clean_match >= 0.95
    assert label_match >= 0.80


def test_shape_num_classes() -> None:
    records = make_shape_records(n=60, seed=2, image_size=48, num_classes=3)
    labels = {r["label"] for r in records}
    assert labels == {0, 1, 2}
    matches = [_count_shapes(r["image"]) == r["label"] + 1 for r in records]  # type: ignore[arg-type]
    assert np.mean(matches) >= 0.8


def test_write_shapes_is_byte_identical(tmp_path: Path) -> None:
    a = write_shapes(tmp_path / "a", n=25, seed=11, image_size=32)
    b = write_shapes(str(tmp_path / "b"), n=25, seed=11, image_size=32)
    c = write_shapes(tmp_path / "c", n=25, seed=12, image_size=32)
    assert a == tmp_path / "a"
    digest = _tree_digest(a)
    assert len(digest) == 26  # 25 images + labels.csv, no temp files left behind
    assert digest == _tree_digest(b)
    assert digest != _tree_digest(c)
    write_shapes(a, n=25, seed=11, image_size=32)  # rewrite in place
    assert _tree_digest(a) == digest


def test_write_shapes_contents(tmp_path: Path) -> None:
    records = make_shape_records(n=12, seed=4, image_size=24)
    root = write_shapes(tmp_path / "shapes", n=12, seed=4, image_size=24)
    data = (root / "labels.csv").read_bytes()
    assert b"\r" not in data
    with (root / "labels.csv").open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == ["id", "file", "label"]
        rows = list(reader)
    assert [row["id"] for row in rows] == [r["id"] for r in records]
    for row, record in zip(rows, records, strict=True):
        assert row["file"] == f"images/{record['id']}.png"
        assert int(row["label"]) == record["label"]
        with Image.open(root / row["file"]) as image:
            assert image.format == "PNG"
            assert image.mode == "RGB"
            assert image.tobytes() == record["image"].tobytes()  # type: ignore[union-attr]


# --------------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: make_review_records(n=0), "n must be >= 1, got 0"),
        (lambda: write_reviews("unused.csv", n=-3), "n must be >= 1, got -3"),
        (lambda: write_reviews("unused.txt", fmt="parquet"), "fmt .*'parquet'"),
        (lambda: make_shape_records(n=0), "n must be >= 1, got 0"),
        (lambda: make_shape_records(image_size=15), "image_size must be >= 16, got 15"),
        (lambda: make_shape_records(num_classes=1), "num_classes must be >= 2, got 1"),
        (lambda: write_shapes("unused", n=0), "n must be >= 1, got 0"),
        (lambda: write_shapes("unused", image_size=8), "image_size must be >= 16, got 8"),
    ],
)
def test_invalid_arguments_raise(call, message: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=message):
        call()
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_non_integer_arguments_raise() -> None:
    with pytest.raises(TypeError, match="n must be an integer"):
        make_review_records(n=2.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="image_size must be an integer"):
        make_shape_records(n=1, image_size="64")  # type: ignore[arg-type]
