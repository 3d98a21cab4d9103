"""Data loading: formats, label encodings, and an error message for each kind of bad row."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from givetake.labels.schema import load_schema
from givetake.training.data import DataError, load_file, load_posts, parse_labels, stratified_split

SCHEMA = load_schema()
NAMES = SCHEMA.names


def _jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def test_jsonl_with_label_lists(tmp_path: Path) -> None:
    p = _jsonl(
        tmp_path / "a.jsonl",
        [
            {"text": "buy our socks", "labels": ["pitch"]},
            {"text": "lovely day", "labels": []},
            {"text": "RT to win our socks", "labels": ["pitch", "ask"]},
        ],
    )
    posts = load_file(p, SCHEMA)
    assert posts.texts[0] == "buy our socks"
    assert posts.y.tolist() == [[1, 0, 0, 0, 0], [0, 0, 0, 0, 0], [1, 1, 0, 0, 0]]
    assert posts.counts() == {
        "pitch": 2,
        "ask": 1,
        "helpful_share": 0,
        "conversation_starter": 0,
        "customer_service_reply": 0,
        "none": 1,
        "rows": 3,
    }


@pytest.mark.parametrize(
    "value,expected",
    [
        ("pitch|ask", ["pitch", "ask"]),
        ("pitch, ask", ["pitch", "ask"]),
        ("", []),
        (None, []),
        ('["ask"]', ["ask"]),
        (["helpful_share"], ["helpful_share"]),
    ],
)
def test_parse_labels(value: object, expected: list[str]) -> None:
    assert parse_labels(value) == expected


def test_csv_with_separated_labels_and_custom_text_column(tmp_path: Path) -> None:
    p = tmp_path / "b.csv"
    p.write_text('post,tags\n"hi, what do you think?",conversation_starter\n"sale now on",pitch|ask\nnothing,\n')
    posts = load_file(p, SCHEMA, text_column="post", labels_column="tags")
    assert posts.texts == ["hi, what do you think?", "sale now on", "nothing"]
    assert posts.y[:, NAMES.index("conversation_starter")].tolist() == [1, 0, 0]
    assert posts.y[1].sum() == 2 and posts.y[2].sum() == 0


def test_parquet_with_one_column_per_label(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols = {"text": ["sorry, DM us your order number", "tip: clear the cache"]}
    cols.update({n: [0, 0] for n in NAMES})
    cols["customer_service_reply"] = [1, 0]
    cols["helpful_share"] = [0, 1]
    pq.write_table(pa.table(cols), tmp_path / "c.parquet")
    posts = load_file(tmp_path / "c.parquet", SCHEMA)
    assert posts.y[0, NAMES.index("customer_service_reply")] == 1
    assert posts.y[1, NAMES.index("helpful_share")] == 1 and posts.y.sum() == 2


def test_directory_and_several_sources(tmp_path: Path) -> None:
    _jsonl(tmp_path / "one.jsonl", [{"text": "a b c", "labels": []}])
    _jsonl(tmp_path / "two.jsonl", [{"text": "d e f", "labels": ["ask"]}])
    extra = _jsonl(tmp_path.parent / f"{tmp_path.name}-x.jsonl", [{"text": "g h i", "labels": ["pitch"]}])
    posts = load_posts([tmp_path, extra], SCHEMA)
    assert len(posts) == 3 and posts.sources == ["one.jsonl", "two.jsonl", extra.name]


def test_unknown_label_lists_known_ones(tmp_path: Path) -> None:
    p = _jsonl(tmp_path / "d.jsonl", [{"text": "ok", "labels": []}, {"text": "x", "labels": ["spam"]}])
    with pytest.raises(DataError) as err:
        load_file(p, SCHEMA)
    assert str(err.value) == (
        f"{p}, line 2: unknown label 'spam'; known labels: pitch, ask, helpful_share, "
        "conversation_starter, customer_service_reply"
    )


def test_bad_json_line_is_named(tmp_path: Path) -> None:
    p = _jsonl(tmp_path / "e.jsonl", [{"text": "fine", "labels": []}, "", '{"text": "broken", "labels": [}'])
    with pytest.raises(DataError, match=r"e\.jsonl, line 3: bad JSON line"):
        load_file(p, SCHEMA)


@pytest.mark.parametrize(
    "row,problem",
    [
        ({"labels": []}, "missing text column 'text'"),
        ({"text": "   ", "labels": []}, "empty text in column 'text'"),
        ({"text": None, "labels": []}, "empty text in column 'text'"),
    ],
)
def test_missing_or_empty_text(tmp_path: Path, row: dict, problem: str) -> None:
    p = _jsonl(tmp_path / "f.jsonl", [{"text": "fine", "labels": []}, row])
    with pytest.raises(DataError) as err:
        load_file(p, SCHEMA)
    assert str(err.value) == f"{p}, line 2: {problem}"


def test_csv_row_numbers_and_missing_label_columns(tmp_path: Path) -> None:
    p = tmp_path / "g.csv"
    p.write_text("text,labels\nfine,\n,pitch\n")
    with pytest.raises(DataError, match=r"g\.csv, row 2: empty text"):
        load_file(p, SCHEMA)
    q = tmp_path / "h.csv"
    q.write_text("text,kind\nhello,x\n")
    with pytest.raises(DataError, match="no 'labels' column and no 0/1 column for every label"):
        load_file(q, SCHEMA)


def test_csv_cells_stay_strings_and_label_columns_read_as_0_1(tmp_path: Path) -> None:
    """CSV goes through the shared reader: cells are strings ("00123" keeps its zeros), "1"/"true" are positives."""
    p = tmp_path / "onehot.csv"
    p.write_text(
        "id,text,"
        + ",".join(NAMES)
        + "\n"
        + "00123,buy now,"
        + ",".join("1" if n == "pitch" else "0" for n in NAMES)
        + "\n"
        + "00124,any tips?,"
        + ",".join(" true" if n == "ask" else "" for n in NAMES)
        + "\n"
    )
    posts = load_file(p, SCHEMA)
    assert posts.ids == ["00123", "00124"]
    assert posts.y[:, NAMES.index("pitch")].tolist() == [1, 0]
    assert posts.y[:, NAMES.index("ask")].tolist() == [0, 1] and posts.y.sum() == 2


def test_csv_ragged_row_is_named(tmp_path: Path) -> None:
    p = tmp_path / "ragged.csv"
    p.write_text("text,labels\nfine,\nbroken,pitch,extra\n")
    with pytest.raises(DataError) as err:
        load_file(p, SCHEMA)
    assert str(err.value) == f"{p}, row 2: has 3 fields but the header has 2"


def test_missing_path_and_wrong_type(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file or directory"):
        load_posts([tmp_path / "nope.jsonl"], SCHEMA)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="unsupported file type '.txt'"):
        load_posts([tmp_path / "notes.txt"], SCHEMA)


def test_stratified_split_is_reproducible_and_covers_every_label() -> None:
    posts = load_posts(None, SCHEMA)  # the shipped corpus
    a = stratified_split(posts, 0.2, seed=7)
    b = stratified_split(posts, 0.2, seed=7)
    assert a == b
    train, val = a
    assert not set(train) & set(val) and len(train) + len(val) == len(posts)
    assert abs(len(val) / len(posts) - 0.2) < 0.01
    for j in range(len(NAMES)):
        share_all = posts.y[:, j].mean()
        share_val = posts.y[val, j].mean()
        assert abs(share_val - share_all) < 0.02, NAMES[j]
    assert stratified_split(posts, 0.2, seed=8) != a
    assert np.all(np.diff(train) > 0)


def test_followed_by_and_a_weight_column_in_the_dataset() -> None:
    from givetake.training.data import LabelledPosts

    names = ["a", "b"]
    first = LabelledPosts(["x", "y"], np.array([[1, 0], [0, 0]]), names, ["f1", "f1"])
    second = LabelledPosts(["z"], np.array([[0, 1]]), names, ["f2"], known=np.array([[1, 0]], dtype=np.int8))
    both = first.followed_by(second)
    assert both.texts == ["x", "y", "z"] and both.sources == ["f1", "f1", "f2"]
    assert both.mask.tolist() == [[1, 1], [1, 1], [1, 0]]
    ds = both.to_dataset(weights=np.array([1.0, 1.0, 3.0]))
    assert ds["labels"] == [[1.0, 0.0, 1.0], [0.0, 0.0, 1.0], [0.0, -1.0, 3.0]]
    with pytest.raises(ValueError, match="label columns differ"):
        first.followed_by(LabelledPosts(["w"], np.array([[1]]), ["a"], ["f3"]))
