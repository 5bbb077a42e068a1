// Canvas isolation is a property of the stage-two network: packed crops cannot change each
// other's output when the net is local (batch norm folded into its convs), and always can when it
// normalises over its whole input (instance norm, as nnU-Net's nets and the stage-one nets do).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-node';
import { loadModelCard } from '../../shared/infer/model.ts';
import { probeReach } from '../../shared/infer/card.ts';
import * as fs from 'node:fs';
import * as os from 'node:os';
import { InferencePool } from '../../shared/infer/thread.ts';
import { mulberry32 } from '../../shared/synth/random.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const model = (name: string) => path.join(ROOT, 'models', `${name}.onnx`);

test('a model card names the operator that normalises over the whole input, and nothing for a local net', () => {
  for (const kind of ['em', 'ct']) {
    assert.equal(loadModelCard(model(`synthetic-${kind}-lowres`)).windowNorm, 'InstanceNormalization');
    assert.equal(loadModelCard(model(`synthetic-${kind}-fullres`)).windowNorm, undefined);
  }
  assert.equal(loadModelCard(path.join(ROOT, 'test', 'fixtures', 'golden', 'model.onnx')).windowNorm, undefined);
});

test('reach: the shipped cards hold what the probe measures — a local net\'s exact reach, a window-normalising one\'s lower bound; a malformed reach is refused', async () => {
  for (const n of ['synthetic-ct-fullres', 'synthetic-ct-lowres']) {
    const card = loadModelCard(model(n));
    const s = await ort.InferenceSession.create(model(n), { executionProviders: ['cpu'] });
    const got = await probeReach(s, card.inputName, card.outputName, card.patchSize, card.channels);
    await s.release();
    assert.deepEqual(got, card.reach, n);
    // A local net changes nothing past its reach; instance norm reaches everything the probe holds.
    assert.equal(got.atLeast, n.endsWith('lowres'), n);
    if (!got.atLeast) assert.ok(got.voxels.every((v, a) => v > 0 && v < 2 * card.patchSize[a]), `${n}: ${got.voxels}`);
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tessera-reach-'));
  try {
    const onnx = path.join(dir, 'net.onnx');
    fs.copyFileSync(model('synthetic-ct-fullres'), onnx);
    const card = JSON.parse(fs.readFileSync(model('synthetic-ct-fullres').replace(/\.onnx$/, '.json'), 'utf8'));
    fs.writeFileSync(path.join(dir, 'net.json'), JSON.stringify({ ...card, reach: { voxels: [1, 2], atLeast: false } }));
    assert.throws(() => loadModelCard(onnx), /key "reach" must be \{voxels/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

// Two inputs that differ only in x < 32; the output at x >= 160 (128 voxels away, beyond any
// shipped net's receptive field) is bit-identical for a local net and differs for an
// instance-normalised one.
test('shipped stage-two nets are local: a change beyond the receptive field leaves the output bit-identical', async () => {
  const nets = ['synthetic-em-fullres', 'synthetic-ct-fullres', 'synthetic-em-lowres'];
  const dims = [1, 1, 16, 64, 256];
  const [D, H, W] = dims.slice(2);
  const rnd = mulberry32(5);
  const a = Float32Array.from({ length: D * H * W }, () => rnd() * 2 - 1);
  const b = a.slice();
  for (let i = 0; i < b.length; i++) if (i % W < 32) b[i] = rnd() * 2 - 1;
  for (const n of nets) {
    const card = loadModelCard(model(n));
    const s = await ort.InferenceSession.create(model(n), { executionProviders: ['cpu'], intraOpNumThreads: 1 });
    const run = async (x: Float32Array) => (await s.run({ [card.inputName]: new ort.Tensor('float32', x, dims) }))[card.outputName];
    const [oa, ob] = [await run(a), await run(b)];
    await s.release();
    const da = oa.data as Float32Array, db = ob.data as Float32Array;
    let far = 0, near = 0;
    for (let j = 0; j < da.length; j++) {
      if (da[j] === db[j]) continue;
      if ((j % (D * H * W)) % W >= 160) far++;
      else near++;
    }
    assert.ok(near > 0, `${n}: the change must reach the output near it`);
    if (n.endsWith('fullres')) assert.equal(far, 0, `${n}: ${far} output values 128+ voxels away changed`);
    else assert.ok(far > 0, `${n} (instance norm): the far output should change`);
  }
});

test('an inference pool runs several models on one thread; a reused (detached) input and a dead thread fail clearly', async () => {
  const nets = ['synthetic-em-fullres', 'synthetic-em-lowres'];
  const pool = await InferencePool.open(
    Object.fromEntries(nets.map((n) => {
      const card = loadModelCard(model(n));
      return [n, { path: model(n), input: card.inputName, output: card.outputName }];
    })),
    { provider: 'cpu', threads: 1, intraOpThreads: 1 },
  );
  try {
    const dims = [1, 1, 16, 64, 64];
    const a = new Float32Array(16 * 64 * 64).fill(0.25);
    for (const n of nets) {
      const r = await pool.run(n, a.slice(), dims);
      assert.deepEqual(r.dims.slice(2), dims.slice(2), `${n}: output spans the input`);
    }
    // The buffer went to the thread: a second call with the same array is refused by name.
    const once = a.slice();
    await pool.run(nets[0], once, dims);
    await assert.rejects(pool.run(nets[0], once, dims), /detached/);
    // A thread that ends without an error event fails its request and every later one.
    const pending = pool.run(nets[0], a.slice(), dims);
    await (pool as unknown as { slots: Array<{ worker: { terminate(): Promise<number> } }> }).slots[0].worker.terminate();
    await assert.rejects(pending, /inference thread .* exited/);
    await assert.rejects(pool.run(nets[0], a.slice(), dims), /exited/);
    assert.match(pool.failure?.message ?? '', /exited/, 'a worker reads why the pool is broken');
  } finally {
    await pool.close();
  }
});
