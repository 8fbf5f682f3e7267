"""Credentials in URIs never reach MLflow parameters, the run summary or the index page."""

from __future__ import annotations

import pytest

from pipelines.tracking import Tracking, redact, run_url


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("postgresql+psycopg2://mlflow:s3cret@db:5432/mlflow", "postgresql+psycopg2://mlflow:***@db:5432/mlflow"),
        ("https://user:token@mlflow.example/", "https://user:***@mlflow.example/"),
        ("https://token@mlflow.example", "https://***@mlflow.example"),
        ("sqlite:////home/me/.ordinal/mlflow/mlflow.db", "sqlite:////home/me/.ordinal/mlflow/mlflow.db"),
        ("s3://bucket/prefix", "s3://bucket/prefix"),
    ],
)  # fmt: skip
def test_redact_masks_only_credentials(uri, shown):
    assert redact(uri) == shown


def test_run_url_never_shows_a_password():
    tracking = Tracking("https://ops:hunter2@mlflow.example", "3", "abc")
    url = run_url(tracking)
    assert "hunter2" not in url
    assert url == "https://ops:***@mlflow.example/#/experiments/3/runs/abc"
