// Fake Models for inference tests: deterministic logits computed from the input, no ONNX.
import type { Model, ModelCard } from '../../shared/infer/model.ts';
import type { Vec3 } from '../../shared/geometry/box.ts';

export function fakeCard(patch: Vec3, activation: 'softmax' | 'sigmoid' = 'softmax', classes = 2, output: 'logits' | 'probabilities' = 'logits'): ModelCard {
  return {
    name: 'fake', spacing: [1, 1, 1], inputName: 'input', outputName: 'logits',
    classes: Array.from({ length: classes }, (_, i) => `c${i}`), output, activation, channels: 1,
    normalization: { kind: 'zscore', mean: 0, std: 1 }, patchSize: patch, divisor: [1, 1, 1], sha256: '',
  };
}

export interface Call { dims: number[]; input: Float32Array }

/**
 * A model whose K output channels are `logits(c, x, i)` of the input voxel x at flat index i
 * of each patch (pointwise when `logits` ignores i). Optional random delays reorder completions.
 */
export function fakeModel(
  patch: Vec3,
  k: number,
  logits: (c: number, x: number, i: number, sample: Float32Array) => number,
  o: { activation?: 'softmax' | 'sigmoid'; output?: 'logits' | 'probabilities'; delay?: () => number; calls?: Call[] } = {},
): Model {
  const card = fakeCard(patch, o.activation ?? 'softmax', k, o.output);
  return {
    card,
    async run(input, dims) {
      o.calls?.push({ dims: [...dims], input: input.slice() });
      const [n, c, d, h, w] = dims;
      if (c !== 1 || d !== patch[0] || h !== patch[1] || w !== patch[2]) throw new Error(`bad dims ${dims}`);
      const vox = d * h * w;
      const out = new Float32Array(n * k * vox);
      for (let b = 0; b < n; b++) {
        const sample = input.subarray(b * vox, (b + 1) * vox);
        for (let ch = 0; ch < k; ch++) {
          for (let i = 0; i < vox; i++) out[(b * k + ch) * vox + i] = logits(ch, sample[i], i, sample);
        }
      }
      if (o.delay) await new Promise((r) => setTimeout(r, o.delay!()));
      return { data: out, dims: [n, k, d, h, w] };
    },
  };
}
