"""The Makefile's install stays in step with pyproject.toml."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parents[1]


def _make_variable(name: str) -> str:
    match = re.search(rf"^{name}\s*:=\s*(.+)$", (ROOT / "Makefile").read_text(), re.M)
    assert match, f"the Makefile defines no {name}"
    return match.group(1).strip()


def test_the_llama_cpp_wheel_built_is_the_version_pyproject_pins() -> None:
    pins = re.findall(
        r'"llama-cpp-python(?:\[\w+\])?==([\w.]+)"', (ROOT / "pyproject.toml").read_text()
    )
    assert pins and set(pins) == {_make_variable("LLAMA")}


def test_llama_cpp_is_never_built_for_the_build_machines_own_cpu() -> None:
    """A -march=native build on a CPU that lists AMX segfaults where the VM does not grant
    AMX; the wheel must run on any x86-64 with AVX2."""
    flags = _make_variable("LLAMA_CMAKE").split()
    assert "-DGGML_NATIVE=OFF" in flags
    assert not any("AMX" in flag or "AVX512" in flag for flag in flags)
