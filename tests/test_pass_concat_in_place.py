"""concat-in-place: which Concats the planner may charge as one buffer."""

from __future__ import annotations

import numpy as np
from tilec.passes._testing import Builder, prove

from tilec.ir import get_ann, to_onnx
from tilec.opinfo import build_graph_info


def _concats(graph):
    return {n.name: bool(get_ann(n, "in_place")) for n in graph.nodes if n.op == "Concat"}


def test_producers_write_into_the_concat_buffer():
    b = Builder()
    x = b.input("x", [1, 4, 6, 6])
    c1 = b.conv(x, 4, 3, 1)
    c2 = b.conv(x, 4, 5, 3)
    cat = b.op("Concat", [c1, c2], axis=1, name="cat")
    b.output(b.op("Relu", [cat]))
    graph, _stats, err = prove(b.model(), ["concat-in-place"])
    assert _concats(graph) == {"cat": True} and err == 0.0
    info = build_graph_info(graph)
    assert info.root(c1) == cat and info.root(c2) == cat
    # the annotation survives export (as node metadata) and the model still checks
    model = to_onnx(graph)
    props = {p.key: p.value for n in model.graph.node if n.name == "cat" for p in n.metadata_props}
    assert props == {"tilec.in_place": "true"}


def test_other_readers_of_an_input_are_fine():
    """SPPCSP: x1 feeds the concat and the max-pools, which read it from its slice."""
    b = Builder()
    x = b.input("x", [1, 4, 6, 6])
    x1 = b.conv(x, 4, 4, 1)
    pools = [b.op("MaxPool", [x1], kernel_shape=[k, k], pads=[k // 2] * 4) for k in (3, 5)]
    b.output(b.op("Concat", [x1, *pools], axis=1, name="spp"))
    graph, _stats, _ = prove(b.model(), ["concat-in-place"])
    assert _concats(graph) == {"spp": True}


def test_ineligible_inputs():
    b = Builder()
    x = b.input("x", [1, 4, 6, 6])
    c = b.conv(x, 4, 4, 1)
    view = b.op("Reshape", [b.conv(x, 4, 4, 1), b.const(np.array([1, 4, 6, 6], np.int64))])
    out = b.conv(x, 4, 4, 1)
    b.output(
        b.op("Concat", [x, c], axis=1, name="from_input"),
        b.op("Concat", [view, c], axis=1, name="from_view"),
        b.op("Concat", [out, c], axis=1, name="from_output"),
        b.op("Concat", [c, c], axis=1, name="twice"),
        out,
    )
    graph, stats, _err = prove(b.model(), ["concat-in-place"])
    assert _concats(graph) == {"from_input": False, "from_view": False, "from_output": False,
                               "twice": False}
    reasons = {r.where[0]: r.detail for r in stats[0].left}
    assert "model input" in reasons["from_input"]
    assert "view" in reasons["from_view"]
    assert "model output" in reasons["from_output"]
    assert "twice" in reasons["twice"]


def test_a_tensor_is_a_slice_of_one_concat_only():
    b = Builder()
    x = b.input("x", [1, 4, 6, 6])
    c1, c2, c3 = (b.conv(x, 4, 2, 1) for _ in range(3))
    b.output(b.op("Concat", [c1, c2], axis=1, name="first"),
             b.op("Concat", [c2, c3], axis=1, name="second"))
    graph, stats, _ = prove(b.model(), ["concat-in-place"])
    assert _concats(graph) == {"first": True, "second": False}
    assert "already a slice" in stats[0].left[0].detail


def test_nested_concats_resolve_to_the_outer_buffer():
    b = Builder()
    x = b.input("x", [1, 4, 6, 6])
    c1, c2, c3 = (b.conv(x, 4, 2, 1) for _ in range(3))
    inner = b.op("Concat", [c1, c2], axis=1, name="inner")
    outer = b.op("Concat", [inner, c3], axis=1, name="outer")
    b.output(b.op("Relu", [outer]))
    graph, _, _ = prove(b.model(), ["concat-in-place"])
    assert _concats(graph) == {"inner": True, "outer": True}
    assert build_graph_info(graph).root(c1) == outer
