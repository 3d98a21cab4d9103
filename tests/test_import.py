"""`givetake import`: Label Studio exports (choices, taxonomy) and 0/1-column CSVs become project JSONL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from givetake.cli import app
from givetake.labels.schema import load_schema
from givetake.training.data import load_posts
from givetake.training.importers import ImportFailed, import_csv, import_label_studio

SCHEMA = load_schema()


def _choices(*labels: str, name: str = "labels") -> dict:
    return {"type": "choices", "from_name": name, "to_name": "text", "value": {"choices": list(labels)}}


def _task(task_id: int, text: str, *annotations: dict) -> dict:
    return {"id": task_id, "data": {"text": text}, "annotations": list(annotations), "predictions": []}


def _ann(result: list[dict], updated: str = "2026-11-24T10:00:00Z", cancelled: bool = False) -> dict:
    return {"id": 1, "result": result, "was_cancelled": cancelled, "created_at": updated, "updated_at": updated}


def _export(tmp_path: Path, tasks: list[dict]) -> Path:
    path = tmp_path / "export.json"
    path.write_text(json.dumps(tasks), encoding="utf-8")
    return path


def test_label_studio_choices_taxonomy_cancelled_and_latest(tmp_path: Path) -> None:
    tasks = [
        _task(1, "Book our spring course now", _ann([_choices("pitch")])),
        _task(
            2,
            "RT to win our mug!",
            _ann([_choices("ask")], updated="2026-11-24T09:00:00Z"),
            _ann([_choices("Pitch", "ask")], updated="2026-11-24T11:00:00Z"),  # the later annotation wins
            _ann([_choices("conversation_starter")], updated="2026-11-24T12:00:00Z", cancelled=True),
        ),
        _task(3, "lovely walk today", _ann([_choices("none")])),
        _task(
            4,
            "@user Sorry! DM us your order number",
            _ann(
                [{"type": "taxonomy", "from_name": "tax", "value": {"taxonomy": [["give", "customer_service_reply"]]}}]
            ),
        ),
        _task(5, "never labelled", _ann([], cancelled=True)),
        _task(6, "What's your favourite tent?", _ann([_choices("conversation_starter"), _choices("x", name="mood")])),
    ]
    summary = import_label_studio(_export(tmp_path, tasks[:5]), SCHEMA)
    rows = {r["id"]: r for r in summary.rows}
    assert rows["1"] == {"id": "1", "text": "Book our spring course now", "labels": ["pitch"], "schema_version": 1}
    assert rows["2"]["labels"] == ["pitch", "ask"]
    assert rows["3"]["labels"] == []
    assert rows["4"]["labels"] == ["customer_service_reply"]
    assert "5" not in rows and len(summary.skipped) == 1 and "task 5" in summary.skipped[0]
    # the unknown choice 'x' sits in another control: --from-name keeps only the labels control
    with pytest.raises(ImportFailed, match=r"task 6: unknown choice 'x'; the schema's labels are pitch, ask"):
        import_label_studio(_export(tmp_path, tasks), SCHEMA)
    picked = import_label_studio(_export(tmp_path, tasks), SCHEMA, from_name="labels")
    assert {r["id"]: r["labels"] for r in picked.rows}["6"] == ["conversation_starter"]


def test_label_studio_problems_are_named(tmp_path: Path) -> None:
    with pytest.raises(ImportFailed, match=r"task 7: no text in data.text \(data keys: body\); pass --text-key"):
        import_label_studio(
            _export(tmp_path, [{"id": 7, "data": {"body": "hi"}, "annotations": [_ann([_choices("ask")])]}]), SCHEMA
        )
    with pytest.raises(ImportFailed, match="a Label Studio JSON export is a list of tasks"):
        import_label_studio(_export(tmp_path, {"tasks": []}), SCHEMA)  # type: ignore[arg-type]
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ImportFailed, match="cannot read a Label Studio JSON export"):
        import_label_studio(bad, SCHEMA)


def test_csv_with_one_column_per_label(tmp_path: Path) -> None:
    header = "id,text," + ",".join(SCHEMA.names)
    p = tmp_path / "sheet.csv"
    p.write_text(f"{header}\na1,Sale on now,1,0,0,0,0\n,nothing here,0,0,0,0,0\n")
    rows = import_csv(p, SCHEMA).rows
    assert rows == [
        {"id": "a1", "text": "Sale on now", "labels": ["pitch"], "schema_version": 1},
        {"id": "2", "text": "nothing here", "labels": [], "schema_version": 1},
    ]
    p.write_text(f"{header}\na1,Sale on now,1,0,maybe,0,0\n")
    with pytest.raises(ImportFailed, match=r"sheet\.csv, row 1: column 'helpful_share' must be 0 or 1, got 'maybe'"):
        import_csv(p, SCHEMA)
    p.write_text("text,pitch,ask\nhi,0,1\n")
    with pytest.raises(ImportFailed, match="no 0/1 column for label\\(s\\) helpful_share, conversation_starter"):
        import_csv(p, SCHEMA)


def test_import_command_writes_trainable_jsonl(tmp_path: Path) -> None:
    export = _export(tmp_path, [_task(1, "Book now", _ann([_choices("pitch")])), _task(2, "hi", _ann([]))])
    out = tmp_path / "labelled.jsonl"
    result = CliRunner().invoke(app, ["import", str(export), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "wrote 2 rows to" in result.output and "pitch 1" in result.output
    posts = load_posts([out], SCHEMA)
    assert posts.y.tolist() == [[1, 0, 0, 0, 0], [0, 0, 0, 0, 0]] and posts.fully_known
