"""Normalisation shared by training and serving."""

from training.text import normalize


def test_handles_urls_and_whitespace() -> None:
    assert normalize("@Jane_99 see https://t.co/AbC  and\n\nwww.x.com/y ok") == "@user see http and http ok"


def test_email_addresses_and_plain_at_are_kept() -> None:
    assert normalize("mail me@example.com @ 5pm") == "mail me@example.com @ 5pm"


def test_idempotent() -> None:
    text = "RT @a: look http://b.c/d  #tag"
    assert normalize(normalize(text)) == normalize(text) == "RT @user: look http #tag"
