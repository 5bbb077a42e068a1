#!/usr/bin/env python3
"""Train one synthetic Tessera model and export it to ONNX with its JSON sidecar.

  /usr/bin/python3 tools/train/train.py --kind em --stage fullres --data tools/train/data/em \
      --out models --iters 2000 --device cpu --seed 0

Reads the data written by tools/train/make-data.ts (manifest.json + raw .bin files), trains an
nnU-Net-style 3D U-Net (unet.py) with cross-entropy + soft Dice, Adam and flips, patches half
centred on foreground; validates on the held-out volume(s) with a sliding window (step 0.5);
exports models/synthetic-<kind>-<stage>.onnx (opset 17, input 'input' [N,1,D,H,W], output
'logits' [N,2,D,H,W], dynamic N/D/H/W) and models/synthetic-<kind>-<stage>.json, plus a
reference input/output pair (.ref-input.bin / .ref-output.bin, float32) for
tools/train/check-onnx.ts. Runs on PyTorch 1.13 (CPU) and 2.x (CUDA).
"""
from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import math
import os
import random
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from unet import ARCH, build, fold_batchnorm  # noqa: E402

# Patch sizes (z, y, x) and batch sizes per (kind, stage): must be divisible by the net's divisor.
PATCH = {
    ("em", "fullres"): (16, 128, 128),
    ("em", "lowres"): (16, 64, 64),
    ("ct", "fullres"): (32, 96, 96),
    ("ct", "lowres"): (32, 64, 64),
}
BATCH = 2
REF_SHAPE = (1, 1, 8, 32, 48)  # reference input for check-onnx (not a patch shape)
NP_DTYPES = {"uint8": np.uint8, "uint16": np.uint16, "float32": np.float32}


def log(*a):
    print(*a, flush=True)


# ---------------------------------------------------------------------------------------------
# Data


def load_volumes(data: str, stage: str):
    with open(os.path.join(data, "manifest.json")) as f:
        man = json.load(f)
    norm = man["normalization"]
    lo, hi = norm.get("clip", [None, None])
    vols = {"train": [], "val": []}
    for v in man["volumes"]:
        if stage == "fullres":
            shape, img_f, img_t, lab_f = v["shape"], v["image"], v["imageDtype"], v["labels"]
        else:
            shape, img_f, img_t, lab_f = v["lowShape"], v["lowImage"], v["lowImageDtype"], v["lowLabels"]
        img = np.fromfile(os.path.join(data, img_f), dtype=NP_DTYPES[img_t]).reshape(shape).astype(np.float32)
        lab = np.fromfile(os.path.join(data, lab_f), dtype=np.uint8).reshape(shape)
        if lo is not None:
            img = np.clip(img, lo, hi)
        img = ((img - norm["mean"]) / norm["std"]).astype(np.float32)
        vols[v["split"]].append({"seed": v["seed"], "img": img, "lab": lab, "fg": np.flatnonzero(lab)})
    return man, vols


def crop_pad(a: np.ndarray, start, patch, fill=0.0):
    """Crop a[start:start+patch], padding with `fill` outside the array."""
    out = np.full(patch, fill, dtype=a.dtype)
    src, dst = [], []
    for s, p, n in zip(start, patch, a.shape):
        a0, a1 = max(0, s), min(n, s + p)
        src.append(slice(a0, a1))
        dst.append(slice(a0 - s, a1 - s))
    out[tuple(dst)] = a[tuple(src)]
    return out


def sample_batch(rng: np.random.RandomState, vols, patch, batch: int, it: int, intensity: float = 0.0):
    xs, ys = [], []
    for b in range(batch):
        v = vols[rng.randint(len(vols))]
        shape = v["img"].shape
        want_fg = (it * batch + b) % 2 == 0  # half the patches centred on foreground (nnU-Net: >= 1/3)
        if want_fg and len(v["fg"]):
            c = np.unravel_index(v["fg"][rng.randint(len(v["fg"]))], shape)
            start = [int(ci) - p // 2 + rng.randint(-(p // 4), p // 4 + 1) for ci, p in zip(c, patch)]
        else:
            start = [rng.randint(0, max(0, n - p) + 1) for n, p in zip(shape, patch)]
        start = [min(max(0, s), max(0, n - p)) for s, n, p in zip(start, shape, patch)]
        x = crop_pad(v["img"], start, patch)
        y = crop_pad(v["lab"], start, patch, 0)
        for ax in range(3):  # flips (the checker textures survive flips)
            if rng.rand() < 0.5:
                x, y = np.flip(x, ax), np.flip(y, ax)
        if patch[1] == patch[2] and rng.rand() < 0.5:  # y/x transposition (equal in-plane spacing)
            x, y = x.transpose(0, 2, 1), y.transpose(0, 2, 1)
        if intensity > 0 and rng.rand() < 0.8:
            # Gain, offset and a z ramp (in standardised units): what sections drifting in
            # intensity do to a window. Instance norm absorbs most of it; batch norm must learn it.
            ramp = rng.uniform(-intensity / 2, intensity / 2) * np.linspace(-1, 1, x.shape[0], dtype=np.float32)
            x = x * np.float32(np.exp(rng.uniform(-0.2, 0.2))) + np.float32(rng.uniform(-intensity, intensity)) + ramp[:, None, None]
        xs.append(np.ascontiguousarray(x))
        ys.append(np.ascontiguousarray(y))
    return torch.from_numpy(np.stack(xs)[:, None]), torch.from_numpy(np.stack(ys).astype(np.int64))


# ---------------------------------------------------------------------------------------------
# Loss, inference


def loss_fn(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    ce = F.cross_entropy(logits, target)
    p = torch.softmax(logits, 1)[:, 1]
    t = (target == 1).float()
    dice = (2 * (p * t).sum() + 1e-5) / (p.sum() + t.sum() + 1e-5)
    return ce + (1 - dice)


def window_starts(n: int, p: int, step: float):
    if n <= p:
        return [0]
    k = int(math.ceil((n - p) / (p * step))) + 1
    return sorted(set(int(round(i * (n - p) / (k - 1))) for i in range(k)))


@torch.no_grad()
def sliding_window(model, img: np.ndarray, patch, device, step: float = 0.5) -> np.ndarray:
    """Foreground probability by averaging softmax over windows of `patch` (step 0.5)."""
    shape = img.shape
    acc = np.zeros(shape, np.float32)
    cnt = np.zeros(shape, np.float32)
    for z in window_starts(shape[0], patch[0], step):
        for y in window_starts(shape[1], patch[1], step):
            for x in window_starts(shape[2], patch[2], step):
                s = (z, y, x)
                win = crop_pad(img, s, patch)
                t = torch.from_numpy(win[None, None]).to(device)
                prob = torch.softmax(model(t), 1)[0, 1].float().cpu().numpy()
                sl = tuple(slice(a, min(a + p, n)) for a, p, n in zip(s, patch, shape))
                acc[sl] += prob[tuple(slice(0, q.stop - q.start) for q in sl)]
                cnt[sl] += 1
    return acc / np.maximum(cnt, 1)


def dice(pred: np.ndarray, lab: np.ndarray) -> float:
    inter = float(np.logical_and(pred, lab).sum())
    denom = float(pred.sum() + lab.sum())
    return 1.0 if denom == 0 else 2 * inter / denom


# ---------------------------------------------------------------------------------------------
# Export


def export_onnx(model, patch, path: str):
    model = model.eval().cpu()
    dummy = torch.zeros(1, 1, *patch)
    axes = {0: "N", 2: "D", 3: "H", 4: "W"}
    kwargs = dict(
        input_names=["input"], output_names=["logits"], dynamic_axes={"input": axes, "logits": axes},
        opset_version=17, do_constant_folding=True,
    )
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs["dynamo"] = False  # the classic TorchScript exporter (PyTorch >= 2.9 defaults to dynamo)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, dummy, path, **kwargs)
    try:
        import onnx

        onnx.checker.check_model(onnx.load(path))
    except ImportError:
        pass


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kind", choices=["em", "ct"], required=True)
    ap.add_argument("--stage", choices=["fullres", "lowres"], required=True)
    ap.add_argument("--data", required=True, help="directory with manifest.json (make-data.ts --out)")
    ap.add_argument("--out", default="models")
    ap.add_argument("--iters", type=int, default=2000)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=BATCH)
    ap.add_argument("--patch", default=None, help="training patch z,y,x (default per kind/stage)")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    ap.add_argument("--norm", default="instance", choices=["instance", "batch"],
                    help="normalisation layer: instance (nnU-Net) or batch (folded into the convs on export, "
                         "so the net is local and crops packed in one canvas cannot affect each other beyond "
                         "its receptive field)")
    ap.add_argument("--aug-intensity", type=float, default=0.0,
                    help="intensity augmentation: random gain (x0.82-1.22), offset up to this many standard "
                         "deviations and a z ramp of half that, on 80 %% of patches (0: off)")
    ap.add_argument("--val-every", type=int, default=0, help="also validate every N iterations (0: only at the end)")
    args = ap.parse_args()

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    if args.device == "cuda":
        if not torch.cuda.is_available():
            sys.exit("--device cuda: CUDA is not available")
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    device = torch.device(args.device)

    key = (args.kind, args.stage)
    patch = tuple(int(v) for v in args.patch.split(",")) if args.patch else PATCH[key]
    man, vols = load_volumes(args.data, args.stage)
    if man["kind"] != args.kind:
        sys.exit(f"{args.data} holds {man['kind']} data, not {args.kind}")
    if not vols["train"] or not vols["val"]:
        sys.exit(f"{args.data}: need train and val volumes")
    model = build(*key, norm=args.norm).to(device)
    div = model.divisor
    if any(p % d for p, d in zip(patch, div)):
        sys.exit(f"patch {patch} is not divisible by {div}")
    nparams = sum(p.numel() for p in model.parameters())
    log(f"{args.kind}/{args.stage}: {nparams} params, divisor {div}, patch {patch} x{args.batch}, "
        f"{len(vols['train'])} train / {len(vols['val'])} val volumes, torch {torch.__version__} on {device}")

    opt = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=1e-5)
    rng = np.random.RandomState(args.seed)
    losses = []
    t0 = time.time()

    def validate():
        model.eval()
        ds = []
        for v in vols["val"]:
            prob = sliding_window(model, v["img"], patch, device)
            ds.append(dice(prob > 0.5, v["lab"] > 0))
        model.train()
        return float(np.mean(ds))

    model.train()
    for it in range(args.iters):
        lr = args.lr * (1 - it / args.iters) ** 0.9
        for g in opt.param_groups:
            g["lr"] = lr
        x, y = sample_batch(rng, vols["train"], patch, args.batch, it, args.aug_intensity)
        x, y = x.to(device), y.to(device)
        loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.item()))
        if (it + 1) % 25 == 0 or it == 0:
            log(f"it {it + 1:5d}  loss {np.mean(losses[-25:]):.4f}  lr {lr:.2e}  {(time.time() - t0) / (it + 1):.3f} s/it")
        if args.val_every and (it + 1) % args.val_every == 0 and it + 1 < args.iters:
            tv = time.time()
            log(f"it {it + 1:5d}  val dice {validate():.4f}")
            t0 += time.time() - tv  # keep validation out of the training time
    train_s = time.time() - t0
    final_loss = float(np.mean(losses[-50:])) if losses else float("nan")
    val_dice = validate()
    log(f"final loss {final_loss:.4f}  val dice {val_dice:.4f}  ({train_s:.0f} s, {train_s / max(1, args.iters):.3f} s/it)")

    if args.norm == "batch":
        model = model.eval().cpu()
        probe = torch.from_numpy(np.random.RandomState(7).standard_normal((1, 1, *patch)).astype(np.float32))
        with torch.no_grad():
            before = model(probe)
            fold_batchnorm(model)
            err = float((model(probe) - before).abs().max())
        log(f"batch norm folded into the convs (max |logit change| {err:.2e})")
        if err > 1e-3:
            sys.exit(f"folding batch norm changed the logits by {err}")
    os.makedirs(args.out, exist_ok=True)
    name = f"synthetic-{args.kind}-{args.stage}"
    onnx_path = os.path.join(args.out, name + ".onnx")
    export_onnx(model, patch, onnx_path)
    # Reference pair for check-onnx.ts (a non-patch shape, fixed random input).
    ref_in = np.random.RandomState(1234).standard_normal(REF_SHAPE).astype(np.float32)
    with torch.no_grad():
        ref_out = model(torch.from_numpy(ref_in)).numpy().astype(np.float32)
    ref_in.tofile(os.path.join(args.out, name + ".ref-input.bin"))
    ref_out.tofile(os.path.join(args.out, name + ".ref-output.bin"))

    spacing = [s * f for s, f in zip(man["spacing"], man["lowFactor"])] if args.stage == "lowres" else man["spacing"]
    sidecar = {
        "name": name,
        "kind": args.kind,
        "stage": args.stage,
        "spacing": spacing,
        "inputName": "input",
        "outputName": "logits",
        "classes": man["classes"],
        "output": "logits",
        "activation": "softmax",
        "channels": 1,
        "normalization": {k: v for k, v in man["normalization"].items() if k != "stats"},
        "patchSize": list(patch),
        "divisor": div,
        "levels": len(model.features),
        "features": model.features,
        "sha256": sha256(onnx_path),
        "training": {
            "seeds": [v["seed"] for v in vols["train"]],
            "valSeeds": [v["seed"] for v in vols["val"]],
            "iters": args.iters,
            "batch": args.batch,
            "lr": args.lr,
            "seed": args.seed,
            "finalLoss": round(final_loss, 5),
            "valDice": round(val_dice, 5),
            "device": args.device,
            "torch": torch.__version__,
            "seconds": round(train_s, 1),
            "params": nparams,
            "norm": args.norm,
            "augIntensity": args.aug_intensity,
            "normalizationStats": man["normalization"].get("stats", "all"),
            "kernels": [list(k) for k in model.kernels],
            "pools": [list(p) for p in model.pools],
            "reference": {"shape": list(REF_SHAPE), "input": name + ".ref-input.bin", "output": name + ".ref-output.bin"},
        },
    }
    with open(os.path.join(args.out, name + ".json"), "w") as f:
        json.dump(sidecar, f, indent=2)
        f.write("\n")
    log(f"wrote {onnx_path} ({os.path.getsize(onnx_path)} bytes) and {name}.json")


if __name__ == "__main__":
    main()
