"""Schema validation: the shipped schema loads; each kind of mistake names its field."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from givetake.labels.schema import SCHEMA_PATH, SchemaError, load_schema, parse_schema

RAW = yaml.safe_load(SCHEMA_PATH.read_text(encoding="utf-8"))


def test_shipped_schema_loads() -> None:
    schema = load_schema()
    assert schema.names == ["pitch", "ask", "helpful_share", "conversation_starter", "customer_service_reply"]
    assert {s.side for s in schema.labels} == {"give", "take"}
    for spec in schema.labels:
        assert len(spec.yes_examples) >= 3 and len(spec.no_examples) >= 3
        assert spec.sources and spec.definition and spec.rules


def test_round_trip_through_save(tmp_path: Path) -> None:
    schema = load_schema()
    schema.save(tmp_path / "copy.yaml")
    assert load_schema(tmp_path / "copy.yaml") == schema


def _broken(mutate) -> dict:  # type: ignore[no-untyped-def]
    raw = copy.deepcopy(RAW)
    mutate(raw)
    return raw


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: r["labels"][1].update(name="pitch"), "label 'pitch': field 'name' is used by more than one label"),
        (lambda r: r["labels"][0].update(name="HelpfulShare"), "field 'name' must be snake_case"),
        (lambda r: r["labels"][0].update(side="both"), "label 'pitch': field 'side' must be one of give, take"),
        (lambda r: r["labels"][2].pop("definition"), "label 'helpful_share': field 'definition' is missing"),
        (lambda r: r["labels"][0].update(yes_examples=["one", "two"]), "field 'yes_examples' needs at least 3"),
        (lambda r: r["labels"][0].update(no_examples="not a list"), "field 'no_examples' must be a list"),
        (lambda r: r["labels"][3].update(sources=["007"]), "label 'conversation_starter': field 'sources'"),
        (lambda r: r["labels"][0].pop("name"), "labels[0]: field 'name' is missing"),
        (lambda r: r.update(version="one"), "field 'version' must be a positive integer"),
        (lambda r: r.update(labels=[]), "field 'labels' must be a non-empty list"),
    ],
)
def test_errors_name_the_field(mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SchemaError) as err:
        parse_schema(_broken(mutate), where="s.yaml")
    assert message in str(err.value)


def test_unreadable_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match="cannot read the schema file"):
        load_schema(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("labels: [unclosed\n")
    with pytest.raises(SchemaError, match="not valid YAML"):
        load_schema(bad)
