// The chunk-task run end to end through the real CLI (real Zarr on disk, the shipped ONNX models):
// determinism across concurrency, chunk sizes and kill-and-resume; resume refusal on a changed
// config; ROI extension reusing finished tasks; a corrupt input chunk failing only what needs it;
// one box and one instance for an object across a chunk corner.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { type ChildProcess, spawn } from 'node:child_process';
import { tessera, tesseraOk, tmpDir, filesUnder, ROOT } from '../helpers/cli.ts';
import { boxOfShape, box, type Vec3 } from '../../shared/geometry/box.ts';
import { label } from '../../shared/array/components.ts';
import { createArray, openArray, readRegion, writeRegion } from '../../shared/volume/zarr.ts';

let dir: string;
let vol: string;

// 16 chunks of 32×128×128 on a 32×512×512 volume; boxes bounded so such chunks are allowed.
const SMALL = { extends: 'synthetic-em', boxes: { cropThreshold: [16, 64, 64], recrop: [16, 32, 32] } };

function config(name: string, extra: Record<string, unknown>): string {
  const file = path.join(dir, `${name}.json`);
  const merged = { ...SMALL, ...extra, boxes: { ...SMALL.boxes, ...(extra.boxes as object | undefined) } };
  fs.writeFileSync(file, JSON.stringify(merged));
  return file;
}

async function run(out: string, cfg: string, more: string[] = []): Promise<any> {
  const r = await tesseraOk(['run', '--input', vol, '--output', out, '--config', cfg, '--json', ...more]);
  return JSON.parse(r.stdout);
}

function sameFiles(a: string, b: string, sub: string): void {
  const fa = filesUnder(path.join(a, sub));
  const fb = filesUnder(path.join(b, sub));
  assert.deepEqual([...fa.keys()].sort(), [...fb.keys()].sort(), `${sub}: same chunk files`);
  for (const [k, v] of fa) assert.ok(v.equals(fb.get(k)!), `${sub}/${k} differs`);
}

async function volumeOf(out: string, array: string): Promise<Uint8Array | Uint32Array> {
  const va = await openArray(path.join(out, array, '0'));
  return (await readRegion(va, boxOfShape(va.shape))).data as Uint8Array | Uint32Array;
}

function dice(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let i = 0, na = 0, nb = 0;
  for (let k = 0; k < a.length; k++) {
    const x = a[k] > 0, y = b[k] > 0;
    if (x && y) i++;
    if (x) na++;
    if (y) nb++;
  }
  return na + nb === 0 ? 1 : (2 * i) / (na + nb);
}

function distinct(ids: Uint32Array | Uint8Array): number {
  return new Set(ids).size - (ids.includes(0) ? 1 : 0);
}

const ran = (r: any) => Object.values(r.tasks as Record<string, { ran: number }>).reduce((n, t) => n + t.ran, 0);
const reused = (r: any) => Object.values(r.tasks as Record<string, { reused: number }>).reduce((n, t) => n + t.reused, 0);

/** Start `tessera run` in the background and return once `n` tasks of `kind` are done. */
async function startUntil(out: string, cfg: string, kind: string, n: number): Promise<ChildProcess> {
  const child = spawn(process.execPath, [path.join(ROOT, 'bin', 'tessera.mjs'), 'run', '--input', vol, '--output', out, '--config', cfg], { stdio: 'ignore', env: { ...process.env, TESSERA_LOG: 'warn' } });
  const log = path.join(out, '.work', 'done', `${kind}.log`);
  const done = () => (fs.existsSync(log) ? fs.readFileSync(log, 'utf8').split('\n').filter(Boolean).length : 0);
  const t0 = Date.now();
  while (done() < n) {
    if (Date.now() - t0 > 120_000) throw new Error(`the run never finished ${n} ${kind} tasks`);
    if (child.exitCode !== null) throw new Error(`the run ended (${child.exitCode}) before it could be stopped`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return child;
}

let clean: string;
let cleanReport: any;

before(async () => {
  dir = tmpDir();
  vol = path.join(dir, 'vol.zarr');
  await tesseraOk(['synth', '--kind', 'em', '--shape', '32,512,512', '--seed', '3', '--out', vol]);
  clean = path.join(dir, 'clean.zarr');
  // Fan-in 2: the 1×4×4 chunks are joined over two levels of regions.
  cleanReport = await run(clean, config('clean', { io: { chunk: [32, 128, 128], chunksInFlight: 1, mergeFanIn: [2, 2, 2] }, inference: { threads: 1 } }));
});

after(() => fs.rmSync(dir, { recursive: true, force: true }));

test('a run is tasks: every kind ran, the objects table and instances match, intermediates are freed', async () => {
  const r = cleanReport;
  assert.equal(r.status, 'complete');
  assert.deepEqual(Object.keys(r.tasks), ['stage1', 'boxes', 'stage2', 'paste', 'faces', 'merge1', 'merge2', 'resolve2', 'resolve1', 'relabel']);
  assert.equal(r.tasks.paste.total, 16);
  assert.equal(r.tasks.paste.ran, 16);
  assert.deepEqual([r.tasks.merge1.ran, r.tasks.merge2.ran, r.tasks.resolve2.ran, r.tasks.resolve1.ran], [4, 1, 1, 4]);
  for (const kind of ['stage1', 'boxes', 'stage2', 'faces', 'merge1', 'merge2', 'resolve2', 'resolve1', 'border', 'runs']) {
    const d = path.join(clean, '.work', kind);
    assert.deepEqual(fs.existsSync(d) ? fs.readdirSync(d) : [], [], `.work/${kind} is empty`);
  }
  const ids = await volumeOf(clean, 'instances') as Uint32Array;
  const rows = fs.readdirSync(path.join(clean, 'objects')).flatMap((f) => fs.readFileSync(path.join(clean, 'objects', f), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)));
  assert.equal(rows.length, distinct(ids), 'one table row per instance id');
  const voxels = new Map<number, number>();
  for (const v of ids) if (v) voxels.set(v, (voxels.get(v) ?? 0) + 1);
  for (const row of rows) assert.equal(row.voxels, voxels.get(row.id), `object ${row.id}: voxel count`);
  // Instances are exactly the 26-connected components of the segmentation.
  const seg = await volumeOf(clean, 'segmentation');
  const ref = label(seg, [32, 512, 512], 26);
  assert.equal(ref.count, distinct(ids));
  const pair = new Map<number, number>();
  for (let i = 0; i < seg.length; i++) {
    if (!ref.labels[i]) continue;
    const seen = pair.get(ref.labels[i]);
    if (seen === undefined) pair.set(ref.labels[i], ids[i]);
    else assert.equal(ids[i], seen, 'one component, one id');
  }
  assert.equal(new Set(pair.values()).size, ref.count, 'different components, different ids');
  // The id rule: 1 + the raster index of the object's first voxel.
  const firstOf = new Map<number, number>();
  for (let i = 0; i < ids.length; i++) if (ids[i] && !firstOf.has(ids[i])) firstOf.set(ids[i], i);
  for (const [id, i] of firstOf) assert.equal(id, i + 1, `object ${id} starts at voxel ${i}`);
  const e = JSON.parse((await tesseraOk(['eval', '--pred', clean, '--gt', vol, '--json'])).stdout);
  assert.ok(e.perClass['1'].dice >= 0.9, `Dice ${e.perClass['1'].dice}`);
});

test('bit-identical across chunks in flight and inference threads; coverage is exact', async () => {
  const out = path.join(dir, 'busy.zarr');
  const r = await run(out, config('busy', { io: { chunk: [32, 128, 128], chunksInFlight: 4 }, inference: { threads: 2 } }));
  sameFiles(clean, out, 'segmentation');
  sameFiles(clean, out, 'instances');
  assert.ok(fs.readFileSync(path.join(clean, 'boxes.json')).equals(fs.readFileSync(path.join(out, 'boxes.json'))));
  assert.equal(r.twoStage.coverage, cleanReport.twoStage.coverage);
  // Coverage counted independently: voxels of the union of the boxes' targets.
  const doc = JSON.parse(fs.readFileSync(path.join(out, 'boxes.json'), 'utf8'));
  const mask = new Uint8Array(32 * 512 * 512);
  for (const b of doc.boxes) for (const p of b.placements) {
    const t = p.target;
    for (let z = t.begin[0]; z < t.end[0]; z++) for (let y = t.begin[1]; y < t.end[1]; y++) mask.fill(1, (z * 512 + y) * 512 + t.begin[2], (z * 512 + y) * 512 + t.end[2]);
  }
  const covered = mask.reduce((n, v) => n + v, 0);
  assert.equal(r.twoStage.coverage, covered / mask.length);
});

test('kill -9 mid-run, then the same command: resumes, reuses finished tasks, bit-identical output', async () => {
  const out = path.join(dir, 'killed.zarr');
  const cfg = config('killed', { io: { chunk: [32, 128, 128], chunksInFlight: 2 } });
  const child = await startUntil(out, cfg, 'paste', 4);
  child.kill('SIGKILL');
  await new Promise((r) => child.once('exit', r));
  assert.equal(JSON.parse(fs.readFileSync(path.join(out, 'run.json'), 'utf8')).status, 'running');
  const r = await run(out, cfg);
  assert.equal(r.status, 'complete');
  assert.ok(reused(r) > 0, 'finished tasks were reused');
  assert.ok(r.tasks.paste.ran < 16, `paste ran ${r.tasks.paste.ran} of 16`);
  assert.ok(ran(r) < ran(cleanReport), `ran ${ran(r)} tasks, a clean run ${ran(cleanReport)}`);
  sameFiles(clean, out, 'segmentation');
  sameFiles(clean, out, 'instances');
});

test('two chunk sizes with the same stage-one and stage-two blocks give the same boxes and output bit for bit, NMS and NMM on; other stage-two blocks nearly so', async () => {
  // Blocks given in voxels: four stage-one blocks of 32×256×256 on each volume (regions cut by
  // their borders), stage-two blocks of the same size; chunks of 256 and of 128.
  const blocks = { stage1: { block: [32, 256, 256] }, pack: { block: [32, 256, 256] } };
  const boxesOf = (out: string) => JSON.parse(fs.readFileSync(path.join(out, 'boxes.json'), 'utf8')).boxes.map((b: any) => JSON.stringify([b.box, b.role, b.score])).sort();
  // The test volume (0.5 % foreground) and a crowded one (3 %).
  for (const [name, input] of [['sparse', vol], ['crowded', 'virtual:em?shape=32,512,512&seed=11&fg=0.03']]) {
    const big = path.join(dir, `${name}-big.zarr`);
    const small = path.join(dir, `${name}-small.zarr`);
    const rb = JSON.parse((await tesseraOk(['run', '--input', input, '--output', big, '--config', config(`${name}-big`, { io: { chunk: [32, 256, 256] }, ...blocks }), '--json'])).stdout);
    const rs = JSON.parse((await tesseraOk(['run', '--input', input, '--output', small, '--config', config(`${name}-small`, { io: { chunk: [32, 128, 128] }, ...blocks }), '--json'])).stdout);
    assert.ok(rb.twoStage.boxes > 50, `${name}: ${rb.twoStage.boxes} boxes`);
    assert.deepEqual(boxesOf(small), boxesOf(big), `${name}: the same boxes and scores`);
    assert.equal(rs.twoStage.canvases, rb.twoStage.canvases);
    assert.deepEqual(await volumeOf(small, 'segmentation'), await volumeOf(big, 'segmentation'), `${name}: segmentation`);
    assert.deepEqual(await volumeOf(small, 'instances'), await volumeOf(big, 'instances'), `${name}: instance ids`);
  }
  // The clean run packs the same volume in other stage-two blocks (1×2×2 chunks of 128) and runs
  // stage one on one block of the whole volume: the boxes land in other canvases beside other
  // neighbours. The stage-two net is local (no instance norm), so only what a neighbour puts
  // inside a crop's receptive field beyond its context changes it.
  const a = await volumeOf(path.join(dir, 'sparse-small.zarr'), 'segmentation');
  const d = dice(a, await volumeOf(clean, 'segmentation'));
  assert.ok(d >= 0.99, `Dice between blockings ${d}`);
  const [n1, n2] = [distinct(await volumeOf(clean, 'instances') as Uint32Array), distinct(await volumeOf(path.join(dir, 'sparse-small.zarr'), 'instances') as Uint32Array)];
  // A few flipped voxels can split or join a small fragment.
  assert.ok(Math.abs(n1 - n2) <= 0.05 * Math.max(n1, n2), `instances ${n1} vs ${n2}`);
});

test('a changed config is refused naming the key; a larger ROI reuses every finished task', async () => {
  const out = path.join(dir, 'roi.zarr');
  const cfg = config('roi', { io: { chunk: [32, 128, 128] } });
  const half = await run(out, cfg, ['--roi', '0:32,0:256,0:512']);
  assert.equal(half.tasks.paste.total, 8);
  const other = config('roi-other', { io: { chunk: [32, 128, 128] }, boxes: { nmsThreshold: 0.5 } });
  fs.writeFileSync(other, JSON.stringify({ ...SMALL, io: { chunk: [32, 128, 128] }, boxes: { ...SMALL.boxes, nmsThreshold: 0.5 } }));
  const refused = await tessera(['run', '--input', vol, '--output', out, '--config', other]);
  assert.equal(refused.code, 2);
  assert.match(refused.stderr, /boxes\.nmsThreshold: 0\.75 → 0\.5/);
  assert.match(refused.stderr, /--overwrite/);
  const whole = await run(out, cfg);
  assert.equal(whole.status, 'complete');
  assert.equal(whole.tasks.paste.reused, 8);
  assert.equal(whole.tasks.paste.ran, 8);
  // Intermediates the first run freed (no task of its ROI needed them any more) are computed
  // again where the new chunks need them; instance ids are numbered anew over the new ROI.
  assert.equal(whole.tasks.relabel.ran, 16);
  assert.ok(ran(whole) < ran(cleanReport), `ran ${ran(whole)} tasks, a clean run ${ran(cleanReport)}`);
  sameFiles(clean, out, 'segmentation');
  sameFiles(clean, out, 'instances');
  // With --keep-work nothing is freed: the extension runs only the new chunks' tasks.
  const kept = path.join(dir, 'roi-kept.zarr');
  await run(kept, cfg, ['--roi', '0:32,0:256,0:512', '--keep-work']);
  const more = await run(kept, cfg, ['--keep-work']);
  assert.deepEqual([more.tasks.stage1.ran, more.tasks.boxes.ran, more.tasks.stage2.ran, more.tasks.paste.ran], [0, 0, 0, 8]);
  sameFiles(clean, kept, 'segmentation');
});

test('a corrupt full-resolution chunk fails only what needs it; repaired, a re-run recomputes only that', async () => {
  const broken = path.join(dir, 'broken.zarr');
  fs.cpSync(vol, broken, { recursive: true });
  // Every level-0 storage chunk (16×128×128) of the chunk at y 128..256, x 128..256.
  const victims = ['0/1/1', '1/1/1'].map((k) => path.join('0', ...k.split('/')));
  for (const v of victims) fs.writeFileSync(path.join(broken, v), Buffer.from('not a blosc chunk'));
  const out = path.join(dir, 'broken-out.zarr');
  const cfg = config('broken', { io: { chunk: [32, 128, 128] } });
  const r = await tessera(['run', '--input', broken, '--output', out, '--config', cfg, '--json']);
  assert.equal(r.code, 1);
  const report = JSON.parse(r.stdout);
  assert.equal(report.status, 'failed');
  assert.ok(report.failures.length >= 1);
  for (const f of report.failures) assert.match(f.error, /broken\.zarr\/0.*chunk [01]\/1\/1/);
  assert.ok(report.tasks.paste.skipped > 0 && report.tasks.paste.ran > 0, 'some chunks skipped, the others pasted');
  assert.match(r.stderr, /task\(s\) failed/);
  const doc = JSON.parse(fs.readFileSync(path.join(out, 'run.json'), 'utf8'));
  assert.equal(doc.status, 'failed');
  assert.equal(doc.report.failures.length, report.failures.length);
  // Repair and re-run: only the failed tasks and those that needed them run.
  for (const v of victims) fs.copyFileSync(path.join(vol, v), path.join(broken, v));
  const again = JSON.parse((await tesseraOk(['run', '--input', broken, '--output', out, '--config', cfg, '--json'])).stdout);
  assert.equal(again.status, 'complete');
  assert.equal(again.tasks.stage1.ran, 0);
  assert.equal(again.tasks.boxes.ran, 0);
  assert.equal(again.tasks.stage2.ran, report.tasks.stage2.failed);
  assert.equal(again.tasks.paste.ran, report.tasks.paste.skipped);
  sameFiles(clean, out, 'segmentation');
  sameFiles(clean, out, 'instances');
});

test('an object across a chunk corner comes out as one box and one instance id', async () => {
  // Cut a volume out of the synthetic one so that a true object's centre sits on the corner
  // shared by 8 chunks of 24×96×96 (the object must be thick enough to reach all eight).
  const src = await openArray(path.join(vol, '0'));
  const gt = await openArray(path.join(vol, 'labels', 'gt', '0'));
  const g = await readRegion(gt, boxOfShape(gt.shape));
  const comps = label(g.data, g.shape, 26);
  const lo = Array.from({ length: comps.count + 1 }, () => [1e9, 1e9, 1e9]);
  const hi = Array.from({ length: comps.count + 1 }, () => [-1, -1, -1]);
  for (let z = 0, i = 0; z < 32; z++) for (let y = 0; y < 512; y++) for (let x = 0; x < 512; x++, i++) {
    const l = comps.labels[i];
    if (!l) continue;
    const p = [z, y, x];
    for (let a = 0; a < 3; a++) { lo[l][a] = Math.min(lo[l][a], p[a]); hi[l][a] = Math.max(hi[l][a], p[a] + 1); }
  }
  // The thickest object well inside the volume that fits one box (≤ cropThreshold with margin).
  let best = 0;
  for (let l = 1; l <= comps.count; l++) {
    const ok = lo[l][1] >= 96 && hi[l][1] <= 416 && lo[l][2] >= 96 && hi[l][2] <= 416 && hi[l][1] - lo[l][1] <= 52 && hi[l][2] - lo[l][2] <= 52 && hi[l][0] - lo[l][0] <= 10;
    if (ok && (best === 0 || hi[l][0] - lo[l][0] > hi[best][0] - lo[best][0])) best = l;
  }
  assert.ok(best > 0 && hi[best][0] - lo[best][0] >= 2, 'an object at least two slices thick');
  const centre = [0, 1, 2].map((a) => Math.floor((lo[best][a] + hi[best][a]) / 2));
  // A 48×192×192 volume whose chunk corner (24, 96, 96) is the object's centre.
  const shape: Vec3 = [48, 192, 192];
  const corner = [24, 96, 96];
  const from = box([centre[0] - 24, centre[1] - 96, centre[2] - 96], [centre[0] + 24, centre[1] + 96, centre[2] + 96]);
  const cut = path.join(dir, 'corner.zarr');
  const img = await readRegion(src, from, 'mirror');
  const a0 = await createArray(path.join(cut, '0'), { shape, chunks: [24, 96, 96], dtype: src.dtype });
  await writeRegion(a0, boxOfShape(shape), img);
  const out = path.join(dir, 'corner-out.zarr');
  const cfg = path.join(dir, 'corner.json');
  fs.writeFileSync(cfg, JSON.stringify({ extends: 'synthetic-em', io: { chunk: [24, 96, 96], outputChunk: [24, 96, 96] }, pack: { chunks: [1, 1, 1] }, boxes: { cropThreshold: [12, 64, 64], recrop: [8, 32, 32], margin: [0, 4, 4] } }));
  const r = JSON.parse((await tesseraOk(['run', '--input', path.join(cut, '0'), '--output', out, '--config', cfg, '--json'])).stdout);
  assert.equal(r.tasks.paste.total, 8);
  const objBox = box([lo[best][0] - from.begin[0], lo[best][1] - from.begin[1], lo[best][2] - from.begin[2]], [hi[best][0] - from.begin[0], hi[best][1] - from.begin[1], hi[best][2] - from.begin[2]]);
  const doc = JSON.parse(fs.readFileSync(path.join(out, 'boxes.json'), 'utf8'));
  // One box, not one per chunk: the fragments of all eight chunks joined. It need not hold every
  // voxel (stage one may miss the object's faint outer sections) but holds the most of it.
  const meeting = doc.boxes.filter((b: any) => [0, 1, 2].every((a) => b.box.begin[a] < objBox.end[a] && b.box.end[a] > objBox.begin[a]));
  assert.equal(meeting.length, 1, `one box meets the object (${JSON.stringify(meeting.map((b: any) => b.box))})`);
  assert.equal(meeting[0].role, 'parent');
  const ids = await volumeOf(out, 'instances') as Uint32Array;
  const inside = new Set<number>();
  let voxels = 0, held = 0;
  const hit = meeting[0].box;
  for (let z = objBox.begin[0]; z < objBox.end[0]; z++) for (let y = objBox.begin[1]; y < objBox.end[1]; y++) for (let x = objBox.begin[2]; x < objBox.end[2]; x++) {
    const gz = z + from.begin[0], gy = y + from.begin[1], gx = x + from.begin[2];
    if (comps.labels[(gz * 512 + gy) * 512 + gx] !== best) continue;
    voxels++;
    if (z >= hit.begin[0] && z < hit.end[0] && y >= hit.begin[1] && y < hit.end[1] && x >= hit.begin[2] && x < hit.end[2]) held++;
    const id = ids[(z * 192 + y) * 192 + x];
    if (id) inside.add(id);
  }
  assert.ok(held >= 0.9 * voxels, `the box holds ${held} of the object's ${voxels} voxels`);
  assert.ok([0, 1, 2].every((a) => hit.begin[a] < corner[a] && hit.end[a] > corner[a]), 'the box crosses the corner');
  assert.equal(inside.size, 1, `one instance id over the object (${[...inside]})`);
  const sides = [0, 1, 2].map((a) => objBox.begin[a] < corner[a] && objBox.end[a] > corner[a]);
  assert.deepEqual(sides, [true, true, true], 'the object really crosses the corner');
});

test('output.format zarr-v3-sharded: one shard file per chunk, the same voxels as Zarr v2, eval reads it', async () => {
  const out = path.join(dir, 'sharded.zarr');
  const cfg = path.join(dir, 'sharded.json');
  fs.writeFileSync(cfg, JSON.stringify({ ...SMALL, io: { chunk: [32, 128, 128], chunksInFlight: 1 }, inference: { threads: 1 }, output: { format: 'zarr-v3-sharded' } }));
  const r = await run(out, cfg);
  assert.equal(r.status, 'complete');
  const meta = JSON.parse(fs.readFileSync(path.join(out, 'segmentation', '0', 'zarr.json'), 'utf8'));
  assert.equal(meta.zarr_format, 3);
  assert.equal(meta.codecs[0].name, 'sharding_indexed');
  assert.deepEqual(meta.chunk_grid.configuration.chunk_shape, [32, 128, 128]);
  const group = JSON.parse(fs.readFileSync(path.join(out, 'segmentation', 'zarr.json'), 'utf8'));
  assert.equal(group.attributes.ome.version, '0.5');
  assert.ok(group.attributes.ome['image-label']);
  // At most one file per chunk (all-background shards are not written), none per inner chunk.
  const shards = fs.readdirSync(path.join(out, 'segmentation', '0'), { recursive: true }).map(String).filter((f) => f.startsWith('c') && fs.statSync(path.join(out, 'segmentation', '0', f)).isFile());
  assert.ok(shards.length > 0 && shards.length <= 16, `${shards.length} shard files`);
  assert.deepEqual(await volumeOf(out, 'segmentation'), await volumeOf(clean, 'segmentation'));
  assert.deepEqual(await volumeOf(out, 'instances'), await volumeOf(clean, 'instances'));
  const e = JSON.parse((await tesseraOk(['eval', '--pred', out, '--gt', vol, '--json'])).stdout);
  assert.ok(e.perClass['1'].dice >= 0.9, `Dice ${e.perClass['1'].dice}`);
});

test('SIGTERM mid-run: the tasks in hand end, run.json says interrupted, exit 143; the same command completes', async () => {
  const out = path.join(dir, 'termed.zarr');
  const cfg = config('termed', { io: { chunk: [32, 128, 128], chunksInFlight: 2 } });
  const child = await startUntil(out, cfg, 'boxes', 1);
  child.kill('SIGTERM');
  const code = await new Promise((r) => child.once('exit', (c) => r(c)));
  assert.equal(code, 143);
  assert.equal(JSON.parse(fs.readFileSync(path.join(out, 'run.json'), 'utf8')).status, 'interrupted');
  const r = await run(out, cfg);
  assert.equal(r.status, 'complete');
  assert.ok(reused(r) > 0);
  sameFiles(clean, out, 'segmentation');
});

test('one-stage runs nnU-Net\'s global tile grid: every tile once whatever the chunking, nnU-Net\'s tile count, the same result as one whole-volume window', async () => {
  const small = path.join(dir, 'one-small.zarr');
  await tesseraOk(['synth', '--kind', 'em', '--shape', '16,256,256', '--seed', '31', '--out', small]);
  const runOne = async (name: string, chunk: Vec3) => {
    const cfg = path.join(dir, `${name}.json`);
    fs.writeFileSync(cfg, JSON.stringify({ extends: 'synthetic-em', mode: 'one-stage', io: { chunk, outputChunk: [16, 128, 128] }, output: { probabilities: true } }));
    const out = path.join(dir, `${name}.zarr`);
    const r = JSON.parse((await tesseraOk(['run', '--input', small, '--output', out, '--config', cfg, '--json'])).stdout);
    return { r, out };
  };
  const whole = await runOne('one-whole', [16, 256, 256]);
  const four = await runOne('one-four', [16, 128, 128]);
  // nnU-Net over 16×256×256 with patch 16×128×128, step 0.5: 1 × 3 × 3 tiles.
  assert.deepEqual(whole.r.oneStage, { tiles: 9, nnunetTiles: 9, measured: true });
  assert.deepEqual(four.r.oneStage, { tiles: 9, nnunetTiles: 9, measured: true }, 'chunking computes no tile twice');
  assert.equal(four.r.tasks.predict.total, 4);
  assert.equal(four.r.tasks.blend.total, 4);
  assert.deepEqual(await volumeOf(four.out, 'segmentation'), await volumeOf(whole.out, 'segmentation'));
  const [pa, pb] = [await volumeOf(four.out, 'probabilities'), await volumeOf(whole.out, 'probabilities')] as unknown as Float32Array[];
  let d = 0;
  for (let i = 0; i < pa.length; i++) d = Math.max(d, Math.abs(pa[i] - pb[i]));
  assert.ok(d < 1e-5, `probabilities across chunk borders: max |Δ| ${d}`);
  // The tiles' intermediate sums are freed once blended.
  assert.deepEqual(fs.readdirSync(path.join(four.out, '.work')).filter((k) => k.startsWith('tiles-') && fs.readdirSync(path.join(four.out, '.work', k)).length), []);
});
