"""fuse-repvgg: parallel conv branches on one input, summed, become one conv (RepVGG re-param).

A sum of branches that all read the same tensor ``x`` -- ``k x k`` conv (+BN), smaller conv (+BN),
identity (+BN), in any order, BN folded or not -- is linear in ``x``, so it equals one conv whose
kernel and bias are the sums of the branches':

* each branch is first put in plain ``(W, b)`` form: BN folded (``W t``, ``t b + s``, see fold-bn);
  an identity branch is a kernel with ``1`` (or the BN's ``t``) at the centre tap of its own
  channel;
* a smaller kernel is zero-padded to the largest, centred; a grouped branch is written in the fused
  conv's group structure (``group = gcd`` of the branches' groups; a branch's input channels land
  at their offset inside the fused group), the identity counting as a depthwise kernel;
* ``W = sum W_b``, ``b = sum b_b``; one Conv with the largest kernel, the common stride and the
  common alignment replaces the branches and the Adds.

The rewrite is exact only when every branch samples the same input positions for the same output
position: same stride, and the same offset of the kernel centre on both sides of every spatial axis
(``pad_begin - k//2`` and ``pad_end - k//2`` equal across branches -- e.g. 3x3 pad 1 with 1x1
pad 0, at stride 1 or 2). Left alone: misaligned branches (a 1x1 branch with a different stride or
padding), dilated or even kernels, SAME auto-padding, branch outputs read elsewhere (they must
survive), identity at stride 2 or with a channel change, non-constant weights. Other terms of the
same sum (a residual from elsewhere) stay as Adds around the fused conv.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import onnx_graphsurgeon as gs

from . import _graph
from ._affine import Affine, bn_affine

if TYPE_CHECKING:
    from tilec.passes import PassContext

NAME = "fuse-repvgg"
SUMMARY = "merge parallel conv/identity branches (+BN) summed on one input into one conv"
EXACT = True


@dataclass
class Branch:
    """One summand: a conv (or the identity) over ``x``, optionally followed by a BN affine."""

    leaf: gs.Tensor
    x: gs.Tensor
    shape: tuple[int, ...]  # of its plain kernel: [Cout, Cin/group, k...]
    group: int
    strides: list[int]
    begin: list[int]  # pad_begin - k//2 per spatial axis
    end: list[int]  # pad_end - k//2
    kind: str  # "conv3x3", "conv1x1+bn", "identity+bn", ...
    src_w: np.ndarray | None = None  # the conv's weight (None: identity)
    src_b: np.ndarray | None = None
    aff: Affine | None = None
    nodes: list[gs.Node] = field(default_factory=list)  # nodes the fusion removes
    conv: gs.Node | None = None

    @property
    def kernel(self) -> tuple[int, ...]:
        return tuple(self.shape[2:])

    def plain(self) -> tuple[np.ndarray, np.ndarray]:
        """(W, b) in float64 with the BN folded in (the identity as a depthwise kernel)."""
        cout = self.shape[0]
        t = self.aff.scale if self.aff is not None else np.ones(cout)
        shift = self.aff.shift if self.aff is not None else np.zeros(cout)
        if self.src_w is None:
            return t.reshape(self.shape).astype(np.float64), shift.astype(np.float64)
        w = self.src_w.astype(np.float64) * t.reshape((-1,) + (1,) * (len(self.shape) - 1))
        b = np.zeros(cout) if self.src_b is None else self.src_b.astype(np.float64).reshape(-1)
        return w, b * t + shift

    def key(self) -> tuple:
        """Identifies the branch's numbers (weights by identity, see _verify's shared arrays)."""
        aff = b"" if self.aff is None else self.aff.scale.tobytes() + self.aff.shift.tobytes()
        return (id(self.src_w) if self.src_w is not None else 0,
                id(self.src_b) if self.src_b is not None else 0, aff, self.group, self.shape)


def _conv_branch(conv: gs.Node, aff: Affine | None, leaf: gs.Tensor,
                 nodes: list[gs.Node]) -> tuple[Branch | None, str]:
    w = _graph.const(conv.inputs[1]) if len(conv.inputs) > 1 else None
    if w is None or not np.issubdtype(w.dtype, np.floating) or w.ndim < 3:
        return None, "conv weight is not a float constant"
    b_t = conv.inputs[2] if len(conv.inputs) > 2 and conv.inputs[2].name else None
    b = _graph.const(b_t) if b_t is not None else None
    if b_t is not None and b is None:
        return None, "conv bias is not a constant"
    geo = _graph.conv_geometry(conv, w.shape)
    if geo is None:
        return None, "SAME auto-padding"
    kernel = list(w.shape[2:])
    if geo["kernel"] != kernel or any(k % 2 == 0 for k in kernel):
        return None, f"kernel {kernel} is not odd"
    if any(d != 1 for d, k in zip(geo["dilations"], kernel, strict=True) if k > 1):
        return None, "dilated kernel"
    if aff is not None and aff.scale.size != w.shape[0]:
        return None, "BN channel count differs from the conv's"
    n = len(kernel)
    pads = geo["pads"]
    kind = ("conv" + "x".join(str(k) for k in kernel)
            + (f"/g{geo['group']}" if geo["group"] > 1 else "")
            + ("+bn" if aff is not None else ""))
    return Branch(
        leaf=leaf, x=conv.inputs[0], shape=tuple(int(d) for d in w.shape), group=geo["group"],
        strides=geo["strides"], begin=[pads[d] - kernel[d] // 2 for d in range(n)],
        end=[pads[n + d] - kernel[d] // 2 for d in range(n)], kind=kind, src_w=w, src_b=b,
        aff=aff, nodes=nodes, conv=conv,
    ), ""


def _identity_branch(x: gs.Tensor, leaf: gs.Tensor, aff: Affine | None,
                     nodes: list[gs.Node]) -> Branch | None:
    if x.shape is None or len(x.shape) < 3:
        return None
    c = int(x.shape[1])
    n = len(x.shape) - 2
    if aff is not None and aff.scale.size != c:
        return None
    return Branch(
        leaf=leaf, x=x, shape=(c, 1) + (1,) * n, group=c, strides=[1] * n, begin=[0] * n,
        end=[0] * n, kind="identity+bn" if aff is not None else "identity", aff=aff, nodes=nodes,
    )


def _classify(leaf: gs.Tensor, outputs: set[str]) -> Branch | None:
    """The leaf as a branch over some input, or None if it cannot be one."""
    prod = _graph.producer(leaf)
    owned = len(leaf.outputs) == 1 and leaf.name not in outputs  # only the sum reads it
    if owned and _graph.is_plain(prod, "BatchNormalization"):
        aff, _ = bn_affine(prod, outputs)
        if aff is not None:
            u = prod.inputs[0]
            conv = _graph.producer(u)
            if (_graph.is_plain(conv, "Conv") and len(u.outputs) == 1 and u.name not in outputs):
                branch, _ = _conv_branch(conv, aff, leaf, [conv, prod])
                if branch is not None:
                    return branch
            return _identity_branch(u, leaf, aff, [prod])
    if owned and _graph.is_plain(prod, "Conv"):
        branch, _ = _conv_branch(prod, None, leaf, [prod])
        if branch is not None:
            return branch
    return _identity_branch(leaf, leaf, None, [])


def _flatten(root: gs.Node, outputs: set[str]) -> tuple[list[gs.Tensor], list[gs.Node]]:
    """Leaves of the tree of Add/Sum nodes under ``root`` (inner sums read only by their parent)."""
    leaves: list[gs.Tensor] = []
    adds = [root]
    stack = list(reversed(root.inputs))
    while stack:
        t = stack.pop()
        p = _graph.producer(t)
        if _is_sum(p) and len(t.outputs) == 1 and t.name not in outputs:
            adds.append(p)
            stack.extend(reversed(p.inputs))
        else:
            leaves.append(t)
    return leaves, adds


def _same_shape(a: gs.Tensor, b: gs.Tensor) -> bool:
    return a.shape is not None and b.shape is not None and list(a.shape) == list(b.shape)


def _is_sum(node: gs.Node | None) -> bool:
    """A plain Add/Sum whose inputs all have its output's shape (no broadcasting)."""
    return (_graph.is_plain(node, "Add", "Sum") and bool(node.outputs)
            and all(_same_shape(t, node.outputs[0]) for t in node.inputs))


def _check_group(branches: list[Branch]) -> str | None:
    """Why these branches (all on the same input) cannot be merged, or None."""
    first = branches[0]
    cout = {b.shape[0] for b in branches}
    if len(cout) != 1:
        return f"branches have different output channels {sorted(cout)}"
    for b in branches:
        if b.kind.startswith("identity") and b.shape[0] != int(first.x.shape[1]):
            return "identity branch changes the channel count"
        cin = b.shape[1] * b.group
        if cin != int(first.x.shape[1]):
            return f"branch {b.kind} reads {cin} channels, input has {first.x.shape[1]}"
        if b.strides != first.strides:
            return f"branches have different strides ({b.kind}: {b.strides} vs {first.strides})"
        if b.begin != first.begin or b.end != first.end:
            return (f"kernel centres misaligned ({b.kind}: padding offsets {b.begin}/{b.end} vs "
                    f"{first.begin}/{first.end})")
        if len(b.kernel) != len(first.kernel):
            return "branches have different spatial ranks"
    return None


def _merge(branches: list[Branch], dtype: np.dtype, memo: dict | None = None
           ) -> tuple[np.ndarray, np.ndarray, int, list[int]]:
    """Summed kernel [Cout, Cin/g, K..] and bias (in ``dtype``), group g and kernel K of the
    merged conv (summed in float64, rounded once).

    ``memo`` shares the result between the model and its verification probe (same arrays), so
    later passes on the probe see the very arrays the model has."""
    key = ("repvgg", np.dtype(dtype).str, *(b.key() for b in branches))
    refs = [(b.src_w, b.src_b) for b in branches]
    if memo is not None:
        hit = memo.get(key)
        if hit is not None and all(x is y and u is v for (x, u), (y, v) in zip(
                hit[0], refs, strict=True)):
            return hit[1]
    cout = branches[0].shape[0]
    cin = int(branches[0].x.shape[1])
    g = 0
    for b in branches:
        g = math.gcd(g, b.group)
    n = len(branches[0].kernel)
    big = [max(b.kernel[d] for b in branches) for d in range(n)]
    weight = np.zeros((cout, cin // g, *big))
    bias = np.zeros(cout)
    o = np.arange(cout)
    for b in branches:
        gb = b.group
        off = (o // (cout // gb)) * (cin // gb) - (o // (cout // g)) * (cin // g)
        cols = off[:, None] + np.arange(cin // gb)[None, :]
        window = tuple(slice((big[d] - b.kernel[d]) // 2, (big[d] - b.kernel[d]) // 2 + b.kernel[d])
                       for d in range(n))
        w, bb = b.plain()
        weight[(o[:, None], cols, *window)] += w
        bias += bb
    result = (weight.astype(dtype), bias.astype(dtype), g, big)
    if memo is not None:
        memo[key] = (refs, result)
    return result


def _rebuild_sum(graph: gs.Graph, root: gs.Node, adds: list[gs.Node], terms: list[gs.Tensor],
                 names: _graph.Names) -> None:
    """Make ``root``'s output the sum of ``terms`` (one Add chain; the root node is reused)."""
    out = root.outputs[0]
    for a in adds:
        _graph.disconnect(a)
    if len(terms) == 1:
        src = terms[0]
        prod = _graph.producer(src)
        _graph.take_over_output(prod, src, out)
        return
    acc = terms[0]
    for i, t in enumerate(terms[1:], start=1):
        last = i == len(terms) - 1
        dst = out if last else gs.Variable(names(f"{root.name}/sum{i}"), dtype=out.dtype,
                                           shape=out.shape)
        if last:
            out.inputs.clear()
        graph.nodes.append(gs.Node("Add", name=root.name if last else names(f"{root.name}/{i}"),
                                   inputs=[acc, t], outputs=[dst]))
        acc = dst


def run(graph: gs.Graph, ctx: PassContext) -> None:
    names = _graph.Names(graph)
    outputs = _graph.output_names(graph)
    for root in list(graph.nodes):
        if not _is_sum(root):
            continue  # (a broadcasting add is not a sum of branches)
        out = root.outputs[0]
        parent = out.outputs[0] if len(out.outputs) == 1 else None
        if out.name not in outputs and _is_sum(parent):
            continue  # an inner sum: handled from its root
        leaves, adds = _flatten(root, outputs)
        if len(leaves) < 2:
            continue
        groups: dict[int, list[Branch]] = {}
        order: list[int] = []
        loose: list[gs.Tensor] = []
        seen_nodes: set[int] = set()
        for leaf in leaves:
            br = _classify(leaf, outputs)
            if br is None or any(id(n) in seen_nodes for n in br.nodes):
                loose.append(leaf)
                continue
            seen_nodes.update(id(n) for n in br.nodes)
            key = id(br.x)
            if key not in groups:
                groups[key] = []
                order.append(key)
            groups[key].append(br)
        terms: list[gs.Tensor] = []
        fused_any = False
        for key in order:
            grp = groups[key]
            convs = [b for b in grp if b.conv is not None]
            if len(grp) < 2 or not convs:
                terms.extend(b.leaf for b in grp)
                continue
            why = _check_group(grp)
            if why is not None:
                ctx.leave("repvgg", [b.conv.name for b in convs] + [root.name], why)
                terms.extend(b.leaf for b in grp)
                continue
            main = max(convs, key=lambda b: math.prod(b.kernel))
            weight, bias, g, big = _merge(grp, main.src_w.dtype, ctx.memo)
            n = len(big)
            pads = [grp[0].begin[d] + big[d] // 2 for d in range(n)] + [
                grp[0].end[d] + big[d] // 2 for d in range(n)]
            x = grp[0].x
            y = gs.Variable(names(f"{main.conv.name}/fused"), dtype=out.dtype, shape=out.shape)
            removed = [nd.name for b in grp for nd in b.nodes]
            for b in grp:
                for nd in b.nodes:
                    _graph.disconnect(nd)
            fused = gs.Node(
                "Conv", name=main.conv.name,
                attrs={"kernel_shape": big, "strides": list(grp[0].strides), "pads": pads,
                       "dilations": [1] * n, "group": g},
                inputs=[x, gs.Constant(names(f"{main.conv.name}/W"), weight),
                        gs.Constant(names(f"{main.conv.name}/B"), bias)],
                outputs=[y],
            )
            graph.nodes.append(fused)
            terms.append(y)
            fused_any = True
            ctx.rewrite("repvgg", [*removed, *(a.name for a in adds)],
                        f"{' + '.join(b.kind for b in grp)} -> conv{'x'.join(map(str, big))} "
                        f"group {g} stride {grp[0].strides[0]}")
        if not fused_any:
            continue
        _rebuild_sum(graph, root, adds, terms + loose, names)
