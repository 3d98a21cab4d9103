"""Distillation: a teacher's scores file, its lookup by text, and a student trained with them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from givetake.cli import app
from givetake.errors import DataError
from givetake.training.distill import read_scores, teacher_targets, text_key, write_scores

LABELS = ["pitch", "ask", "helpful_share", "conversation_starter", "customer_service_reply"]


def test_scores_file_round_trip_and_lookup_by_text(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.3]])
    # The same text twice (after normalisation) is written once.
    rows = write_scores(path, ["Buy now!", "Any tips?", "Buy now!"], probs, ["pitch", "ask"], "teacher-x")
    assert rows == 2
    header, scores = read_scores(path)
    assert header == {"teacher": "teacher-x", "labels": ["pitch", "ask"]}
    assert scores[text_key("Buy now!")].tolist() == pytest.approx([0.9, 0.1])
    # Looked up in the student's label order; a label or a text the teacher lacks is NaN.
    got, name = teacher_targets(str(path), ["Any tips?", "never scored"], ["ask", "pitch", "complaint"])
    assert name == "teacher-x"
    assert got[0, :2].tolist() == pytest.approx([0.8, 0.2]) and np.isnan(got[0, 2])
    assert np.isnan(got[1]).all()


def test_a_bad_scores_file_is_one_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"teacher": "x", "labels": ["a", "b"]}) + "\n" + json.dumps({"key": "k", "scores": [1]}))
    with pytest.raises(DataError, match="2 scores"):
        read_scores(bad)
    bad.write_text("not json\n")
    with pytest.raises(DataError, match="not a teacher-scores file"):
        read_scores(bad)


def test_teach_then_train_a_student_with_the_teachers_scores(
    trained_run: Path, tiny_base_model: Path, small_data: Path, tmp_path: Path
) -> None:
    scores = tmp_path / "teacher.jsonl"
    result = CliRunner().invoke(
        app, ["teach", "--teacher", str(trained_run), "--data", str(small_data), "-o", str(scores)]
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    header, table = read_scores(scores)
    assert header["labels"] == LABELS and len(table) > 50
    assert all(0 <= v <= 1 for row in table.values() for v in row)
    out = tmp_path / "models"
    args = ["train", "--base-model", str(tiny_base_model), "--data", str(small_data), "--output-dir", str(out)]
    args += ["--run-id", "student", "--max-steps", "3", "--batch-size", "16", "--max-length", "32", "--no-register"]
    result = CliRunner().invoke(app, [*args, "--teacher", str(scores), "--distill-weight", "0.7"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    metrics = json.loads((out / "student" / "metrics.json").read_text())
    assert metrics["teacher"] == {"name": header["teacher"], "distill_weight": 0.7}
    result = CliRunner().invoke(app, [*args, "--teacher", str(scores), "--distill-weight", "0"])
    assert result.exit_code != 0 and "--distill-weight must be in (0, 1]" in result.output + str(result.exception)


def test_the_loss_mixes_labels_and_teacher_scores_by_the_distill_weight() -> None:
    import types

    import torch

    from givetake.training.train import _trainer_class

    cls = _trainer_class()
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.3]])

    class Model:
        training = True

        def __call__(self, **_: object) -> types.SimpleNamespace:
            return types.SimpleNamespace(logits=logits)

    def loss(labels: list[list[float]], weight: float) -> float:
        fake = types.SimpleNamespace(pos_weight=None, distill_weight=weight, row_weights=False)
        fake._bce = lambda lg, t, w=None: cls._bce(fake, lg, t, w)
        return float(cls.compute_loss(fake, Model(), {"labels": torch.tensor(labels)}))

    def bce(targets: list[list[float]]) -> float:
        return float(torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.tensor(targets)))

    hard = [[1.0, 0.0], [0.0, 1.0]]
    soft = [[0.7, 0.2], [0.4, 0.6]]
    assert loss(hard, 0.5) == pytest.approx(bce(hard))  # no teacher columns: the labels alone
    assert loss([h + h for h in hard], 0.5) == pytest.approx(bce(hard))  # a teacher that agrees changes nothing
    assert loss([h + s for h, s in zip(hard, soft, strict=True)], 1.0) == pytest.approx(bce(soft))
    mixed = loss([h + s for h, s in zip(hard, soft, strict=True)], 0.3)
    assert mixed == pytest.approx(0.7 * bce(hard) + 0.3 * bce(soft))
    # A cell without a teacher score (-1) learns from its label.
    assert loss([h + [-1.0, -1.0] for h in hard], 1.0) == pytest.approx(bce(hard))


def test_read_texts_dedupes_samples_and_reads_x_archives(tmp_path: Path) -> None:
    from givetake.training.distill import read_texts

    csv_file = tmp_path / "pool.csv"
    csv_file.write_text("text\nhello there\nhello there\n\nanother post\n")
    tweets = tmp_path / "tweets.js"
    tweets.write_text('window.YTD.tweets.part0 = [{"tweet": {"full_text": "from the archive"}}]')
    assert sorted(read_texts([csv_file, tweets], "text", 100, seed=0)) == [
        "another post",
        "from the archive",
        "hello there",
    ]
    assert len(read_texts([csv_file, tweets], "text", 2, seed=0)) == 2
    with pytest.raises(DataError, match="no posts with text"):
        read_texts([csv_file], "body", 10, seed=0)


def test_train_learns_unlabelled_posts_from_a_model_teacher(
    trained_run: Path, tiny_base_model: Path, small_data: Path, tmp_path: Path
) -> None:
    pool = tmp_path / "pool.jsonl"
    pool.write_text(
        "".join(json.dumps({"text": f"unlabelled post number {i}, what do you think?"}) + "\n" for i in range(40))
    )
    out = tmp_path / "models"
    args = ["train", "--base-model", str(tiny_base_model), "--data", str(small_data), "--output-dir", str(out)]
    args += ["--max-steps", "3", "--batch-size", "16", "--max-length", "32", "--no-register", "--unlabelled", str(pool)]
    result = CliRunner().invoke(app, [*args, "--run-id", "no-teacher"])
    assert result.exit_code != 0 and "--unlabelled needs a --teacher" in result.output + str(result.exception)
    result = CliRunner().invoke(app, [*args, "--run-id", "pooled", "--teacher", str(trained_run)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    metrics = json.loads((out / "pooled" / "metrics.json").read_text())
    assert metrics["teacher"]["name"] == str(trained_run)
    assert (
        metrics["data"]["train"]["rows"]
        > json.loads((trained_run / "metrics.json").read_text())["data"]["train"]["rows"]
    )


def test_teach_scores_unlabelled_posts_for_a_run_without_the_teacher(
    trained_run: Path, tiny_base_model: Path, small_data: Path, tmp_path: Path
) -> None:
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps({"text": f"our new app is out today, version {i}"}) + "\n" for i in range(30)))
    scores = tmp_path / "pool_scores.jsonl"
    result = CliRunner().invoke(
        app,
        [
            "teach",
            "--teacher",
            str(trained_run),
            "--unlabelled",
            str(pool),
            "--unlabelled-limit",
            "20",
            "-o",
            str(scores),
        ],
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "wrote 20 unlabelled posts' scores" in result.output
    out = tmp_path / "models"
    args = ["train", "--base-model", str(tiny_base_model), "--data", str(small_data), "--output-dir", str(out)]
    args += ["--max-steps", "2", "--batch-size", "16", "--max-length", "32", "--no-register", "--run-id", "s"]
    args += ["--unlabelled", str(pool), "--unlabelled-limit", "20", "--teacher", str(scores)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert json.loads((out / "s" / "metrics.json").read_text())["teacher"]["name"] == str(trained_run)
