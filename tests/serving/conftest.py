"""Fixtures of the serving tests: the Rust binaries, and a real signed bundle.

The bundle is what ``ordinal release bundle`` writes (``ordinal.release.build_bundle``) from a
real run made by the release tests' run fixture (tiny BERT with the MiniLM tokenizer,
exported, parity-gated, INT8-quantised). The fixture's model is re-initialised with large
weights so that its probabilities and labels depend on the text: a replay against a graph
whose output is constant would prove nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.serving.service import build_binaries


@pytest.fixture(scope="session")
def binaries() -> dict[str, Path]:
    """``{"ordinal-serve": path, "ordinal-tokenize": path}``, built once per session."""
    return build_binaries()


def _informative_build_tiny(family: str, head: str, options: dict, directory: Path) -> Path:
    import torch
    from transformers import AutoTokenizer

    from ordinal import build_ordinal_model, save_ordinal_model
    from ordinal.presets import minilm_path
    from tests.export.conftest import _config

    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    torch.manual_seed(13)
    model = build_ordinal_model(_config(family, tokenizer.vocab_size), 5, head, **options)
    with torch.no_grad():
        # Randomly initialised tiny BERTs barely look at their input (the [CLS] state varies
        # by ~1e-3 across texts); larger weights make the latent spread over the cutpoints.
        for name, param in model.named_parameters():
            if param.dim() == 2 and not name.startswith("ordinal_decoder"):
                param.normal_(0.0, 1.0 if name.startswith("classifier") else 0.5)
    return save_ordinal_model(model, directory, tokenizer)


@pytest.fixture(scope="session")
def signing(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A release key (path and fingerprint) and a second, untrusted one."""
    from ordinal.release import fingerprint, generate_signing_key, load_private_key

    root = tmp_path_factory.mktemp("serving-keys")
    out: dict[str, object] = {}
    for name in ("release", "rogue"):
        path = root / f"{name}.pem"
        generate_signing_key(path)
        out[name] = path
        out[f"{name}_fingerprint"] = fingerprint(load_private_key(path))
    return out


@pytest.fixture(scope="session")
def bundle(tmp_path_factory: pytest.TempPathFactory, signing) -> Path:
    """A signed ``serving-demo-1.0.0`` bundle with FP32 and INT8 graphs (never modified)."""
    from ordinal.release import build_bundle, collect_run
    from tests.release import run_fixture

    root = tmp_path_factory.mktemp("serving-bundle")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ORDINAL_HOME", str(root / "home"))
        mp.setenv("SOURCE_DATE_EPOCH", "1767225600")
        mp.setattr(run_fixture, "build_tiny", _informative_build_tiny)
        run_dir = run_fixture.make_run(root)
        return build_bundle(
            collect_run(run_dir),
            root / "bundles" / "serving-demo-1.0.0",
            name="serving-demo",
            version="1.0.0",
            signing_key=signing["release"],
        )
