"""Shared fixtures: a tiny random BERT, small data from the shipped corpus, a temp BentoML home.

Also the test tiers: ``unit`` (the default, given to every test without a tier), ``asgi`` (the
service in-process), ``server`` (a real ``givetake serve``) and ``slow``; ``smoke`` marks the few
real-server tests that ``make test`` runs. Shared helpers live in ``tests/helpers.py``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

# Session-wide defaults, set before BentoML and the tokenizers library are first imported.
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# The helpers hold shared assertions (check_report_html, running_server): rewrite them as pytest does tests.
pytest.register_assert_rewrite("tests.helpers")

from tests.helpers import read_seed_rows  # noqa: E402 - after the defaults: it imports BentoML

# Test tiers (markers registered in pyproject.toml): a test with none of these is a unit test.
TIERS = ("unit", "asgi", "server")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test without a tier ``unit``, so ``-m unit`` selects them."""
    for item in items:
        if not any(item.get_closest_marker(tier) for tier in TIERS):
            item.add_marker(pytest.mark.unit)


@pytest.fixture(scope="session", autouse=True)
def bentoml_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every test session gets its own empty BentoML store."""
    home = tmp_path_factory.mktemp("bentoml_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BENTOML_HOME", str(home))
        yield home


@pytest.fixture(scope="session")
def small_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small labelled JSONL file (every label present) built from the seed corpus."""
    path = tmp_path_factory.mktemp("data") / "small.jsonl"
    with path.open("w", encoding="utf-8") as fh:
        for row in read_seed_rows():
            fh.write(json.dumps({"text": row["text"], "labels": row["labels"]}) + "\n")
    return path


@pytest.fixture(scope="session")
def tiny_base_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 2-layer BERT (hidden 32) with a word-level vocabulary, on disk."""
    from transformers import BertConfig, BertModel, BertTokenizer

    out = tmp_path_factory.mktemp("tiny_bert")
    words = sorted({w for r in read_seed_rows() for w in re.findall(r"\w+", r["text"].lower())})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "@", "user", "http", *words[:1500]]
    (out / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizer(vocab_file=str(out / "vocab.txt"))
    tokenizer.save_pretrained(out)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=160,
    )
    BertModel(config).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def trained_run(tiny_base_model: Path, small_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run trained for a few steps through the CLI, saved and registered (built once)."""
    from typer.testing import CliRunner

    from givetake.cli import app

    out = tmp_path_factory.mktemp("models")
    result = CliRunner().invoke(
        app,
        [
            "train",
            "--base-model",
            str(tiny_base_model),
            "--data",
            str(small_data),
            "--output-dir",
            str(out),
            "--run-id",
            "tiny",
            "--epochs",
            "2",
            "--batch-size",
            "16",
            "--max-length",
            "48",
        ],
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    return out / "tiny"
