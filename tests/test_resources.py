"""What the machine offers the process: native bf16."""

from __future__ import annotations

from pathlib import Path

import pytest

from givetake.core.resources import native_bf16

_FLAGS = "fpu vme de pse tsc msr sse sse2 avx avx2 avx512f avx512bw"


@pytest.mark.parametrize(
    ("extra", "expected"),
    [("", False), (" avx512_bf16", True), (" amx_bf16 amx_tile", True), (" avx512_bf16x", False)],
)
def test_native_bf16_reads_the_cpu_flags(tmp_path: Path, extra: str, expected: bool) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: {_FLAGS}{extra}\n\n", encoding="utf-8")
    assert native_bf16(cpuinfo) is expected


def test_native_bf16_is_false_without_cpuinfo(tmp_path: Path) -> None:
    assert native_bf16(tmp_path / "absent") is False
    (tmp_path / "empty").write_text("processor\t: 0\n", encoding="utf-8")
    assert native_bf16(tmp_path / "empty") is False
