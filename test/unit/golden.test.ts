// Golden test: Tessera's sliding window against nnU-Net v2's predict_sliding_window_return_logits,
// as computed once in PyTorch (tools/golden/make-golden.py: a small 3-class network exported to
// ONNX, a 20×18×37 volume whose y is smaller than the patch, step 0.5, with and without
// mirroring; float32 accumulation). Gaussian, tile positions, centred padding, logit blending,
// mirror averaging in logit space and the final softmax must all agree to 1e-4.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Vec3 } from '../../shared/geometry/box.ts';
import { array3 } from '../../shared/array/array3.ts';
import { loadModelCard } from '../../shared/infer/model.ts';
import { InferencePool } from '../../shared/infer/thread.ts';
import { gaussianMap, slidingWindow, tileSteps } from '../../shared/infer/sliding.ts';

const DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../fixtures/golden');
const spec = JSON.parse(fs.readFileSync(path.join(DIR, 'golden.json'), 'utf8')) as {
  input: { file: string; shape: Vec3 }; patch: Vec3; step: number; steps: number[][]; padded_shape: Vec3;
  gaussian: string; outputs: Record<'nomirror' | 'mirror', { probabilities: string }>; output_shape: number[];
  check: { input_shape: number[]; input: string; output: string };
};
const f32 = (f: string) => {
  const b = fs.readFileSync(path.join(DIR, f));
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
};
const maxDiff = (a: Float32Array, b: Float32Array) => {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
};

test('golden: Gaussian importance map and tile positions equal nnU-Net\'s', () => {
  const g = gaussianMap(spec.patch);
  const ref = f32(spec.gaussian);
  // nnU-Net's map peaks at 10 (value_scaling_factor); Tessera's at 1. The scale cancels.
  const scaled = ref.map((v) => v / 10);
  assert.ok(maxDiff(g, scaled) < 1e-6, `gaussian max |Δ| ${maxDiff(g, scaled)}`);
  assert.deepEqual([0, 1, 2].map((a) => tileSteps(spec.padded_shape[a], spec.patch[a], spec.step)), spec.steps);
});

test('golden: slidingWindow on the ONNX export matches the PyTorch nnU-Net reference to 1e-4 (no mirroring, mirroring)', async (t) => {
  const onnx = path.join(DIR, 'model.onnx');
  const card = loadModelCard(onnx);
  const pool = await InferencePool.open({ golden: { path: onnx, input: card.inputName, output: card.outputName } }, { provider: 'cpu', threads: 1, intraOpThreads: 1 });
  t.after(() => pool.close());
  const model = pool.model('golden', card);
  // The export itself first: one direct evaluation equals torch's.
  const direct = await model.run(f32(spec.check.input), spec.check.input_shape);
  assert.ok(maxDiff(direct.data, f32(spec.check.output)) < 1e-5, 'ONNX export equals the torch network');

  const input = array3(f32(spec.input.file), spec.input.shape);
  const n = input.data.length;
  for (const [name, mirror] of [['nomirror', false], ['mirror', true]] as const) {
    const probs = await slidingWindow(input, model, { patch: spec.patch, step: spec.step, mirror, batch: 3, inFlight: 2 });
    const ref = f32(spec.outputs[name].probabilities); // [3, D, H, W]: background, a, b
    assert.equal(probs.length, 2, 'foreground channels of a 3-class softmax');
    for (let c = 0; c < 2; c++) {
      const d = maxDiff(probs[c].data, ref.subarray((c + 1) * n, (c + 2) * n));
      assert.ok(d < 1e-4, `${name} class ${c + 1}: max |Δp| ${d}`);
    }
  }
});
