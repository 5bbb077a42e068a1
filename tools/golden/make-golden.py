#!/usr/bin/python3
"""Golden-reference fixtures for Tessera's sliding-window inference.

What it does
    1. Builds a tiny, fixed-seed 3D network (1 input channel -> 3 softmax logits, divisor 2 on
       every axis) and exports it to test/fixtures/golden/model.onnx (+ model.json, its card).
    2. Makes a fixed input volume of shape [20, 18, 37] (H = 18 is smaller than the patch's 24,
       so nnU-Net's centred zero padding is exercised) -> input.f32.
    3. Computes the nnU-Net v2 sliding-window reference with PyTorch, following
       nnunetv2/inference/predict_from_raw_data.py
         nnUNetPredictor.predict_sliding_window_return_logits
         nnUNetPredictor._internal_get_sliding_window_slicers
         nnUNetPredictor._internal_predict_sliding_window_return_logits
         nnUNetPredictor._internal_maybe_mirror_and_predict
       nnunetv2/inference/sliding_window_prediction.py
         compute_gaussian, compute_steps_for_sliding_window
       acvl_utils/cropping_and_padding/padding.py
         pad_nd_image
       with tile_step_size 0.5, patch [8, 24, 16], with and without mirroring, the one deliberate
       difference being that the accumulators (predicted_logits, n_predictions) and the Gaussian
       are float32 instead of nnU-Net's float16.  Probabilities = softmax over the class axis of
       the cropped logits (nnU-Net's LabelManager.apply_inference_nonlin).
    4. Re-computes the reference a second, independently written way (numpy, float64, analytic
       Gaussian, np.linspace tile positions, slice-flips, full-volume np.pad accumulation) and
       asserts both agree.
    5. Writes golden.json describing every file.

    All arrays are raw little-endian float32, C order, no header.

How to rerun (from the repository root; needs Debian's python3-torch, python3-scipy, python3-numpy):
    /usr/bin/python3 tools/golden/make-golden.py
The output is deterministic (fixed seeds, deterministic algorithms, one thread, float32).
Verify the ONNX export against torch with node + onnxruntime-node:
    node tools/golden/check-onnx.cjs
"""
import hashlib
import itertools
import json
import os
import sys
import warnings

import numpy as np
import torch
import torch.nn as nn
from scipy.ndimage import gaussian_filter

# torch 1.13's exporter warns about prim::Constant shape inference for nn.Upsample; harmless here
warnings.filterwarnings('ignore', message='The shape inference of prim::Constant')

torch.manual_seed(0)
np.random.seed(0)
torch.use_deterministic_algorithms(True)
torch.set_num_threads(1)
torch.set_default_dtype(torch.float32)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, 'test', 'fixtures', 'golden')

PATCH = (8, 24, 16)
STEP = 0.5
SHAPE = (20, 18, 37)
CLASSES = ['background', 'a', 'b']
LAST_LAYER_SCALE = 6.0  # widens the logits so softmax is far from uniform


# ----------------------------------------------------------------------------- network
class TinyNet(nn.Module):
    """conv3(1->6) -> lrelu -> conv3/2(6->6) -> lrelu -> nearest x2 -> cat[f1, up] -> conv1(12->3)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv3d(1, 6, kernel_size=3, padding=1)
        self.conv2 = nn.Conv3d(6, 6, kernel_size=3, stride=2, padding=1)
        self.up = nn.Upsample(scale_factor=2, mode='nearest')
        self.head = nn.Conv3d(12, 3, kernel_size=1)
        self.act = nn.LeakyReLU(0.01)

    def forward(self, x):
        f1 = self.act(self.conv1(x))
        f2 = self.act(self.conv2(f1))
        return self.head(torch.cat([f1, self.up(f2)], dim=1))


def build_net():
    net = TinyNet()
    with torch.no_grad():
        net.head.weight.mul_(LAST_LAYER_SCALE)
        net.head.bias.mul_(LAST_LAYER_SCALE)
    return net.eval()


# ----------------------------------------------------------------------------- input
def make_volume():
    rng = np.random.default_rng(12345)
    v = gaussian_filter(rng.standard_normal(SHAPE), 1.5)
    v = (v - v.mean()) / v.std()
    zz, yy, xx = np.meshgrid(*[np.arange(s, dtype=np.float64) for s in SHAPE], indexing='ij')
    # a few bright blobs (centre z, y, x; radius; amplitude), one straddling the x end
    for (cz, cy, cx, r, a) in [(5, 6, 8, 2.0, 3.0), (13, 11, 22, 2.5, 4.0), (16, 4, 34, 2.0, 3.5), (9, 15, 30, 1.5, -3.0)]:
        v += a * np.exp(-((zz - cz) ** 2 + (yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
    return v.astype(np.float32)


# ----------------------------------------------------------------------------- nnU-Net port (torch)
def compute_gaussian(tile_size, sigma_scale=1. / 8, value_scaling_factor=10, dtype=torch.float32):
    # nnunetv2.inference.sliding_window_prediction.compute_gaussian (dtype float16 there)
    tmp = np.zeros(tile_size)
    center_coords = [i // 2 for i in tile_size]
    sigmas = [i * sigma_scale for i in tile_size]
    tmp[tuple(center_coords)] = 1
    gaussian_importance_map = gaussian_filter(tmp, sigmas, 0, mode='constant', cval=0)
    gaussian_importance_map = torch.from_numpy(gaussian_importance_map)
    gaussian_importance_map = gaussian_importance_map / torch.max(gaussian_importance_map) * value_scaling_factor
    gaussian_importance_map = gaussian_importance_map.type(dtype)
    gaussian_importance_map[gaussian_importance_map == 0] = torch.min(
        gaussian_importance_map[gaussian_importance_map != 0])
    return gaussian_importance_map


def compute_steps_for_sliding_window(image_size, tile_size, tile_step_size):
    # nnunetv2.inference.sliding_window_prediction.compute_steps_for_sliding_window
    assert all(i >= j for i, j in zip(image_size, tile_size))
    assert 0 < tile_step_size <= 1
    target_step_sizes_in_voxels = [i * tile_step_size for i in tile_size]
    num_steps = [int(np.ceil((i - k) / j)) + 1 for i, j, k in zip(image_size, target_step_sizes_in_voxels, tile_size)]
    steps = []
    for dim in range(len(tile_size)):
        max_step_value = image_size[dim] - tile_size[dim]
        if num_steps[dim] > 1:
            actual_step_size = max_step_value / (num_steps[dim] - 1)
        else:
            actual_step_size = 99999999999
        steps.append([int(np.round(actual_step_size * i)) for i in range(num_steps[dim])])
    return steps


def pad_nd_image(image, new_shape):
    # acvl_utils.cropping_and_padding.padding.pad_nd_image(image, new_shape, 'constant', {'value': 0},
    # return_slicer=True, shape_must_be_divisible_by=None), torch branch
    old_shape = np.array(image.shape)
    if len(new_shape) < len(image.shape):
        new_shape = list(image.shape[:len(image.shape) - len(new_shape)]) + list(new_shape)
    new_shape = [max(new_shape[i], old_shape[i]) for i in range(len(new_shape))]
    difference = np.array(new_shape) - old_shape
    pad_below = difference // 2
    pad_above = pad_below + difference % 2
    pad_list = [tuple(i) for i in zip(pad_below, pad_above)]
    if np.any(pad_below) or np.any(pad_above):
        torch_pad_list = [int(i) for j in pad_list for i in j[::-1]][::-1]
        res = torch.nn.functional.pad(image, torch_pad_list, 'constant', value=0)
    else:
        res = image
    pad_list = np.array(pad_list)
    pad_list[:, 1] = np.array(res.shape) - pad_list[:, 1]
    slicer = tuple(slice(*[int(v) for v in i]) for i in pad_list)
    return res, slicer, [int(v) for v in pad_below]


def get_sliding_window_slicers(image_size, patch_size, tile_step_size):
    # nnUNetPredictor._internal_get_sliding_window_slicers, 3D branch (len(patch) == len(image_size))
    steps = compute_steps_for_sliding_window(image_size, patch_size, tile_step_size)
    slicers = []
    for sx in steps[0]:
        for sy in steps[1]:
            for sz in steps[2]:
                slicers.append(tuple([slice(None), *[slice(si, si + ti) for si, ti in zip((sx, sy, sz), patch_size)]]))
    return slicers, steps


def maybe_mirror_and_predict(network, x, use_mirroring, allowed_mirroring_axes=(0, 1, 2)):
    # nnUNetPredictor._internal_maybe_mirror_and_predict
    mirror_axes = allowed_mirroring_axes if use_mirroring else None
    prediction = network(x)
    if mirror_axes is not None:
        assert max(mirror_axes) <= x.ndim - 3
        mirror_axes = [m + 2 for m in mirror_axes]
        axes_combinations = [c for i in range(len(mirror_axes)) for c in itertools.combinations(mirror_axes, i + 1)]
        for axes in axes_combinations:
            prediction += torch.flip(network(torch.flip(x, axes)), axes)
        prediction /= (len(axes_combinations) + 1)
    return prediction


@torch.inference_mode()
def predict_sliding_window_return_logits(network, input_image, patch_size, tile_step_size, use_mirroring,
                                         num_heads=3):
    # nnUNetPredictor.predict_sliding_window_return_logits + _internal_predict_sliding_window_return_logits
    # (use_gaussian=True, CPU, float32 accumulators instead of float16)
    assert input_image.ndim == 4
    data, slicer_revert_padding, pad_below = pad_nd_image(input_image, patch_size)
    slicers, steps = get_sliding_window_slicers(data.shape[1:], patch_size, tile_step_size)
    predicted_logits = torch.zeros((num_heads, *data.shape[1:]), dtype=torch.float32)
    n_predictions = torch.zeros(data.shape[1:], dtype=torch.float32)
    gaussian = compute_gaussian(tuple(patch_size), sigma_scale=1. / 8, value_scaling_factor=10)
    for sl in slicers:
        workon = torch.clone(data[sl][None], memory_format=torch.contiguous_format)
        prediction = maybe_mirror_and_predict(network, workon, use_mirroring)[0]
        prediction *= gaussian
        predicted_logits[sl] += prediction
        n_predictions[sl[1:]] += gaussian
    torch.div(predicted_logits, n_predictions, out=predicted_logits)
    assert not torch.any(torch.isinf(predicted_logits))
    predicted_logits = predicted_logits[(slice(None), *slicer_revert_padding[1:])]
    tiles = [[s.start for s in sl[1:]] for sl in slicers]
    return predicted_logits, dict(tiles=tiles, steps=steps, padded_shape=list(data.shape[1:]), pad_below=pad_below[1:],
                                  gaussian=gaussian)


# ----------------------------------------------------------------------------- independent re-implementation
def alt_reference(network, vol, patch, step, mirror, dt=np.float64):
    """Written differently on purpose: numpy (in dtype dt), analytic Gaussian, linspace tiles, slice
    flips, full-volume np.pad accumulation summed at the end, numpy softmax."""
    vol = vol.astype(dt)
    shape = np.array(vol.shape)
    padded = np.maximum(shape, patch)
    lo = (padded - shape) // 2
    big = np.zeros(padded, dtype=dt)
    big[lo[0]:lo[0] + shape[0], lo[1]:lo[1] + shape[1], lo[2]:lo[2] + shape[2]] = vol
    # positions: n tiles spread evenly from 0 to size-patch, rounded half-to-even
    pos = []
    for a in range(3):
        n = int(np.ceil((padded[a] - patch[a]) / (patch[a] * step))) + 1
        pos.append([int(v) for v in np.round(np.linspace(0, padded[a] - patch[a], n))] if n > 1 else [0])
    # Gaussian: scipy's filtered delta = product of sampled 1-D kernels (the kernel here covers the
    # whole tile, so nothing is truncated); normalised to peak 1 at the centre i // 2, times 10.
    axes = [np.exp(-0.5 * ((np.arange(p) - p // 2) / (p / 8.0)) ** 2) for p in patch]
    g = (10.0 * axes[0][:, None, None] * axes[1][None, :, None] * axes[2][None, None, :]).astype(dt)
    flips = [()] + [c for k in (1, 2, 3) for c in itertools.combinations((0, 1, 2), k)] if mirror else [()]

    def flip(a, ax):  # flip the trailing three axes listed in ax by slicing
        idx = [slice(None)] * a.ndim
        for q in ax:
            idx[a.ndim - 3 + q] = slice(None, None, -1)
        return a[tuple(idx)]

    nums, dens = [], []
    for z in pos[0]:
        for y in pos[1]:
            for x in pos[2]:
                tile = big[z:z + patch[0], y:y + patch[1], x:x + patch[2]]
                outs = []
                for ax in flips:
                    t = np.ascontiguousarray(flip(tile, ax)).astype(np.float32)[None, None]
                    with torch.inference_mode():
                        o = network(torch.from_numpy(t)).numpy()[0].astype(dt)
                    outs.append(flip(o, ax))
                p = np.mean(np.stack(outs), axis=0)
                w = [(z, padded[0] - z - patch[0]), (y, padded[1] - y - patch[1]), (x, padded[2] - x - patch[2])]
                nums.append(np.pad(p * g, [(0, 0)] + w))
                dens.append(np.pad(g, w))
    logits = np.sum(nums, axis=0) / np.sum(dens, axis=0)
    logits = logits[:, lo[0]:lo[0] + shape[0], lo[1]:lo[1] + shape[1], lo[2]:lo[2] + shape[2]]
    e = np.exp(logits - logits.max(axis=0, keepdims=True))
    return logits, e / e.sum(axis=0, keepdims=True), g, pos


# ----------------------------------------------------------------------------- main
def save(name, arr):
    arr = np.ascontiguousarray(np.asarray(arr, dtype='<f4'))
    with open(os.path.join(OUT, name), 'wb') as f:
        f.write(arr.tobytes(order='C'))
    return name


def main():
    os.makedirs(OUT, exist_ok=True)
    net = build_net()

    # check pair: a direct network evaluation, for verifying the ONNX export on its own
    check_in = torch.from_numpy(np.random.default_rng(7).standard_normal((1, 1, 8, 16, 16)).astype(np.float32))
    with torch.inference_mode():
        check_out = net(check_in)
    save('check-in.f32', check_in.numpy())
    save('check-out.f32', check_out.numpy())

    onnx_path = os.path.join(OUT, 'model.onnx')
    dyn = {0: 'n', 2: 'd', 3: 'h', 4: 'w'}
    torch.onnx.export(net, check_in, onnx_path, opset_version=13, input_names=['input'], output_names=['logits'],
                      dynamic_axes={'input': dyn, 'logits': dyn}, do_constant_folding=True)
    sha = hashlib.sha256(open(onnx_path, 'rb').read()).hexdigest()
    # The same network with softmax inside the graph, as many real exports are: `tessera model
    # card` must see that it outputs probabilities (test/integration/cli.test.ts).
    soft = nn.Sequential(net, nn.Softmax(dim=1)).eval()
    torch.onnx.export(soft, check_in, os.path.join(OUT, 'model-softmax.onnx'), opset_version=13, input_names=['input'],
                      output_names=['probabilities'], dynamic_axes={'input': dyn, 'probabilities': dyn}, do_constant_folding=True)

    # Model card (shared/infer/model.ts validates it): the graph outputs logits, softmax semantics.
    card = {"name": "golden", "kind": "test", "stage": "fullres", "spacing": [1, 1, 1], "inputName": "input",
            "outputName": "logits", "classes": CLASSES, "output": "logits", "activation": "softmax", "channels": 1,
            "normalization": {"kind": "zscore", "mean": 0, "std": 1}, "patchSize": list(PATCH),
            "divisor": [2, 2, 2], "sha256": sha}
    with open(os.path.join(OUT, 'model.json'), 'w') as f:
        json.dump(card, f, indent=2)
        f.write('\n')

    vol = make_volume()
    save('input.f32', vol)
    x = torch.from_numpy(vol)[None]  # (c=1, d, h, w), as nnU-Net's preprocessed data

    outputs = {}
    info = None
    for tag, mirror in (('nomirror', False), ('mirror', True)):
        logits, info = predict_sliding_window_return_logits(net, x, PATCH, STEP, mirror)
        probs = torch.softmax(logits.float(), 0)  # LabelManager.apply_inference_nonlin
        assert tuple(logits.shape) == (3, *SHAPE)
        print(f'[{tag}] logits min {logits.min().item():.4f} max {logits.max().item():.4f}; '
              f'probs min {probs.min().item():.3e} max {probs.max().item():.6f}')
        # independent check: float32 (same precision as the reference: must agree within 1e-6) and
        # float64 (shows how far float32 rounding alone moves the reference: within 5e-6)
        for dt, tol in ((np.float32, 1e-6), (np.float64, 5e-6)):
            alogits, aprobs, ag, apos = alt_reference(net, vol, PATCH, STEP, mirror, dt)
            assert apos == info['steps'], (apos, info['steps'])
            assert np.abs(ag - info['gaussian'].numpy()).max() < 1e-6 * 10, 'gaussian mismatch'
            dl = float(np.abs(alogits - logits.numpy()).max())
            dp = float(np.abs(aprobs - probs.numpy()).max())
            print(f'[{tag}] alt({np.dtype(dt).name}) vs reference: max|d| logits {dl:.3e} probs {dp:.3e} (tol {tol:g})')
            assert dl < tol and dp < tol, 'independent re-implementation disagrees'
        outputs[tag] = {"logits": save(f'logits-{tag}.f32', logits.numpy()),
                        "probabilities": save(f'probs-{tag}.f32', probs.numpy())}
    g = info['gaussian'].numpy()
    print('gaussian max|analytic - scipy| =', float(np.abs(ag - g).max()), 'min', float(g.min()), 'max', float(g.max()))
    save('gaussian.f32', g)
    print('tiles', len(info['tiles']), 'steps', info['steps'], 'padded', info['padded_shape'], 'pad_below', info['pad_below'])

    golden = {
        "input": {"file": "input.f32", "shape": list(SHAPE)},
        "patch": list(PATCH),
        "step": STEP,
        "tiles": info['tiles'],
        "steps": info['steps'],
        "padded_shape": info['padded_shape'],
        "pad_below": info['pad_below'],
        "gaussian": "gaussian.f32",
        "outputs": outputs,
        "output_shape": [3, *SHAPE],
        "mirror_axes_order": [[2], [3], [4], [2, 3], [2, 4], [3, 4], [2, 3, 4]],
        "accumulator": "float32 (nnU-Net uses float16)",
        "check": {"input_shape": [1, 1, 8, 16, 16], "input": "check-in.f32", "output_shape": [1, 3, 8, 16, 16],
                  "output": "check-out.f32"},
        "dtype": "float32 little-endian, C order, no header",
        "model": {"onnx": "model.onnx", "card": "model.json", "sha256": sha, "opset": 13},
        "torch": torch.__version__,
        "made_by": "tools/golden/make-golden.py",
    }
    with open(os.path.join(OUT, 'golden.json'), 'w') as f:
        json.dump(golden, f, indent=2)
        f.write('\n')
    total = 0
    for n in sorted(os.listdir(OUT)):
        s = os.path.getsize(os.path.join(OUT, n))
        total += s
        print(f'{s:8d}  {n}')
    print(f'{total:8d}  total')
    return 0


if __name__ == '__main__':
    sys.exit(main())
