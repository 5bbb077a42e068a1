// tessera tune's pure parts: the search space and its deterministic draw, successive halving's
// promotion, the Pareto front and the choice rules, the sample ROIs, the tuned config file.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadConfig } from '../../shared/config/load.ts';
import { type Objective, type Point, candidates, canonical, choose, dominates, paretoFront, promote, rank, rungRois, searchSpace, spreadRois } from '../../shared/tune/search.ts';
import { tunedConfig } from '../../shared/tune/output.ts';
import { type TrialResult, sampleRois } from '../../shared/tune/tune.ts';
import { writeMask } from '../helpers/mask.ts';
import { boxToString } from '../../shared/geometry/box.ts';
import { networkVoxels } from '../../shared/tune/trials.ts';
import type { RunReport } from '../../shared/run/embedded.ts';

const em = loadConfig({ preset: 'synthetic-em' });

test('the search space starts every dimension at the starting config\'s value and has no duplicates', () => {
  const space = searchSpace(em);
  const at = (k: string) => space.find((d) => d.key === k)!.values;
  assert.equal(at('boxes.roiThreshold')[0], em.boxes.roiThreshold);
  assert.deepEqual(at('pack.context')[0], em.pack.context);
  assert.deepEqual(at('pack.crop')[0], em.pack.crop);
  for (const d of space) assert.equal(new Set(d.values.map((v) => JSON.stringify(v))).size, d.values.length, d.key);
  // Context is searched per axis: z-contexts 0, 1, 2 each appear.
  assert.deepEqual([...new Set(at('pack.context').map((v) => (v as number[])[0]))].sort(), [0, 1, 2]);
  for (const v of at('pack.crop') as number[][]) assert.ok(v.every((x, a) => x >= 1 && x <= em.pack.canvas[a]), JSON.stringify(v));
});

test('candidates: trial 0 is the starting config; the draw is deterministic given the seed and differs with it', () => {
  const space = searchSpace(em);
  const a = candidates(space, 10, 1), b = candidates(space, 10, 1), c = candidates(space, 10, 2);
  assert.equal(a.length, 10);
  assert.deepEqual(a[0], {});
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
  assert.equal(new Set(a.map(canonical)).size, 10, 'no candidate twice');
  // A refused candidate is skipped, not counted.
  const onlySmall = candidates(space, 5, 1, (o) => !o.pack?.maxPerCanvas);
  assert.equal(onlySmall.length, 5);
  assert.ok(onlySmall.every((o) => !o.pack?.maxPerCanvas));
});

const P = (index: number, cost: number, agreement: number): Point => ({ index, cost, agreement });
const pts = [P(0, 0.2, 0.97), P(1, 0.1, 0.95), P(2, 0.3, 0.99), P(3, 0.25, 0.96), P(4, 0.1, 0.93), P(5, 0.05, 0.8)];

test('the Pareto front keeps exactly the non-dominated points, cheapest first', () => {
  const front = paretoFront(pts).map((p) => p.index);
  assert.deepEqual(front, [5, 1, 0, 2]);
  for (const p of pts) {
    const dominated = pts.some((q) => dominates(q, p));
    assert.equal(front.includes(p.index), !dominated, `trial ${p.index}`);
  }
  assert.deepEqual(paretoFront([P(0, Infinity, 1), P(1, 0.5, 0.9)]).map((p) => p.index), [1], 'failed trials are off the front');
});

test('choice: --max-loss picks the fewest network voxels within the loss; --min-speedup the best agreement at the speedup', () => {
  const loss = (l: number): Objective => ({ kind: 'max-loss', loss: l });
  const sp = (s: number): Objective => ({ kind: 'min-speedup', speedup: s });
  assert.equal(choose(pts, loss(0.05)).point.index, 1);
  assert.equal(choose(pts, loss(0.03)).point.index, 0);
  assert.equal(choose(pts, loss(0.01)).point.index, 2);
  assert.deepEqual(choose(pts, loss(0.001)), { point: pts[2], feasible: false }, 'none within: the closest, said so');
  assert.equal(choose(pts, sp(5)).point.index, 0);
  assert.equal(choose(pts, sp(10)).point.index, 1);
  assert.deepEqual(choose(pts, sp(100)), { point: pts[5], feasible: false }, 'none fast enough: the fastest, said so');
  // The choice is on the front and at least as good as trial 0 by the same rule.
  const front = new Set(paretoFront(pts).map((p) => p.index));
  for (const o of [loss(0.05), loss(0.03), loss(0.01), loss(0.001), sp(5), sp(10), sp(100)]) {
    const c = choose(pts, o).point;
    assert.ok(front.has(c.index), JSON.stringify(o));
    assert.ok(rank(pts, o).indexOf(c) <= rank(pts, o).findIndex((p) => p.index === 0));
  }
});

test('successive halving promotes the better third and always trial 0', () => {
  const o: Objective = { kind: 'max-loss', loss: 0.05 };
  assert.deepEqual(promote(pts, o), [0, 1]);
  assert.deepEqual(promote(pts.filter((p) => p.index !== 0), o), [1, 3], 'without trial 0: the better third alone');
  assert.deepEqual(rungRois(0, 3), [0]);
  assert.deepEqual(rungRois(1, 3), [0, 1]);
  assert.deepEqual(rungRois(5, 2), [0, 1]);
});

test('sample ROIs: one chunk each, inside the volume, on the chunk grid, spread, deduplicated', () => {
  const rois = spreadRois([64, 1024, 1024], [32, 512, 512], 2);
  assert.deepEqual(rois, [{ begin: [0, 0, 0], end: [32, 512, 512] }, { begin: [32, 512, 512], end: [64, 1024, 1024] }]);
  assert.deepEqual(spreadRois([32, 256, 256], [32, 512, 512], 3), [{ begin: [0, 0, 0], end: [32, 256, 256] }]);
  const three = spreadRois([100, 2000, 3000], [32, 512, 512], 3);
  assert.equal(three.length, 3);
  const shape = [100, 2000, 3000], chunk = [32, 512, 512];
  for (const r of three) {
    for (let a = 0; a < 3; a++) {
      assert.ok(r.begin[a] >= 0 && r.end[a] <= shape[a] && r.end[a] - r.begin[a] === chunk[a]);
      assert.ok(r.begin[a] % chunk[a] === 0 || r.end[a] === shape[a], JSON.stringify(r));
    }
  }
  assert.ok(three[0].begin[2] < three[1].begin[2] && three[1].begin[2] < three[2].begin[2], 'spread');
});

test('the tuned config extends the preset, or merges into the user\'s config with its relative paths rewritten', () => {
  const chosen = { overrides: { boxes: { roiThreshold: 0.03 }, pack: { context: [1, 4, 4] } } } as unknown as TrialResult;
  assert.deepEqual(tunedConfig({ preset: 'synthetic-em', out: '/x/t.json' }, chosen), { extends: 'synthetic-em', mode: 'two-stage', boxes: { roiThreshold: 0.03 }, pack: { context: [1, 4, 4] } });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tune-unit-'));
  fs.mkdirSync(path.join(dir, 'cfg'));
  const file = path.join(dir, 'cfg', 'c.json');
  fs.writeFileSync(file, JSON.stringify({ extends: 'synthetic-em', models: { fullres: 'nets/f.onnx', lowres: '/abs/l.onnx' }, pack: { gap: [0, 2, 2] } }));
  const t = tunedConfig({ config: file, out: path.join(dir, 'out', 't.json') }, chosen);
  assert.deepEqual(t, { extends: 'synthetic-em', mode: 'two-stage', models: { fullres: '../cfg/nets/f.onnx', lowres: '/abs/l.onnx' }, pack: { gap: [0, 2, 2], context: [1, 4, 4] }, boxes: { roiThreshold: 0.03 } });
  fs.rmSync(dir, { recursive: true, force: true });
});

test('the tuned config loads as a valid config with the chosen settings and the preset\'s models', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tune-unit-'));
  const out = path.join(dir, 'TUNED.json');
  const chosen = { overrides: { boxes: { nmmThreshold: 0.5 }, pack: { context: [2, 8, 8], maxPerCanvas: 2 } } } as unknown as TrialResult;
  fs.writeFileSync(out, JSON.stringify(tunedConfig({ preset: 'synthetic-em', out }, chosen)));
  const c = loadConfig({ file: out });
  assert.equal(c.mode, 'two-stage');
  assert.equal(c.boxes.nmmThreshold, 0.5);
  assert.deepEqual(c.pack.context, [2, 8, 8]);
  assert.equal(c.pack.maxPerCanvas, 2);
  assert.equal(c.models.fullres, em.models.fullres);
  fs.rmSync(dir, { recursive: true, force: true });
});

test('network voxels: one-stage tiles × patch; two-stage canvases at their run extent plus stage one\'s tiles', () => {
  const one = { ...em, mode: 'one-stage' as const };
  const roi = { begin: [0, 0, 0] as const, end: [32, 256, 256] as const };
  assert.equal(networkVoxels(one, { oneStage: { tiles: 27 } } as unknown as RunReport, roi as never), 27 * 16 * 128 * 128);
  // 2 canvases of 16×144×144, half filled over all, 0.8 filled where the network ran: it ran 2·16·144²·0.5/0.8.
  const two = networkVoxels(em, { twoStage: { canvases: 2, fillRatio: 0.5, runFillRatio: 0.8 } } as unknown as RunReport, roi as never);
  // Stage one at 40×16×16 nm: 32×64×64 low-res voxels, one 32×128×128 tile.
  assert.equal(two, Math.round((2 * 16 * 144 * 144 * 0.5) / 0.8) + 32 * 128 * 128);
});

test('with a tissue mask the samples are chunks with tissue; without, spread over the volume', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tune-mask-'));
  const input = 'virtual:em?shape=32,1024,1024&seed=3';
  // Tissue only in the y ≥ 512, x ≥ 512 quarter (mask at 1×16×16 the input's voxel size).
  const mask = await writeMask(path.join(dir, 'mask.zarr'), { shape: [32, 64, 64], inside: (_z, y, x) => y >= 32 && x >= 32, kind: 'array' });
  const plain = await sampleRois({ input, samples: 2 }, em);
  assert.deepEqual(plain.map(boxToString), ['0:32,0:512,0:512', '0:32,512:1024,512:1024']);
  const masked = await sampleRois({ input, samples: 2 }, loadConfig({ preset: 'synthetic-em', overrides: { mask } }));
  assert.deepEqual(masked.map(boxToString), ['0:32,512:1024,512:1024']);
  fs.rmSync(dir, { recursive: true, force: true });
});
