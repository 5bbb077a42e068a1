// Canvas isolation is a property of the stage-two network: packed crops cannot change each
// other's output when the net is local (batch norm folded into its convs), and always can when it
// normalises over its whole input (instance norm, as nnU-Net's nets and the stage-one nets do).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadModelCard, windowNormalization } from '../../shared/infer/model.ts';
import { InferencePool } from '../../shared/infer/thread.ts';
import { mulberry32 } from '../../shared/synth/random.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const model = (name: string) => path.join(ROOT, 'models', `${name}.onnx`);

test('windowNormalization names the operator that normalises over the whole input, and nothing for a local net', () => {
  for (const kind of ['em', 'ct']) {
    assert.equal(windowNormalization(model(`synthetic-${kind}-lowres`)), 'InstanceNormalization');
    assert.equal(windowNormalization(model(`synthetic-${kind}-fullres`)), undefined);
  }
  assert.equal(windowNormalization(path.join(ROOT, 'test', 'fixtures', 'golden', 'model.onnx')), undefined);
});

// Two inputs that differ only in x < 32; the output at x >= 160 (128 voxels away, beyond any
// shipped net's receptive field) is bit-identical for a local net and differs for an
// instance-normalised one.
test('shipped stage-two nets are local: a change beyond the receptive field leaves the output bit-identical', async (t) => {
  const nets = ['synthetic-em-fullres', 'synthetic-ct-fullres', 'synthetic-em-lowres'];
  const pool = await InferencePool.open(
    Object.fromEntries(nets.map((n) => {
      const card = loadModelCard(model(n));
      return [n, { path: model(n), input: card.inputName, output: card.outputName }];
    })),
    { provider: 'cpu', threads: 1, intraOpThreads: 1 },
  );
  t.after(() => pool.close());
  const dims = [1, 1, 16, 64, 256];
  const [D, H, W] = dims.slice(2);
  const rnd = mulberry32(5);
  const a = Float32Array.from({ length: D * H * W }, () => rnd() * 2 - 1);
  const b = a.slice();
  for (let i = 0; i < b.length; i++) if (i % W < 32) b[i] = rnd() * 2 - 1;
  for (const n of nets) {
    const m = pool.model(n, loadModelCard(model(n)));
    const [oa, ob] = [await m.run(a, dims), await m.run(b, dims)];
    const k = oa.dims[1];
    let far = 0, near = 0;
    for (let c = 0; c < k; c++) {
      for (let i = 0; i < D * H * W; i++) {
        const j = c * D * H * W + i;
        if (oa.data[j] === ob.data[j]) continue;
        if (i % W >= 160) far++;
        else near++;
      }
    }
    assert.ok(near > 0, `${n}: the change must reach the output near it`);
    if (n.endsWith('fullres')) assert.equal(far, 0, `${n}: ${far} output values 128+ voxels away changed`);
    else assert.ok(far > 0, `${n} (instance norm): the far output should change`);
  }
});
