// Issue 23, "no stale state": what an output holds always belongs to the run that wrote it —
// the run identity includes the input, a stage-one background survives until paste reads it,
// Ctrl-C ends a run cleanly, and what `status` and resumes report comes from the output itself.
// Each case runs the real CLI on small synthetic volumes.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { type ChildProcess, spawn } from 'node:child_process';
import { tessera, tesseraOk, tmpDir, filesUnder, ROOT } from '../helpers/cli.ts';

let dir: string;
let vol: string;
/** 32×256×256: a one-stage run of 8 chunks of 16×128×128 takes a few seconds. */
let big: string;

interface Running {
  p: ChildProcess;
  stderr: () => string;
  exit: Promise<number>;
}

/** Start `tessera args` in the background. */
function start(args: string[]): Running {
  const p = spawn(process.execPath, [path.join(ROOT, 'bin', 'tessera.mjs'), ...args], { env: { ...process.env, TESSERA_LOG: 'warn' }, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  p.stderr!.on('data', (d) => (stderr += d));
  const exit = new Promise<number>((r) => p.on('close', (code, sig) => r(code ?? (sig ? -1 : -2))));
  return { p, stderr: () => stderr, exit };
}

/** Wait until `f` holds (polling), failing after `ms`. */
async function until(f: () => boolean, what: string, ms = 60_000): Promise<void> {
  for (const t0 = Date.now(); !f();) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Lines of a done log (0 when it does not exist yet). */
function doneLines(out: string, kind: string): string[] {
  const f = path.join(out, '.work', 'done', `${kind}.log`);
  return fs.existsSync(f) ? fs.readFileSync(f, 'utf8').split('\n').filter(Boolean) : [];
}

function sameFiles(a: string, b: string, sub: string): void {
  const fa = filesUnder(path.join(a, sub));
  const fb = filesUnder(path.join(b, sub));
  assert.deepEqual([...fa.keys()].sort(), [...fb.keys()].sort(), `${sub}: same chunk files`);
  for (const [k, v] of fa) assert.ok(v.equals(fb.get(k)!), `${sub}/${k} differs`);
}

const runJson = (out: string) => JSON.parse(fs.readFileSync(path.join(out, 'run.json'), 'utf8'));

function config(name: string, doc: Record<string, unknown>): string {
  const file = path.join(dir, `${name}.json`);
  fs.writeFileSync(file, JSON.stringify({ extends: 'synthetic-em', ...doc }));
  return file;
}

before(async () => {
  dir = tmpDir();
  vol = path.join(dir, 'vol.zarr');
  await tesseraOk(['synth', '--kind', 'em', '--shape', '16,128,128', '--seed', '21', '--out', vol]);
  big = path.join(dir, 'big.zarr');
  await tesseraOk(['synth', '--kind', 'em', '--shape', '32,256,256', '--seed', '5', '--out', big]);
});

after(() => fs.rmSync(dir, { recursive: true, force: true }));

test('stage2.background "stage1": paste reads the stage-one heatmap before it is freed; the run completes and resumes', async () => {
  const cfg = config('bg', { stage2: { background: 'stage1' } });
  const out = path.join(dir, 'bg.zarr');
  const r = await tessera(['run', '--input', vol, '--output', out, '--config', cfg, '--json']);
  assert.equal(r.code, 0, r.stderr);
  const rep = JSON.parse(r.stdout);
  assert.equal(rep.status, 'complete');
  assert.deepEqual(rep.failures, []);
  assert.ok(!fs.existsSync(path.join(out, '.work', 'stage1', '0_0_0.f32')), 'freed once paste is done');
  // The same command again resumes: every task reused, still complete.
  const again = JSON.parse((await tesseraOk(['run', '--input', vol, '--output', out, '--config', cfg, '--json'])).stdout);
  assert.equal(again.status, 'complete');
  assert.equal(again.tasks.paste.reused, 1);
});

test('the run identity includes the input: a resume with another --input is refused, naming the input and what differs', async () => {
  const other = path.join(dir, 'other.zarr');
  await tesseraOk(['synth', '--kind', 'em', '--shape', '16,128,128', '--seed', '22', '--chunks', '16,64,64', '--out', other]);
  const out = path.join(dir, 'ident.zarr');
  await tesseraOk(['run', '--input', vol, '--output', out, '--preset', 'synthetic-em', '--mode', 'one-stage']);
  const before = runJson(out);
  assert.equal(before.identity.input.location, fs.realpathSync(vol));
  const r = await tessera(['run', '--input', other, '--output', out, '--preset', 'synthetic-em', '--mode', 'one-stage']);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /ident\.zarr: holds a complete run with another config, models or input — input: \S*vol\.zarr → \S*other\.zarr; input metadata of \S*other\.zarr: level 0: 16x128x128 uint8, chunks 16,128,128.* → level 0: 16x128x128 uint8, chunks 16,64,64/);
  assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  assert.deepEqual(runJson(out), before, 'the refused resume wrote nothing');
  // A run.json written before the identity included the input: refused, saying why.
  const old = { ...before, identity: { ...before.identity, input: undefined, hash: 'f'.repeat(64) } };
  fs.writeFileSync(path.join(out, 'run.json'), JSON.stringify(old));
  const o2 = await tessera(['run', '--input', vol, '--output', out, '--preset', 'synthetic-em', '--mode', 'one-stage']);
  assert.equal(o2.code, 2, o2.stderr);
  assert.match(o2.stderr, /input: not recorded \(run\.json written by a Tessera before the run identity included the input\).*resuming across that upgrade is refused/);
  // The same input again (another path to it is the same place): resumed.
  fs.writeFileSync(path.join(out, 'run.json'), JSON.stringify(before));
  const link = path.join(dir, 'vol-link.zarr');
  fs.symlinkSync(vol, link);
  await tesseraOk(['run', '--input', link, '--output', out, '--preset', 'synthetic-em', '--mode', 'one-stage']);
  assert.equal(runJson(out).status, 'complete');
});

test('a stopped run whose lock was taken over is fenced when it continues: it stops, writes nothing more, and the new holder completes bit for bit', async () => {
  const cfg = config('fence', { mode: 'one-stage', io: { chunk: [16, 128, 128], lockStale: 2 }, inference: { threads: 1 } });
  const clean = path.join(dir, 'fence-clean.zarr');
  await tesseraOk(['run', '--input', big, '--output', clean, '--config', cfg]);
  const out = path.join(dir, 'fence.zarr');
  const args = ['run', '--input', big, '--output', out, '--config', cfg];
  const a = start(args);
  await until(() => doneLines(out, 'predict').length >= 1, 'run A to finish a task');
  a.p.kill('SIGSTOP');
  // Longer than io.lockStale: A's beat is stale, B takes the lock over.
  await new Promise((r) => setTimeout(r, 3_000));
  const b = start(args);
  await until(() => fs.existsSync(`${out}.lock`) && JSON.parse(fs.readFileSync(`${out}.lock`, 'utf8')).pid === b.p.pid, 'run B to take the lock over');
  a.p.kill('SIGCONT');
  const codeA = await a.exit;
  assert.notEqual(codeA, 0, a.stderr());
  const linesA = a.stderr().split('\n').filter((l) => l.trim() && !l.startsWith('{'));
  assert.equal(linesA.length, 1, a.stderr());
  assert.match(linesA[0], new RegExp(`fence\\.zarr: fenced — its lock \\S+ was taken over by tessera pid ${b.p.pid}`));
  assert.doesNotMatch(a.stderr(), /terminate called|Napi/);
  assert.equal(await b.exit, 0, b.stderr());
  assert.equal(runJson(out).status, 'complete');
  assert.ok(!fs.existsSync(`${out}.lock`));
  // A wrote no done line after it was fenced: no task is logged twice (B reran what A had in hand).
  for (const kind of ['predict', 'blend', 'faces', 'relabel']) {
    const lines = doneLines(out, kind);
    assert.equal(new Set(lines).size, lines.length, `${kind}: a task logged twice`);
  }
  for (const sub of ['segmentation', 'instances']) sameFiles(out, clean, sub);
});

test('Ctrl-C or SIGTERM at any point (opening, stage one, stage two, paste, one-stage): exit 130/143, one line, run.json interrupted, no lock; the same command resumes', async () => {
  const one = config('sig-one', { mode: 'one-stage', io: { chunk: [16, 128, 128] }, inference: { threads: 1 } });
  const two = config('sig-two', { io: { chunk: [32, 128, 128] }, boxes: { cropThreshold: [16, 64, 64], recrop: [16, 32, 32] }, inference: { threads: 1 } });
  // 32×1024×1024 with the preset: stage one and two keep several batches in flight, which is
  // where a stop used to abort natively (exit 134, "terminate called … Napi::Error").
  const large = path.join(dir, 'large.zarr');
  await tesseraOk(['synth', '--kind', 'em', '--shape', '32,1024,1024', '--seed', '5', '--out', large]);
  const preset = config('sig-preset', {});
  // [name, input, config, when to send the signal, signal]
  const points: [string, string, string, (out: string, stderr: string) => boolean, NodeJS.Signals][] = [
    ['opening', big, two, (out) => fs.existsSync(`${out}.lock`), 'SIGINT'],
    ['stage one', large, preset, (_, e) => /run started/.test(e), 'SIGINT'],
    ['stage two', large, preset, (out) => doneLines(out, 'boxes').length > 0, 'SIGINT'],
    ['paste', big, two, (out) => doneLines(out, 'stage2').length > 0, 'SIGINT'],
    ['one-stage predict', big, one, (out) => doneLines(out, 'predict').length > 0, 'SIGINT'],
    ['one-stage, SIGTERM', big, one, (out) => doneLines(out, 'predict').length > 1, 'SIGTERM'],
  ];
  for (const [name, input, cfg, when, sig] of points) {
    const out = path.join(dir, `sig-${name.replace(/\W+/g, '-')}.zarr`);
    const args = ['run', '--input', input, '--output', out, '--config', cfg];
    const p = spawn(process.execPath, [path.join(ROOT, 'bin', 'tessera.mjs'), ...args], { env: { ...process.env, TESSERA_LOG: 'info' }, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    p.stderr!.on('data', (d) => (stderr += d));
    const exit = new Promise<number>((r) => p.on('close', (code, s) => r(code ?? (s === 'SIGABRT' ? 134 : -1))));
    await until(() => when(out, stderr), `${name}: its point`);
    p.kill(sig);
    const code = await exit;
    const lines = stderr.split('\n').filter((l) => l.trim() && !l.startsWith('{'));
    assert.equal(code, sig === 'SIGINT' ? 130 : 143, `${name}: exit code\n${stderr}`);
    assert.doesNotMatch(stderr, /terminate called|Napi|inference pool closed|\n\s+at /, `${name}: a clean stop\n${stderr}`);
    assert.equal(lines.length, 1, `${name}: one line\n${stderr}`);
    assert.match(lines[0], /interrupted.*re-run the same command to resume/, name);
    assert.equal(runJson(out).status, 'interrupted', name);
    assert.ok(!fs.existsSync(`${out}.lock`), `${name}: the lock is released`);
    await tesseraOk(args);
    assert.equal(runJson(out).status, 'complete', name);
  }
});

test('a resume that reuses every task reports the run\'s two-stage counts, not zeros; unrecorded counts are marked not measured', async () => {
  const out = path.join(dir, 'counts.zarr');
  const args = ['run', '--input', vol, '--output', out, '--preset', 'synthetic-em', '--json'];
  const first = JSON.parse((await tesseraOk(args)).stdout);
  assert.ok(first.twoStage.boxes > 0, 'the run has boxes');
  assert.equal(first.twoStage.measured, true);
  const again = JSON.parse((await tesseraOk(args)).stdout);
  assert.equal(again.tasks.stage2.ran, 0, 'every task reused');
  assert.deepEqual(again.twoStage, first.twoStage);
  // A run.json of an older Tessera carries no counters: this session's (none) are marked so.
  const doc = runJson(out);
  delete doc.taskStats;
  fs.writeFileSync(path.join(out, 'run.json'), JSON.stringify(doc));
  const old = JSON.parse((await tesseraOk(args)).stdout);
  assert.equal(old.twoStage.measured, false);
  // boxes.json: a run with more boxes than the merged view takes leaves none behind.
  assert.ok(fs.existsSync(path.join(out, 'boxes.json')));
  const { writeBoxesJson } = await import('../../shared/tasks/boxes-output.ts');
  const { range3 } = await import('../../shared/geometry/grid.ts');
  assert.equal(await writeBoxesJson(out, range3([0, 0, 0], [1, 1, 1]), [16, 128, 128], 0), false);
  assert.ok(!fs.existsSync(path.join(out, 'boxes.json')), 'no stale boxes.json');
});

test('a resume may extend the ROI but not shrink or move it: refused naming both ROIs, the output untouched', async () => {
  const out = path.join(dir, 'roi.zarr');
  const run = (roi: string) => tessera(['run', '--input', vol, '--output', out, '--preset', 'synthetic-em', '--mode', 'one-stage', '--roi', roi]);
  assert.equal((await run('0:16,0:64,0:128')).code, 0);
  assert.equal((await run('0:16,0:128,0:128')).code, 0, 'extended');
  const before = fs.readFileSync(path.join(out, 'run.json'));
  for (const roi of ['0:16,0:64,0:128', '0:16,64:128,0:128']) {
    const r = await run(roi);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, new RegExp(`config roi: ${roi} does not contain the ROI 0:16,0:128,0:128 of the run in \\S*roi\\.zarr: resuming may only extend the ROI.*--overwrite`));
    assert.ok(fs.readFileSync(path.join(out, 'run.json')).equals(before), 'run.json untouched');
    assert.ok(!fs.existsSync(`${out}.lock`));
  }
  const over = await tessera(['run', '--input', vol, '--output', out, '--preset', 'synthetic-em', '--mode', 'one-stage', '--roi', '0:16,64:128,0:128', '--overwrite']);
  assert.equal(over.code, 0, `--overwrite starts over\n${over.stderr}`);
});

test('tessera status counts distinct done tasks, and ends quietly when its reader stops early', async () => {
  const cfg = config('status', { mode: 'one-stage', io: { chunk: [16, 128, 128] } });
  const out = path.join(dir, 'status.zarr');
  await tesseraOk(['run', '--input', big, '--output', out, '--config', cfg]);
  // A log holding a task several times (ran again after a resume) and a line cut short by a crash.
  const log = path.join(out, '.work', 'done', 'blend.log');
  const lines = fs.readFileSync(log, 'utf8').split('\n').filter(Boolean);
  fs.writeFileSync(log, [lines[0], lines[1], lines[0], lines[0], lines[1], lines[2].slice(0, -1)].join('\n') + '\n');
  const v = JSON.parse((await tesseraOk(['status', out, '--json'])).stdout);
  assert.equal(v.tasks.blend.done, 2);
  assert.equal(v.tasks.blend.total, 8);
  // `tessera status OUT | true`: the pipe is closed before status writes.
  const r = await new Promise<{ code: number; stderr: string }>((resolve) => {
    const p = spawn('bash', ['-c', `"${process.execPath}" "${path.join(ROOT, 'bin', 'tessera.mjs')}" status "${out}" | true; exit \${PIPESTATUS[0]}`], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    p.stderr!.on('data', (d) => (stderr += d));
    p.on('close', (code) => resolve({ code: code ?? -1, stderr }));
  });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, '');
});
