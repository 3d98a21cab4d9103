"""Noisy variants of training posts: deterministic, noisy, and labelled like the post they vary."""

from __future__ import annotations

import numpy as np

from givetake.training.augment import NOISE, pick, variant, variants
from givetake.training.data import LabelledPosts

POST = "We just opened our second shop in town, come and say hello this Saturday! Coffee is on us."


def test_a_variant_is_fixed_by_seed_and_number_and_differs_from_the_post() -> None:
    assert variant(POST, 1, 0) == variant(POST, 1, 0)
    made = {variant(POST, seed, n) for seed in range(5) for n in range(4)}
    assert POST not in made and len(made) >= 15


def test_every_kind_of_noise_changes_a_long_post() -> None:
    import random

    for name, noise in NOISE.items():
        assert noise(POST, random.Random(0)) != POST, name


def test_pick_takes_the_share_asked_for() -> None:
    assert len(pick(200, 0.3, seed=1)) == 60 and pick(200, 0.3, seed=1) == pick(200, 0.3, seed=1)
    assert pick(10, 0.0, seed=1) == [] and pick(10, 1.0, seed=1) == list(range(10))


def test_variants_keep_the_labels_of_their_posts() -> None:
    y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    posts = LabelledPosts([f"{POST} {i}" for i in range(4)], y, ["a", "b"], ["s"] * 4)
    rows, texts = variants(posts.texts, 0.5, seed=3)
    more = posts.with_variants(rows, texts)
    assert len(more) == 6 and more.texts[4:] == texts
    assert (more.y[4:] == y[rows]).all()
    assert more.sources[4:] == ["s+variant", "s+variant"]
