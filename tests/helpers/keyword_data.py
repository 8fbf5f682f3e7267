"""A synthetic text task a tiny random BERT learns in a few dozen steps."""

from __future__ import annotations

import random

KEYWORDS = [
    ["awful", "broken", "useless"],
    ["poor", "flimsy", "slow"],
    ["okay", "average", "fine"],
    ["good", "solid", "nice"],
    ["superb", "perfect", "brilliant"],
]
FILLER = ["the", "item", "arrived", "box", "it", "was", "and", "this", "order", "really"]


def keyword_records(n: int, seed: int = 0, num_classes: int = 5) -> list[dict[str, object]]:
    """Records whose label is given by the class keywords in the text, amid filler words."""
    rng = random.Random(seed)
    records = []
    for index in range(n):
        label = rng.randrange(num_classes)
        words = rng.sample(FILLER, 4) + rng.sample(KEYWORDS[label], 2)
        rng.shuffle(words)
        records.append({"id": f"kw-{index:05d}", "text": " ".join(words), "label": label})
    return records
