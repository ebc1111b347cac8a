"""Architectures users bring beyond torchvision: compile each as a user would.

``benchmarks/model_coverage.py`` covers torchvision's classifiers, detectors and segmenters. This
script covers what it does not: transformer decoders and encoders (GPT-2 with a causal mask and
tied embeddings, a CLIP-style text encoder with an argmax pooling, BERT-base, a Whisper-style
Conv1d + encoder, T5-style relative position buckets, einsum attention), detectors and
super-resolution (a YOLOv8-style net with C2f / SPPF / DFL, ESPCN's PixelShuffle), a spatial
transformer (affine_grid + grid_sample), SegFormer-style efficient attention, a Stable-Diffusion-
style block (timestep embedding, GroupNorm, cross-attention) and MobileViT's unfold-by-reshape.
Each module is written here (random, seeded weights), exported with the TorchScript exporter
(``dynamo=False``, opset 17, dynamic batch) and/or the default dynamo exporter (a dynamic
``Dim("b")``, traced at batch 2), and compiled in a fresh ``tilec compile FILE --target T
--batch B --no-what-if --band off`` process: exit code and wall seconds per cell.

Usage::

    python benchmarks/arch_coverage.py [--models gpt2,bert_base]
        [--exporter torchscript|dynamo|both] [--batch 2] [--targets gc200,northpole]
"""

from __future__ import annotations

import argparse
import inspect
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F


class GPT2Block(nn.Module):
    def __init__(s, d=256, h=4):
        super().__init__()
        s.ln1, s.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        s.qkv = nn.Linear(d, 3 * d)
        s.proj = nn.Linear(d, d)
        s.fc, s.fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)
        s.h = h

    def forward(s, x):
        B, T, C = x.shape
        q, k, v = s.qkv(s.ln1(x)).split(C, dim=2)
        q = q.view(B, T, s.h, C // s.h).transpose(1, 2)
        k = k.view(B, T, s.h, C // s.h).transpose(1, 2)
        v = v.view(B, T, s.h, C // s.h).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        mask = torch.tril(torch.ones(T, T, device=x.device)).view(1, 1, T, T)
        att = att.masked_fill(mask == 0, float("-inf"))
        att = F.softmax(att, dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
        x = x + s.proj(y)
        return x + s.fc2(F.gelu(s.fc(s.ln2(x)), approximate="tanh"))


class GPT2(nn.Module):
    def __init__(s, vocab=5000, d=256, n=4, T=128):
        super().__init__()
        s.wte, s.wpe = nn.Embedding(vocab, d), nn.Embedding(T, d)
        s.blocks = nn.ModuleList(GPT2Block(d) for _ in range(n))
        s.ln = nn.LayerNorm(d)

    def forward(s, idx):
        T = idx.shape[1]
        pos = torch.arange(0, T, dtype=torch.long, device=idx.device).unsqueeze(0)
        x = s.wte(idx) + s.wpe(pos)
        for b in s.blocks:
            x = b(x)
        return s.ln(x) @ s.wte.weight.t()


class CLIPText(nn.Module):
    def __init__(s, vocab=4000, d=256, T=77):
        super().__init__()
        s.tok, s.pos = nn.Embedding(vocab, d), nn.Parameter(torch.randn(T, d) * 0.01)
        layer = nn.TransformerEncoderLayer(d, 4, 4 * d, batch_first=True, norm_first=True,
                                           activation="gelu")
        s.enc = nn.TransformerEncoder(layer, 3)
        s.ln = nn.LayerNorm(d)
        s.proj = nn.Linear(d, 128, bias=False)

    def forward(s, ids):
        x = s.tok(ids) + s.pos
        x = s.ln(s.enc(x))
        eos = x[torch.arange(x.shape[0]), ids.argmax(dim=-1)]
        return s.proj(eos)


class WhisperEnc(nn.Module):
    def __init__(s, mels=80, d=256, T=300):
        super().__init__()
        s.c1 = nn.Conv1d(mels, d, 3, padding=1)
        s.c2 = nn.Conv1d(d, d, 3, stride=2, padding=1)
        pos = torch.arange(T // 2)[:, None] / (10000 ** (torch.arange(0, d, 2)[None] / d))
        s.register_buffer("pos", torch.cat([pos.sin(), pos.cos()], 1))
        layer = nn.TransformerEncoderLayer(d, 4, 4 * d, batch_first=True, norm_first=True,
                                           activation="gelu")
        s.enc = nn.TransformerEncoder(layer, 2)

    def forward(s, x):
        x = F.gelu(s.c2(F.gelu(s.c1(x)))).permute(0, 2, 1)
        return s.enc(x + s.pos)


def conv(c1, c2, k=1, s=1):
    return nn.Sequential(nn.Conv2d(c1, c2, k, s, k // 2, bias=False), nn.BatchNorm2d(c2), nn.SiLU())


class C2f(nn.Module):
    def __init__(s, c1, c2, n=1):
        super().__init__()
        s.c = c2 // 2
        s.cv1 = conv(c1, 2 * s.c)
        s.cv2 = conv((2 + n) * s.c, c2)
        s.m = nn.ModuleList(nn.Sequential(conv(s.c, s.c, 3), conv(s.c, s.c, 3)) for _ in range(n))

    def forward(s, x):
        y = list(s.cv1(x).chunk(2, 1))
        y.extend(m(y[-1]) for m in s.m)
        return s.cv2(torch.cat(y, 1))


class SPPF(nn.Module):
    def __init__(s, c1, c2):
        super().__init__()
        s.cv1, s.cv2 = conv(c1, c1 // 2), conv(c1 * 2, c2)
        s.m = nn.MaxPool2d(5, 1, 2)

    def forward(s, x):
        x = s.cv1(x)
        y1 = s.m(x)
        y2 = s.m(y1)
        return s.cv2(torch.cat((x, y1, y2, s.m(y2)), 1))


class DFL(nn.Module):
    def __init__(s, c1=16):
        super().__init__()
        s.conv = nn.Conv2d(c1, 1, 1, bias=False).requires_grad_(False)
        s.conv.weight.data[:] = torch.arange(c1, dtype=torch.float).view(1, c1, 1, 1)
        s.c1 = c1

    def forward(s, x):
        b, _, a = x.shape
        return s.conv(x.view(b, 4, s.c1, a).transpose(2, 1).softmax(1)).view(b, 4, a)


class YOLOv8n(nn.Module):
    def __init__(s, nc=80):
        super().__init__()
        s.b = nn.ModuleList([conv(3, 16, 3, 2), conv(16, 32, 3, 2), C2f(32, 32), conv(32, 64, 3, 2),
                             C2f(64, 64, 2), conv(64, 128, 3, 2), C2f(128, 128, 2),
                             conv(128, 256, 3, 2), C2f(256, 256), SPPF(256, 256)])
        s.up = nn.Upsample(scale_factor=2, mode="nearest")
        s.h1, s.h2 = C2f(384, 128), C2f(192, 64)
        s.d1, s.h3 = conv(64, 64, 3, 2), C2f(192, 128)
        s.d2, s.h4 = conv(128, 128, 3, 2), C2f(384, 256)
        s.box = nn.ModuleList(nn.Sequential(conv(c, 64, 3), conv(64, 64, 3), nn.Conv2d(64, 64, 1))
                              for c in (64, 128, 256))
        s.cls = nn.ModuleList(nn.Sequential(conv(c, 80, 3), conv(80, 80, 3), nn.Conv2d(80, nc, 1))
                              for c in (64, 128, 256))
        s.dfl = DFL()
        s.nc = nc

    def forward(s, x):
        outs = []
        for i, m in enumerate(s.b):
            x = m(x)
            if i in (4, 6):
                outs.append(x)
        p3, p4, p5 = outs[0], outs[1], x
        a = s.h1(torch.cat([s.up(p5), p4], 1))
        b = s.h2(torch.cat([s.up(a), p3], 1))
        c = s.h3(torch.cat([s.d1(b), a], 1))
        d = s.h4(torch.cat([s.d2(c), p5], 1))
        feats = [torch.cat([s.box[i](f), s.cls[i](f)], 1) for i, f in enumerate((b, c, d))]
        B = x.shape[0]
        y = torch.cat([f.view(B, 64 + s.nc, -1) for f in feats], 2)
        box, cls = y.split((64, s.nc), 1)
        return torch.cat((s.dfl(box), cls.sigmoid()), 1)


class ESPCN(nn.Module):
    def __init__(s, r=3):
        super().__init__()
        s.c1 = nn.Conv2d(1, 64, 5, padding=2)
        s.c2 = nn.Conv2d(64, 32, 3, padding=1)
        s.c3 = nn.Conv2d(32, r * r, 3, padding=1)
        s.ps = nn.PixelShuffle(r)

    def forward(s, x):
        return s.ps(s.c3(torch.tanh(s.c2(torch.tanh(s.c1(x))))))


class STN(nn.Module):
    def __init__(s):
        super().__init__()
        s.loc = nn.Sequential(nn.Conv2d(3, 8, 7), nn.MaxPool2d(2), nn.ReLU(), nn.Conv2d(8, 10, 5),
                              nn.MaxPool2d(2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                              nn.Linear(10, 6))
        s.body = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU())

    def forward(s, x):
        theta = s.loc(x).view(-1, 2, 3)
        grid = F.affine_grid(theta, x.size(), align_corners=False)
        return s.body(F.grid_sample(x, grid, align_corners=False))


class SegFormerBlock(nn.Module):
    def __init__(s, c=64, sr=4, heads=2):
        super().__init__()
        s.norm = nn.LayerNorm(c)
        s.q, s.kv = nn.Linear(c, c), nn.Linear(c, 2 * c)
        s.sr = nn.Conv2d(c, c, sr, sr)
        s.srn = nn.LayerNorm(c)
        s.proj = nn.Linear(c, c)
        s.h = heads
        s.fc1, s.fc2 = nn.Linear(c, 4 * c), nn.Linear(4 * c, c)
        s.dw = nn.Conv2d(4 * c, 4 * c, 3, padding=1, groups=4 * c)

    def forward(s, x, H, W):
        B, N, C = x.shape
        y = s.norm(x)
        q = s.q(y).reshape(B, N, s.h, C // s.h).permute(0, 2, 1, 3)
        r = s.sr(y.permute(0, 2, 1).reshape(B, C, H, W)).reshape(B, C, -1).permute(0, 2, 1)
        kv = s.kv(s.srn(r)).reshape(B, -1, 2, s.h, C // s.h).permute(2, 0, 3, 1, 4)
        k, v = kv[0], kv[1]
        a = (q @ k.transpose(-2, -1)) * (C // s.h) ** -0.5
        x = x + s.proj((a.softmax(-1) @ v).transpose(1, 2).reshape(B, N, C))
        h = s.fc1(x)
        h = s.dw(h.transpose(1, 2).view(B, 4 * C, H, W)).flatten(2).transpose(1, 2)
        return x + s.fc2(F.gelu(h))


class SegFormer(nn.Module):
    def __init__(s):
        super().__init__()
        s.embed = nn.Conv2d(3, 64, 7, 4, 3)
        s.ln = nn.LayerNorm(64)
        s.blocks = nn.ModuleList(SegFormerBlock() for _ in range(2))
        s.head = nn.Conv2d(64, 19, 1)

    def forward(s, x):
        x = s.embed(x)
        B, C, H, W = x.shape
        x = s.ln(x.flatten(2).transpose(1, 2))
        for b in s.blocks:
            x = b(x, H, W)
        x = x.transpose(1, 2).reshape(B, C, H, W)
        return F.interpolate(s.head(x), scale_factor=4, mode="bilinear", align_corners=False)


class SDBlock(nn.Module):
    """A Stable-Diffusion-like UNet block: timestep embedding, GroupNorm resblock, cross-attn."""

    def __init__(s, c=64, ctx=128):
        super().__init__()
        s.t = nn.Sequential(nn.Linear(64, c), nn.SiLU(), nn.Linear(c, c))
        s.n1, s.c1 = nn.GroupNorm(8, c), nn.Conv2d(c, c, 3, padding=1)
        s.n2, s.c2 = nn.GroupNorm(8, c), nn.Conv2d(c, c, 3, padding=1)
        s.attn = nn.MultiheadAttention(c, 4, kdim=ctx, vdim=ctx, batch_first=True)
        s.na = nn.LayerNorm(c)
        s.inp = nn.Conv2d(4, c, 3, padding=1)
        s.out = nn.Conv2d(c, 4, 3, padding=1)

    def forward(s, x, t, ctx):
        half = 32
        freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
        args = t[:, None].float() * freqs[None]
        emb = s.t(torch.cat([torch.cos(args), torch.sin(args)], dim=-1))
        h = s.inp(x)
        r = s.c1(F.silu(s.n1(h))) + emb[:, :, None, None]
        h = h + s.c2(F.silu(s.n2(r)))
        B, C, H, W = h.shape
        q = s.na(h.flatten(2).transpose(1, 2))
        a, _ = s.attn(q, ctx, ctx, need_weights=False)
        h = h + a.transpose(1, 2).reshape(B, C, H, W)
        return s.out(h)


class MobileViTBlock(nn.Module):
    def __init__(s, c=64, d=96, p=2):
        super().__init__()
        s.local = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.SiLU(), nn.Conv2d(c, d, 1))
        layer = nn.TransformerEncoderLayer(d, 4, 2 * d, batch_first=True)
        s.tr = nn.TransformerEncoder(layer, 2)
        s.proj = nn.Conv2d(d, c, 1)
        s.fuse = nn.Conv2d(2 * c, c, 3, padding=1)
        s.p = p

    def forward(s, x):
        y = s.local(x)
        B, D, H, W = y.shape
        p = s.p
        y = y.reshape(B, D, H // p, p, W // p, p).permute(0, 3, 5, 2, 4, 1)
        y = y.reshape(B * p * p, -1, D)
        y = s.tr(y)
        y = y.reshape(B, p, p, H // p, W // p, D).permute(0, 5, 3, 1, 4, 2).reshape(B, D, H, W)
        return s.fuse(torch.cat([x, s.proj(y)], 1))


class MobileViT(nn.Module):
    def __init__(s):
        super().__init__()
        s.stem = nn.Sequential(nn.Conv2d(3, 64, 3, 2, 1), nn.SiLU(), nn.Conv2d(64, 64, 3, 2, 1))
        s.b = MobileViTBlock()
        s.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 1000))

    def forward(s, x):
        return s.head(s.b(s.stem(x)))


class EinsumAttn(nn.Module):
    def __init__(s, d=128):
        super().__init__()
        s.q, s.k, s.v = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)

    def forward(s, x):
        q, k, v = s.q(x), s.k(x), s.v(x)
        a = torch.einsum("bid,bjd->bij", q, k).softmax(-1)
        return torch.einsum("bij,bjd->bid", a, v)


class T5Bias(nn.Module):
    """Relative position buckets (int arithmetic, log, min, where) into an attention bias."""

    def __init__(s, d=128, heads=4, buckets=32):
        super().__init__()
        s.rel = nn.Embedding(buckets, heads)
        s.qkv = nn.Linear(d, 3 * d)
        s.h, s.nb = heads, buckets

    def forward(s, x):
        B, T, C = x.shape
        ctx = torch.arange(T)[:, None]
        mem = torch.arange(T)[None, :]
        rp = mem - ctx
        nb = s.nb // 2
        ret = (rp > 0).to(torch.long) * nb
        n = torch.abs(rp)
        exact = nb // 2
        large = exact + (torch.log(n.float() / exact + 1e-6) / math.log(128 / exact)
                         * (nb - exact)).to(torch.long)
        large = torch.min(large, torch.full_like(large, nb - 1))
        bucket = ret + torch.where(n < exact, n, large)
        bias = s.rel(bucket).permute(2, 0, 1).unsqueeze(0)
        q, k, v = s.qkv(x).view(B, T, 3, s.h, C // s.h).permute(2, 0, 3, 1, 4)
        a = (q @ k.transpose(-1, -2) + bias).softmax(-1)
        return (a @ v).transpose(1, 2).reshape(B, T, C)




class GPT2Small(GPT2):
    def __init__(s):
        super().__init__(vocab=50257, d=768, n=12, T=1024)




class BertBase(nn.Module):
    def __init__(s, vocab=30522, d=768, n=12, T=512):
        super().__init__()
        s.tok, s.pos, s.typ = nn.Embedding(vocab, d), nn.Embedding(T, d), nn.Embedding(2, d)
        s.ln = nn.LayerNorm(d)
        layer = nn.TransformerEncoderLayer(d, 12, 4 * d, batch_first=True, activation="gelu")
        s.enc = nn.TransformerEncoder(layer, n, enable_nested_tensor=False)
        s.pool = nn.Linear(d, d)

    def forward(s, ids):
        T = ids.shape[1]
        pos = torch.arange(T).unsqueeze(0)
        x = s.ln(s.tok(ids) + s.pos(pos) + s.typ(torch.zeros_like(ids)))
        x = s.enc(x)
        return x, torch.tanh(s.pool(x[:, 0]))


MODELS = {
    "gpt2": (GPT2, lambda: (torch.randint(0, 5000, (1, 128)),), {"idx": {0: "b"}}),
    "clip_text": (CLIPText, lambda: (torch.randint(0, 4000, (1, 77)),), {"ids": {0: "b"}}),
    "whisper_enc": (WhisperEnc, lambda: (torch.randn(1, 80, 300),), {"x": {0: "b"}}),
    "yolov8n": (YOLOv8n, lambda: (torch.randn(1, 3, 640, 640),), {"x": {0: "b"}}),
    "espcn": (ESPCN, lambda: (torch.randn(1, 1, 224, 224),), {"x": {0: "b"}}),
    "stn": (STN, lambda: (torch.randn(1, 3, 64, 64),), {"x": {0: "b"}}),
    "segformer": (SegFormer, lambda: (torch.randn(1, 3, 256, 256),), {"x": {0: "b"}}),
    "sd_block": (SDBlock, lambda: (torch.randn(1, 4, 32, 32), torch.tensor([10]),
                                   torch.randn(1, 77, 128)),
                 {"x": {0: "b"}, "t": {0: "b"}, "ctx": {0: "b"}}),
    "mobilevit": (MobileViT, lambda: (torch.randn(1, 3, 256, 256),), {"x": {0: "b"}}),
    "einsum_attn": (EinsumAttn, lambda: (torch.randn(1, 64, 128),), {"x": {0: "b"}}),
    "t5_bias": (T5Bias, lambda: (torch.randn(1, 64, 128),), {"x": {0: "b"}}),
    "bert_base": (BertBase, lambda: (torch.randint(0, 30522, (1, 128)),), {"ids": {0: "b"}}),
    "gpt2_small": (GPT2Small, lambda: (torch.randint(0, 50257, (1, 1024)),),
                   {"idx": {0: "b"}}),
}
"""name -> (module class, example inputs at batch 1, the TorchScript exporter's dynamic axes).
``gpt2_small`` (124 M parameters, 1,024 tokens) is not in the default set: its file is 650 MB."""
DEFAULT = [m for m in MODELS if m != "gpt2_small"]


def export(name: str, exporter: str, out: Path) -> Path | str:
    """The ONNX file of ``name`` by ``exporter`` (cached in ``out``), or why it failed."""
    cls, make, dyn = MODELS[name]
    path = out / f"{name}-{exporter}.onnx"
    if path.exists():
        return path
    torch.manual_seed(0)
    model = cls().eval()
    args = make()
    names = list(inspect.signature(model.forward).parameters)[:len(args)]
    try:
        if exporter == "torchscript":
            torch.onnx.export(model, args, str(path), dynamo=False, opset_version=17,
                              input_names=names, dynamic_axes=dyn)
        else:  # traced at batch 2: a batch-1 example specialises the batch to 1
            args = tuple(torch.cat([a, a]) for a in args)
            shapes = tuple({0: torch.export.Dim("b", min=1, max=1024)} for _ in args)
            torch.onnx.export(model, args, str(path), input_names=names, dynamic_shapes=shapes)
    except Exception as exc:  # the exporter's own failure (e.g. affine_grid before opset 20)
        return f"export failed: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(DEFAULT))
    ap.add_argument("--exporter", choices=("torchscript", "dynamo", "both"), default="both")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--targets", default="gc200,northpole")
    ap.add_argument("--out", default=None, help="where the exported files go (default: a temp dir)")
    args = ap.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="tilec-arch-"))
    out.mkdir(parents=True, exist_ok=True)
    exporters = ["torchscript", "dynamo"] if args.exporter == "both" else [args.exporter]
    targets = args.targets.split(",")
    print(f"| model | exporter | {' | '.join(targets)} |")
    print(f"|---|---|{'---|' * len(targets)}")
    failures = 0
    for name in args.models.split(","):
        for exporter in exporters:
            f = export(name, exporter, out)
            if not isinstance(f, Path):
                print(f"| {name} | {exporter} | {f} |" + " |" * (len(targets) - 1), flush=True)
                continue
            cells = []
            for target in targets:
                t0 = time.perf_counter()
                r = subprocess.run([sys.executable, "-m", "tilec", "compile", str(f), "--target",
                                    target, "--batch", str(args.batch), "--no-what-if",
                                    "--band", "off", "--quiet"], capture_output=True, text=True,
                                   env={**os.environ})
                dt = time.perf_counter() - t0
                failures += r.returncode not in (0, 1)
                why = "" if r.returncode in (0, 1) else \
                    f" ({(r.stderr or r.stdout).strip().splitlines()[-1][:100]})"
                cells.append(f"{r.returncode}, {dt:.1f} s{why}")
            print(f"| {name} | {exporter} | {' | '.join(cells)} |", flush=True)
    print(f"\n{failures} cell(s) neither fit nor a diagnosis (exit 0 / 1); files in {out}")


if __name__ == "__main__":
    main()
