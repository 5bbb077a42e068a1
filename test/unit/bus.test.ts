// The bus's pure parts: names, message validation, connection options, path confinement.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  type TaskKind, ConfigError, MAX_BATCH, MessageError, roleOf, busOptions, checkRunId, describeBus, encode, loadConfig, parseResult, parseRunRecord, parseTask, runNames, nextScope, staleness,
} from '../../shared/index.ts';
import { defaultRunId } from '../../services/cli/flags.ts';
import { confine } from '../../services/worker/loop.ts';
import { classify } from '../../services/worker/follow.ts';
import { batchSize } from '../../services/coordinator/executor.ts';

const enc = (v: unknown) => new TextEncoder().encode(typeof v === 'string' ? v : JSON.stringify(v));
const expect = { run: 'r1', kinds: ['stage1', 'paste'] };

test('run names: namespaced per run, role filters that never overlap, every task kind has a role', () => {
  const a = runNames('r1');
  const b = runNames('r2');
  assert.notEqual(a.tasksStream, b.tasksStream);
  assert.notEqual(a.task('paste'), b.task('paste'));
  assert.equal(a.task('stage1'), 'tessera.r1.task.worker.stage1');
  assert.equal(a.task('faces'), 'tessera.r1.task.merger.faces');
  assert.ok(a.task('paste').startsWith(a.taskFilter('worker').slice(0, -1)));
  assert.ok(!a.task('boxes').startsWith(a.taskFilter('worker').slice(0, -1)));
  const roles = ['stage1', 'boxes', 'stage2', 'paste', 'predict', 'blend', 'faces', 'merge1', 'merge12', 'resolve3', 'relabel'].map((k) => roleOf(k as TaskKind));
  assert.deepEqual(roles, ['worker', 'merger', 'worker', 'worker', 'worker', 'worker', 'merger', 'merger', 'merger', 'merger', 'worker']);
  assert.equal(a.task('merge2'), 'tessera.r1.task.merger.merge2');
  for (const bad of ['resolve', 'merge0', 'merge01', 'split']) assert.throws(() => roleOf(bad as TaskKind), /no role/, bad);
  for (const bad of ['', 'a.b', 'a b', 'a*', 'x'.repeat(65), 'tab\t']) assert.throws(() => checkRunId(bad), ConfigError, bad);
  assert.equal(checkRunId('fafb_v14-run-2'), 'fafb_v14-run-2');
});

test('the default run id is stable per output path and valid', () => {
  const id = defaultRunId('/data/out put.zarr');
  assert.equal(id, defaultRunId('/data/out put.zarr'));
  assert.notEqual(id, defaultRunId('/other/out put.zarr'));
  assert.match(id, /^out_put-[0-9a-f]{8}$/);
  checkRunId(defaultRunId('/x/' + 'é'.repeat(80)));
});

test('task messages: valid ones parse; anything else is a MessageError naming the fault', () => {
  assert.deepEqual(parseTask('s', enc({ v: 1, run: 'r1', kind: 'paste', indices: [[0, 1, 2], [0, 1, 3]], identity: 'id', epoch: 3 }), expect), { v: 1, run: 'r1', kind: 'paste', indices: [[0, 1, 2], [0, 1, 3]], identity: 'id', epoch: 3 });
  // Without kinds (a worker): any kind parses; the worker checks it against the task's scope.
  assert.equal(parseTask('s', enc({ v: 1, run: 'r1', kind: 'merge7', indices: [[0, 0, 0]], identity: 'id', epoch: 1 }), { run: 'r1' }).kind, 'merge7');
  const m = (indices: unknown, extra: Record<string, unknown> = {}) => ({ v: 1, run: 'r1', kind: 'paste', indices, identity: 'id', epoch: 1, ...extra });
  const bad: [unknown, RegExp][] = [
    ['{"v":1,', /not JSON/],
    [[1, 2], /not a JSON object/],
    [m([[0, 0, 0]], { v: 2 }), /version/],
    [m([[0, 0, 0]], { run: 'r2' }), /belongs to run "r2"/],
    [m([[0, 0, 0]], { kind: 'faces' }), /task kind "faces"/],
    [m([[0, 0]]), /indices\[0\]/],
    [m([[0, 0, 0], [0, -1, 0]]), /indices\[1\]/],
    [m([[0, 0.5, 0]]), /indices\[0\]/],
    [m([]), /1–1024 entries/],
    [m(Array.from({ length: MAX_BATCH + 1 }, () => [0, 0, 0])), /1–1024 entries/],
    [m([0, 0, 0]), /indices\[0\]/],
    [{ v: 1, run: 'r1', kind: 'paste', index: [0, 0, 0], epoch: 1 }, /indices/],
    [{ v: 1, run: 'r1', kind: 'paste', indices: [[0, 0, 0]], identity: 'id' }, /epoch/],
    [{ v: 1, run: 'r1', kind: 'paste', indices: [[0, 0, 0]], epoch: 1 }, /identity/],
  ];
  for (const [x, re] of bad) assert.throws(() => parseTask('tessera.r1.task.worker.paste', enc(x), expect), (e: unknown) => e instanceof MessageError && re.test(e.message), JSON.stringify(x).slice(0, 80));
});

test('result messages: one outcome per task; counters must be finite numbers; a failure carries its error', () => {
  const one = { index: [0, 0, 0], ok: true, stats: { boxes: 3 }, ms: 12.5 };
  const r = (results: unknown[], extra: Record<string, unknown> = {}) => enc({ v: 1, run: 'r1', kind: 'stage1', results, identity: 'id', epoch: 2, worker: 'h/1', delivery: 1, ...extra });
  const got = parseResult('s', r([one, { ...one, index: [0, 0, 1], ok: false, error: 'boom', stats: {} }]), expect);
  assert.equal(got.results[0].stats.boxes, 3);
  assert.equal(got.results[1].error, 'boom');
  assert.deepEqual(got.results[1].index, [0, 0, 1]);
  assert.throws(() => parseResult('s', r([one, { ...one, stats: { boxes: 'x' } }]), expect), /results\[1\].*stats/);
  assert.throws(() => parseResult('s', r([{ ...one, ok: false }]), expect), /needs its error/);
  assert.throws(() => parseResult('s', r([{ ...one, index: [1, 2] }]), expect), /results\[0\].*index/);
  assert.throws(() => parseResult('s', r([one], { delivery: 0 }), expect), /delivery/);
  assert.throws(() => parseResult('s', r([]), expect), /results must be a list/);
  // A result echoes its task's identity and epoch: without them it cannot be told current from stale.
  assert.deepEqual([got.identity, got.epoch], ['id', 2]);
  assert.throws(() => parseResult('s', r([one], { identity: undefined }), expect), /identity/);
  assert.throws(() => parseResult('s', r([one], { epoch: undefined }), expect), /epoch/);
});

test('scopes: a restart for the same work keeps the scope; another identity, ROI or output begins one; staleness by epoch and identity', () => {
  const roi = { begin: [0, 0, 0] as [number, number, number], end: [32, 512, 512] as [number, number, number] };
  const prev = { identity: 'A', roi, epoch: 3, scopeEpoch: 2 };
  assert.deepEqual(nextScope(prev, { identity: 'A', roi }, { epoch: 4, resumed: true }), { scopeEpoch: 2, changed: false });
  assert.deepEqual(nextScope(prev, { identity: 'B', roi }, { epoch: 4, resumed: true }), { scopeEpoch: 4, changed: true });
  assert.deepEqual(nextScope(prev, { identity: 'A', roi: { ...roi, end: [32, 512, 1024] } }, { epoch: 4, resumed: true }), { scopeEpoch: 4, changed: true });
  assert.deepEqual(nextScope(prev, { identity: 'A', roi }, { epoch: 4, resumed: false }), { scopeEpoch: 4, changed: true }, '--overwrite or a new output');
  assert.deepEqual(nextScope(undefined, { identity: 'A', roi }, { epoch: 1, resumed: false }), { scopeEpoch: 1, changed: false });
  const scope = { identity: 'A', scopeEpoch: 2 };
  assert.equal(staleness({ identity: 'A', epoch: 2 }, scope), undefined);
  assert.equal(staleness({ identity: 'A', epoch: 5 }, scope), undefined);
  assert.equal(staleness({ identity: 'A', epoch: 1 }, scope), 'epoch', 'an epoch of an older scope');
  assert.equal(staleness({ identity: 'B', epoch: 3 }, scope), 'identity');
});

test('a worker serves a task of its scope, hands back one of a newer epoch, drops one of an older scope', () => {
  const job = { kinds: [{ name: 'paste', range: { lo: [0, 0, 0] as [number, number, number], hi: [1, 2, 2] as [number, number, number] } }] };
  const latest = { identity: 'A', epoch: 3, scopeEpoch: 2 };
  const a = { scope: latest, kinds: ['paste'], job };
  const msg = (index: [number, number, number], extra: Partial<{ identity: string; epoch: number; kind: string }> = {}) => ({ v: 1 as const, run: 'r', kind: 'paste', indices: [index], identity: 'A', epoch: 3, ...extra });
  assert.deepEqual(classify(msg([0, 1, 1]), latest, a), { kind: 'serve' });
  assert.equal(classify(msg([0, 1, 1], { epoch: 2 }), latest, a).kind, 'serve', 'an earlier epoch of the same scope');
  assert.equal(classify(msg([0, 1, 1], { epoch: 1 }), latest, a).kind, 'stale');
  assert.equal(classify(msg([0, 1, 1], { identity: 'B' }), latest, a).kind, 'stale');
  // Newer than the record, or than the job this worker is attached to: never terminated.
  assert.equal(classify(msg([0, 1, 5], { epoch: 4, identity: 'B' }), latest, a).kind, 'later');
  assert.equal(classify(msg([0, 1, 5]), latest, { ...a, scope: { identity: 'A', epoch: 2, scopeEpoch: 2 } }).kind, 'later');
  // Of the current scope and attached to it, yet outside the grid: a bad message.
  assert.match((classify(msg([0, 1, 5]), latest, a) as { why: string }).why, /outside the run's paste grid/);
  assert.equal(classify(msg([0, 0, 0], { kind: 'relabel' }), latest, a).kind, 'bad');
});

test('batchSize: one task per message until measured, then about batchSeconds of work, capped by batch and inFlight / 8', () => {
  const n = { batch: 64, batchSeconds: 1, inFlight: 256 };
  assert.equal(batchSize(undefined, n), 1);
  assert.equal(batchSize(2000, n), 1);
  assert.equal(batchSize(100, n), 10);
  assert.equal(batchSize(0, n), 32, 'inFlight / 8');
  assert.equal(batchSize(0, { ...n, inFlight: 4096 }), 64, 'batch');
  assert.equal(batchSize(0, { ...n, batch: 1 }), 1);
  assert.equal(batchSize(0, { ...n, inFlight: 4 }), 1);
});

test('run records round-trip and are validated', () => {
  const config = loadConfig({ preset: 'synthetic-em' });
  const r = { v: 1 as const, run: 'r1', input: '/in.zarr', output: '/out.zarr', roi: { begin: [0, 0, 0] as [number, number, number], end: [8, 8, 8] as [number, number, number] }, config, identity: 'abc', epoch: 1, scopeEpoch: 1, status: 'running' as const, coordinator: 'h/1', updatedAt: 'now' };
  assert.deepEqual(parseRunRecord('k', encode(r)), { ...r, progress: undefined });
  assert.throws(() => parseRunRecord('k', encode({ ...r, status: 'done' as never })), /status/);
  assert.throws(() => parseRunRecord('k', encode({ ...r, epoch: 0 })), /epoch/);
  // A record written before scopes: its scope began with the run.
  const { scopeEpoch: _, ...old } = { ...r, epoch: 4 };
  assert.equal(parseRunRecord('k', new TextEncoder().encode(JSON.stringify(old))).scopeEpoch, 1);
});

test('connection options: credentials leave the URL and never reach the description', () => {
  const o = busOptions('nats://alice:pa%24%24@10.0.0.1:4222,nats://10.0.0.2:4222', 'test', {});
  assert.deepEqual(o.servers, ['nats://10.0.0.1:4222', 'nats://10.0.0.2:4222']);
  assert.equal(o.user, 'alice');
  assert.equal(o.password, 'pa$$');
  const d = JSON.stringify(describeBus(o));
  assert.ok(!d.includes('pa$$') && d.includes('user alice'), d);
  const env = { TESSERA_NATS_URL: 'nats://h:1', TESSERA_NATS_TOKEN: 'tok' };
  assert.equal(busOptions(undefined, 't', env).token, 'tok');
  assert.ok(!JSON.stringify(describeBus(busOptions(undefined, 't', env))).includes('tok"'));
  assert.throws(() => busOptions(undefined, 't', {}), /no server/);
  assert.throws(() => busOptions('nats://h:1', 't', { TESSERA_NATS_CREDS: '/nonexistent/x.creds' }), /TESSERA_NATS_CREDS: file \/nonexistent\/x.creds not found/);
  assert.throws(() => busOptions('nats://h:1', 't', { TESSERA_NATS_TLS_CA: '/nonexistent/ca.pem' }), /TESSERA_NATS_TLS_CA/);
});

test('a worker confined to roots refuses a run outside them', () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tessera-root-'));
  try {
    const run = { run: 'r', input: path.join(root, 'in.zarr'), output: path.join(root, 'sub', 'out.zarr') };
    confine(run, []);
    confine(run, [root]);
    assert.throws(() => confine({ ...run, output: '/elsewhere/out.zarr' }, [root]), /\/elsewhere\/out.zarr, outside this worker's roots/);
    assert.throws(() => confine({ ...run, input: path.join(root, '..', 'x.zarr') }, [root]), ConfigError);
    assert.throws(() => confine(run, [path.join(root, 'sub')]), /in\.zarr/);
    // The tissue mask is read by every worker too: confined like the input.
    confine(run, [root], path.join(root, 'mask.zarr'));
    assert.throws(() => confine(run, [root], '/elsewhere/mask.zarr'), /\/elsewhere\/mask\.zarr, outside this worker's roots/);
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test('system errors read as one line: the device state before the path, a path state after it', async () => {
  const { oneLine } = await import('../../shared/index.ts');
  const err = (code: string, syscall: string, p?: string) => Object.assign(new Error(`${code}: raw`), { code, syscall, path: p });
  assert.equal(oneLine(err('ENOSPC', 'write', '/out/seg/0/1.2.3')), 'no space left on device writing /out/seg/0/1.2.3');
  assert.equal(oneLine(err('EACCES', 'open', '/out')), '/out: permission denied');
  assert.equal(oneLine(err('ENOTDIR', 'mkdir', '/a/file/x')), '/a/file/x: a path component is not a directory');
  assert.equal(oneLine(new MessageError('s', 'bad')), 'message on s: bad');
  assert.equal(oneLine(new Error('plain')), 'plain');
});
