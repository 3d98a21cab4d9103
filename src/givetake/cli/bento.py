"""The ``givetake bento`` command: package the service and one model as a Bento (``bentofile.yaml``)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from givetake.core.registry import default_model, exact_tag
from givetake.errors import ConfigError

BENTOFILE = "bentofile.yaml"


def _wheel(build_ctx: Path, out: Path) -> Path:
    """Build the givetake wheel of the checkout at ``build_ctx`` into ``out`` (pip fetches setuptools for the build)."""
    cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), "."]
    result = subprocess.run(cmd, cwd=build_ctx, capture_output=True, text=True)
    wheels = sorted(out.glob("givetake-*.whl"))
    if result.returncode != 0 or not wheels:
        raise ConfigError(f"building the givetake wheel in {build_ctx} failed: {result.stderr.strip()[-500:]}")
    return wheels[-1]


def bento_config(build_ctx: Path, tag: str, wheel: Path) -> dict[str, Any]:
    """``build_ctx``'s bentofile.yaml with ``tag`` as the model (and GIVETAKE_MODEL) and ``wheel`` as the code."""
    path = build_ctx / BENTOFILE
    try:
        config: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the Bento definition ({exc}); run from a givetake checkout") from None
    config["models"] = [tag]
    envs = [e for e in config.get("envs", []) if e.get("name") != "GIVETAKE_MODEL"]
    config["envs"] = [{"name": "GIVETAKE_MODEL", "value": tag}, *envs]
    config.setdefault("python", {})["wheels"] = [str(wheel.relative_to(build_ctx))]
    return config


def bento(
    model: Annotated[
        str | None,
        typer.Option(
            help="The model to package (a BentoML store tag). Default: the promoted model, else givetake:latest.",
            show_default=False,
        ),
    ] = None,
    build_ctx: Annotated[
        Path, typer.Option(help="The givetake checkout holding bentofile.yaml and pyproject.toml.")
    ] = Path("."),
    version: Annotated[
        str | None, typer.Option(help="The Bento's version. Default: the model's run id.", show_default=False)
    ] = None,
) -> None:
    """Build a Bento of the HTTP service with one model, ready for `bentoml serve` or `bentoml containerize`.

    The Bento holds the givetake wheel, the model from the BentoML store, the label schema and the
    Python requirements (torch pinned); see docs/serving.md.
    """
    import bentoml  # lazily: start-up time of the other commands
    from bentoml.exceptions import BentoMLException

    tag = exact_tag(model or default_model())
    ctx = build_ctx.resolve()
    if not (ctx / "pyproject.toml").is_file():
        raise ConfigError(f"{ctx} has no pyproject.toml: --build-ctx must be a givetake checkout")
    wheel_dir = ctx / "build" / "bento-wheel"
    for old in wheel_dir.glob("givetake-*.whl"):
        old.unlink()
    wheel = _wheel(ctx, wheel_dir)
    config = bento_config(ctx, tag, wheel)
    with tempfile.TemporaryDirectory() as tmp:
        bentofile = Path(tmp, BENTOFILE)
        bentofile.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        try:
            built = bentoml.bentos.build_bentofile(
                str(bentofile), build_ctx=str(ctx), version=version or tag.split(":")[1]
            )
        except BentoMLException as exc:
            raise ConfigError(f"bentoml build failed: {exc}") from None
    typer.echo(f"built {built.tag} with {tag} in {built.path}")
    typer.echo(f"serve it:        bentoml serve {built.tag} --port 3000")
    typer.echo(f"image (Docker):  bentoml containerize {built.tag}")
