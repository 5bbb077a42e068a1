// A run whose coordinator restarts for other work, or is paused, or loses the broker at start,
// with the real CLI processes over a real nats-server: nothing of an older scope is recorded,
// workers follow the run record, one coordinator holds the run at a time, and the output equals
// the embedded runner's bit for bit.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { type ChildProcess, spawn } from 'node:child_process';
import { connect } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { tesseraOk, tmpDir, filesUnder, ROOT } from '../helpers/cli.ts';
import { closeBrokerFixture, doneLines, exited, openBrokerFixture, sameOutput, service, until } from '../helpers/services.ts';
import { type NatsServer, startNats } from '../helpers/nats.ts';
import { LeaseError, Scheduler, drive, encode, leasesBucket, takeLease, ensureRunStreams, freshResultsConsumer, loadConfig, parseTask, removeRunStreams, runNames, runsBucket, silentLogger, writeRun } from '../../shared/index.ts';
import { busExecutor } from '../../services/coordinator/executor.ts';

let dir: string;
let vol: string;
let cfg: string;
let embedded: string;
let nats: NatsServer;

const CLI = path.join(ROOT, 'bin', 'tessera.mjs');
// 2×2 chunks of 32×256×256; a three-second lease, output lock staleness and ack wait, so that
// take-overs happen within seconds.
const CONFIG = {
  extends: 'synthetic-em',
  boxes: { cropThreshold: [16, 64, 64], recrop: [16, 32, 32] },
  io: { chunk: [32, 256, 256], chunksInFlight: 1, mergeFanIn: [2, 2, 2], lockStale: 3 },
  inference: { threads: 1 },
  nats: { ackWait: 3, inFlight: 16, lease: 3 },
};
const HALF_ROI = '0:32,256:512,0:512';







async function streamInfo(run: string, role: 'worker' | 'merger' = 'worker'): Promise<{ results: number; held: number; waiting: number }> {
  const nc = await connect({ servers: nats.url });
  try {
    const jsm = await jetstreamManager(nc);
    const results = (await jsm.streams.info(`TESSERA_${run}_RESULTS`)).state.messages;
    const c = await jsm.consumers.info(`TESSERA_${run}_TASKS`, role);
    return { results, held: c.num_ack_pending, waiting: c.num_waiting };
  } catch {
    return { results: 0, held: 0, waiting: 0 };
  } finally {
    await nc.close();
  }
}

const coordinator = (run: string, out: string, more: string[] = [], env: Record<string, string> = {}) =>
  service(['coordinator', '--nats', nats.url, '--run', run, '--input', vol, '--output', out, '--config', cfg, '--json', ...more], env);

before(async () => {
  ({ dir, vol, cfg, embedded, nats } = await openBrokerFixture('32,512,512', CONFIG));
});

after(() => closeBrokerFixture({ dir, nats }));

test('a worker started against a finished run exits 0 at once; one waiting for a run\'s streams exits 143 on SIGTERM', async () => {
  // A finished run: its record says complete, its streams are gone.
  const run = 'finished';
  const doc = JSON.parse(fs.readFileSync(path.join(embedded, 'run.json'), 'utf8'));
  const nc = await connect({ servers: nats.url });
  const record = {
    v: 1 as const, run, input: vol, output: embedded, roi: { begin: [0, 0, 0] as [number, number, number], end: [32, 512, 512] as [number, number, number] },
    config: loadConfig({ file: cfg }), identity: doc.identity.hash, epoch: 1, scopeEpoch: 1, status: 'complete' as const, coordinator: 'test', updatedAt: '',
  };
  const kv = await runsBucket(nc);
  await writeRun(kv, record);
  // A running run whose streams are not there (its coordinator is registering them).
  await writeRun(kv, { ...record, run: 'no-streams-yet', status: 'running' });
  await nc.close();
  for (const role of ['worker', 'merger']) {
    const t0 = Date.now();
    const w = service([role, '--nats', nats.url, '--run', run], { TESSERA_LOG: 'info' });
    assert.equal(await exited(w, 20_000), 0, w.err());
    assert.ok(Date.now() - t0 < 15_000, `${role} out promptly`);
    assert.match(w.err(), /the run is over/);
  }
  // A running run without streams: the worker waits for them, and leaves on SIGTERM with 143.
  const waiting = service(['worker', '--nats', nats.url, '--run', 'no-streams-yet']);
  await new Promise((r) => setTimeout(r, 3000));
  assert.equal(waiting.exitCode, null, 'still waiting');
  const t0 = Date.now();
  waiting.kill('SIGTERM');
  assert.equal(await exited(waiting, 10_000), 143, waiting.err());
  assert.ok(Date.now() - t0 < 5000, 'SIGTERM: out at once');
});

test('coordinator restarted with a larger ROI while the workers keep running: old-ROI results are rejected, the run completes with exact ids', async () => {
  const run = 'grow';
  const out = path.join(dir, 'grow.zarr');
  const c1 = coordinator(run, out, ['--roi', HALF_ROI]);
  const worker = service(['worker', '--nats', nats.url, '--run', run, '--concurrency', '2']);
  const merger = service(['merger', '--nats', nats.url, '--run', run]);
  // Pause the first coordinator once its relabel tasks are in the workers' hands, let their
  // results land unread (two relabel tasks of the half ROI, numbered over the half ROI), kill it.
  await until('relabel tasks held', async () => doneLines(out, 'resolve1') > 0 && (await streamInfo(run)).held > 0);
  c1.kill('SIGSTOP');
  await until('old-ROI relabel results waiting', async () => (await streamInfo(run)).results >= 1);
  c1.kill('SIGKILL');
  await exited(c1);
  const c2 = coordinator(run, out);
  assert.equal(await exited(c2), 0, c2.err());
  const r = JSON.parse(c2.out());
  assert.equal(r.status, 'complete');
  assert.equal(r.distributed.epoch, 2);
  assert.equal(r.distributed.scopeEpoch, 2, 'another ROI: a new scope');
  assert.equal(r.distributed.drained, 0, 'nothing of the half ROI drained');
  sameOutput(embedded, out);
  // The same workers served both ROIs and leave once the run is complete.
  assert.equal(await exited(worker, 30_000), 0, worker.err());
  assert.equal(await exited(merger, 30_000), 0, merger.err());
});

test('restarted with another config and --overwrite while a worker and a merger run: the old config\'s results are never recorded; the run completes as the new config\'s', async () => {
  const run = 'reconfig';
  const out = path.join(dir, 'reconfig.zarr');
  const cfgB = path.join(dir, 'cfg-b.json');
  fs.writeFileSync(cfgB, JSON.stringify({ ...CONFIG, boxes: { cropThreshold: [16, 128, 128], recrop: [16, 64, 64] } }));
  const embeddedB = path.join(dir, 'embedded-b.zarr');
  await tesseraOk(['run', '--input', vol, '--output', embeddedB, '--config', cfgB]);
  const c1 = coordinator(run, out);
  const worker = service(['worker', '--nats', nats.url, '--run', run]);
  const merger = service(['merger', '--nats', nats.url, '--run', run]);
  // The merger plans boxes with the first config; its result waits unread when the first
  // coordinator dies. The merger is stopped while it waits for work, so the boxes task it is
  // handed stays in its hands (a planning of a few ms was easy to miss by polling), then the
  // coordinator is stopped and the merger let go.
  await until('the merger pulling', async () => (await streamInfo(run, 'merger')).waiting > 0);
  merger.kill('SIGSTOP');
  await until('boxes task in the merger\'s hands', async () => (await streamInfo(run, 'merger')).held > 0);
  c1.kill('SIGSTOP');
  merger.kill('SIGCONT');
  await until('old-config result waiting', async () => (await streamInfo(run)).results >= 1);
  c1.kill('SIGKILL');
  await exited(c1);
  const c2 = service(['coordinator', '--nats', nats.url, '--run', run, '--input', vol, '--output', out, '--config', cfgB, '--overwrite', '--json']);
  assert.equal(await exited(c2), 0, c2.err());
  const r = JSON.parse(c2.out());
  assert.equal(r.status, 'complete');
  assert.equal(r.distributed.scopeEpoch, 2, 'another identity: a new scope');
  assert.equal(r.distributed.drained, 0, 'nothing of the old config drained');
  sameOutput(embeddedB, out);
  assert.equal(await exited(worker, 30_000), 0, worker.err());
  assert.equal(await exited(merger, 30_000), 0, merger.err());
});

test('a coordinator paused past its lease: a second one takes the run over; the first, resumed, stops fenced without writing', async () => {
  const run = 'paused';
  const out = path.join(dir, 'paused.zarr');
  const c1 = coordinator(run, out);
  const worker = service(['worker', '--nats', nats.url, '--run', run, '--concurrency', '2']);
  const merger = service(['merger', '--nats', nats.url, '--run', run]);
  await until('stage one done', () => doneLines(out, 'stage1') > 0);
  c1.kill('SIGSTOP');
  // Past the lease and the output lock's staleness (3 s each): the second takes both over.
  await new Promise((r) => setTimeout(r, 4500));
  const c2 = coordinator(run, out);
  await until('second coordinator registered', async () => {
    const nc = await connect({ servers: nats.url });
    try {
      const e = await (await runsBucket(nc)).get(run);
      return !!e && JSON.parse(new TextDecoder().decode(e.value)).epoch === 2;
    } finally {
      await nc.close();
    }
  });
  const doneBefore = fs.readFileSync(path.join(out, 'run.json'));
  c1.kill('SIGCONT');
  const code1 = await exited(c1, 30_000);
  assert.notEqual(code1, 0, 'the fenced coordinator fails');
  const lines = c1.err().split('\n').filter((l) => l.startsWith('tessera:'));
  assert.equal(lines.length, 1, c1.err());
  // Whichever it finds first: the run's lease or the output's lock taken over.
  assert.match(lines[0], /lost the run's lease|fenced/);
  assert.equal(c1.out(), '', 'no report from the fenced coordinator');
  assert.equal(await exited(c2), 0, c2.err());
  const r = JSON.parse(c2.out());
  assert.equal(r.status, 'complete');
  assert.equal(r.distributed.epoch, 2);
  assert.ok(doneBefore.length > 0);
  assert.equal(JSON.parse(fs.readFileSync(path.join(out, 'run.json'), 'utf8')).status, 'complete', 'the fenced coordinator wrote nothing over it');
  sameOutput(embedded, out);
  await Promise.all([exited(worker, 30_000), exited(merger, 30_000)]);
});

test('nats-server stopped right after the coordinator connects and restarted: the coordinator registers once it is back; the run completes', async () => {
  const run = 'broker-at-start';
  const out = path.join(dir, 'broker-at-start.zarr');
  // The default lease (30 s) rides out the outage.
  const cfg30 = path.join(dir, 'cfg-lease30.json');
  fs.writeFileSync(cfg30, JSON.stringify({ ...CONFIG, nats: { ackWait: 3, inFlight: 16 } }));
  const c = service(['coordinator', '--nats', nats.url, '--run', run, '--input', vol, '--output', out, '--config', cfg30, '--json'], { TESSERA_LOG: 'info' });
  await until('coordinator connected', () => c.err().includes('connected to NATS'), 30_000);
  await nats.stop();
  await new Promise((r) => setTimeout(r, 3000));
  assert.equal(c.exitCode, null, `still running while the broker is away: ${c.err().slice(-2000)}`);
  await nats.start();
  const worker = service(['worker', '--nats', nats.url, '--run', run]);
  const merger = service(['merger', '--nats', nats.url, '--run', run]);
  assert.equal(await exited(c), 0, c.err().slice(-3000));
  assert.equal(JSON.parse(c.out()).status, 'complete');
  sameOutput(embedded, out);
  await Promise.all([exited(worker, 30_000), exited(merger, 30_000)]);
});

test('a result that lands after its task was given up (max deliveries) settles it: no failed run whose work was done', async () => {
  const run = 'late-result';
  const names = runNames(run);
  const config = loadConfig({ preset: 'synthetic-em', overrides: { nats: { ackWait: 2, maxDeliver: 1 } } });
  const kinds = [{ name: 'paste', block: [1, 1, 1] as [number, number, number], range: { lo: [0, 0, 0] as [number, number, number], hi: [1, 1, 1] as [number, number, number] } }];
  const nc = await connect({ servers: nats.url });
  const jsm = await jetstreamManager(nc);
  await ensureRunStreams(jsm, names, config.nats);
  await freshResultsConsumer(jsm, names, config.nats);
  const scope = { identity: 'x', epoch: 1, scopeEpoch: 1 };
  const bus = await busExecutor({ nc, names, expect: { run, kinds: ['paste'] }, nats: config.nats, scope, log: silentLogger() });
  const sched = new Scheduler(kinds, []);
  const driven = drive(sched, bus.exec, { concurrency: 4, retries: 0, onSuccess: async (t) => bus.ack(t) });
  // A worker whose heartbeats are lost: it holds the only delivery past its ack wait, the broker
  // gives the task up (a second pull makes it say so: the max-deliveries advisory), then the
  // worker's result lands.
  const js = jetstream(nc);
  const c = await js.consumers.get(names.tasksStream, 'worker');
  const m = await c.next({ expires: 5000 });
  assert.ok(m, 'the task was delivered');
  const t = parseTask(m.subject, m.data, { run });
  await new Promise((r) => setTimeout(r, 2200));
  assert.equal(await c.next({ expires: 1000 }), null, 'no delivery left');
  await js.publish(names.result, encode({ v: 1, run, kind: 'paste', results: [{ index: [0, 0, 0], ok: true, stats: { n: 1 }, ms: 1 }], identity: t.identity, epoch: t.epoch, worker: 'late/1', delivery: 1 }));
  const r = await driven;
  bus.close();
  assert.equal(r.ran.paste, 1, 'the late result settled the task');
  assert.equal(sched.failures().length, 0, JSON.stringify(sched.failures()));
  assert.equal(bus.stats.lost, 0);
  await removeRunStreams(jsm, names);
  await nc.close();
});

test('the lease: of two takers of a stale lease exactly one wins; the holder finds out it lost it before a write', async () => {
  const nc = await connect({ servers: nats.url });
  const kv = await leasesBucket(nc);
  const run = 'lease-race';
  // Its holder stopped beating 10 s ago (by its own clock), with a 2 s ttl: stale.
  await kv.put(run, JSON.stringify({ holder: 'elsewhere/1', epoch: 1, beatAt: Date.now() - 10_000 }));
  const take = (who: string) => takeLease(kv, run, { holder: who, epoch: 2, ttlMs: 2000, log: silentLogger() });
  const [a, b] = await Promise.allSettled([take('a/1'), take('b/1')]);
  const won = [a, b].filter((r) => r.status === 'fulfilled');
  assert.equal(won.length, 1, 'exactly one taker wins');
  const lost = [a, b].find((r) => r.status === 'rejected') as PromiseRejectedResult;
  assert.ok(lost.reason instanceof LeaseError && /holds the run's lease and is alive/.test(lost.reason.message), String(lost.reason));
  const lease = (won[0] as PromiseFulfilledResult<Awaited<ReturnType<typeof take>>>).value;
  await lease.check();
  lease.fence();
  // Someone takes it over (CAS on its revision, as a taker would): the holder's next beat, or
  // its check before a write, finds the revision gone.
  const e = await kv.get(run);
  await kv.update(run, JSON.stringify({ holder: 'c/1', epoch: 3, beatAt: Date.now() }), e!.revision);
  await new Promise((r) => setTimeout(r, 1100));
  await assert.rejects(lease.check(), /lost the run's lease/);
  assert.throws(() => lease.fence(), LeaseError);
  assert.ok(lease.lost.aborted);
  await lease.release();
  assert.equal(JSON.parse(new TextDecoder().decode((await kv.get(run))!.value)).holder, 'c/1', 'a lost lease is not deleted by its old holder');
  await nc.close();
});
