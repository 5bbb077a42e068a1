// Fault injection: bad input, bad paths and process faults, each through the real CLI on small
// real volumes. Every case asserts the exit code, a one-line message naming the cause, and that
// data that was there before is byte-identical afterwards.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { spawn } from 'node:child_process';
import { tessera, tesseraOk, tmpDir, ROOT } from '../helpers/cli.ts';
import { createArray, openArray, readRegion, writeRegion } from '../../shared/volume/zarr.ts';
import { boxOfShape } from '../../shared/geometry/box.ts';
import { array3 } from '../../shared/array/array3.ts';

let dir: string;
let vol: string;
let done: string;

/** sha256 over every file under `p` (relative paths and bytes); a file hashes its bytes. */
function checksum(p: string): string {
  const h = createHash('sha256');
  const walk = (d: string, rel: string) => {
    const st = fs.statSync(d);
    if (!st.isDirectory()) {
      h.update(rel).update(fs.readFileSync(d));
      return;
    }
    for (const e of fs.readdirSync(d).sort()) walk(path.join(d, e), path.join(rel, e));
  };
  walk(p, '');
  return h.digest('hex');
}

/** Run tessera; assert exit code, one stderr line naming the cause, and untouched data. */
async function fault(args: string[], code: number, cause: RegExp, keep: string[] = [], env: Record<string, string> = {}) {
  const sums = keep.map(checksum);
  const r = await tessera(args, env);
  assert.equal(r.code, code, `exit code of ${args.join(' ')}\n${r.stderr}`);
  const lines = r.stderr.split('\n').filter((l) => l.trim() && !l.startsWith('{'));
  assert.match(lines.join('\n'), cause);
  assert.ok(!/\n\s+at /.test(r.stderr), `no stack trace without --debug:\n${r.stderr}`);
  keep.forEach((p, i) => assert.equal(checksum(p), sums[i], `${p} changed`));
  return r;
}

const run = (out: string, ...more: string[]) => ['run', '--input', vol, '--output', out, '--preset', 'synthetic-em', ...more];

before(async () => {
  dir = tmpDir();
  vol = path.join(dir, 'vol.zarr');
  await tesseraOk(['synth', '--kind', 'em', '--shape', '16,128,128', '--seed', '21', '--out', vol]);
  done = path.join(dir, 'done.zarr');
  await tesseraOk(run(done));
});

after(() => fs.rmSync(dir, { recursive: true, force: true }));

test('output = input, inside it, or around it: refused, the input untouched', async () => {
  await fault(run(vol), 2, /vol\.zarr is the input itself/, [vol]);
  await fault(run(vol, '--overwrite'), 2, /is the input itself/, [vol]);
  await fault(run(path.join(vol, 'out.zarr')), 2, /lies inside the input/, [vol]);
  await fault(run(dir), 2, /contains the input/, [vol]);
  const link = path.join(dir, 'link.zarr');
  fs.symlinkSync(vol, link);
  await fault(run(link, '--overwrite'), 2, /is the input itself/, [vol]);
});

test('an existing path Tessera did not write is never replaced, not even with --overwrite', async () => {
  const other = path.join(dir, 'other.zarr');
  fs.cpSync(vol, other, { recursive: true });
  await fault(run(other), 2, /exists and is not a Tessera output/, [other]);
  await fault(run(other, '--overwrite'), 2, /even with --overwrite/, [other]);
  const plain = path.join(dir, 'plain');
  fs.mkdirSync(plain);
  fs.writeFileSync(path.join(plain, 'notes.txt'), 'mine');
  await fault(run(plain, '--overwrite'), 2, /not a Tessera output/, [plain]);
  const file = path.join(dir, 'file.bin');
  fs.writeFileSync(file, 'data');
  await fault(run(file, '--overwrite'), 2, /not a Tessera output/, [file]);
});

test('an existing Tessera output: refused without --overwrite; with it, kept until the new run completes', async () => {
  await fault(run(done, '--mode', 'one-stage'), 2, /holds a complete run with another config.*mode.*--overwrite/, [done]);
  // A replacement that fails (a corrupt input) leaves the old output whole, beside it.
  const broken = path.join(dir, 'broken.zarr');
  fs.cpSync(vol, broken, { recursive: true });
  const victim = path.join(broken, '0', '0', '0', '0');
  fs.writeFileSync(victim, 'garbage');
  const target = path.join(dir, 'replace.zarr');
  await tesseraOk(['run', '--input', vol, '--output', target, '--preset', 'synthetic-em']);
  const before = checksum(path.join(target, 'segmentation'));
  const r = await tessera(['run', '--input', broken, '--output', target, '--preset', 'synthetic-em', '--overwrite']);
  assert.equal(r.code, 1, r.stderr);
  assert.equal(checksum(path.join(`${target}.previous`, 'segmentation')), before, 'the old output waits whole beside the failed one');
  // Repaired and re-run (resuming the replacement): the old one goes once the new one is complete.
  fs.copyFileSync(path.join(vol, '0', '0', '0', '0'), victim);
  await tesseraOk(['run', '--input', broken, '--output', target, '--preset', 'synthetic-em']);
  assert.ok(!fs.existsSync(`${target}.previous`));
  assert.equal(JSON.parse(fs.readFileSync(path.join(target, 'run.json'), 'utf8')).status, 'complete');
});

test('synth --out over existing data: refused without --overwrite; cleared completely with it', async () => {
  const other = path.join(dir, 'synth-over.zarr');
  fs.cpSync(vol, other, { recursive: true });
  await fault(['synth', '--kind', 'ct', '--shape', '8,64,64', '--out', other], 2, /exists; pass --overwrite/, [other]);
  const plain = path.join(dir, 'plain-synth');
  fs.mkdirSync(plain);
  fs.writeFileSync(path.join(plain, 'x.txt'), 'mine');
  await fault(['synth', '--kind', 'ct', '--shape', '8,64,64', '--out', plain, '--overwrite'], 2, /not a Zarr group or array/, [plain]);
  await tesseraOk(['synth', '--kind', 'ct', '--shape', '8,64,64', '--seed', '3', '--out', other, '--overwrite']);
  const fresh = path.join(dir, 'synth-fresh.zarr');
  await tesseraOk(['synth', '--kind', 'ct', '--shape', '8,64,64', '--seed', '3', '--out', fresh]);
  assert.equal(checksum(other), checksum(fresh), 'no stale chunk or metadata survives');
});

test('NaN or Inf in a float32 input: the tasks reading it fail naming chunk and voxel; status failed', async () => {
  const src = await openArray(path.join(vol, '0'));
  const img = await readRegion(src, boxOfShape(src.shape));
  const f = new Float32Array(img.data.length);
  for (let i = 0; i < f.length; i++) f[i] = img.data[i];
  f[5 * 128 * 128 + 70 * 128 + 90] = Number.NaN;
  const bare = path.join(dir, 'float.zarr');
  const arr = await createArray(bare, { shape: src.shape, chunks: [16, 64, 64], dtype: 'float32' });
  await writeRegion(arr, boxOfShape(src.shape), array3(f, src.shape));
  const keep = checksum(bare);
  const out = path.join(dir, 'nan-out.zarr');
  const r = await tessera(['run', '--input', bare, '--output', out, '--preset', 'synthetic-em', '--json']);
  assert.equal(r.code, 1, r.stderr);
  const rep = JSON.parse(r.stdout);
  assert.equal(rep.status, 'failed');
  assert.ok(rep.failures.length >= 1);
  for (const x of rep.failures) assert.match(x.error, /float\.zarr \(chunk 0\/1\/1\): holds NaN at voxel \[5, 70, 90\]/);
  assert.equal(JSON.parse(fs.readFileSync(path.join(out, 'run.json'), 'utf8')).status, 'failed');
  assert.equal(checksum(bare), keep);
});

test('broken metadata: pyramid level of the wrong shape, malformed .zattrs, multiscales of the wrong type', async () => {
  const cases: [string, (p: string) => void, RegExp][] = [
    ['pyramid.zarr', (p) => {
      const f = path.join(p, '1', '.zarray');
      const z = JSON.parse(fs.readFileSync(f, 'utf8'));
      z.shape = [16, 60, 64];
      fs.writeFileSync(f, JSON.stringify(z));
    }, /pyramid level "1" has shape 16x60x64.*make it 16x64x64 \(axis y differs\)/],
    ['zattrs.zarr', (p) => fs.writeFileSync(path.join(p, '.zattrs'), '{"multiscales": ['), /zattrs\.zarr\/\.zattrs: is not valid JSON/],
    ['ms.zarr', (p) => {
      const f = path.join(p, '.zattrs');
      fs.writeFileSync(f, JSON.stringify({ ...JSON.parse(fs.readFileSync(f, 'utf8')), multiscales: 'v1' }));
    }, /ms\.zarr\/\.zattrs: "multiscales" must be a list/],
  ];
  for (const [name, edit, cause] of cases) {
    const p = path.join(dir, name);
    fs.cpSync(vol, p, { recursive: true });
    edit(p);
    await fault(['run', '--input', p, '--output', path.join(dir, `${name}-out`), '--preset', 'synthetic-em'], 2, cause, [p]);
    assert.ok(!fs.existsSync(path.join(dir, `${name}-out`)), 'no output is created for an input refused at open');
  }
});

test('bad config files and flags name the key, the file or the axis', async () => {
  const write = (name: string, text: string) => {
    const f = path.join(dir, name);
    fs.writeFileSync(f, text);
    return f;
  };
  const out = path.join(dir, 'cfg-out.zarr');
  const base = ['run', '--input', vol, '--output', out];
  await fault([...base, '--config', write('null.json', 'null')], 2, /null\.json must hold a JSON object, not null/);
  await fault([...base, '--config', write('array.json', '[1]')], 2, /array\.json must hold a JSON object, not an array/);
  await fault([...base, '--config', write('broken.json', '{"extends":')], 2, /broken\.json is not valid JSON/);
  await fault([...base, '--config', write('typo.json', '{"extends":"synthetic-em","io":{"chunkz":[1,2,3]}}')], 2, /io\.chunkz.*unknown key.*typo\.json/);
  await fault([...base, '--config', path.join(dir, 'missing.json')], 2, /missing\.json not found/);
  await fault([...base, '--preset', 'nope'], 2, /unknown preset "nope"/);
  await fault([...base, '--preset', 'synthetic-em', '--roi', '0:8,0:64,0:900'], 2, /outside the volume along x: 0:900 is not within 0:128/);
  await fault([...base, '--preset', 'synthetic-em', '--roi', '0:8,64:32,0:64'], 2, /empty along y/);
  await fault([...base, '--preset', 'synthetic-em', '--roi', 'everything'], 2, /--roi "everything" must look like/);
  await fault([...base, '--preset', 'synthetic-em', '--threads', '0'], 2, /--threads must be a positive integer/);
  await fault([...base, '--preset', 'synthetic-em', '--mode', 'three-stage'], 2, /mode/);
  await fault([...base, '--config', write('model.json', '{"extends":"synthetic-em","models":{"fullres":"nowhere.onnx"}}')], 2, /nowhere\.onnx/);
  await fault(['run', '--input', path.join(dir, 'absent.zarr'), '--output', out, '--preset', 'synthetic-em'], 2, /absent\.zarr: no such file or directory/);
  await fault(['run', '--input', vol, '--output', out], 2, /give --preset NAME or --config FILE/);
  assert.ok(!fs.existsSync(out), 'nothing was written');
});

test('eval refuses ground truth it cannot trust', async () => {
  const image = path.join(dir, 'image-only.zarr');
  fs.cpSync(vol, image, { recursive: true });
  fs.rmSync(path.join(image, 'labels'), { recursive: true });
  await fault(['eval', '--pred', done, '--gt', image], 2, /has no labels\/gt and is not a label image/, [image, done]);
  // A bare label array copied out of its group has no voxel size: --spacing, or refused.
  const bare = path.join(dir, 'gt-bare.zarr');
  fs.cpSync(path.join(vol, 'labels', 'gt', '0'), bare, { recursive: true });
  await fault(['eval', '--pred', done, '--gt', bare], 2, /bare label array with no voxel size.*--spacing/, [bare]);
  const withSpacing = JSON.parse((await tesseraOk(['eval', '--pred', done, '--gt', bare, '--spacing', '40,4,4', '--json'])).stdout);
  const viaGroup = JSON.parse((await tesseraOk(['eval', '--pred', done, '--gt', vol, '--json'])).stdout);
  assert.deepEqual(withSpacing.spacing, viaGroup.spacing);
  assert.equal(withSpacing.perClass['1'].dice, viaGroup.perClass['1'].dice);
  // The label array inside its group takes the group's scale.
  const inGroup = JSON.parse((await tesseraOk(['eval', '--pred', done, '--gt', path.join(vol, 'labels', 'gt', '0'), '--json'])).stdout);
  assert.deepEqual(inGroup.spacing, viaGroup.spacing);
  await fault(['eval', '--pred', vol, '--gt', vol], 2, /has no run\.json/, [vol]);
});

test('one writer per output: a second run is refused while the first holds the lock; a stale lock is taken over', async () => {
  const out = path.join(dir, 'locked.zarr');
  const first = spawn(process.execPath, [path.join(ROOT, 'bin', 'tessera.mjs'), ...run(out)], { stdio: 'ignore', env: { ...process.env, TESSERA_LOG: 'warn' } });
  const t0 = Date.now();
  while (!fs.existsSync(`${out}.lock`)) {
    if (Date.now() - t0 > 30_000) throw new Error('the first run never took the lock');
    await new Promise((r) => setTimeout(r, 10));
  }
  await fault(run(out, '--overwrite'), 2, new RegExp(`locked\\.zarr: is in use by tessera pid ${first.pid} on ${os.hostname()}`));
  assert.equal(await new Promise((r) => first.on('exit', r)), 0, 'the first run completes undisturbed');
  assert.ok(!fs.existsSync(`${out}.lock`), 'the lock is released');
  // A lock left by a process that is gone (same host) is taken over; another host's is refused.
  const now = new Date().toISOString();
  fs.writeFileSync(`${out}.lock`, JSON.stringify({ pid: 2 ** 22 + 12345, host: os.hostname(), token: 'gone', startedAt: now, beatAt: now }));
  await tesseraOk(run(out, '--overwrite'));
  fs.writeFileSync(`${out}.lock`, JSON.stringify({ pid: 1, host: 'gpu-node-7', token: 'pod', startedAt: now, beatAt: now }));
  await fault(run(out, '--overwrite'), 2, /in use by tessera pid 1 on gpu-node-7.*delete .*locked\.zarr\.lock/, [out]);
  // Another host's lock whose holder has not beaten for a minute (its pod is gone) is taken over.
  const then = new Date(Date.now() - 120_000).toISOString();
  fs.writeFileSync(`${out}.lock`, JSON.stringify({ pid: 1, host: 'gpu-node-7', token: 'pod', startedAt: then, beatAt: then }));
  await tesseraOk(run(out, '--overwrite'));
  assert.ok(!fs.existsSync(`${out}.lock`));
  // A lock of an older Tessera (no beatAt): its file's age decides.
  fs.writeFileSync(`${out}.lock`, JSON.stringify({ pid: 1, host: 'gpu-node-7', startedAt: 'then' }));
  await fault(run(out, '--overwrite'), 2, /in use by tessera pid 1 on gpu-node-7/, [out]);
  const old = new Date(Date.now() - 120_000);
  fs.utimesSync(`${out}.lock`, old, old);
  await tesseraOk(run(out, '--overwrite'));
  assert.ok(!fs.existsSync(`${out}.lock`));
});

test('Ctrl-C mid-run: exit 130, run.json interrupted; the same command resumes to complete', async () => {
  const out = path.join(dir, 'sigint.zarr');
  const p = spawn(process.execPath, [path.join(ROOT, 'bin', 'tessera.mjs'), ...run(out, '--mode', 'one-stage')], { stdio: 'ignore', env: { ...process.env, TESSERA_LOG: 'warn' } });
  const log = path.join(out, 'run.json');
  const t0 = Date.now();
  while (!fs.existsSync(log)) {
    if (Date.now() - t0 > 30_000) throw new Error('the run never started');
    await new Promise((r) => setTimeout(r, 10));
  }
  p.kill('SIGINT');
  assert.equal(await new Promise((r) => p.on('exit', r)), 130);
  assert.equal(JSON.parse(fs.readFileSync(log, 'utf8')).status, 'interrupted');
  await tesseraOk(run(out, '--mode', 'one-stage'));
  assert.equal(JSON.parse(fs.readFileSync(log, 'utf8')).status, 'complete');
});

test('system errors are one line naming path and cause; --debug adds the stack', async () => {
  const file = path.join(dir, 'a-file');
  fs.writeFileSync(file, 'x');
  // The output's parent is a file: no directory can be made there.
  await fault(run(path.join(file, 'out.zarr')), 2, /a-file\/out\.zarr: cannot create its directory: \/.*\/a-file: is a file, not a directory$/m, [file]);
  const p = path.join(dir, 'zattrs-debug.zarr');
  fs.cpSync(vol, p, { recursive: true });
  fs.writeFileSync(path.join(p, '.zattrs'), '{');
  const r = await tessera(['run', '--input', p, '--output', path.join(dir, 'dbg-out.zarr'), '--preset', 'synthetic-em', '--debug']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /InputError: .*\.zattrs: is not valid JSON/);
  assert.match(r.stderr, /\n\s+at /, 'the stack with --debug');
  await fault(['status', path.join(dir, 'nothing-here')], 2, /no server|nothing-here/);
  await fault(['status', vol], 2, /vol\.zarr: has no run\.json/, [vol]);
  await fault(['run', '--nats', 'nats://127.0.0.1:1', ...run(path.join(dir, 'nats-out.zarr')).slice(1)], 2, /cannot connect to nats:\/\/127\.0\.0\.1:1/);
});

test('a missing input chunk fails the tasks that read it, naming it; --allow-missing takes the fill value: a task with no stored input chunk in reach (here the whole one-chunk input) is skipped as background', async () => {
  const holey = path.join(dir, 'holey.zarr');
  fs.cpSync(vol, holey, { recursive: true });
  fs.rmSync(path.join(holey, '0', '0', '0', '0'));
  const keep = checksum(holey);
  const out = path.join(dir, 'holey-out.zarr');
  const r = await tessera(['run', '--input', holey, '--output', out, '--preset', 'synthetic-em', '--mode', 'one-stage', '--json']);
  assert.equal(r.code, 1, r.stderr);
  const rep = JSON.parse(r.stdout);
  assert.equal(rep.status, 'failed');
  assert.deepEqual(rep.failures.map((f: { task: string }) => f.task), ['predict/0_0_0']);
  assert.match(rep.failures[0].error, /holey\.zarr\/0 \(chunk 0\/0\/0\): storage chunk 0\/0\/0 is missing.*--allow-missing/);
  const ok = await tessera(['run', '--input', holey, '--output', path.join(dir, 'holey-fill.zarr'), '--preset', 'synthetic-em', '--mode', 'one-stage', '--allow-missing', '--json']);
  assert.equal(ok.code, 0, ok.stderr);
  const rep2 = JSON.parse(ok.stdout);
  assert.equal(rep2.status, 'complete');
  // Its only storage chunk is gone: nothing to read, no network run, background (tasks/mask.ts).
  assert.deepEqual(rep2.inputMissingSkipped, { skippedTasks: { predict: 1, blend: 1, relabel: 1 }, skippedVoxels: 16 * 128 * 128 });
  assert.equal(rep2.inputMissingChunks, 0, 'nothing read');
  assert.equal(checksum(holey), keep);
});

test('bare arrays work as the README says (v2 with .zattrs, v3); a pyramid level keeps its own scale', async () => {
  // v2 bare array with a .zattrs of its own: accepted, spacing from the config.
  const v2 = path.join(dir, 'bare-v2.zarr');
  fs.cpSync(path.join(vol, '0'), v2, { recursive: true });
  fs.writeFileSync(path.join(v2, '.zattrs'), JSON.stringify({ note: 'made by another tool' }));
  const a = JSON.parse((await tesseraOk(['run', '--input', v2, '--output', path.join(dir, 'bare-v2-out.zarr'), '--preset', 'synthetic-em', '--mode', 'one-stage', '--json'])).stdout);
  assert.equal(a.status, 'complete');
  // v3 bare array (sharded): accepted, and segments like the v2 copy of the same voxels.
  const { createShardedArray } = await import('../../shared/volume/shard.ts');
  const src = await openArray(path.join(vol, '0'));
  const v3 = path.join(dir, 'bare-v3.zarr');
  const arr = await createShardedArray(v3, { shape: src.shape, shard: [16, 128, 128], chunks: [16, 64, 64], dtype: src.dtype as 'uint8' });
  await writeRegion(arr, boxOfShape(src.shape), await readRegion(src, boxOfShape(src.shape)));
  const bOut = path.join(dir, 'bare-v3-out.zarr');
  await tesseraOk(['run', '--input', v3, '--output', bOut, '--preset', 'synthetic-em', '--mode', 'one-stage']);
  assert.equal(checksum(path.join(bOut, 'segmentation')), checksum(path.join(dir, 'bare-v2-out.zarr', 'segmentation')));
  // A lower pyramid level given as the input has its own voxel size: refused, not run at the
  // full resolution's.
  await fault(['run', '--input', path.join(vol, '1'), '--output', path.join(dir, 'level1-out.zarr'), '--preset', 'synthetic-em'], 2, /voxel size \[40,8,8\] differs from the config's \[40,4,4\]/, [vol]);
});

test('disk full: "no space left on device writing PATH", status failed, never running; the run resumes once there is room', async (t) => {
  // A small tmpfs holds the output (this needs root, as CI and the development machines run).
  const small = path.join(dir, 'small-disk');
  fs.mkdirSync(small);
  const mounted = await new Promise<boolean>((resolve) => {
    const m = spawn('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', small], { stdio: 'ignore' });
    m.on('error', () => resolve(false));
    m.on('exit', (code) => resolve(code === 0));
  });
  if (!mounted) {
    t.skip('mounting a tmpfs needs root');
    return;
  }
  try {
    // Fill it but for a few KiB: the metadata fits (or part of it), the results do not.
    const filler = path.join(small, 'filler');
    fs.writeFileSync(filler, Buffer.alloc(4096 * 1024 - 80 * 1024));
    const out = path.join(small, 'out.zarr');
    const r = await tessera(['run', '--input', vol, '--output', out, '--preset', 'synthetic-em', '--mode', 'one-stage', '--json']);
    assert.ok(r.code === 1 || r.code === 2, `exit ${r.code}\n${r.stderr}`);
    assert.match(r.stderr + r.stdout, /no space left on device/);
    assert.match(r.stderr + r.stdout, new RegExp(`${out.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\S*`));
    assert.ok(!/\n\s+at /.test(r.stderr), 'no stack trace');
    if (fs.existsSync(path.join(out, 'run.json'))) {
      assert.notEqual(JSON.parse(fs.readFileSync(path.join(out, 'run.json'), 'utf8')).status, 'running');
    }
    // Room again: the same command finishes the run.
    fs.rmSync(filler);
    const again = await tessera(['run', '--input', vol, '--output', out, '--preset', 'synthetic-em', '--mode', 'one-stage']);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(JSON.parse(fs.readFileSync(path.join(out, 'run.json'), 'utf8')).status, 'complete');
    // Full while the output is being created: refused (2), recorded failed; then created anew.
    const out2 = path.join(small, 'out2.zarr');
    fs.writeFileSync(filler, Buffer.alloc(fs.statfsSync(small).bavail * fs.statfsSync(small).bsize - 12 * 1024));
    const early = await tessera(['run', '--input', vol, '--output', out2, '--preset', 'synthetic-em', '--mode', 'one-stage']);
    assert.equal(early.code, 2, early.stderr);
    assert.match(early.stderr, /out2\.zarr\/\S+: no space left on device/);
    if (fs.existsSync(path.join(out2, 'run.json'))) assert.equal(JSON.parse(fs.readFileSync(path.join(out2, 'run.json'), 'utf8')).status, 'failed');
    fs.rmSync(filler);
    await tesseraOk(['run', '--input', vol, '--output', out2, '--preset', 'synthetic-em', '--mode', 'one-stage']);
    assert.equal(checksum(path.join(out2, 'segmentation')), checksum(path.join(out, 'segmentation')));
  } finally {
    await new Promise((resolve) => spawn('umount', [small], { stdio: 'ignore' }).on('exit', resolve));
  }
});

test('permission denied: one line naming the path; nothing else touched', async () => {
  // As root (CI, the development machines) permissions do not bind: run without the capabilities
  // that override them (still root, so a checkout in a 0700 directory stays readable).
  const box = fs.mkdtempSync(path.join(os.tmpdir(), 'tessera-eacces-'));
  try {
    fs.chmodSync(box, 0o755);
    const input = path.join(box, 'vol.zarr');
    fs.cpSync(vol, input, { recursive: true });
    const ro = path.join(box, 'read-only');
    fs.mkdirSync(ro, { mode: 0o555 });
    fs.chmodSync(ro, 0o555);
    const walk = (p: string) => { fs.chmodSync(p, fs.statSync(p).isDirectory() ? 0o755 : 0o644); if (fs.statSync(p).isDirectory()) for (const e of fs.readdirSync(p)) walk(path.join(p, e)); };
    walk(input);
    const keep = checksum(input);
    const args = [path.join(ROOT, 'bin', 'tessera.mjs'), 'run', '--input', input, '--output', path.join(ro, 'out.zarr'), '--preset', 'synthetic-em'];
    const asRoot = process.getuid?.() === 0;
    const cmd = asRoot ? 'setpriv' : process.execPath;
    const argv = asRoot ? ['--bounding-set=-dac_override,-dac_read_search', process.execPath, ...args] : args;
    const r = await new Promise<{ code: number; stderr: string }>((resolve) => {
      const p = spawn(cmd, argv, { cwd: box, env: { ...process.env, HOME: box, TESSERA_LOG: 'warn' } });
      let stderr = '';
      p.stderr.on('data', (d) => (stderr += d));
      p.on('close', (code) => resolve({ code: code ?? -1, stderr }));
    });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /^tessera: output \S+read-only\/out\.zarr: cannot create its lock file: \S+read-only\/out\.zarr\.lock: permission denied$/m);
    assert.equal(checksum(input), keep);
    assert.deepEqual(fs.readdirSync(ro), []);
  } finally {
    fs.rmSync(box, { recursive: true, force: true });
  }
});

test('a model card whose tensor names are not the graph\'s is refused before any work, naming both', async () => {
  const models = path.join(dir, 'models-renamed');
  fs.mkdirSync(models);
  for (const f of ['synthetic-em-fullres.onnx', 'synthetic-em-lowres.onnx', 'synthetic-em-lowres.json']) fs.copyFileSync(path.join(ROOT, 'models', f), path.join(models, f));
  const card = JSON.parse(fs.readFileSync(path.join(ROOT, 'models', 'synthetic-em-fullres.json'), 'utf8'));
  fs.writeFileSync(path.join(models, 'synthetic-em-fullres.json'), JSON.stringify({ ...card, outputName: 'probabilities' }));
  const cfg = path.join(dir, 'renamed.json');
  fs.writeFileSync(cfg, JSON.stringify({ extends: 'synthetic-em', models: { fullres: path.join(models, 'synthetic-em-fullres.onnx'), lowres: path.join(models, 'synthetic-em-lowres.onnx') } }));
  const out = path.join(dir, 'renamed-out.zarr');
  await fault(['run', '--input', vol, '--output', out, '--config', cfg], 2, /card names input "input" and output "probabilities", but the graph has inputs \[input\] and outputs \[logits\]/, [vol, models]);
});
