"""`givetake promote`: the served model is chosen explicitly, and a worse one is refused without --force."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from givetake.core.registry import (
    default_model,
    live_file,
    live_tag,
    promotion_info,
    read_live,
    register,
    resolve_model,
)
from givetake.core.thresholds import save_thresholds
from givetake.training.promote import PromotionRefused, promote


@pytest.fixture(scope="module")
def worse_model(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The tiny run with every threshold at 0: it predicts every label for every post."""
    run = tmp_path_factory.mktemp("worse") / "worse"
    shutil.copytree(trained_run, run)
    save_thresholds(run, {n: 0.0 for n in json.loads((run / "metrics.json").read_text())["labels"]})
    return register(run, "worse")


@pytest.fixture(autouse=True)
def no_promotion() -> Iterator[None]:
    """Each test starts and ends with nothing promoted (the store is shared by the session)."""
    live_file().unlink(missing_ok=True)
    yield
    live_file().unlink(missing_ok=True)


def test_promotion_needs_data_refuses_a_worse_model_and_force_overrides(worse_model: str, small_data: Path) -> None:
    assert live_tag() is None and default_model() == "givetake:latest"
    promote(worse_model, force=True)
    assert live_tag() == "givetake:worse" and default_model() == "givetake:worse"
    with pytest.raises(PromotionRefused, match="give --data FILE"):
        promote("givetake:tiny")
    tag, lines = promote("givetake:tiny", data=[small_data])  # better than the live one: promoted
    assert tag == "givetake:tiny" and "promoted givetake:tiny" in lines[-1]
    assert resolve_model("givetake:live") == resolve_model("givetake:tiny")

    with pytest.raises(PromotionRefused) as err:
        promote(worse_model, data=[small_data])
    message = str(err.value)
    assert "refused: givetake:worse has a lower macro-F1 than the current model givetake:tiny" in message
    assert "pass --force to promote it anyway" in message and "macro-F1 over the 5 shared labels" in err.value.report
    assert live_tag() == "givetake:tiny"  # unchanged

    _, lines = promote(worse_model, data=[small_data], force=True)
    assert "--force: promoting despite a lower macro-F1" in "\n".join(lines)
    record = read_live()
    assert record is not None and record["tag"] == "givetake:worse" and record["forced"] is True
    assert record["previous"] == "givetake:tiny" and [h["tag"] for h in record["history"]] == [
        "givetake:worse",
        "givetake:tiny",
        "givetake:worse",
    ]
    assert record["comparison"]["macro_f1_candidate"] < record["comparison"]["macro_f1_current"]
    assert promote(worse_model)[1] == ["givetake:worse is already the promoted model; nothing changed"]


def test_labels_endpoint_block_and_alias(worse_model: str) -> None:
    from givetake.errors import ModelNotFound

    with pytest.raises(ModelNotFound, match="no model has been promoted yet"):
        resolve_model("givetake:live")
    assert promotion_info("givetake:tiny") == {"promoted": False, "promoted_tag": None, "promoted_at": None}
    promote("givetake:tiny", force=True)
    info = promotion_info("givetake:tiny")
    assert info["promoted"] is True and info["promoted_tag"] == "givetake:tiny" and info["promoted_at"]
    assert promotion_info(worse_model)["promoted"] is False


def test_promote_command_refusal_is_one_line_error(worse_model: str, small_data: Path, trained_run: Path) -> None:
    promote("givetake:tiny", force=True)

    def givetake(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "givetake.cli", *args], capture_output=True, text=True, timeout=300
        )

    result = givetake("promote", worse_model, "--data", str(small_data))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "error: refused: givetake:worse has a lower macro-F1" in result.stderr
    assert "macro-F1 over the 5 shared labels" in result.stdout
    status = givetake("promote")
    assert status.returncode == 0 and "promoted: givetake:tiny" in status.stdout
    directory = givetake("promote", str(trained_run))
    assert directory.returncode == 2 and "is a run directory; promote its BentoML tag instead" in directory.stderr
