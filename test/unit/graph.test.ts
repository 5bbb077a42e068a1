import { test } from 'node:test';
import assert from 'node:assert/strict';
import { type Box, type Vec3, box, boxOfShape, intersect, isEmpty, volumeOf } from '../../shared/geometry/box.ts';
import { type Range3, range3 } from '../../shared/geometry/grid.ts';
import { loadConfig } from '../../shared/config/load.ts';
import { PRESET_NAMES, preset } from '../../shared/config/presets.ts';
import type { TesseraConfig } from '../../shared/config/config.ts';
import { ConfigError } from '../../shared/errors.ts';
import { type TaskGraph, boxesReach, checkChunkForBoxes, rangeVoxels, stage1Block, stage2Block, stage2Chunks, taskGraph } from '../../shared/tasks/graph.ts';
import { type KindSpec, Scheduler, taskId } from '../../shared/scheduler.ts';
import { randInt, rng } from '../helpers/rng.ts';

// ---------------------------------------------------------------- brute-force helpers

function indicesOf(lo: Vec3, hi: Vec3): Vec3[] {
  const out: Vec3[] = [];
  for (let z = lo[0]; z < hi[0]; z++) for (let y = lo[1]; y < hi[1]; y++) for (let x = lo[2]; x < hi[2]; x++) out.push([z, y, x]);
  return out;
}

const key = (i: Vec3) => i.join(',');
const setOf = (r: Range3) => new Set(indicesOf(r.lo, r.hi).map(key));

function cellOf(i: Vec3, chunk: Vec3): Box {
  return box([i[0] * chunk[0], i[1] * chunk[1], i[2] * chunk[2]], [(i[0] + 1) * chunk[0], (i[1] + 1) * chunk[1], (i[2] + 1) * chunk[2]]);
}

/** Chunks of the volume's grid (every chunk whose cell meets the volume), by scanning far enough. */
function volumeChunks(shape: Vec3, chunk: Vec3): Vec3[] {
  const vol = boxOfShape(shape);
  const lim = [0, 1, 2].map((a) => Math.ceil(shape[a] / chunk[a]) + 2) as unknown as Vec3;
  return indicesOf([-1, -1, -1], lim).filter((i) => !isEmpty(intersect(cellOf(i, chunk), vol)));
}

const cheb = (a: Vec3, b: Vec3) => Math.max(Math.abs(a[0] - b[0]), Math.abs(a[1] - b[1]), Math.abs(a[2] - b[2]));

function kind(g: TaskGraph, name: string): KindSpec {
  const k = g.kinds.find((x) => x.name === name);
  assert.ok(k, `graph has kind ${name}`);
  return k;
}

function randomRoi(r: () => number, shape: Vec3): Box {
  const begin: number[] = [];
  const end: number[] = [];
  for (let a = 0; a < 3; a++) {
    const b = randInt(r, 0, shape[a]);
    begin.push(b);
    end.push(randInt(r, b + 1, shape[a] + 1));
  }
  return box(begin as unknown as Vec3, end as unknown as Vec3);
}

/** synthetic-em with 256-voxel chunks in y, x (many chunks on a small volume; still valid for box merging). */
function emConfig(overrides: Record<string, unknown> = {}): TesseraConfig {
  return loadConfig({ preset: 'synthetic-em', overrides: { io: { chunk: [32, 256, 256] }, ...overrides } });
}

const SEGMENTATION_KINDS = ['stage1', 'boxes', 'stage2', 'paste', 'predict', 'blend'];

// ---------------------------------------------------------------- stage1Block

test('stage1Block rounds the factor per axis, never below one chunk; stage1.block in voxels must be whole chunks', () => {
  const c = emConfig();
  assert.deepEqual(stage1Block(c, [1, 4, 4]), [1, 4, 4]);
  assert.deepEqual(stage1Block(c, [0.3, 2.5, 1.49]), [1, 3, 1]);
  assert.deepEqual(stage1Block(c, [1.8067, 2.032, 2.032]), [2, 2, 2]);
  assert.deepEqual(stage1Block(c, [0, 5.2, 0.9]), [1, 5, 1]);
  // io.chunk 32×256×256: a block of 64×512×256 voxels is 2×2×1 chunks, whatever the factor.
  assert.deepEqual(stage1Block(emConfig({ stage1: { block: [64, 512, 256] } }), [1, 4, 4]), [2, 2, 1]);
  assert.throws(() => stage1Block(emConfig({ stage1: { block: [64, 500, 256] } }), [1, 4, 4]), /stage1\.block.*not a multiple of io\.chunk.*along y.*stage1\.block \[64,512,256\]/);
});

// ---------------------------------------------------------------- one-stage

test('one-stage: predict on the global tile grid, then blend, over exactly the chunks meeting the ROI (predict grown by one towards the origin)', () => {
  const c = emConfig({ mode: 'one-stage' });
  const shape: Vec3 = [150, 1300, 1800];
  const r = rng(1);
  for (let t = 0; t < 20; t++) {
    const roi = t === 0 ? boxOfShape(shape) : randomRoi(r, shape);
    const g = taskGraph(c, shape, roi, [1, 4, 4]);
    const seg = g.kinds.filter((k) => SEGMENTATION_KINDS.includes(k.name)).map((k) => k.name);
    assert.deepEqual(seg, ['predict', 'blend']);
    assert.equal(g.kinds[0].name, 'predict', 'predict comes first (every other kind depends on it)');
    const p = kind(g, 'predict');
    assert.deepEqual(p.block, [1, 1, 1]);
    assert.ok(!g.deps.some((d) => d.kind === 'predict'), 'predict needs nothing');
    assert.deepEqual(g.deps.find((d) => d.kind === 'blend'), { kind: 'blend', needs: 'predict', reach: [1, 1, 1] });
    const meets = (i: Vec3) => !isEmpty(intersect(cellOf(i, c.io.chunk), roi));
    const want = volumeChunks(shape, c.io.chunk).filter(meets).map(key).sort();
    assert.deepEqual([...setOf(kind(g, 'blend').range)].sort(), want, `roi ${JSON.stringify(roi)}`);
    // A tile owned by the chunk before reaches into the ROI's first chunk: predict runs there too.
    const grown = volumeChunks(shape, c.io.chunk).filter((i) => [0, 1].some((dz) => [0, 1].some((dy) => [0, 1].some((dx) => meets([i[0] + dz, i[1] + dy, i[2] + dx]))))).map(key).sort();
    assert.deepEqual([...setOf(p.range)].sort(), grown);
    assert.deepEqual(g.stage1Block, [1, 1, 1]);
    assert.deepEqual(g.chunk, c.io.chunk);
    assert.deepEqual(g.volume, boxOfShape(shape));
  }
});

test('one-stage never checks the chunk against box merging (a tiny chunk is fine), only that a tile fits in it', () => {
  const c = emConfig({ mode: 'one-stage', io: { chunk: [16, 128, 128] } });
  assert.doesNotThrow(() => taskGraph(c, [64, 512, 512], boxOfShape([64, 512, 512]), [1, 4, 4]));
  const small = emConfig({ mode: 'one-stage', io: { chunk: [16, 64, 128], outputChunk: [16, 64, 128] } });
  assert.throws(() => taskGraph(small, [64, 512, 512], boxOfShape([64, 512, 512]), [1, 4, 4]), /baseline\.patch.*longer than io\.chunk/);
});

// ---------------------------------------------------------------- two-stage

function checkTwoStage(c: TesseraConfig, shape: Vec3, roi: Box, factor: Vec3): TaskGraph {
  const g = taskGraph(c, shape, roi, factor);
  const chunk = c.io.chunk;
  const what = `shape ${shape} roi ${JSON.stringify(roi)} factor ${factor}`;
  const seg = g.kinds.filter((k) => SEGMENTATION_KINDS.includes(k.name)).map((k) => k.name);
  assert.deepEqual(seg, ['stage1', 'boxes', 'stage2', 'paste'], what);
  const s1 = kind(g, 'stage1');
  const bx = kind(g, 'boxes');
  const s2 = kind(g, 'stage2');
  const paste = kind(g, 'paste');
  const s = [0, 1, 2].map((a) => Math.max(1, Math.round(factor[a]))) as unknown as Vec3;
  assert.deepEqual(s1.block, s);
  assert.deepEqual(g.stage1Block, s);
  // Boxes are planned per stage-one block.
  assert.deepEqual(bx.block, s);
  assert.deepEqual(paste.block, [1, 1, 1]);
  const reach = boxesReach(c, factor);
  // Stage two may run on blocks of several chunks (pack.chunks); [1,1,1] is one chunk per task.
  const p = s2.block;

  // Dependencies among the segmentation kinds.
  const dep = (k: string, n: string) => g.deps.find((d) => d.kind === k && d.needs === n)?.reach;
  assert.deepEqual(dep('boxes', 'stage1'), reach);
  assert.deepEqual(dep('stage2', 'boxes'), [0, 0, 0]);
  assert.deepEqual(dep('paste', 'stage2'), [1, 1, 1]);
  for (const d of g.deps) {
    if (SEGMENTATION_KINDS.includes(d.kind)) assert.ok(SEGMENTATION_KINDS.includes(d.needs), `${d.kind} needs ${d.needs}`);
  }

  const vol = volumeChunks(shape, chunk);
  const blockOf = (i: Vec3, b: Vec3) => [0, 1, 2].map((a) => Math.floor(i[a] / b[a])) as unknown as Vec3;
  // paste: the chunks meeting the ROI.
  const pasteWant = vol.filter((i) => !isEmpty(intersect(cellOf(i, chunk), roi)));
  assert.deepEqual([...setOf(paste.range)].sort(), pasteWant.map(key).sort(), `paste, ${what}`);
  // The volume's chunks within one chunk of a paste chunk (a box owned there may reach the ROI).
  const grown = vol.filter((i) => pasteWant.some((q) => cheb(i, q) <= 1));
  // stage2: exactly the blocks holding those chunks.
  const s2Want = new Set(grown.map((i) => key(blockOf(i, p))));
  assert.deepEqual([...setOf(s2.range)].sort(), [...s2Want].sort(), `stage2, ${what}`);
  // boxes: the stage-one blocks holding every chunk of those stage-two blocks (a stage-two block packs all its chunks' boxes).
  const inS2 = vol.filter((i) => s2Want.has(key(blockOf(i, p))));
  const boxesWant = [...new Set(inS2.map((i) => key(blockOf(i, s))))].sort();
  assert.deepEqual([...setOf(bx.range)].sort(), boxesWant, `boxes, ${what}`);
  if (p.every((v) => v === 1)) {
    assert.deepEqual([...setOf(s2.range)].sort(), grown.map(key).sort(), `stage2 = ROI chunks grown by one, ${what}`);
  }

  // stage1: every chunk of the volume within the boxes reach of a boxes block's chunks lies in a block of the range...
  const s1Set = setOf(s1.range);
  const needed = new Set<string>();
  const near = (n: Vec3, q: Vec3) => [0, 1, 2].every((a) => Math.abs(n[a] - q[a]) <= reach[a]);
  const bxChunks = inS2.length ? vol.filter((i) => setOf(bx.range).has(key(blockOf(i, s)))) : [];
  for (const n of vol) {
    const b = bxChunks.find((q) => near(n, q));
    if (!b) continue;
    const blk = blockOf(n, s);
    assert.ok(s1Set.has(key(blk)), `chunk ${n} (near boxes chunk ${b}) is in stage1 block ${blk}, outside the range; ${what}`);
    needed.add(key(blk));
  }
  // ...and the range holds nothing else (no block that no boxes task needs, none outside the volume).
  assert.deepEqual([...s1Set].sort(), [...needed].sort(), `stage1 range is minimal; ${what}`);
  return g;
}

test('two-stage ranges: paste = ROI chunks, stage2 = grown by one chunk (clipped), boxes = the stage-one blocks of those, stage1 blocks cover their view', () => {
  // One chunk per stage-two task: boxes and stage2 are the ROI's chunks grown by one, exactly.
  const c = emConfig({ pack: { chunks: [1, 1, 1] } });
  const r = rng(2);
  const cases: Array<{ shape: Vec3; factor: Vec3 }> = [
    { shape: [150, 1300, 1800], factor: [1, 4, 4] },
    { shape: [150, 1300, 1800], factor: [2, 2, 2] },
    { shape: [96, 768, 1024], factor: [1, 3, 2] },
    { shape: [33, 257, 2000], factor: [1.4, 2.6, 1] },
  ];
  for (const { shape, factor } of cases) {
    checkTwoStage(c, shape, boxOfShape(shape), factor);
    for (let t = 0; t < 12; t++) checkTwoStage(c, shape, randomRoi(r, shape), factor);
  }
});

test('two-stage ranges with stage two on blocks of chunks (the default pack.chunks, and a skewed one)', () => {
  const r = rng(12);
  for (const overrides of [{}, { pack: { chunks: [2, 1, 3] } }]) {
    const c = emConfig(overrides);
    for (const shape of [[150, 1300, 1800], [33, 257, 2000]] as Vec3[]) {
      checkTwoStage(c, shape, boxOfShape(shape), [1, 4, 4]);
      for (let t = 0; t < 10; t++) checkTwoStage(c, shape, randomRoi(r, shape), [1, 4, 4]);
    }
  }
});

test('pack.block (voxels) sets the stage-two block whatever io.chunk divides it; a block that is not whole chunks is refused with a suggestion', () => {
  for (const chunk of [[32, 256, 256], [32, 256, 512], [32, 512, 512]] as Vec3[]) {
    const c = emConfig({ io: { chunk }, pack: { block: [32, 1024, 1024] } });
    assert.deepEqual(stage2Chunks(c), [1, 1024 / chunk[1], 1024 / chunk[2]]);
    assert.deepEqual(stage2Block(c), [32, 1024, 1024]);
    assert.deepEqual(kind(taskGraph(c, [64, 1024, 1024], boxOfShape([64, 1024, 1024]), [1, 4, 4]), 'stage2').block, stage2Chunks(c));
  }
  // Unset: pack.chunks chunks.
  assert.deepEqual(stage2Chunks(emConfig({ pack: { chunks: [1, 3, 2] } })), [1, 3, 2]);
  assert.throws(() => stage2Chunks(emConfig({ pack: { block: [32, 600, 512] } })), (e: unknown) => e instanceof ConfigError && e.key === 'pack.block' && /along y/.test(e.message) && /\[32,512,512\]/.test(e.message));
});

test('two-stage, whole volume: every kind covers every chunk (stage1: every block)', () => {
  const c = emConfig({ pack: { chunks: [1, 1, 1] } });
  const shape: Vec3 = [100, 1100, 700];
  const g = checkTwoStage(c, shape, boxOfShape(shape), [1, 4, 4]);
  const n = [4, 5, 3] as const; // ceil(100/32), ceil(1100/256), ceil(700/256)
  for (const name of ['stage2', 'paste']) assert.deepEqual(kind(g, name).range, range3([0, 0, 0], [n[0], n[1], n[2]]));
  for (const name of ['stage1', 'boxes']) assert.deepEqual(kind(g, name).range, range3([0, 0, 0], [4, 2, 1]));
});

test('two-stage: a larger ROI reuses every task of a smaller one (ranges nest)', () => {
  const c = emConfig();
  const shape: Vec3 = [150, 1300, 1800];
  const r = rng(3);
  for (let t = 0; t < 20; t++) {
    const outer = randomRoi(r, shape);
    const inner = randomRoi(r, [outer.end[0] - outer.begin[0], outer.end[1] - outer.begin[1], outer.end[2] - outer.begin[2]]);
    const innerAbs = box(
      [inner.begin[0] + outer.begin[0], inner.begin[1] + outer.begin[1], inner.begin[2] + outer.begin[2]],
      [inner.end[0] + outer.begin[0], inner.end[1] + outer.begin[1], inner.end[2] + outer.begin[2]],
    );
    const go = taskGraph(c, shape, outer, [1, 4, 4]);
    const gi = taskGraph(c, shape, innerAbs, [1, 4, 4]);
    for (const name of ['stage1', 'boxes', 'stage2', 'paste']) {
      const o = setOf(kind(go, name).range);
      for (const k of setOf(kind(gi, name).range)) assert.ok(o.has(k), `${name} ${k} of the inner ROI is not in the outer run`);
    }
  }
});

test('two-stage graph drives to completion on the scheduler, every task once and after its needs', () => {
  const c = emConfig();
  const shape: Vec3 = [100, 1100, 1300];
  const g = taskGraph(c, shape, box([40, 300, 200], [70, 900, 1000]), [1, 4, 4]);
  const s = new Scheduler(g.kinds, g.deps);
  const done = new Set<string>();
  const byKind = new Map(g.kinds.map((k) => [k.name, k]));
  let total = 0;
  for (const k of g.kinds) total += indicesOf(k.range.lo, k.range.hi).length;
  for (let guard = 0; guard < 10 * total; guard++) {
    const batch = s.next(3);
    if (batch.length === 0) break;
    for (const t of batch) {
      const id = taskId(t);
      assert.ok(!done.has(id), `${id} twice`);
      // Brute-force needs from the definition: chunks within reach.
      const K = byKind.get(t.kind)!;
      for (const d of g.deps.filter((x) => x.kind === t.kind)) {
        const U = byKind.get(d.needs)!;
        for (const u of indicesOf(U.range.lo, U.range.hi)) {
          const near = [0, 1, 2].every((a) =>
            t.index[a] * K.block[a] - d.reach[a] < (u[a] + 1) * U.block[a] && u[a] * U.block[a] < (t.index[a] + 1) * K.block[a] + d.reach[a]);
          if (near) assert.ok(done.has(taskId({ kind: d.needs, index: u })), `${id} before ${d.needs}/${u}`);
        }
      }
    }
    for (const t of batch) {
      s.done(t);
      done.add(taskId(t));
    }
  }
  assert.equal(done.size, total);
  assert.equal(s.finished, true);
});

// ---------------------------------------------------------------- checkChunkForBoxes

test('checkChunkForBoxes accepts every shipped preset at its stage-one factor (stage1.spacing / spacing)', () => {
  for (const name of ['fafb', 'cremi', 'covid', 'word', 'synthetic-em', 'synthetic-ct']) {
    assert.ok(PRESET_NAMES.includes(name), name);
    const c = preset(name)!;
    const factor = [0, 1, 2].map((a) => c.stage1.spacing[a] / c.spacing[a]) as unknown as Vec3;
    assert.doesNotThrow(() => checkChunkForBoxes(c, factor), name);
    // And the validated config builds a two-stage graph on a volume of a few chunks.
    const v = loadConfig({ preset: name });
    const shape = [0, 1, 2].map((a) => v.io.chunk[a] * 2 + 1) as unknown as Vec3;
    const g = taskGraph(v, shape, boxOfShape(shape), factor);
    assert.ok(g.kinds.some((k) => k.name === 'boxes'), name);
  }
  for (const name of PRESET_NAMES) {
    const c = preset(name)!;
    const factor = [0, 1, 2].map((a) => c.stage1.spacing[a] / c.spacing[a]) as unknown as Vec3;
    assert.doesNotThrow(() => checkChunkForBoxes(c, factor), name);
  }
});

test('a too-small io.chunk throws ConfigError naming io.chunk (from taskGraph and checkChunkForBoxes)', () => {
  // synthetic-em keeps boxes up to cropThreshold [16,128,128] whole: a chunk of that size cannot
  // hold a whole box plus any growth.
  const c = emConfig({ io: { chunk: [16, 128, 128] } });
  const shape: Vec3 = [64, 512, 512];
  assert.throws(() => taskGraph(c, shape, boxOfShape(shape), [1, 4, 4]), (err: unknown) => {
    assert.ok(err instanceof ConfigError);
    assert.equal(err.key, 'io.chunk');
    assert.match(err.message, /io\.chunk/);
    return true;
  });
  // Too small along one axis only: the message names that axis.
  const zOnly = emConfig({ io: { chunk: [16, 512, 512] } });
  assert.throws(() => checkChunkForBoxes(zOnly, [1, 4, 4]), (err: unknown) => err instanceof ConfigError && err.key === 'io.chunk' && /axis z/.test(err.message));
  const xOnly = emConfig({ io: { chunk: [32, 512, 128] } });
  assert.throws(() => checkChunkForBoxes(xOnly, [1, 4, 4]), (err: unknown) => err instanceof ConfigError && err.key === 'io.chunk' && /axis x/.test(err.message));
  // A coarser stage one makes cells (and so fragments' growth) larger: a chunk that is fine at
  // factor 1 can become too small.
  const em = emConfig({ io: { chunk: [32, 256, 256] } });
  assert.doesNotThrow(() => checkChunkForBoxes(em, [1, 4, 4]));
  assert.throws(() => checkChunkForBoxes(em, [8, 4, 4]), ConfigError);
  // The research presets fail on a chunk the size of their crop.
  for (const name of ['fafb', 'covid', 'word']) {
    const p = preset(name)!;
    const small = { ...p, io: { ...p.io, chunk: p.boxes.cropThreshold } };
    assert.throws(() => checkChunkForBoxes(small, [1, 1, 1]), ConfigError, name);
  }
});

// ---------------------------------------------------------------- rangeVoxels

test('rangeVoxels = Σ voxels of the chunks in the range clipped to the volume (brute force)', () => {
  const r = rng(4);
  const chunk: Vec3 = [4, 5, 6];
  const shape: Vec3 = [17, 23, 13];
  const vol = boxOfShape(shape);
  for (let t = 0; t < 200; t++) {
    const lo = [randInt(r, -2, 6), randInt(r, -2, 6), randInt(r, -2, 4)] as unknown as Vec3;
    const range = range3(lo, [lo[0] + randInt(r, 0, 5), lo[1] + randInt(r, 0, 5), lo[2] + randInt(r, 0, 4)]);
    let want = 0;
    for (const i of indicesOf(range.lo, range.hi)) want += volumeOf(intersect(cellOf(i, chunk), vol));
    assert.equal(rangeVoxels(range, chunk, vol), want, JSON.stringify(range));
  }
  assert.equal(rangeVoxels(range3([0, 0, 0], [5, 5, 3]), chunk, vol), 17 * 23 * 13);
});

test('research presets give their blocks in voxels: the blocks their own io.chunk made before, the same for any io.chunk that divides them, a clear refusal otherwise', () => {
  for (const name of ['cremi', 'fafb', 'covid', 'word']) {
    const c = preset(name)!;
    const factor = c.stage1.spacing.map((s, a) => s / c.spacing[a]) as unknown as Vec3;
    // What blocks of round(factor) and pack.chunks chunks of the preset's own io.chunk are.
    const want1 = c.io.chunk.map((v, a) => v * Math.max(1, Math.round(factor[a])));
    const want2 = c.io.chunk.map((v, a) => v * c.pack.chunks[a]);
    assert.deepEqual(c.stage1.block, want1, name);
    assert.deepEqual(c.pack.block, want2, name);
    for (const div of [[1, 1, 1], [1, 2, 2], [2, 4, 4]] as Vec3[]) {
      const chunk = c.io.chunk.map((v, a) => v / div[a]) as unknown as Vec3;
      if (chunk.some((v) => !Number.isInteger(v))) continue;
      const cc = { ...c, io: { ...c.io, chunk } } as TesseraConfig;
      assert.deepEqual(stage1Block(cc, factor).map((b, a) => b * chunk[a]), want1, `${name}, io.chunk ${chunk}`);
      assert.deepEqual(stage2Chunks(cc).map((b, a) => b * chunk[a]), want2, `${name}, io.chunk ${chunk}`);
    }
    const odd = { ...c, io: { ...c.io, chunk: c.io.chunk.map((v) => v + 8) as unknown as Vec3 } } as TesseraConfig;
    assert.throws(() => stage1Block(odd, factor), (e: Error) => e instanceof ConfigError && /stage1\.block: .* is not a multiple of io\.chunk/.test(e.message), name);
  }
  // The synthetic presets keep blocks in chunks (0: round(factor) and pack.chunks chunks).
  for (const name of ['synthetic-em', 'synthetic-ct']) assert.deepEqual([preset(name)!.stage1.block, preset(name)!.pack.block], [[0, 0, 0], [0, 0, 0]], name);
});
