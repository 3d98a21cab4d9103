"""Normalisation shared by training and serving."""

from givetake.core.text import normalize, truncate_ids


def test_handles_urls_and_whitespace() -> None:
    assert normalize("@Jane_99 see https://t.co/AbC  and\n\nwww.x.com/y ok") == "@user see http and http ok"


def test_email_addresses_and_plain_at_are_kept() -> None:
    assert normalize("mail me@example.com @ 5pm") == "mail me@example.com @ 5pm"


def test_idempotent() -> None:
    text = "RT @a: look http://b.c/d  #tag"
    assert normalize(normalize(text)) == normalize(text) == "RT @user: look http #tag"


def test_truncate_ids_keeps_both_ends() -> None:
    ids = list(range(20))  # 0 plays [CLS], 19 plays [SEP]
    assert truncate_ids(ids, 8, 3) == [0, 1, 2, 15, 16, 17, 18, 19]
    assert truncate_ids(ids, 8, 7) == [0, 1, 2, 3, 4, 5, 6, 19]  # the start only, and the closing token
    assert truncate_ids(ids, 20, 3) == ids and truncate_ids(ids[:5], 8, 3) == ids[:5]
    # out-of-range heads are clamped so that both special tokens survive
    assert truncate_ids(ids, 8, 0)[0] == 0 and truncate_ids(ids, 8, 99)[-1] == 19
    assert all(len(truncate_ids(ids, 8, h)) == 8 for h in range(0, 12))
