"""all-MiniLM-L6-v2's encoder layers as one ONNX Runtime graph, built from the numpy weights.

``minilm_numpy.MiniLM`` runs the layers through this when ONNX Runtime is
installed (it is a dependency), and through its own numpy loop otherwise: the
same operations in the same order, on the same float32 weights, so the vectors
agree to float32 rounding (``tests/knowledge/test_minilm_numpy.py`` holds both
engines to sentence-transformers' vectors and to each other).

Why: a question is a dozen tokens, and for so few rows OpenBLAS spends most of
each matrix product repacking the weight matrix (a 384 x 1536 product of 15
rows took 314 µs here, one of 32 rows 340 µs). ONNX Runtime packs every weight
once, when the graph is loaded, and runs the whole stack in one call: a
question in under half numpy's time (figures in ``docs/benchmarks.md``, "The
question's embedding through ONNX Runtime").

The graph is built here, in memory, from the weights numpy already read: no
export step and no file. It takes the embeddings after their LayerNorm, ``(texts,
tokens, hidden)``, and the additive attention mask ``(texts, 1, 1, tokens)``
(0 for a token, the most negative float32 for padding), and returns the token
states; the embedding lookup and the pooling stay in numpy, where they cost
microseconds. One thread, as numpy's products: a process that answers chats gains
nothing from splitting a question over cores.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from onnxruntime import InferenceSession

Floats = npt.NDArray[np.float32]

OPSET = 17  # LayerNormalization is an operator from 17 on
# GELU with the exact erf, as the model was trained (ONNX Runtime's contrib operator;
# "FastGelu" would be the tanh approximation).
GELU = "Gelu"


def available() -> bool:
    """Whether ONNX Runtime and the ``onnx`` package (to build the graph) are installed."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


class Encoder:
    """The layers as one ONNX Runtime session; may be called from any thread."""

    def __init__(self, layers: Sequence[Any], *, heads: int, hidden: int) -> None:
        """``layers``: ``minilm_numpy``'s, each matrix (inputs, outputs)."""
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only: warnings would go to every process's stderr
        # Without its arena a big batch's buffers go back when the call ends (with it, a
        # process kept ~330 MB more after one training-sized call) and a question is as fast.
        options.enable_cpu_mem_arena = False
        self._session: InferenceSession = onnxruntime.InferenceSession(
            graph(layers, heads=heads, hidden=hidden),
            options,
            providers=["CPUExecutionProvider"],
        )
        _return_freed_memory()

    def __call__(self, x: Floats, padding: Floats) -> Floats:
        """Token states ``(texts, tokens, hidden)`` for embeddings ``x`` of the same shape."""
        states = self._session.run(["states"], {"x": x, "padding": padding})[0]
        return np.asarray(states, dtype=np.float32)


def _return_freed_memory() -> None:
    """Hand the heap freed after loading back to the system (glibc's ``malloc_trim``).

    Building the graph copies the weights three times over (the graph, its bytes, ONNX
    Runtime's parse) before ONNX Runtime keeps its own: about 110 MB that glibc would
    otherwise keep in the process for good. Elsewhere than glibc, nothing is done.
    """
    import ctypes
    import ctypes.util

    with contextlib.suppress(OSError, AttributeError, TypeError):
        ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim(0)


def graph(layers: Sequence[Any], *, heads: int, hidden: int) -> bytes:
    """The serialized ONNX model of the encoder layers (see the module's docstring)."""
    from onnx import TensorProto, helper, numpy_helper

    width = hidden // heads
    weights: list[Any] = []
    nodes: list[Any] = []

    def constant(name: str, value: npt.ArrayLike) -> str:
        weights.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(kind: str, inputs: list[str], *, domain: str = "", **attributes: Any) -> str:
        output = f"{kind.lower()}_{len(nodes)}"
        nodes.append(helper.make_node(kind, inputs, [output], domain=domain, **attributes))
        return output

    def linear(x: str, matrix: str, bias: str) -> str:
        return op("Add", [op("MatMul", [x, matrix]), bias])

    def norm(x: str, name: str, weights: Any) -> str:
        return op(
            "LayerNormalization",
            [x, constant(f"{name}.weight", weights.weight), constant(f"{name}.bias", weights.bias)],
            axis=-1,
            epsilon=float(weights.eps),
        )

    scale = constant("scale", np.float32(1.0 / np.sqrt(width)))
    split_heads = constant("split_heads", np.array([0, 0, 3, heads, width], dtype=np.int64))
    join_heads = constant("join_heads", np.array([0, 0, hidden], dtype=np.int64))
    part = [constant(f"part{i}", np.array(i, dtype=np.int64)) for i in range(3)]
    x = "x"
    for n, layer in enumerate(layers):
        name = f"layer{n}"
        qkv = linear(
            x, constant(f"{name}.qkv", layer.qkv), constant(f"{name}.qkv_bias", layer.qkv_bias)
        )
        # (texts, tokens, 3, heads, width) -> (3, texts, heads, tokens, width)
        qkv = op("Transpose", [op("Reshape", [qkv, split_heads])], perm=[2, 0, 3, 1, 4])
        q, k, v = (op("Gather", [qkv, part[i]], axis=0) for i in range(3))
        scores = op("MatMul", [q, op("Transpose", [k], perm=[0, 1, 3, 2])])
        scores = op("Add", [op("Mul", [scores, scale]), "padding"])
        context = op("MatMul", [op("Softmax", [scores], axis=-1), v])
        context = op("Reshape", [op("Transpose", [context], perm=[0, 2, 1, 3]), join_heads])
        attended = linear(
            context,
            constant(f"{name}.attention_out", layer.attention_out),
            constant(f"{name}.attention_out_bias", layer.attention_out_bias),
        )
        x = norm(op("Add", [attended, x]), f"{name}.attention_norm", layer.attention_norm)
        up = linear(x, constant(f"{name}.up", layer.up), constant(f"{name}.up_bias", layer.up_bias))
        up = op(GELU, [up], domain="com.microsoft")
        down = linear(
            up, constant(f"{name}.down", layer.down), constant(f"{name}.down_bias", layer.down_bias)
        )
        x = norm(op("Add", [down, x]), f"{name}.output_norm", layer.output_norm)
    nodes.append(helper.make_node("Identity", [x], ["states"]))
    model = helper.make_model(
        helper.make_graph(
            nodes,
            "minilm_encoder",
            [
                helper.make_tensor_value_info("x", TensorProto.FLOAT, ["texts", "tokens", hidden]),
                helper.make_tensor_value_info(
                    "padding", TensorProto.FLOAT, ["texts", 1, 1, "tokens"]
                ),
            ],
            [
                helper.make_tensor_value_info(
                    "states", TensorProto.FLOAT, ["texts", "tokens", hidden]
                )
            ],
            weights,
        ),
        opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid("com.microsoft", 1)],
    )
    return bytes(model.SerializeToString())
