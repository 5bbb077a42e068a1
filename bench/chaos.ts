// The chaos benchmark (`tessera bench --chaos [--kills N]`): distributed runs over a real,
// file-backed nats-server that this process starts, with the real coordinator, worker and
// merger processes, while random faults hit every role — SIGKILL and SIGTERM of workers,
// mergers, the coordinator and nats-server (restarted on its store), SIGSTOP of a worker or
// merger past nats.ackWait, and SIGSTOP of the coordinator past its lease with a second
// coordinator started meanwhile (one of the two must be refused or fenced). A supervisor restarts
// what died, as Kubernetes would. Each run's output is compared bit for bit with the embedded
// run's; the report counts faults by role, redeliveries, stale messages rejected and the time
// over the embedded (and, in the full version, a fault-free distributed) run.
//
// Runs, cycled until the faults are spent: two-stage, one-stage, and a resume whose first
// coordinator has half the volume as its ROI and is replaced (workers and mergers kept) by one
// with the whole volume.
import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { mulberry32 } from '../shared/synth/random.ts';
import { writeSynth } from '../shared/run/synth.ts';
import { type NatsServer, startNats } from '../test/helpers/nats.ts';
import { PACKAGE_ROOT } from '../shared/config/load.ts';

const CLI = path.join(PACKAGE_ROOT, 'bin', 'tessera.mjs');
const say = (s: string) => process.stderr.write(s + '\n');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface ChaosOptions {
  dir?: string;
  /** Faults in all, at least. @default 100 (quick: 12) */
  kills?: number;
  /** A small volume and no fault-free distributed baseline: the CI version. */
  quick?: boolean;
  seed?: number;
  json?: string;
}

export type ChaosRole = 'worker' | 'merger' | 'coordinator' | 'nats';
type Service = Exclude<ChaosRole, 'nats'>;

export interface Fault {
  run: string;
  role: ChaosRole;
  /** SIGKILL, SIGTERM, SIGSTOP (a pause past the ack wait), or pause+second (coordinator). */
  kind: string;
  /** Seconds into the run. */
  at: number;
  /** What became of it (pause+second: which coordinator stopped, and how). */
  outcome?: string;
}

export interface ChaosRow {
  run: string;
  mode: string;
  faults: number;
  byRole: Record<ChaosRole, number>;
  wallS: number;
  embeddedWallS: number;
  /** The same topology without faults (full version only). */
  cleanWallS?: number;
  identical: boolean;
  differences: string[];
  /** Task deliveries beyond the first, from the consumers' counters. */
  redeliveries: number;
  /** The finishing coordinator's counters (epoch, drained, duplicates, lost, rejected, stale …). */
  coordinator: Record<string, number>;
  /** Messages the services rejected or handed back as stale (from their logs). */
  servicesRejected: number;
  /** Coordinators that stopped fenced, and second coordinators refused. */
  fenced: number;
  refused: number;
  /** Two coordinators still running together 20 s after the paused one resumed. */
  twoCoordinators: number;
  /** Workers or mergers still running 20 s after the run ended (killed then). */
  lingered: number;
  failedTasks: number;
  error?: string;
}

export interface ChaosReport {
  machine: string;
  volume: { shape: number[]; chunk: number[] };
  kills: number;
  seed: number;
  rows: ChaosRow[];
  faults: Fault[];
  passed: boolean;
}

interface RunSpec {
  name: string;
  mode: 'two-stage' | 'one-stage';
  config: string;
  /** The first coordinator's ROI, replaced by the whole volume part way (the resume run). */
  firstRoi?: string;
  reference: string;
  embeddedWallS: number;
}

const ACK_WAIT_S = 3;
/** Lease and lock staleness in the chaos config: a paused coordinator is taken over after it. */
const STALE_S = 6;

function chaosConfig(mode: 'two-stage' | 'one-stage', quick: boolean): Record<string, unknown> {
  return {
    extends: 'synthetic-em',
    mode,
    boxes: { cropThreshold: [16, 64, 64], recrop: [16, 32, 32] },
    io: { chunk: [32, 128, 128], chunksInFlight: 1, mergeFanIn: [2, 2, 2], lockStale: STALE_S },
    inference: { threads: 1 },
    // Deliveries enough for a task whose workers are killed again and again.
    nats: { ackWait: ACK_WAIT_S, inFlight: quick ? 8 : 16, maxDeliver: 50, lease: STALE_S },
  };
}

// --- processes ---------------------------------------------------------------------------------

interface Proc {
  role: Service;
  n: number;
  p: ChildProcess;
  stdout: string;
  exit: Promise<number>;
  /** Arguments it started with are the run's final ones (the resume's second coordinator). */
  final: boolean;
}

function spawnService(role: Service, n: number, args: string[], logDir: string, final: boolean): Proc {
  const stdout = path.join(logDir, `${role}-${n}.out`);
  const out = fs.openSync(stdout, 'w');
  const err = fs.openSync(path.join(logDir, `${role}-${n}.log`), 'w');
  const p = spawn(process.execPath, [CLI, role, ...args], { stdio: ['ignore', out, err], env: { ...process.env, TESSERA_LOG: 'warn' } });
  fs.closeSync(out);
  fs.closeSync(err);
  const exit = new Promise<number>((r) => p.once('exit', (code, sig) => r(code ?? (sig === 'SIGKILL' ? 137 : sig === 'SIGTERM' ? 143 : 128))));
  return { role, n, p, stdout, exit, final };
}

interface ClusterOptions {
  nats: NatsServer;
  run: string;
  input: string;
  output: string;
  config: string;
  logDir: string;
  rng: () => number;
}

/**
 * The run's processes under a supervisor: whatever exits is started again after a short delay
 * while the run is on (a coordinator only when no other is running), until a coordinator with
 * the run's final arguments reports it complete.
 */
class Cluster {
  readonly procs = new Set<Proc>();
  done = false;
  result?: { status: string; report: Record<string, unknown> };
  private n = 0;
  private finish!: () => void;
  readonly finished = new Promise<void>((r) => (this.finish = r));
  coordinatorArgs: string[];
  final: boolean;

  private readonly o: ClusterOptions;

  constructor(o: ClusterOptions, roi: string | undefined, final: boolean) {
    this.o = o;
    this.coordinatorArgs = this.coordinatorFlags(roi);
    this.final = final;
  }

  private coordinatorFlags(roi: string | undefined): string[] {
    const o = this.o;
    return ['--nats', o.nats.url, '--run', o.run, '--input', o.input, '--output', o.output, '--config', o.config, '--json', ...(roi ? ['--roi', roi] : [])];
  }

  start(role: Service): Proc {
    const args = role === 'coordinator' ? this.coordinatorArgs : ['--nats', this.o.nats.url, '--run', this.o.run, '--concurrency', '1'];
    const s = spawnService(role, ++this.n, args, this.o.logDir, role !== 'coordinator' || this.final);
    this.procs.add(s);
    void s.exit.then((code) => this.exited(s, code));
    return s;
  }

  live(role: Service): Proc[] {
    return [...this.procs].filter((s) => s.role === role);
  }

  /** The resume: from now on coordinators start with `roi`; the running one is stopped (SIGTERM). */
  growRoi(roi: string | undefined): Proc[] {
    this.coordinatorArgs = this.coordinatorFlags(roi);
    this.final = true;
    const running = this.live('coordinator');
    for (const s of running) s.p.kill('SIGTERM');
    if (!running.length) this.start('coordinator');
    return running;
  }

  private async exited(s: Proc, code: number): Promise<void> {
    this.procs.delete(s);
    if (this.done) return;
    if (s.role === 'coordinator' && code === 0 && s.final) {
      const report = lastJson(s.stdout);
      this.result = { status: String(report?.status ?? 'unknown'), report: report ?? {} };
      this.done = true;
      this.finish();
      return;
    }
    if (s.role === 'coordinator' && code === 1) {
      // A run that ended failed: its tasks failed for good. Not something chaos may cause.
      const report = lastJson(s.stdout);
      if (report?.status === 'failed') {
        this.result = { status: 'failed', report };
        this.done = true;
        this.finish();
        return;
      }
    }
    await sleep(300 + 700 * this.o.rng());
    if (this.done) return;
    if (s.role !== 'coordinator' || this.live('coordinator').length === 0) this.start(s.role);
  }

  /** Stop supervising; wait for workers and mergers to leave on their own, then kill the rest. */
  async stop(graceMs: number): Promise<number> {
    this.done = true;
    this.finish();
    const t0 = Date.now();
    while (this.procs.size && Date.now() - t0 < graceMs) await sleep(100);
    const lingered = [...this.procs].filter((s) => s.role !== 'coordinator').length;
    for (const s of this.procs) s.p.kill('SIGKILL');
    await Promise.all([...this.procs].map((s) => s.exit));
    return lingered;
  }
}

function lastJson(file: string): Record<string, unknown> | undefined {
  const text = fs.existsSync(file) ? fs.readFileSync(file, 'utf8').trim() : '';
  if (!text) return undefined;
  try {
    return JSON.parse(text) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

// --- faults ------------------------------------------------------------------------------------

const FAULTS: { role: ChaosRole; kind: string; weight: number }[] = [
  { role: 'worker', kind: 'SIGKILL', weight: 14 },
  { role: 'worker', kind: 'SIGTERM', weight: 9 },
  { role: 'worker', kind: 'SIGSTOP', weight: 6 },
  { role: 'merger', kind: 'SIGKILL', weight: 9 },
  { role: 'merger', kind: 'SIGTERM', weight: 6 },
  { role: 'merger', kind: 'SIGSTOP', weight: 4 },
  { role: 'coordinator', kind: 'SIGKILL', weight: 9 },
  { role: 'coordinator', kind: 'SIGTERM', weight: 7 },
  { role: 'coordinator', kind: 'pause+second', weight: 5 },
  { role: 'nats', kind: 'SIGKILL', weight: 8 },
  { role: 'nats', kind: 'SIGTERM', weight: 6 },
];

function pickFault(rng: () => number): { role: ChaosRole; kind: string } {
  let x = rng() * FAULTS.reduce((s, f) => s + f.weight, 0);
  for (const f of FAULTS) if ((x -= f.weight) < 0) return f;
  return FAULTS[0];
}

interface FaultTally {
  fenced: number;
  refused: number;
  twoCoordinators: number;
}

/** A coordinator paused past its lease while a second one starts: one of them must stop. */
async function pauseCoordinator(c: Cluster, first: Proc, tally: FaultTally): Promise<string> {
  first.p.kill('SIGSTOP');
  await sleep(STALE_S * 1000 + 1500);
  const second = c.start('coordinator');
  await sleep(3000);
  first.p.kill('SIGCONT');
  const gone = await Promise.race([
    first.exit.then((code) => ({ who: 'first', code })),
    second.exit.then((code) => ({ who: 'second', code })),
    sleep(20_000).then(() => undefined),
  ]);
  if (!gone) {
    tally.twoCoordinators++;
    return 'both still running after 20 s';
  }
  if (gone.who === 'first') tally.fenced++;
  else tally.refused++;
  return `${gone.who === 'first' ? 'paused coordinator fenced' : 'second coordinator refused'} (exit ${gone.code})`;
}

/** One fault; undefined when there was no process of its role to hit (not counted). */
async function applyFault(c: Cluster, nats: NatsServer, f: { role: ChaosRole; kind: string }, rng: () => number, tally: FaultTally): Promise<{ outcome?: string } | undefined> {
  if (f.role === 'nats') {
    await nats.kill(f.kind as NodeJS.Signals);
    await sleep(500 + 2000 * rng());
    await nats.start();
    return { outcome: 'restarted' };
  }
  const live = c.live(f.role).filter((s) => s.p.exitCode === null);
  if (!live.length) return undefined;
  const s = live[Math.floor(rng() * live.length)];
  if (f.kind === 'pause+second') return { outcome: await pauseCoordinator(c, s, tally) };
  if (f.kind === 'SIGSTOP') {
    s.p.kill('SIGSTOP');
    await sleep(ACK_WAIT_S * 1000 + 1000 + 2000 * rng());
    s.p.kill('SIGCONT');
    return { outcome: 'resumed' };
  }
  s.p.kill(f.kind as NodeJS.Signals);
  return {};
}

/** Faults at random intervals until `quota` are spent or the run ends. */
async function injectFaults(c: Cluster, nats: NatsServer, o: { run: string; quota: number; rng: () => number; gap: [number, number]; t0: number; faults: Fault[]; tally: FaultTally }): Promise<void> {
  while (o.faults.length < o.quota && !c.done) {
    await sleep(1000 * (o.gap[0] + (o.gap[1] - o.gap[0]) * o.rng()));
    if (c.done) return;
    const f = pickFault(o.rng);
    const at = Math.round((performance.now() - o.t0) / 100) / 10;
    const applied = await applyFault(c, nats, f, o.rng, o.tally);
    if (applied) o.faults.push({ run: o.run, role: f.role, kind: f.kind, at, ...applied });
  }
}

// --- measurements ------------------------------------------------------------------------------

/** Deliveries beyond the first, sampled from the run's consumers while its streams exist. */
function sampleDeliveries(url: string, run: string): { stop: () => Promise<number> } {
  let deliveries = 0;
  let published = 0;
  let on = true;
  const loop = (async () => {
    const nc = await connect({ servers: url, maxReconnectAttempts: -1, reconnectTimeWait: 250 });
    try {
      const jsm = await jetstreamManager(nc);
      while (on) {
        try {
          const si = await jsm.streams.info(`TESSERA_${run}_TASKS`);
          let d = 0;
          for (const role of ['worker', 'merger']) d += (await jsm.consumers.info(si.config.name, role)).delivered.consumer_seq;
          deliveries = Math.max(deliveries, d);
          published = Math.max(published, si.state.last_seq);
        } catch {
          // Broker down or streams not made yet (or removed at the end).
        }
        await sleep(500);
      }
    } finally {
      await nc.close().catch(() => undefined);
    }
  })();
  return { stop: async () => { on = false; await loop.catch(() => undefined); return Math.max(0, deliveries - published); } };
}

/** Lines of the services' logs that record a message rejected or handed back as stale. */
function servicesRejected(logDir: string): number {
  let n = 0;
  for (const f of fs.readdirSync(logDir)) {
    if (!/^(worker|merger)-\d+\.log$/.test(f)) continue;
    for (const line of fs.readFileSync(path.join(logDir, f), 'utf8').split('\n')) {
      if (/"msg":"[^"]*(rejected|stale)/i.test(line)) n++;
    }
  }
  return n;
}

/** Every file of the result arrays (not run.json, reports or the work store), as relative path → bytes. */
function resultFiles(out: string): Map<string, Buffer> {
  const files = new Map<string, Buffer>();
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      const rel = path.relative(out, p);
      if (rel === '.work' || rel === 'run.json' || rel.startsWith('report')) continue;
      if (e.isDirectory()) walk(p);
      else files.set(rel, fs.readFileSync(p));
    }
  };
  if (fs.existsSync(out)) walk(out);
  return files;
}

export function outputDifferences(reference: string, out: string): string[] {
  const a = resultFiles(reference);
  const b = resultFiles(out);
  const diffs: string[] = [];
  for (const [k, v] of a) {
    const w = b.get(k);
    if (!w) diffs.push(`${k} missing`);
    else if (!v.equals(w)) diffs.push(`${k} differs`);
  }
  for (const k of b.keys()) if (!a.has(k)) diffs.push(`${k} extra`);
  return diffs;
}

function numbers(o: unknown, prefix = ''): Record<string, number> {
  const out: Record<string, number> = {};
  if (!o || typeof o !== 'object') return out;
  for (const [k, v] of Object.entries(o)) {
    if (typeof v === 'number') out[prefix + k] = v;
    else if (v && typeof v === 'object' && !Array.isArray(v)) Object.assign(out, numbers(v, `${prefix}${k}.`));
  }
  return out;
}

// --- one run -----------------------------------------------------------------------------------

async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string; wallS: number }> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, TESSERA_LOG: 'warn' } });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr, wallS: (performance.now() - t0) / 1000 }));
  });
}

interface RunContext {
  nats: NatsServer;
  dir: string;
  input: string;
  rng: () => number;
  quick: boolean;
  faults: Fault[];
}

/** Done-log lines so far (the resume switches ROI once half its first tasks are done). */
function doneTasks(out: string): number {
  const d = path.join(out, '.work', 'done');
  if (!fs.existsSync(d)) return 0;
  let n = 0;
  for (const f of fs.readdirSync(d)) n += fs.readFileSync(path.join(d, f), 'utf8').split('\n').filter(Boolean).length;
  return n;
}

async function chaosRun(ctx: RunContext, spec: RunSpec, run: string, quota: number): Promise<ChaosRow & { faultsUsed: number }> {
  const output = path.join(ctx.dir, `${run}.zarr`);
  const logDir = path.join(ctx.dir, `${run}-logs`);
  fs.mkdirSync(logDir, { recursive: true });
  const c = new Cluster({ nats: ctx.nats, run, input: ctx.input, output, config: spec.config, logDir, rng: ctx.rng }, spec.firstRoi, !spec.firstRoi);
  const tally: FaultTally = { fenced: 0, refused: 0, twoCoordinators: 0 };
  const faults: Fault[] = [];
  const sampler = sampleDeliveries(ctx.nats.url, run);
  const t0 = performance.now();
  c.start('coordinator');
  for (let i = 0; i < 2; i++) c.start('worker');
  c.start('merger');
  c.start('merger');
  const growing = spec.firstRoi ? growWhenHalfDone(c, output, faults, run, t0) : Promise.resolve();
  const injecting = injectFaults(c, ctx.nats, { run, quota, rng: ctx.rng, gap: ctx.quick ? [0.4, 1.2] : [1, 2.5], t0, faults, tally });
  const limitS = ctx.quick ? 180 : 900;
  const hung = await Promise.race([c.finished.then(() => false), sleep(limitS * 1000).then(() => true)]);
  c.done = true;
  await injecting;
  await growing;
  const wallS = (performance.now() - t0) / 1000;
  const lingered = await c.stop(20_000);
  const redeliveries = await sampler.stop();
  ctx.faults.push(...faults);
  const byRole = { worker: 0, merger: 0, coordinator: 0, nats: 0 } as Record<ChaosRole, number>;
  for (const f of faults) byRole[f.role]++;
  const report = c.result?.report ?? {};
  const tasks = (report.tasks ?? {}) as Record<string, { failed?: number }>;
  const failedTasks = Object.values(tasks).reduce((s, t) => s + (t.failed ?? 0), 0);
  const error = hung ? `no coordinator completed the run within ${limitS} s` : c.result?.status !== 'complete' ? `run ended ${c.result?.status}` : undefined;
  const differences = error ? [] : outputDifferences(spec.reference, output);
  return {
    run, mode: spec.name, faults: faults.length, faultsUsed: faults.length, byRole, wallS, embeddedWallS: spec.embeddedWallS,
    identical: !error && differences.length === 0, differences: differences.slice(0, 10),
    redeliveries, coordinator: numbers((report as { distributed?: unknown }).distributed), servicesRejected: servicesRejected(logDir),
    ...tally, lingered, failedTasks, ...(error ? { error } : {}),
  };
}

/** The resume run: once half the first ROI's tasks are done, the coordinator is replaced by one over the whole volume. */
async function growWhenHalfDone(c: Cluster, output: string, faults: Fault[], run: string, t0: number): Promise<void> {
  while (!c.done && doneTasks(output) < 12) await sleep(200);
  if (c.done) return;
  c.growRoi(undefined);
  faults.push({ run, role: 'coordinator', kind: 'SIGTERM', at: Math.round((performance.now() - t0) / 100) / 10, outcome: 'replaced by a coordinator over the whole volume' });
}

// --- the benchmark -----------------------------------------------------------------------------

async function prepare(dir: string, quick: boolean): Promise<{ input: string; shape: number[]; specs: RunSpec[] }> {
  const shape: [number, number, number] = quick ? [32, 256, 384] : [64, 384, 512];
  const input = path.join(dir, 'vol.zarr');
  if (!fs.existsSync(input)) await writeSynth({ kind: 'em', shape, seed: 5, fg: 0.01, out: input });
  const specs: RunSpec[] = [];
  for (const mode of ['two-stage', 'one-stage'] as const) {
    const config = path.join(dir, `${mode}.json`);
    fs.writeFileSync(config, JSON.stringify(chaosConfig(mode, quick)));
    const reference = path.join(dir, `${mode}-embedded.zarr`);
    fs.rmSync(reference, { recursive: true, force: true });
    const r = await cli(['run', '--input', input, '--output', reference, '--config', config, '--json']);
    if (r.code !== 0) throw new Error(`embedded ${mode} run failed (${r.code}): ${r.stderr.trim().split('\n').pop()}`);
    specs.push({ name: mode, mode, config, reference, embeddedWallS: r.wallS });
  }
  const half = `0:${shape[0]},0:${shape[1] / 2},0:${shape[2]}`;
  specs.push({ ...specs[0], name: 'resume, larger ROI', firstRoi: half });
  return { input, shape, specs };
}

export async function runChaosBench(o: ChaosOptions = {}): Promise<ChaosReport> {
  const quick = !!o.quick;
  const kills = o.kills ?? (quick ? 12 : 100);
  const seed = o.seed ?? 1;
  const dir = path.resolve(o.dir ?? 'bench-results/chaos');
  fs.mkdirSync(dir, { recursive: true });
  const rng = mulberry32(seed);
  say(`chaos: preparing the volume and the embedded references in ${dir}`);
  const { input, shape, specs } = await prepare(dir, quick);
  const nats = await startNats();
  const ctx: RunContext = { nats, dir, input, rng, quick, faults: [] };
  const rows: ChaosRow[] = [];
  try {
    let spent = 0;
    for (let cycle = 0; spent < kills && cycle < 12; cycle++) {
      for (let i = 0; i < specs.length && spent < kills; i++) {
        const quota = Math.ceil((kills - spent) / (specs.length - i));
        const run = `chaos-${cycle}-${i}`;
        say(`chaos: ${run} (${specs[i].name}), ${quota} faults`);
        const row = await chaosRun(ctx, specs[i], run, quota);
        spent += row.faultsUsed;
        say(`chaos: ${run}: ${row.faults} faults, ${row.identical ? 'bit-identical' : `NOT identical: ${row.error ?? row.differences.join('; ')}`}, ${row.wallS.toFixed(1)} s`);
        rows.push(row);
      }
    }
    if (!quick) await cleanBaselines(ctx, specs, rows);
  } finally {
    await nats.close();
  }
  // A worker or merger that outlives its run would keep a Kubernetes Job from completing.
  const passed = rows.every((r) => r.identical && r.twoCoordinators === 0 && r.failedTasks === 0 && r.lingered === 0) && ctx.faults.length >= kills;
  const report: ChaosReport = { machine: machineLine(), volume: { shape, chunk: [32, 128, 128] }, kills, seed, rows, faults: ctx.faults, passed };
  if (o.json) fs.writeFileSync(o.json, JSON.stringify(report, null, 2) + '\n');
  return report;
}

/** The same runs with the same processes and no faults: what the faults cost in time. */
async function cleanBaselines(ctx: RunContext, specs: RunSpec[], rows: ChaosRow[]): Promise<void> {
  for (let i = 0; i < specs.length; i++) {
    const run = `clean-${i}`;
    say(`chaos: ${run} (${specs[i].name}), no faults`);
    const r = await chaosRun(ctx, specs[i], run, 0);
    if (!r.identical) throw new Error(`the fault-free ${specs[i].name} run is not bit-identical to the embedded run: ${r.error ?? r.differences.join('; ')}`);
    for (const row of rows) if (row.mode === specs[i].name) row.cleanWallS = r.wallS;
  }
}

function machineLine(): string {
  return `${process.platform} ${process.arch}, Node ${process.version}`;
}

export function formatChaosReport(r: ChaosReport): string {
  const roles: ChaosRole[] = ['worker', 'merger', 'coordinator', 'nats'];
  const total = r.faults.length;
  const lines = [
    `### Chaos: ${total} faults over ${r.rows.length} runs (volume ${r.volume.shape.join(' × ')}, io.chunk ${r.volume.chunk.join(' × ')}, seed ${r.seed}) — ${r.passed ? 'PASSED' : 'FAILED'}`,
    '',
    '| run | mode | faults (w/m/c/n) | output = embedded | redeliveries | stale rejected (coordinator / services) | fenced / refused | two coordinators | lingered | failed tasks | wall s | embedded s | fault-free s |',
    '|---|---|---|---|---:|---|---|---:|---:|---:|---:|---:|---:|',
  ];
  for (const row of r.rows) {
    const stale = Object.entries(row.coordinator).filter(([k]) => /stale|rejected/.test(k)).reduce((s, [, v]) => s + v, 0);
    lines.push(`| ${row.run} | ${row.mode} | ${row.faults} (${roles.map((x) => row.byRole[x]).join('/')}) | ${row.identical ? 'bit-identical' : `**no**: ${row.error ?? row.differences.join('; ')}`} | ${row.redeliveries} | ${stale} / ${row.servicesRejected} | ${row.fenced} / ${row.refused} | ${row.twoCoordinators} | ${row.lingered} | ${row.failedTasks} | ${row.wallS.toFixed(1)} | ${row.embeddedWallS.toFixed(1)} | ${row.cleanWallS?.toFixed(1) ?? '–'} |`);
  }
  const kinds = new Map<string, number>();
  for (const f of r.faults) kinds.set(`${f.role} ${f.kind}`, (kinds.get(`${f.role} ${f.kind}`) ?? 0) + 1);
  lines.push('', `Faults by kind: ${[...kinds].sort().map(([k, n]) => `${k} ${n}`).join(', ')}.`, '');
  return lines.join('\n') + '\n';
}
