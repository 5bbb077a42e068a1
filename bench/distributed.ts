// The distributed benchmark (`tessera bench --distributed`): what the broker costs. Measured in
// one run on this machine against a private nats-server, reported as ratios:
//
// 1. The same volume and config, embedded vs over NATS with 1 and 2 worker processes (each run
//    a child process, `tessera run --json`): wall time, summed task time, the orchestration
//    overhead (NATS wall over embedded wall at the same tasks in hand) and that overhead per
//    task; the outputs are compared bit for bit.
// 2. The coordinator's control plane alone: the fafb preset's task graph over the full FAFB
//    grid, driven through the real executor (publish, results consumer, acks) with no-op worker
//    processes that answer every task at once — tasks/s and the coordinator's memory over a
//    prefix of the grid (the whole grid, ≈ 10⁷ tasks, would take hours here).
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { type TesseraConfig, type Vec3, boxOfShape, Scheduler, drive, encode, ensureRunStreams, freshResultsConsumer, parseTask, preset, runNames, silentLogger, taskGraph } from '../shared/index.ts';
import { writeSynth } from '../shared/run/synth.ts';
import type { RunReport } from '../shared/run/embedded.ts';
import { busExecutor } from '../services/coordinator/executor.ts';
import { startNats } from '../test/helpers/nats.ts';
import { FAFB_FACTOR, FAFB_SHAPE } from './scale.ts';
import { loaderArgs } from '../shared/runtime.ts';
import { PACKAGE_ROOT } from '../shared/config/load.ts';

const exec = promisify(execFile);
const CLI = path.join(PACKAGE_ROOT, 'bin', 'tessera.mjs');
const say = (s: string) => process.stderr.write(s + '\n');

export interface DistributedBenchOptions {
  dir?: string;
  quick?: boolean;
  json?: string;
  /** Tasks of the FAFB grid driven through the broker. @default 20,000 (quick: 3,000) */
  prefix?: number;
}

interface ModeRow {
  mode: string;
  wallS: number;
  taskS: number;
  tasks: number;
  identical: boolean;
  /** wall / summed task time − 1 (one task in hand at a time per process). */
  overhead: number;
  /** (wall − summed task time) / tasks, ms. */
  perTaskMs: number;
}

export interface DistributedBench {
  machine: string;
  volume: Vec3;
  rows: ModeRow[];
  control: { tasks: number; seconds: number; tasksPerSecond: number; peakRssMB: number; inFlight: number; noopWorkers: number };
}

async function runCli(args: string[]): Promise<RunReport> {
  const { stdout } = await exec(process.execPath, [CLI, ...args, '--json'], { maxBuffer: 1 << 26, env: { ...process.env, TESSERA_LOG: 'error' } });
  return JSON.parse(stdout.trim().split('\n').pop()!) as RunReport;
}

function sameDir(a: string, b: string): boolean {
  const list = (d: string): string[] => fs.readdirSync(d, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? list(path.join(d, e.name)).map((f) => path.join(e.name, f)) : [e.name])).sort();
  const fa = list(a);
  const fb = list(b);
  return fa.length === fb.length && fa.every((f, i) => f === fb[i] && fs.readFileSync(path.join(a, f)).equals(fs.readFileSync(path.join(b, f))));
}

/** A no-op worker for the control-plane measurement: answers every task of its role at once. */
async function noopWorker(url: string, run: string, role: 'worker' | 'merger'): Promise<void> {
  const nc = await connect({ servers: url });
  const js = jetstream(nc);
  const n = runNames(run);
  const kinds = taskGraph(preset('fafb')!, FAFB_SHAPE, boxOfShape(FAFB_SHAPE), FAFB_FACTOR).kinds.map((k) => k.name);
  const c = await js.consumers.get(n.tasksStream, n.consumer(role));
  const msgs = await c.consume({ max_messages: 512 });
  for await (const m of msgs) {
    const t = parseTask(m.subject, m.data, { run, kinds });
    // Pipelined: the result's publish acknowledgement is not awaited before the next message.
    const results = t.indices.map((index) => ({ index, ok: true, stats: {}, ms: 0 }));
    void js.publish(n.result, encode({ v: 1, run, kind: t.kind, results, identity: t.identity, epoch: t.epoch, worker: 'noop', delivery: m.info.deliveryCount })).then(() => m.ack());
  }
}

export async function controlPlane(url: string, prefix: number, nats: Partial<TesseraConfig['nats']> = {}): Promise<DistributedBench['control']> {
  const config = preset('fafb')!;
  const n = { ...config.nats, ...nats };
  const inFlight = n.inFlight;
  const graph = taskGraph(config, FAFB_SHAPE, boxOfShape(FAFB_SHAPE), FAFB_FACTOR);
  const sched = new Scheduler(graph.kinds, graph.deps);
  const run = 'bench-control';
  const names = runNames(run);
  const nc = await connect({ servers: url });
  const jsm = await jetstreamManager(nc);
  await ensureRunStreams(jsm, names, n);
  await jsm.streams.purge(names.tasksStream);
  await freshResultsConsumer(jsm, names, n);
  const children: ChildProcess[] = (['worker', 'worker', 'merger'] as const).map((role) => spawn(process.execPath, [...loaderArgs(fileURLToPath(import.meta.url)), fileURLToPath(import.meta.url), '--noop-worker', url, run, role], { stdio: 'inherit' }));

  const ac = new AbortController();
  const bus = await busExecutor({ nc, names, expect: { run, kinds: graph.kinds.map((k) => k.name) }, nats: n, scope: { identity: 'bench', epoch: 1, scopeEpoch: 1 }, log: silentLogger(), signal: ac.signal });
  let done = 0;
  let peak = process.memoryUsage().rss;
  const t0 = performance.now();
  await drive(sched, bus.exec, {
    concurrency: inFlight, retries: 0, signal: ac.signal,
    onSuccess: async (t) => bus.ack(t),
    onDone: () => {
      if (++done % 1000 === 0) peak = Math.max(peak, process.memoryUsage().rss);
      if (done >= prefix) ac.abort(new Error('prefix done'));
    },
  });
  const seconds = (performance.now() - t0) / 1000;
  bus.close();
  for (const c of children) c.kill('SIGKILL');
  await jsm.streams.delete(names.tasksStream);
  await jsm.streams.delete(names.resultsStream);
  await nc.close();
  return { tasks: done, seconds: Math.round(seconds * 100) / 100, tasksPerSecond: Math.round(done / seconds), peakRssMB: Math.round(peak / 2 ** 20), inFlight, noopWorkers: 3 };
}

export async function runDistributedBench(o: DistributedBenchOptions): Promise<DistributedBench> {
  const dir = path.resolve(o.dir ?? 'bench-results', 'distributed');
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  const shape: Vec3 = o.quick ? [32, 256, 384] : [64, 512, 512];
  const vol = path.join(dir, 'vol.zarr');
  say(`synthesizing em ${shape.join('×')}`);
  await writeSynth({ kind: 'em', shape, seed: 7, fg: 0.01, out: vol });
  const cfg = path.join(dir, 'config.json');
  fs.writeFileSync(cfg, JSON.stringify({ extends: 'synthetic-em', io: { chunk: [32, 128, 128], chunksInFlight: 1 }, boxes: { cropThreshold: [16, 64, 64], recrop: [16, 32, 32] }, inference: { threads: 1 } }));
  const nats = await startNats();
  try {
    const base = ['--input', vol, '--config', cfg];
    const rows: ModeRow[] = [];
    const emb = path.join(dir, 'embedded.zarr');
    const modes: [string, string, string[]][] = [
      ['embedded, 1 task in hand', emb, []],
      ['NATS, 1 worker × 1 task', path.join(dir, 'nats1.zarr'), ['--nats', nats.url, '--workers', '1', '--concurrency', '1']],
      ['NATS, 2 workers × 1 task', path.join(dir, 'nats2.zarr'), ['--nats', nats.url, '--workers', '2', '--concurrency', '1']],
    ];
    for (const [mode, out, extra] of modes) {
      say(`run: ${mode}`);
      const t0 = performance.now();
      const r = await runCli(['run', ...base, '--output', out, ...extra]);
      const wallS = (performance.now() - t0) / 1000;
      const taskS = Object.entries(r.busySeconds).filter(([k]) => k.startsWith('task:')).reduce((n, [, v]) => n + v, 0);
      const tasks = Object.values(r.tasks).reduce((n, t) => n + t.ran, 0);
      const identical = out === emb || ['segmentation', 'instances'].every((a) => sameDir(path.join(emb, a), path.join(out, a)));
      rows.push({
        mode, wallS: Math.round(wallS * 100) / 100, taskS: Math.round(taskS * 100) / 100, tasks, identical,
        overhead: Math.round((wallS / taskS - 1) * 1000) / 1000, perTaskMs: Math.round(((wallS - taskS) / tasks) * 1000),
      });
    }
    const prefix = o.prefix ?? (o.quick ? 3000 : 20_000);
    say(`control plane: ${prefix} tasks of the FAFB grid, no-op workers`);
    const control = await controlPlane(nats.url, prefix);
    const result: DistributedBench = { machine: `${(await import('node:os')).cpus().length} cores`, volume: shape, rows, control };
    if (o.json) fs.writeFileSync(o.json, JSON.stringify(result, null, 2) + '\n');
    return result;
  } finally {
    await nats.close();
  }
}

export function formatDistributedReport(r: DistributedBench): string {
  const L = [`## Distributed (NATS JetStream, ${r.machine}; volume ${r.volume.join(' × ')}, synthetic-em, io.chunk 32 × 128 × 128)`, ''];
  L.push('| mode | wall s | summed task s | tasks | wall / task time − 1 | (wall − task time) / task | output = embedded |', '|---|---:|---:|---:|---:|---:|---|');
  for (const x of r.rows) L.push(`| ${x.mode} | ${x.wallS} | ${x.taskS} | ${x.tasks} | ${(100 * x.overhead).toFixed(1)} % | ${x.perTaskMs} ms | ${x.identical ? 'bit-identical' : '**differs**'} |`);
  L.push('', 'Wall time is the whole command (process starts, model loads, opening, finishing). Summed task time is what the tasks took where they ran. With one task in hand, the first two rows measure orchestration; in the NATS rows the merger\'s tasks (boxes, faces, resolve) run beside the worker\'s, which hides some of it. The last row overlaps tasks on two processes (wall below summed time).');
  const c = r.control;
  L.push('', `Control plane: the fafb task graph over the full FAFB grid through the real executor (publish, result, ack) with ${c.noopWorkers} no-op worker processes, ${c.inFlight} tasks in flight: ${c.tasks} tasks in ${c.seconds} s = ${c.tasksPerSecond} tasks/s; coordinator peak RSS ${c.peakRssMB} MiB.`, '');
  return L.join('\n');
}

// Entry point of a no-op worker child (see controlPlane).
if (process.argv[2] === '--noop-worker') {
  await noopWorker(process.argv[3], process.argv[4], process.argv[5] as 'worker' | 'merger');
}
