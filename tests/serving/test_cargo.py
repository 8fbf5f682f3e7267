"""``cargo test`` of the Rust workspace: loader, tokenizer, bundle checks, HTTP errors."""

from __future__ import annotations

import re

from tests.serving.service import cargo


def test_cargo_test_passes(binaries):
    """Runs in the release profile so it reuses the dependencies the binaries were built with."""
    proc = cargo("test", "--release", "--offline", "--locked", "--workspace")
    output = proc.stdout + proc.stderr
    results = re.findall(r"test result: (\w+)\. (\d+) passed; (\d+) failed", output)
    assert results, output[-3000:]
    assert all(status == "ok" and failed == "0" for status, _, failed in results), output[-3000:]
    # The suites that must exist: loader, tokenizer, bundle checks, HTTP.
    for suite in ("tests/loader.rs", "tests/verify.rs", "tests/http.rs", "ordinal_tokenize"):
        assert suite in output, f"cargo test ran no {suite}"
    assert sum(int(passed) for _, passed, _ in results) >= 25
