// Distributed runs over a real nats-server (started and stopped by these tests, file-backed
// JetStream) with the real CLI processes, models and Zarr: the output must equal the embedded
// runner's bit for bit whatever the number of workers and whatever dies along the way.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { type ChildProcess, spawn } from 'node:child_process';
import { connect } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { tessera, tesseraOk, tmpDir, filesUnder, ROOT } from '../helpers/cli.ts';
import { closeBrokerFixture, doneLines, exited, openBrokerFixture, sameOutput, service, until } from '../helpers/services.ts';
import { type NatsServer, freePort, startNats } from '../helpers/nats.ts';
import {
  type Vec3, Scheduler, drive, ensureRunStreams, freshResultsConsumer, loadConfig, removeRunStreams, runNames, runsBucket, silentLogger, taskId, writeRun,
} from '../../shared/index.ts';
import { runWorker } from '../../services/worker/loop.ts';
import { busExecutor } from '../../services/coordinator/executor.ts';

let dir: string;
let vol: string;
let cfg: string;
let embedded: string;
let nats: NatsServer;

const CLI = path.join(ROOT, 'bin', 'tessera.mjs');
// Short ack wait: a killed worker's task is handed out again within seconds.
const CONFIG = {
  extends: 'synthetic-em',
  boxes: { cropThreshold: [16, 64, 64], recrop: [16, 32, 32] },
  // Fan-in 2: the id reduction has two levels of regions for the mergers to share.
  io: { chunk: [32, 128, 128], chunksInFlight: 1, mergeFanIn: [2, 2, 2] },
  inference: { threads: 1 },
  nats: { ackWait: 3, inFlight: 16 },
};







async function runNats(out: string, more: string[] = [], env: Record<string, string> = {}) {
  const r = await tessera(['run', '--nats', nats.url, '--input', vol, '--output', out, '--config', cfg, '--json', ...more], env);
  return { ...r, report: r.stdout ? JSON.parse(r.stdout) : undefined };
}

/** A role's consumer: tasks held (delivered, not acknowledged) and deliveries so far. */
async function consumer(run: string, role: 'worker' | 'merger'): Promise<{ held: number; deliveries: number }> {
  const nc = await connect({ servers: nats.url });
  try {
    const ci = await (await jetstreamManager(nc)).consumers.info(`TESSERA_${run}_TASKS`, role);
    return { held: ci.num_ack_pending, deliveries: ci.delivered.consumer_seq };
  } catch {
    return { held: 0, deliveries: 0 };
  } finally {
    await nc.close();
  }
}

const ackPending = async (run: string, role: 'worker' | 'merger') => (await consumer(run, role)).held;

const ranTotal = (r: any) => Object.values(r.tasks as Record<string, { ran: number }>).reduce((n, t) => n + t.ran, 0);
const total = (r: any) => Object.values(r.tasks as Record<string, { total: number }>).reduce((n, t) => n + t.total, 0);

before(async () => {
  ({ dir, vol, cfg, embedded, nats } = await openBrokerFixture('32,256,384', CONFIG));
});

after(() => closeBrokerFixture({ dir, nats }));

test('one worker and merger, and three of each, give the embedded output bit for bit', async () => {
  const one = path.join(dir, 'one.zarr');
  const three = path.join(dir, 'three.zarr');
  const a = await runNats(one, ['--workers', '1']);
  assert.equal(a.code, 0, a.stderr);
  const b = await runNats(three, ['--workers', '3', '--mergers', '3', '--concurrency', '1']);
  assert.equal(b.code, 0, b.stderr);
  for (const r of [a.report, b.report]) {
    assert.equal(r.status, 'complete');
    assert.equal(ranTotal(r), total(r), 'every task ran once, to the scheduler');
    assert.equal(r.distributed.rejected, 0);
  }
  assert.deepEqual(a.report.distributed.senders, { worker: 1, merger: 1 });
  // The border tasks (boxes, faces, two levels of the id reduction) were shared.
  assert.ok(b.report.distributed.senders.merger >= 2, `mergers that reported: ${b.report.distributed.senders.merger}`);
  assert.ok(Object.keys(b.report.tasks).includes('merge2'));
  sameOutput(embedded, one);
  sameOutput(embedded, three);
  assert.equal(JSON.parse(fs.readFileSync(path.join(three, 'run.json'), 'utf8')).status, 'complete');
  // The finished run's streams are gone; its registry entry says complete.
  const s = JSON.parse((await tesseraOk(['status', b.report.distributed.run, '--nats', nats.url, '--json'])).stdout);
  assert.equal(s.status, 'complete');
  for (const [k, p] of Object.entries(s.tasks as Record<string, { done: number; total: number }>)) assert.equal(p.done, p.total, k);
  const so = JSON.parse((await tesseraOk(['status', three, '--json'])).stdout);
  assert.equal(so.status, 'complete');
  assert.deepEqual(Object.keys(so.tasks), Object.keys(b.report.tasks));
  for (const [k, p] of Object.entries(so.tasks as Record<string, { done: number; total: number }>)) assert.equal(p.done, p.total, k);
});

test('kill -9 of a worker in the middle of a task: another worker takes it over; same output', async () => {
  const out = path.join(dir, 'killed-worker.zarr');
  const run = 'killed-worker';
  const coord = service(['coordinator', '--nats', nats.url, '--run', run, '--input', vol, '--output', out, '--config', cfg, '--json']);
  const merger = service(['merger', '--nats', nats.url, '--run', run]);
  const w1 = service(['worker', '--nats', nats.url, '--run', run, '--concurrency', '1']);
  // The only root task (stage one) is in w1's hands: kill it there.
  await until('worker holding stage one', async () => doneLines(out, 'stage1') === 0 && (await ackPending(run, 'worker')) > 0);
  w1.kill('SIGKILL');
  await exited(w1);
  assert.equal(doneLines(out, 'stage1'), 0, 'killed before stage one finished');
  // A second worker takes the task over (after ack wait); SIGTERM makes it hand its task back
  // and exit 143 at once (not 0: a Job would count that as done); a third finishes the run.
  const w2 = service(['worker', '--nats', nats.url, '--run', run, '--concurrency', '1']);
  // Held by w2: delivered a second time (w1's delivery expired) and not finished.
  await until('second worker holding stage one', async () => { const c = await consumer(run, 'worker'); return c.deliveries >= 2 && c.held > 0 && doneLines(out, 'stage1') === 0; });
  const t0 = Date.now();
  w2.kill('SIGTERM');
  assert.equal(await exited(w2, 15_000), 143, w2.err());
  assert.ok(Date.now() - t0 < 10_000, 'SIGTERM: out within the grace period');
  const w3 = service(['worker', '--nats', nats.url, '--run', run, '--concurrency', '2']);
  assert.equal(await exited(coord), 0, coord.err());
  const r = JSON.parse(coord.out());
  assert.equal(r.status, 'complete');
  assert.equal(ranTotal(r), total(r), 'no task lost or counted twice');
  sameOutput(embedded, out);
  // Workers and merger leave on their own once the run is complete.
  assert.equal(await exited(w3, 30_000), 0, w3.err());
  assert.equal(await exited(merger, 30_000), 0, merger.err());
});

test('nats-server stopped and restarted mid-run: the run completes with the same output', async () => {
  const out = path.join(dir, 'broker-restart.zarr');
  const p = spawn(process.execPath, [CLI, 'run', '--nats', nats.url, '--workers', '2', '--input', vol, '--output', out, '--config', cfg, '--json'], { env: { ...process.env, TESSERA_LOG: 'error' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  p.stdout!.on('data', (d) => (stdout += d));
  p.stderr!.on('data', (d) => (stderr += d));
  await until('stage one done', () => doneLines(out, 'stage1') > 0);
  await nats.stop();
  await new Promise((r) => setTimeout(r, 1500));
  await nats.start();
  assert.equal(await exited(p), 0, stderr);
  const r = JSON.parse(stdout);
  assert.equal(r.status, 'complete');
  sameOutput(embedded, out);
});

test('coordinator killed and restarted: it resumes and does not recompute what was done', async () => {
  const out = path.join(dir, 'coord-restart.zarr');
  const run = 'coord-restart';
  const args = ['coordinator', '--nats', nats.url, '--run', run, '--input', vol, '--output', out, '--config', cfg, '--json'];
  const c1 = service(args);
  const merger = service(['merger', '--nats', nats.url, '--run', run]);
  const worker = service(['worker', '--nats', nats.url, '--run', run]);
  await until('two chunks pasted', () => doneLines(out, 'paste') >= 2);
  c1.kill('SIGKILL');
  await exited(c1);
  const before = ['stage1', 'boxes', 'stage2', 'paste'].reduce((n, k) => n + doneLines(out, k), 0);
  const c2 = service(args);
  assert.equal(await exited(c2), 0, c2.err());
  const r = JSON.parse(c2.out());
  assert.equal(r.status, 'complete');
  assert.equal(r.distributed.epoch, 2);
  const reused = Object.values(r.tasks as Record<string, { reused: number }>).reduce((n, t) => n + t.reused, 0);
  assert.ok(reused >= before, `reused ${reused} of the ${before} tasks done before the kill`);
  assert.equal(ranTotal(r) + reused + r.distributed.drained, total(r), 'each task done once: reused, drained or run');
  assert.ok(ranTotal(r) < total(r), 'the restart did not start over');
  sameOutput(embedded, out);
  await Promise.all([exited(worker, 30_000), exited(merger, 30_000)]);
});

test('a corrupt input chunk fails its tasks with the chunk named; everything else completes; nothing loops', async () => {
  const bad = path.join(dir, 'corrupt.zarr');
  fs.cpSync(vol, bad, { recursive: true });
  // Every full-resolution storage chunk (16×128×128) under the rightmost box stage two
  // segments: stage one reads the pyramid, so only stage two of the right chunk column (and
  // what needs it) can fail; the left chunks do not need it.
  const boxes = JSON.parse(fs.readFileSync(path.join(embedded, 'boxes.json'), 'utf8')).boxes.map((b: { box: unknown }) => b.box);
  const first = boxes.sort((a: { begin: number[] }, b: { begin: number[] }) => b.begin[2] - a.begin[2])[0];
  assert.ok(first.begin[2] >= 256, 'a box in the right chunk column');
  const yx = [Math.floor(first.begin[1] / 128), Math.floor(first.begin[2] / 128)];
  const victims = [0, 1].map((z) => path.join(bad, '0', String(z), String(yx[0]), String(yx[1])));
  for (const v of victims) fs.writeFileSync(v, Buffer.from('not a compressed chunk at all'));
  // Stage two per chunk (not per 1×2×2 block), so the left chunks' tasks do not read the right column.
  const perChunk = path.join(dir, 'per-chunk.json');
  fs.writeFileSync(perChunk, JSON.stringify({ ...CONFIG, pack: { chunks: [1, 1, 1] } }));
  const out = path.join(dir, 'corrupt-out.zarr');
  const r = await tessera(['run', '--nats', nats.url, '--workers', '2', '--input', bad, '--output', out, '--config', perChunk, '--json']);
  assert.equal(r.code, 1, r.stderr);
  const rep = JSON.parse(r.stdout);
  assert.equal(rep.status, 'failed');
  assert.ok(rep.failures.length >= 1);
  for (const f of rep.failures) assert.match(f.error, new RegExp(`corrupt\\.zarr/0.*chunk [01]/${yx[0]}/${yx[1]}`), f.error);
  const doc = JSON.parse(fs.readFileSync(path.join(out, 'run.json'), 'utf8'));
  assert.equal(doc.status, 'failed');
  // Every task that does not need the corrupt chunk ran; every other one is failed or skipped.
  assert.equal(rep.tasks.boxes.ran, rep.tasks.boxes.total);
  assert.ok(rep.tasks.stage2.ran >= 1 && rep.tasks.stage2.failed >= 1, JSON.stringify(rep.tasks.stage2));
  for (const [k, t] of Object.entries(rep.tasks as Record<string, { total: number; ran: number; failed: number; skipped: number }>)) {
    assert.equal(t.ran + t.failed + t.skipped, t.total, k);
  }
  assert.ok(rep.failures.every((f: { task: string }) => f.task.startsWith('stage2/')), 'only stage two failed (at once: the error is permanent)');
});

test('two runs on one broker at once do not interfere', async () => {
  const a = path.join(dir, 'twin-a.zarr');
  const b = path.join(dir, 'twin-b.zarr');
  const [ra, rb] = await Promise.all([runNats(a, ['--workers', '1']), runNats(b, ['--workers', '1'])]);
  assert.equal(ra.code, 0, ra.stderr);
  assert.equal(rb.code, 0, rb.stderr);
  assert.notEqual(ra.report.distributed.run, rb.report.distributed.run);
  sameOutput(embedded, a);
  sameOutput(embedded, b);
});

test('a malformed task message and one for another run are rejected and logged; the worker keeps working', async () => {
  const out = path.join(dir, 'malformed.zarr');
  const run = 'malformed';
  const coord = service(['coordinator', '--nats', nats.url, '--run', run, '--input', vol, '--output', out, '--config', cfg, '--json']);
  // Inject once the coordinator has registered the run (it purges the tasks stream before).
  const nc = await connect({ servers: nats.url });
  const js = jetstream(nc);
  const kv = await new Kvm(nc).open('tessera-runs');
  await until('run registered', async () => !!(await kv.get(run).catch(() => null))?.value.length);
  // Of the run's scope (its identity and epoch), so only the index is wrong in the third.
  const { identity } = JSON.parse(new TextDecoder().decode((await kv.get(run))!.value));
  await js.publish(`tessera.${run}.task.worker.stage1`, new TextEncoder().encode('{"v":1,"run":'));
  await js.publish(`tessera.${run}.task.worker.paste`, new TextEncoder().encode(JSON.stringify({ v: 1, run: 'someone-else', kind: 'paste', indices: [[0, 0, 0]], identity, epoch: 1 })));
  await js.publish(`tessera.${run}.task.worker.paste`, new TextEncoder().encode(JSON.stringify({ v: 1, run, kind: 'paste', indices: [[0, 0, 0], [0, 99, 0]], identity, epoch: 1 })));
  await nc.close();
  const port = await freePort();
  const worker = service(['worker', '--nats', nats.url, '--run', run, '--metrics-port', String(port)]);
  const merger = service(['merger', '--nats', nats.url, '--run', run]);
  // The worker's Prometheus metrics count the rejections and the tasks it ran.
  let scraped = '';
  await until('metrics of the rejections and a finished task', async () => {
    scraped = await fetch(`http://127.0.0.1:${port}/metrics`).then((r) => r.text(), () => '');
    return /tessera_messages_rejected_total\{service="worker"\} 3/.test(scraped) && /tessera_tasks_total\{kind="stage1",outcome="done"[^}]*\} [1-9]/.test(scraped);
  });
  assert.match(scraped, /tessera_task_seconds_count\{[^}]*kind="stage1"[^}]*\} [1-9]/);
  assert.equal(await exited(coord), 0, coord.err());
  assert.equal(JSON.parse(coord.out()).status, 'complete');
  sameOutput(embedded, out);
  assert.equal(await exited(worker, 30_000), 0);
  await exited(merger, 30_000);
  const rejected = worker.err().split('\n').filter((l) => l.includes('task message rejected'));
  assert.equal(rejected.length, 3, worker.err());
  assert.ok(rejected.some((l) => l.includes('not JSON')));
  assert.ok(rejected.some((l) => l.includes('someone-else')));
  assert.ok(rejected.some((l) => l.includes('outside')));
});

test('user/password auth: runs with the credentials from the environment, refuses without them', async () => {
  const secure = await startNats({ user: 'tessera', password: 's3cret-pw' });
  try {
    const out = path.join(dir, 'auth.zarr');
    const denied = await tessera(['run', '--nats', secure.url, '--input', vol, '--output', path.join(dir, 'denied.zarr'), '--config', cfg]);
    assert.equal(denied.code, 2);
    assert.match(denied.stderr, /cannot connect to nats:\/\/127\.0\.0\.1:\d+: .*(auth|Authorization)/i);
    const r = await tessera(['run', '--nats', secure.url, '--workers', '1', '--input', vol, '--output', out, '--config', cfg, '--json'], { TESSERA_NATS_USER: 'tessera', TESSERA_NATS_PASSWORD: 's3cret-pw', TESSERA_LOG: 'info' });
    assert.equal(r.code, 0, r.stderr);
    assert.ok(!r.stderr.includes('s3cret-pw'), 'the password never appears in logs');
    assert.match(r.stderr, /"auth":"user tessera"/);
    sameOutput(embedded, out);
  } finally {
    await secure.close();
  }
});

test('a task that keeps failing transiently ends after nats.maxDeliver deliveries as a failure naming it', async () => {
  const out = path.join(dir, 'transient.zarr');
  const run = 'transient';
  const coord = service(['coordinator', '--nats', nats.url, '--run', run, '--input', vol, '--output', out, '--config', cfg, '--json']);
  // Once the run exists, put a file where stage two writes its results: every attempt fails
  // with ENOTDIR (an output error, retried) until the deliveries are used up.
  await until('output created', () => fs.existsSync(path.join(out, 'run.json')));
  fs.mkdirSync(path.join(out, '.work'), { recursive: true });
  fs.writeFileSync(path.join(out, '.work', 'stage2'), 'in the way');
  const worker = service(['worker', '--nats', nats.url, '--run', run]);
  const merger = service(['merger', '--nats', nats.url, '--run', run]);
  assert.equal(await exited(coord), 1, coord.err());
  const r = JSON.parse(coord.out());
  assert.equal(r.status, 'failed');
  assert.deepEqual(r.failures.map((f: { task: string }) => f.task), ['stage2/0_0_0', 'stage2/0_0_1']);
  for (const f of r.failures) assert.match(f.error, /\.work\/stage2.*\(after 3 deliveries\)/, f.error);
  assert.equal(await exited(worker, 30_000), 0);
  await exited(merger, 30_000);
  assert.equal((worker.err().match(/handed back for another delivery/g) ?? []).length, 4, '2 retries of each of the 2 tasks');
});

test('a task whose every delivery dies with its worker is failed and removed from the stream, never redelivered for ever', async () => {
  const out = path.join(dir, 'crashing.zarr');
  const run = 'crashing';
  const once = path.join(dir, 'max-deliver-1.json');
  fs.writeFileSync(once, JSON.stringify({ ...CONFIG, nats: { ackWait: 2, maxDeliver: 1 } }));
  const coord = service(['coordinator', '--nats', nats.url, '--run', run, '--input', vol, '--output', out, '--config', once, '--json']);
  const w = service(['worker', '--nats', nats.url, '--run', run, '--concurrency', '1']);
  await until('worker holding stage one', async () => doneLines(out, 'stage1') === 0 && (await ackPending(run, 'worker')) > 0);
  w.kill('SIGKILL');
  await exited(w);
  // The only delivery died: JetStream keeps the message after max_deliver and says so (the
  // max-deliveries advisory) when a worker asks for work; the coordinator fails the task and
  // deletes it, and the run ends.
  const w2 = service(['worker', '--nats', nats.url, '--run', run, '--concurrency', '1']);
  assert.equal(await exited(coord, 60_000), 1, coord.err());
  const r = JSON.parse(coord.out());
  assert.equal(r.status, 'failed');
  assert.deepEqual(r.failures.map((f: { task: string }) => f.task), ['stage1/0_0_0']);
  assert.match(r.failures[0].error, /^delivered 1 time and never finished: its worker died/);
  assert.equal(r.distributed.lost, 1);
  assert.equal(await exited(w2, 30_000), 0, 'the worker leaves a failed run');
  const nc = await connect({ servers: nats.url });
  const jsm = await jetstreamManager(nc);
  await assert.rejects(jsm.streams.info(`TESSERA_${run}_TASKS`), 'a failed run\'s streams are removed');
  await nc.close();
});

test('token auth over TLS: the CA from the environment verifies the server; without it the connection is refused', async () => {
  // A private CA and a server certificate for 127.0.0.1 (openssl, as installed by .ci/run).
  const pki = path.join(dir, 'pki');
  fs.mkdirSync(pki);
  const ssl = (args: string[]) => new Promise<void>((resolve, reject) => {
    const p = spawn('openssl', args, { cwd: pki, stdio: 'ignore' });
    p.on('error', reject);
    p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`openssl ${args[0]} exited ${code}`))));
  });
  await ssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=tessera-test-ca']);
  await ssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1']);
  fs.writeFileSync(path.join(pki, 'san.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  await ssl(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.pem', '-days', '2', '-extfile', 'san.ext']);
  const secure = await startNats({ token: 'tok-3f9a-secret', tls: { cert: path.join(pki, 'server.pem'), key: path.join(pki, 'server.key') } });
  try {
    const env = { TESSERA_NATS_TOKEN: 'tok-3f9a-secret', TESSERA_NATS_TLS_CA: path.join(pki, 'ca.pem'), TESSERA_LOG: 'info' };
    const noCa = await tessera(['run', '--nats', secure.url, '--input', vol, '--output', path.join(dir, 'tls-denied.zarr'), '--config', cfg], { TESSERA_NATS_TOKEN: 'tok-3f9a-secret' });
    assert.equal(noCa.code, 2, noCa.stderr);
    assert.match(noCa.stderr, /cannot connect to nats:\/\/127\.0\.0\.1:\d+/);
    const out = path.join(dir, 'tls.zarr');
    const r = await tessera(['run', '--nats', secure.url, '--workers', '1', '--input', vol, '--output', out, '--config', cfg, '--json'], env);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /"auth":"token","tls":true/);
    assert.ok(!r.stderr.includes('tok-3f9a-secret'), 'the token never appears in logs');
    sameOutput(embedded, out);
  } finally {
    await secure.close();
  }
});

/** A registered run of one task kind, `paste`, over a grid of `shape`, with its streams: what a coordinator sets up. */
async function pasteRun(run: string, settings: Record<string, number>, shape: Vec3) {
  const names = runNames(run);
  const config = loadConfig({ preset: 'synthetic-em', overrides: { nats: settings } });
  const kinds = [{ name: 'paste', block: [1, 1, 1] as Vec3, range: { lo: [0, 0, 0] as Vec3, hi: shape } }];
  const nc = await connect({ servers: nats.url });
  const jsm = await jetstreamManager(nc);
  await ensureRunStreams(jsm, names, config.nats);
  await freshResultsConsumer(jsm, names, config.nats);
  await writeRun(await runsBucket(nc), {
    v: 1, run, input: '/in.zarr', output: '/out.zarr', roi: { begin: [0, 0, 0], end: shape }, config, identity: 'x',
    epoch: 1, scopeEpoch: 1, status: 'running', coordinator: 'test', updatedAt: '',
  });
  return { names, config, kinds, nc, jsm };
}

test('quick tasks travel several to a message; a transient failure hands its whole message back and every task is done once', async () => {
  const run = 'batching';
  const { names, config, kinds, nc, jsm } = await pasteRun(run, { inFlight: 64, batch: 8, ackWait: 3, maxDeliver: 3 }, [4, 8, 8]);
  // The worker's job: quick, and the 150th task it runs fails once (transient: a plain Error) —
  // by then the coordinator knows the kind is quick and sends eight tasks to a message.
  const calls = new Map<string, number>();
  let n = 0;
  let flaky = '';
  const ac = new AbortController();
  const worker = runWorker({
    nc, run, role: 'worker', concurrency: 2, log: silentLogger(), signal: ac.signal,
    job: async () => ({
      kinds,
      run: async (t) => {
        const id = t.index.join('_');
        calls.set(id, (calls.get(id) ?? 0) + 1);
        await new Promise((r) => setTimeout(r, 2));
        if (++n === 150) {
          flaky = id;
          throw new Error('flaky storage');
        }
        return { n: 1 };
      },
      busySeconds: () => 0,
      close: async () => undefined,
    }),
  });
  const sched = new Scheduler(kinds, []);
  const bus = await busExecutor({ nc, names, expect: { run, kinds: ['paste'] }, nats: config.nats, scope: { identity: 'x', epoch: 1, scopeEpoch: 1 }, log: silentLogger() });
  const acked: string[] = [];
  const r = await drive(sched, bus.exec, { concurrency: config.nats.inFlight, retries: 0, onSuccess: async (t) => { acked.push(taskId(t)); bus.ack(t); } });
  bus.close();
  ac.abort();
  await worker;
  assert.equal(r.ran.paste, 256);
  assert.equal(r.stats.n, 256, 'one result per task reached the scheduler');
  assert.equal(new Set(acked).size, 256);
  assert.equal(bus.stats.published, 256);
  assert.ok(bus.stats.messages < 256 / 2, `several tasks per message: ${bus.stats.messages} messages`);
  assert.equal(bus.stats.duplicates, 0);
  // The failed task's message ran again whole: the tasks before it in its message ran twice
  // (none when it was the message's first: a message's tasks run in order and the failure hands
  // the message back at once, so the ones after it ran only on the redelivery), every other once.
  const twice = [...calls].filter(([, n]) => n === 2).map(([id]) => id);
  assert.ok(twice.includes(flaky), 'the failed task ran again');
  assert.ok(twice.length >= 1 && twice.length <= 8, `its message's tasks ran again with it: ${twice.length} (${bus.stats.messages} messages)`);
  assert.equal([...calls.values()].filter((n) => n > 2).length, 0);
  assert.equal(calls.size, 256);
  // Nothing is left in the streams: every task message and every result was acknowledged.
  const ci = await jsm.consumers.info(names.tasksStream, 'worker');
  assert.equal(ci.num_pending + ci.num_ack_pending, 0);
  await removeRunStreams(jsm, names);
  await nc.close();
});

test('a worker whose job breaks (an inference thread died) hands its tasks back and stops with the error; another worker finishes the run', async () => {
  const run = 'broken-worker';
  const { names, config, kinds, nc, jsm } = await pasteRun(run, { inFlight: 16, ackWait: 3, maxDeliver: 5 }, [2, 4, 4]);
  const ran = new Map<string, string>();
  const job = (who: string, breakAfter: number) => async () => {
    let n = 0;
    let failure: Error | undefined;
    return {
      kinds,
      run: async (t: { index: Vec3 }) => {
        await new Promise((r) => setTimeout(r, 5));
        if (failure || ++n > breakAfter) {
          failure ??= new Error(`${who}: inference thread exited (code 1)`);
          throw failure;
        }
        ran.set(t.index.join('_'), who);
        return { n: 1 };
      },
      busySeconds: () => 0,
      failure: () => failure,
      close: async () => undefined,
    };
  };
  const ac = new AbortController();
  const broken = runWorker({ nc, run, role: 'worker', concurrency: 2, log: silentLogger(), signal: ac.signal, job: job('broken', 3) });
  const brokenDone = broken.then(() => undefined, (err: Error) => err);
  const healthy = runWorker({ nc, run, role: 'worker', concurrency: 2, log: silentLogger(), signal: ac.signal, job: job('healthy', Infinity) });
  const sched = new Scheduler(kinds, []);
  const bus = await busExecutor({ nc, names, expect: { run, kinds: ['paste'] }, nats: config.nats, scope: { identity: 'x', epoch: 1, scopeEpoch: 1 }, log: silentLogger() });
  const r = await drive(sched, bus.exec, { concurrency: config.nats.inFlight, retries: 0, onSuccess: async (t) => { bus.ack(t); } });
  // By now it stopped on its own (a worker without the failure check would pull until aborted).
  const err = await Promise.race([brokenDone, new Promise((r) => setTimeout(() => r('still pulling'), 5000))]);
  bus.close();
  ac.abort();
  await healthy;
  assert.ok(err instanceof Error && /inference thread exited/.test(err.message), `the broken worker stops with its error: ${err}`);
  // Every task succeeded (drive rejects on a failed one): the broken worker handed its tasks back.
  assert.equal(r.ran.paste, 32);
  assert.equal(r.stats.n, 32);
  assert.equal(ran.size, 32);
  assert.ok([...ran.values()].filter((w) => w === 'broken').length <= 3);
  await removeRunStreams(jsm, names);
  await nc.close();
});

