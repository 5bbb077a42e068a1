// The FAFB scale simulation (`npm run bench -- --fafb-sim`): the real coordinator, scheduler,
// worker and merger loops driven over a real nats-server at the full size of FAFB v14
// (7062 × 301923 × 376277 voxels, ≈ 8 × 10¹⁴), on this machine, with no disk for the input and
// no network evaluation:
//
// - the input is `virtual:em?shape=<FAFB>` (chunks rendered on read; the coordinator and the
//   simulated workers only open it), the output a real Zarr group whose chunks are never written;
// - the workers are the real runWorker() loops (transport, batches, heartbeats, results) with a
//   cost-model job instead of the pipeline's task functions: a task sleeps for the time the
//   same kind took per voxel in a real run measured first on this machine (stage two: per canvas,
//   with canvases per block drawn around the measured canvases per voxel), times a scale that
//   brings the mean task to a few milliseconds;
// - the coordinator is the real runCoordinator() (session, done logs, frees, run record).
//
// It records: the control plane's rate (tasks handed out and recorded per second with no-cost
// workers) and the coordinator's memory and queue depth; the restart of a coordinator with the
// run's done logs holding a prefix, and half of the grid, until it is publishing again; the work
// rate with 1…N simulated GPU workers (scaling efficiency); the merger's box planning rate
// (bench/scale.ts's measurement of mergeFragments on fragments cut by chunk borders); and a
// projection of whole-FAFB GPU-hours, one-stage vs two-stage, with every assumption stated.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import {
  type KindSpec, type RunRecord, type RunReport, type TaskRef, type TesseraConfig, type Vec3,
  Scheduler, attachRun, boxOfShape, loadConfig, preset, runNames, silentLogger, taskGraph,
} from '../shared/index.ts';
import { nnunetTiles } from '../shared/tasks/predict.ts';
import { levelOf } from '../shared/tasks/graph.ts';
import { indexId, indexOf, rangeSize } from '../shared/geometry/grid.ts';
import { runCoordinator } from '../services/coordinator/loop.ts';
import { type WorkerJob, runWorker } from '../services/worker/loop.ts';
import { startNats } from '../test/helpers/nats.ts';
import { FAFB_SHAPE, boxRun } from './scale.ts';
import { runCpuSim } from './cpu-sim.ts';
import { type CpuReport, cpuReport, formatCpuReport } from './cpu-report.ts';
import { loaderArgs } from '../shared/runtime.ts';
import { PACKAGE_ROOT } from '../shared/config/load.ts';
import { type FafbMask, fafbMask } from './fafb-mask.ts';

const exec = promisify(execFile);
const HERE = path.dirname(fileURLToPath(import.meta.url));
const CLI = path.join(PACKAGE_ROOT, 'bin', 'tessera.mjs');
const say = (s: string) => process.stderr.write(`[fafb-sim ${new Date().toISOString().slice(11, 19)}] ${s}\n`);
const r2 = (x: number) => Math.round(x * 100) / 100;

/** The simulated run: the synthetic EM models' config over FAFB's grid with FAFB-size chunks. */
const SIM_OVERRIDES = {
  io: { chunk: [96, 1024, 1024], outputChunk: [24, 256, 256] },
  // Millions of storage chunks: one shard file per io.chunk (see output.format).
  output: { format: 'zarr-v3-sharded' },
  nats: { inFlight: 2048, batch: 256 },
};
const simConfig = (): TesseraConfig => loadConfig({ preset: 'synthetic-em', overrides: SIM_OVERRIDES });
const FAFB_INPUT = `virtual:em?shape=${FAFB_SHAPE.join(',')}&seed=1&fg=0.01`;
/** Mean simulated task time the cost model is scaled to (ms). */
const SIM_MEAN_MS = 4;

export interface Costs {
  /** The measuring run: its volume and report figures. */
  volume: string;
  voxels: number;
  /** Milliseconds per input voxel of each per-chunk kind (stage two excluded). */
  msPerVoxel: Record<string, number>;
  /** Stage two: milliseconds per canvas, and canvases per input voxel. */
  msPerCanvas: number;
  canvasesPerVoxel: number;
  canvasVoxels: number;
  /**
   * Milliseconds per task of the instance-id reduction (`merge<l>`, `resolve<l>`, all levels):
   * their cost follows the objects crossing a region's surface, not its voxels, so they are
   * modelled per task (a first-order model: see the merger's own benchmark for the real code at
   * FAFB density).
   */
  mergeMs: number;
  resolveMs: number;
  /** Modelled milliseconds × scale = simulated (sleep) milliseconds. */
  scale: number;
  /** Tasks of the FAFB grid per kind, and their modelled mean milliseconds at full scale. */
  fafbTasks: Record<string, number>;
  fafbMeanMs: Record<string, number>;
}

export interface FafbSim {
  when: string;
  commit: string;
  machine: string;
  quick: boolean;
  grid: { shape: Vec3; chunk: Vec3; tasks: Record<string, number>; total: number };
  costs: Costs;
  control: {
    inFlight: number;
    processes: number;
    rows: { label: string; tasks: number; seconds: number; tasksPerSecond: number; cpuUsPerTask: number; openS: number; peakRssMB: number; maxInFlight: number; maxStreamMessages: number; messages: number }[];
  };
  resume: { doneTasks: number; label: string; openS: number; publishingS: number; peakRssMB: number }[];
  scaling: { processes: number; lanes: number; seconds: number; tasks: number; workMsPerS: number; efficiency: number }[];
  merger: { fragments: number; objects: number; split: number; mergeS: number; fragmentsPerS: number; boxesPerS: number; grid: Vec3 };
  projection: Projection;
  /** A neuropil mask of a stated shape through the real skip code (bench/fafb-mask.ts): what runs of each kind. */
  mask?: FafbMask;
  /** The CPU side (bench/cpu-sim.ts; per-task samples left out), and the command that made it. */
  cpu?: CpuReport;
  cpuCommand?: string;
}

// ---------------------------------------------------------------------------------------------
// The cost model.

/** Voxels of task `index` of `k`: its block of chunks, clipped at the volume's end. */
function taskVoxels(k: Pick<KindSpec, 'block'>, index: Vec3, chunk: Vec3, shape: Vec3): number {
  let v = 1;
  for (let a = 0; a < 3; a++) {
    const lo = index[a] * k.block[a] * chunk[a];
    v *= Math.max(0, Math.min(lo + k.block[a] * chunk[a], shape[a]) - lo);
  }
  return v;
}

/** A deterministic standard normal for a task (Box–Muller over two hashed uniforms). */
function normalOf(index: Vec3, salt: number): number {
  let h = (Math.imul(index[0] + 1, 0x9e3779b1) ^ Math.imul(index[1] + 7, 0x85ebca77) ^ Math.imul(index[2] + 13, 0xc2b2ae3d) ^ salt) >>> 0;
  const next = () => {
    h = (h + 0x6d2b79f5) >>> 0;
    let t = h;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) + 1) / 4294967297;
  };
  return Math.sqrt(-2 * Math.log(next())) * Math.cos(2 * Math.PI * next());
}

/** Modelled milliseconds of a task at full scale (before `scale`). */
export function modelledMs(c: Costs, k: Pick<KindSpec, 'name' | 'block'>, index: Vec3, chunk: Vec3, shape: Vec3): number {
  if (levelOf(k.name, 'merge') !== undefined) return c.mergeMs;
  if (levelOf(k.name, 'resolve') !== undefined) return c.resolveMs;
  const v = taskVoxels(k, index, chunk, shape);
  if (k.name === 'stage2') {
    // Canvases of the block: Poisson around the measured density (normal approximation: λ is
    // in the hundreds for a block of FAFB chunks).
    const lambda = c.canvasesPerVoxel * v;
    const n = Math.max(0, Math.round(lambda + Math.sqrt(lambda) * normalOf(index, 0x51)));
    return n * c.msPerCanvas;
  }
  return (c.msPerVoxel[k.name] ?? 0) * v;
}

/** A worker's job that sleeps for each task's modelled time × scale (0: answers at once). */
export async function simJob(costs: Costs | undefined, record: RunRecord, config: TesseraConfig): Promise<WorkerJob> {
  const ctx = await attachRun({
    config, input: record.input, output: record.output, roi: { begin: record.roi.begin, end: record.roi.end }, identity: record.identity, log: silentLogger(),
  });
  const { chunk, volume } = ctx.graph;
  const kinds = new Map(ctx.graph.kinds.map((k) => [k.name, k]));
  let busy = 0;
  return {
    kinds: ctx.graph.kinds,
    run: async (t: TaskRef) => {
      if (!costs) return {};
      const ms = modelledMs(costs, kinds.get(t.kind)!, t.index, chunk, volume.end) * costs.scale;
      busy += ms / 1000;
      if (ms >= 0.5) await new Promise((r) => setTimeout(r, ms));
      return {};
    },
    busySeconds: () => busy,
    close: () => ctx.pool.close(),
  };
}

/**
 * Run the synthetic-em preset once for real on a small virtual volume: per-kind costs. Its
 * intermediate results are kept (the CPU part re-runs its paste tasks alone); the caller deletes
 * `costs.zarr`.
 */
async function measureCosts(dir: string, quick: boolean, config: TesseraConfig, grid: ReturnType<typeof taskGraph>): Promise<Costs> {
  const shape: Vec3 = quick ? [32, 256, 384] : [64, 512, 512];
  // Seed 31: neither the bench volume (7) nor a tuning seed.
  const volume = `virtual:em?shape=${shape.join(',')}&seed=31&fg=0.01`;
  const out = path.join(dir, 'costs.zarr');
  const { stdout } = await exec(process.execPath, [CLI, 'run', '--input', volume, '--output', out, '--preset', 'synthetic-em', '--json', '--overwrite', '--keep-work'], { maxBuffer: 1 << 26, env: { ...process.env, TESSERA_LOG: 'error' } });
  const r = JSON.parse(stdout.trim().split('\n').pop()!) as RunReport;
  const busy = (k: string) => (r.busySeconds[`task:${k}`] ?? 0) * 1000;
  const msPerVoxel: Record<string, number> = {};
  const levels = (of: 'merge' | 'resolve') => Object.keys(r.tasks).filter((k) => levelOf(k, of) !== undefined);
  const perTask = (ks: string[]) => ks.reduce((s, k) => s + busy(k), 0) / Math.max(1, ks.reduce((s, k) => s + r.tasks[k].ran, 0));
  for (const k of Object.keys(r.tasks)) if (k !== 'stage2' && levelOf(k, 'merge') === undefined && levelOf(k, 'resolve') === undefined) msPerVoxel[k] = busy(k) / r.voxels;
  const canvases = r.twoStage?.canvases ?? 0;
  const costs: Costs = {
    volume, voxels: r.voxels, msPerVoxel,
    msPerCanvas: canvases ? busy('stage2') / canvases : 0,
    canvasesPerVoxel: canvases / r.voxels,
    canvasVoxels: config.pack.canvas[0] * config.pack.canvas[1] * config.pack.canvas[2],
    mergeMs: perTask(levels('merge')),
    resolveMs: perTask(levels('resolve')),
    scale: 1, fafbTasks: {}, fafbMeanMs: {},
  };
  // The FAFB grid's modelled mean per kind (sampled tasks) and the scale to SIM_MEAN_MS.
  let sum = 0;
  let n = 0;
  for (const k of grid.kinds) {
    const size = rangeSize(k.range);
    let s = 0;
    const samples = Math.min(size, 2000);
    for (let i = 0; i < samples; i++) {
      const index = indexOf(k.range, Math.floor((i * size) / samples));
      s += modelledMs(costs, k, index, grid.chunk, grid.volume.end);
    }
    costs.fafbTasks[k.name] = size;
    costs.fafbMeanMs[k.name] = s / samples;
    sum += (s / samples) * size;
    n += size;
  }
  costs.scale = SIM_MEAN_MS / (sum / n);
  return costs;
}

/** The CPU side: the instance tasks on generated FAFB-density data, paste re-run alone on the cost-model run's output. */
async function cpuPart(dir: string, quick: boolean, costs: Costs): Promise<CpuReport> {
  const measured = await runCpuSim({ dir, quick, costsOutput: path.join(dir, 'costs.zarr'), costsInput: costs.volume, log: say });
  for (const k of [...measured.kinds, ...measured.empty]) delete k.samples;
  return cpuReport(measured, project(costs).twoStageGpuH, costs.msPerVoxel.paste);
}

// ---------------------------------------------------------------------------------------------
// Simulated worker processes and the coordinator.

/** N processes, each one worker lane and one merger lane (`concurrency` each) with the cost model. */
function startSims(url: string, run: string, costsFile: string, n: number, concurrency: number): ChildProcess[] {
  // TESSERA_SIM_PROFILE=<dir>: the simulated workers write CPU profiles there (they exit on SIGTERM).
  const prof = process.env.TESSERA_SIM_PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${process.env.TESSERA_SIM_PROFILE}`] : [];
  return Array.from({ length: n }, () => spawn(process.execPath, [...prof, ...loaderArgs(fileURLToPath(import.meta.url)), fileURLToPath(import.meta.url), '--sim-worker', url, run, costsFile, String(concurrency)], { stdio: ['ignore', 'ignore', 'inherit'] }));
}

async function simProcess(url: string, run: string, costsFile: string, concurrency: number): Promise<void> {
  const costs = costsFile === '-' ? undefined : (JSON.parse(fs.readFileSync(costsFile, 'utf8')) as Costs);
  // SIGTERM: exit normally (a --cpu-prof profile is written then).
  process.once('SIGTERM', () => process.exit(0));
  const nc = await connect({ servers: url });
  const job = (record: RunRecord, config: TesseraConfig) => simJob(costs, record, config);
  await Promise.all((['worker', 'merger'] as const).map((role) => runWorker({ nc, run, role, concurrency, log: silentLogger(), job })));
}

interface Driven {
  report: RunReport;
  /** Seconds from the call to the session being open (scheduler restored) and to the first result. */
  openS: number;
  firstResultS: number;
  /** Tasks done and the seconds between the first result and the stop. */
  tasks: number;
  seconds: number;
  /** Summed task milliseconds reported (simulated work) between the first result and the stop. */
  workMs: number;
  maxInFlight: number;
  maxStreamMessages: number;
  messages: number;
  /** This process's CPU seconds (user + system) between the first result and the stop. */
  cpuS: number;
}

/** The real coordinator until `tasks` more are done or `seconds` passed since its first result. */
async function coordinate(url: string, run: string, output: string, config: TesseraConfig, stop: { tasks?: number; seconds?: number; keepWork?: boolean }): Promise<Driven> {
  const nc = await connect({ servers: url });
  const jsm = await jetstreamManager(nc);
  const ac = new AbortController();
  const t0 = performance.now();
  let first = 0;
  let openAt = 0;
  let done = 0;
  let workMs = 0;
  let maxInFlight = 0;
  let maxStream = 0;
  const perKind = new Map<string, number>();
  let base = -1;
  let cpu0 = process.cpuUsage();
  const sample = setInterval(() => {
    void jsm.streams.info(runNames(run).tasksStream).then((i) => { maxStream = Math.max(maxStream, i.state.messages); }, () => undefined);
  }, 500);
  let timer: NodeJS.Timeout | undefined;
  // No result within 2 min: no worker serves this run (a bug here); stop rather than hang.
  const stall = setTimeout(() => { if (!first) ac.abort(new Error('no results')); }, 120_000);
  const report = await runCoordinator({
    nc, run, config, input: FAFB_INPUT, output, log: silentLogger(), signal: ac.signal, keepWork: stop.keepWork,
    progress: (kind, d) => {
      perKind.set(kind, d);
      if (!openAt) openAt = performance.now();
      let sum = 0;
      for (const v of perKind.values()) sum += v;
      done = sum;
      if (stop.tasks !== undefined && first && done - base >= stop.tasks) ac.abort(new Error('enough tasks'));
    },
    metrics: {
      result: (_kind, _ok, ms) => {
        if (!first) {
          // Tasks done before (restored from the logs, drained) are not this run's.
          base = done;
          first = performance.now();
          cpu0 = process.cpuUsage();
          if (stop.seconds !== undefined) timer = setTimeout(() => ac.abort(new Error('enough time')), stop.seconds * 1000);
        }
        workMs += ms;
      },
      queue: (n) => { maxInFlight = Math.max(maxInFlight, n); },
      voxels: () => undefined,
    },
  });
  clearInterval(sample);
  clearTimeout(timer);
  clearTimeout(stall);
  if (!first) throw new Error(`run ${run}: no task result within 2 minutes (no worker serves it?)`);
  const end = performance.now();
  const cpu = process.cpuUsage(cpu0);
  await nc.close();
  return {
    report, openS: (openAt - t0) / 1000, firstResultS: (first - t0) / 1000, tasks: done - Math.max(0, base), seconds: (end - first) / 1000, workMs,
    maxInFlight, maxStreamMessages: maxStream, messages: report.distributed.messages, cpuS: (cpu.user + cpu.system) / 1e6,
  };
}

/** Done logs for the first `n` tasks the scheduler hands out (what a run that far has recorded). */
async function writeDoneLogs(output: string, graph: ReturnType<typeof taskGraph>, n: number): Promise<number> {
  const dir = path.join(output, '.work', 'done');
  fs.rmSync(path.join(output, '.work'), { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  const sched = new Scheduler(graph.kinds, graph.deps);
  const streams = new Map(graph.kinds.map((k) => [k.name, fs.createWriteStream(path.join(dir, `${k.name}.log`))]));
  const lines = new Map<string, string[]>(graph.kinds.map((k) => [k.name, []]));
  let done = 0;
  while (done < n) {
    const ts = sched.next(4096);
    if (!ts.length) break;
    for (const t of ts) {
      sched.done(t);
      lines.get(t.kind)!.push(`${indexId(t.index)};\n`);
      if (++done >= n) break;
    }
    for (const [k, l] of lines) {
      if (l.length < 65536) continue;
      if (!streams.get(k)!.write(l.join(''))) await new Promise<void>((r) => streams.get(k)!.once('drain', () => r()));
      lines.set(k, []);
    }
  }
  for (const [k, l] of lines) streams.get(k)!.write(l.join(''));
  await Promise.all([...streams.values()].map((s) => new Promise<void>((r) => s.end(() => r()))));
  return done;
}

// ---------------------------------------------------------------------------------------------
// Projection.

export interface Projection {
  assumptions: string[];
  /** Full-resolution voxels the projection covers (FAFB's neuropil). */
  voxels: number;
  oneStageTileVoxelsPerVoxel: number;
  stage1TileVoxelsPerVoxel: number;
  canvasVoxelsPerVoxel: number;
  tta: number;
  mvoxPerS: [number, number];
  oneStageGpuH: [number, number];
  twoStageGpuH: [number, number];
  speedup: number;
  research: { oneStageH: number; twoStageH: number; speedup: number };
  /**
   * With the mask (fafb-mask.ts): each stage's work over the voxels of the tasks that run —
   * predict's chunks (one-stage), stage one's blocks and stage two's blocks (two-stage).
   */
  masked?: { oneStageGpuH: [number, number]; twoStageGpuH: [number, number]; speedup: number; voxels: { predict: number; stage1: number; stage2: number } };
}

/** Samples per kind of the mask part (±0.3 % of the grid at a 7 % share). */
const MASK_SAMPLES = 10_000;

function project(costs: Costs, mask?: FafbMask): Projection {
  const fafb = preset('fafb')!;
  const V = 5e13;
  const full = FAFB_SHAPE;
  const fullVox = full[0] * full[1] * full[2];
  const tileVox = (shape: Vec3, patch: Vec3, step: number) => nnunetTiles(shape, patch, step) * patch[0] * patch[1] * patch[2];
  const oneStage = tileVox(full, fafb.baseline.patch, fafb.baseline.step) / fullVox;
  const f = fafb.stage1.spacing.map((s, a) => s / fafb.spacing[a]) as unknown as Vec3;
  const low: Vec3 = [Math.ceil(full[0] / f[0]), Math.ceil(full[1] / f[1]), Math.ceil(full[2] / f[2])];
  const stage1 = tileVox(low, fafb.stage1.patch, fafb.stage1.step) / fullVox;
  const canvas = costs.canvasesPerVoxel * costs.canvasVoxels;
  const tta = fafb.baseline.mirror ? 8 : 1;
  const R: [number, number] = [95, 145];
  const gpuH = (perVoxel: number) => R.map((r) => (V * perVoxel * tta) / (r * 1e6) / 3600).reverse() as [number, number];
  const one = gpuH(oneStage);
  const two = gpuH(stage1 + canvas);
  const hours = (work: number) => R.map((r) => (work * tta) / (r * 1e6) / 3600).reverse() as [number, number];
  let masked: Projection['masked'];
  if (mask) {
    const v = { predict: fullVox * mask.kinds.predict.voxelShare, stage1: fullVox * mask.kinds.stage1.voxelShare, stage2: fullVox * mask.kinds.stage2.voxelShare };
    const o = hours(v.predict * oneStage);
    const t = hours(v.stage1 * stage1 + v.stage2 * canvas);
    masked = { oneStageGpuH: o.map(Math.round) as [number, number], twoStageGpuH: t.map(Math.round) as [number, number], speedup: r2(o[0] / t[0]), voxels: { predict: Math.round(v.predict), stage1: Math.round(v.stage1), stage2: Math.round(v.stage2) } };
  }
  const maskLine = mask && masked
    ? `With the mask (the rows "with the mask"): ${mask.shape}, ${(100 * mask.tissueShare).toFixed(2)} % of the bounding box. Through the real skip code (tasks/mask.ts) on ${int(mask.kinds.stage1.sampled)} task indices per kind sampled over the fafb preset's whole grid, the tasks with tissue in reach hold ${(100 * mask.kinds.predict.voxelShare).toFixed(2)} % of the voxels for predict (one-stage), ${(100 * mask.kinds.stage1.voxelShare).toFixed(2)} % for stage one's blocks and ${(100 * mask.kinds.stage2.voxelShare).toFixed(2)} % for stage two's (a block runs whole when tissue lies within its reach: one chunk for stage two, the boxes view and more for stage one): each stage's work is counted over those voxels. Stage two at the measured canvas density over its blocks' voxels is an upper bound (outside the neuropil stage one finds few boxes); over the neuropil alone it is the row above.`
    : undefined;
  return {
    assumptions: [
      `FAFB neuropil ≈ 5 × 10¹³ voxels at 4 × 4 × 40 nm (design.md: "about 50 teravoxels"); the bounding box (${(fullVox / 1e14).toFixed(1)} × 10¹⁴) is 16× more, mostly outside the tissue. The first two rows count the neuropil's voxels alone, as if a mask skipped exactly the rest.`,
      ...(maskLine ? [maskLine] : []),
      `Both networks nnU-Net 3d_fullres size (≈ 30 M parameters), 95–145 Mvoxel/s per forward pass on an H100 with PyTorch CUDA (measured on the lent H100, stack.md); onnxruntime-node's CUDA provider assumed as fast (not measurable here: it cannot be fetched); stage one's network assumed as costly per voxel as stage two's (the research ran nnU-Net at both resolutions).`,
      `fafb preset: one-stage patch ${fafb.baseline.patch.join('×')} at step ${fafb.baseline.step} (nnU-Net's tile grid over the bounding box: ${oneStage.toFixed(2)} patch voxels per voxel); stage one at ${fafb.stage1.spacing.join('×')} nm, patch ${fafb.stage1.patch.join('×')}, step ${fafb.stage1.step} (${stage1.toFixed(3)} per full-res voxel); mirroring TTA (${tta}×) in every stage, as the preset sets it.`,
      `Stage two computes ${canvas.toFixed(3)} canvas voxels per input voxel: the synthetic EM data's measured density (${(costs.canvasesPerVoxel * 1e6).toFixed(2)} canvases of ${costs.canvasVoxels.toLocaleString('en-US')} voxels per 10⁶ voxels, 1 % foreground, synthetic-em preset on ${costs.volume}). FAFB's clefts are sparser than that within neuropil; this is the figure that decides the result and the one to replace with a stage-one sample of the real volume.`,
      'Input I/O and queueing overlap the GPU work and are left out here; the CPU tasks (boxes, paste, labelling, the instance ids) are measured and extrapolated in "CPU side" below (the CPU-hours column).',
    ],
    voxels: V,
    oneStageTileVoxelsPerVoxel: r2(oneStage),
    stage1TileVoxelsPerVoxel: Math.round(stage1 * 1000) / 1000,
    canvasVoxelsPerVoxel: Math.round(canvas * 1000) / 1000,
    tta,
    mvoxPerS: R,
    oneStageGpuH: one.map(Math.round) as [number, number],
    twoStageGpuH: two.map(Math.round) as [number, number],
    speedup: r2(oneStage / (stage1 + canvas)),
    research: { oneStageH: 46.0, twoStageH: 0.8 + 5.59, speedup: r2(46.0 / (0.8 + 5.59)) },
    ...(masked ? { masked } : {}),
  };
}

// ---------------------------------------------------------------------------------------------

export interface FafbSimOptions {
  dir?: string;
  quick?: boolean;
  json?: string;
  /** Tasks of the control-plane run. @default 1,000,000 (quick 50,000) */
  tasks?: number;
}

export async function runFafbSim(o: FafbSimOptions): Promise<FafbSim> {
  const quick = o.quick ?? false;
  const dir = path.resolve(o.dir ?? 'bench-results', 'fafb-sim');
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  const config = simConfig();
  const f = config.stage1.spacing.map((s, a) => s / config.spacing[a]) as unknown as Vec3;
  const graph = taskGraph(config, FAFB_SHAPE, boxOfShape(FAFB_SHAPE), f);
  const tasks = Object.fromEntries(graph.kinds.map((k) => [k.name, rangeSize(k.range)]));
  const total = Object.values(tasks).reduce((a, b) => a + b, 0);
  say(`FAFB grid: ${total.toLocaleString('en-US')} tasks (${JSON.stringify(tasks)})`);

  // Part 1 first, in a fresh process state: the coordinator's memory is this process's.
  const nats = await startNats();
  const children: ChildProcess[] = [];
  const stopChildren = () => { for (const c of children.splice(0)) c.kill('SIGKILL'); };
  try {
    const controlTasks = o.tasks ?? (quick ? 50_000 : 1_000_000);
    const out = path.join(dir, 'control.zarr');
    const processes = 2;
    say(`control plane: ${controlTasks.toLocaleString('en-US')} tasks, ${processes} no-cost worker processes`);
    children.push(...startSims(nats.url, 'sim-control', '-', processes, 4));
    const c = await coordinate(nats.url, 'sim-control', out, config, { tasks: controlTasks });
    const row = (label: string, d: Driven) => ({
      label, tasks: d.tasks, seconds: r2(d.seconds), tasksPerSecond: Math.round(d.tasks / d.seconds), cpuUsPerTask: Math.round((d.cpuS * 1e6) / d.tasks), openS: r2(d.openS),
      peakRssMB: d.report.peakRssMB, maxInFlight: d.maxInFlight, maxStreamMessages: d.maxStreamMessages, messages: d.messages,
    });
    const control: FafbSim['control'] = { inFlight: config.nats.inFlight, processes, rows: [row('as shipped', c)] };
    say(`control plane: ${JSON.stringify(control.rows[0])}`);
    // Part 2: restarts. The same run again (its done logs hold the control run's tasks), then
    // with done logs for half of the grid.
    const resume: FafbSim['resume'] = [];
    // Each restart is a fresh coordinator process (its memory is its own, not this process's).
    const restart = async (label: string, doneTasks: number) => {
      const { stdout } = await exec(process.execPath, [...loaderArgs(fileURLToPath(import.meta.url)), fileURLToPath(import.meta.url), '--restart', nats.url, 'sim-control', out], { maxBuffer: 1 << 24 });
      const r = JSON.parse(stdout) as { openS: number; firstResultS: number; peakRssMB: number };
      resume.push({ label, doneTasks, openS: r2(r.openS), publishingS: r2(r.firstResultS), peakRssMB: r.peakRssMB });
      say(`restart (${label}): ${JSON.stringify(resume.at(-1))}`);
    };
    await restart('after the control run', c.tasks);
    const half = quick ? 2_000_000 : Math.floor(total / 2);
    say(`writing done logs for ${half.toLocaleString('en-US')} tasks`);
    const written = await writeDoneLogs(out, graph, half);
    await restart('half of the grid done', written);
    stopChildren();
    fs.rmSync(out, { recursive: true, force: true });

    // The control run again without freeing intermediates (--keep-work): what the frees cost.
    // Here every free deletes files the simulated workers never wrote (an error object per
    // missing file, which a real run does not pay).
    children.push(...startSims(nats.url, 'sim-keep', '-', processes, 4));
    const k = await coordinate(nats.url, 'sim-keep', path.join(dir, 'keep.zarr'), config, { tasks: controlTasks, keepWork: true });
    stopChildren();
    control.rows.push(row('intermediates kept (--keep-work)', k));
    say(`control plane, keep work: ${JSON.stringify(control.rows[1])}`);
    fs.rmSync(path.join(dir, 'keep.zarr'), { recursive: true, force: true });

    // Part 3: scaling with the cost model.
    say('measuring task costs (one real run of synthetic-em)');
    const costs = await measureCosts(dir, quick, config, graph);
    const costsFile = path.join(dir, 'costs.json');
    fs.writeFileSync(costsFile, JSON.stringify(costs, null, 2));
    say(`costs: ${JSON.stringify(costs)}`);
    const scaling: FafbSim['scaling'] = [];
    for (const n of quick ? [1, 2] : [1, 2, 4, 8]) {
      const run = `sim-scale-${n}`;
      const sout = path.join(dir, `${run}.zarr`);
      children.push(...startSims(nats.url, run, costsFile, n, 1));
      const s = await coordinate(nats.url, run, sout, config, { seconds: quick ? 6 : 20 });
      stopChildren();
      fs.rmSync(sout, { recursive: true, force: true });
      const workMsPerS = s.workMs / s.seconds;
      scaling.push({ processes: n, lanes: 2 * n, seconds: r2(s.seconds), tasks: s.tasks, workMsPerS: Math.round(workMsPerS), efficiency: scaling.length ? r2(workMsPerS / (n * scaling[0].workMsPerS)) : 1 });
      say(`scaling ${n}: ${JSON.stringify(scaling.at(-1))}`);
    }

    // Part 4: the CPU side (the cost-model run's output is still there).
    say('CPU side: the instance tasks on generated data at FAFB density');
    const cpu = await cpuPart(dir, quick, costs);
    fs.rmSync(path.join(dir, 'costs.zarr'), { recursive: true, force: true });

    // Part 5: the merger's box planning on fragments cut by chunk borders.
    say('merger: box planning');
    const grid: Vec3 = quick ? [4, 16, 16] : [10, 32, 32];
    const b = boxRun({ label: 'merger', volume: [grid[0] * 96, grid[1] * 1024, grid[2] * 1024], seed: 11, perChunk: 10 });
    const merger = { fragments: b.fragments, objects: b.objects, split: b.fragments - b.objects, mergeS: r2(b.mergeS), fragmentsPerS: Math.round(b.fragments / b.mergeS), boxesPerS: Math.round(b.boxesPerS), grid };

    // Part 6: a neuropil mask through the real skip code.
    say('tissue mask: a neuropil mask of a stated shape through the skip code');
    const mask = await fafbMask(dir, quick ? 1000 : MASK_SAMPLES);

    const result: FafbSim = {
      when: new Date().toISOString(),
      commit: (await exec('git', ['rev-parse', '--short', 'HEAD'], { cwd: HERE }).catch(() => ({ stdout: '?' }))).stdout.trim(),
      machine: `${os.cpus().length} × ${os.cpus()[0]?.model ?? '?'}, ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB, Node ${process.version}`,
      quick, grid: { shape: FAFB_SHAPE, chunk: config.io.chunk, tasks, total }, costs, control, resume, scaling, merger, projection: project(costs, mask), mask, cpu,
      cpuCommand: `npm run bench -- --fafb-sim${quick ? ' --quick' : ''}`,
    };
    if (o.json) fs.writeFileSync(o.json, JSON.stringify(result, null, 2) + '\n');
    return result;
  } finally {
    stopChildren();
    await nats.close();
  }
}

const int = (x: number) => x.toLocaleString('en-US');

export function formatFafbSim(r: FafbSim): string {
  const L: string[] = [];
  L.push(`Run ${r.when} on ${r.machine}, commit ${r.commit}${r.quick ? ' (--quick: smaller figures, not the record)' : ''}.`, '');
  L.push(`FAFB grid: ${r.grid.shape.join(' × ')} voxels in chunks of ${r.grid.chunk.join(' × ')}: ${int(r.grid.total)} tasks (${Object.entries(r.grid.tasks).map(([k, v]) => `${k} ${int(v)}`).join(', ')}).`, '');
  const c = r.control;
  const first = c.rows[0];
  L.push('## Control plane', '');
  L.push(`The real coordinator (session over the virtual input, scheduler, done logs, frees, run record) with ${c.processes} worker processes whose job answers at once (each a worker and a merger loop, 4 messages in hand per loop), ${c.inFlight} tasks in flight:`, '');
  L.push('| coordinator | tasks | seconds | tasks/s | CPU µs per task | task messages | opening s | peak RSS MiB | most tasks in flight | most messages in the tasks stream |', '|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|');
  for (const x of c.rows) L.push(`| ${x.label} | ${int(x.tasks)} | ${x.seconds} | **${int(x.tasksPerSecond)}** | ${x.cpuUsPerTask} | ${int(x.messages)} | ${x.openS} | ${x === first ? x.peakRssMB : `(${x.peakRssMB}: same process, after the first)`} | ${int(x.maxInFlight)} | ${int(x.maxStreamMessages)} |`);
  L.push('', `CPU µs per task is the coordinator process's CPU time (all its threads: the file system work runs in libuv's pool) over the tasks. The coordinator, nats-server and the worker processes share this machine's ${os.cpus().length} cores. At the first row's rate the whole grid's ${int(r.grid.total)} tasks are handed out and recorded in ≈ ${Math.round(r.grid.total / first.tasksPerSecond / 60)} min (target ≥ 20,000 tasks/s: ${first.tasksPerSecond >= 20_000 ? 'met' : 'not met'}; ≤ 512 MiB: ${first.peakRssMB <= 512 ? 'met' : 'not met'}). The queue is bounded by construction (at most nats.inFlight tasks out).`, '');
  L.push('## Coordinator restart', '');
  L.push('| done tasks in the logs | session open (scheduler restored) s | publishing again (first result back) s | peak RSS MiB |', '|--:|--:|--:|--:|');
  for (const x of r.resume) L.push(`| ${int(x.doneTasks)} (${x.label}) | ${x.openS} | **${x.publishingS}** | ${x.peakRssMB} |`);
  L.push('', 'Target: publishing again ≤ 60 s after a restart with half the tasks done.', '');
  const k = r.costs;
  L.push('## Work rate with 1…N simulated GPU workers', '');
  L.push(`Cost model, measured in one real run of the synthetic-em preset on \`${k.volume}\` (${int(k.voxels)} voxels, this machine's CPU): ms per voxel ${Object.entries(k.msPerVoxel).map(([n, v]) => `${n} ${(v * 1e6).toFixed(2)} × 10⁻⁶`).join(', ')}; stage two ${r2(k.msPerCanvas)} ms per canvas at ${(k.canvasesPerVoxel * 1e6).toFixed(2)} canvases per 10⁶ voxels (Poisson per block); ${k.mergeMs !== undefined ? `merge ${r2(k.mergeMs)} ms and ` : ''}resolve ${r2(k.resolveMs)} ms per task. Modelled mean per FAFB task: ${Object.entries(k.fafbMeanMs).map(([n, v]) => `${n} ${v >= 1000 ? `${r2(v / 1000)} s` : `${r2(v)} ms`}`).join(', ')}; the simulation sleeps ${k.scale.toExponential(2)} × that (mean ${SIM_MEAN_MS} ms).`, '');
  L.push('Each process is one simulated GPU worker (one task message at a time) plus one merger loop; work rate = simulated task milliseconds finished per wall second; efficiency = rate / (N × the 1-process rate).', '');
  L.push('| processes | lanes | seconds | tasks | work ms/s | efficiency |', '|--:|--:|--:|--:|--:|--:|');
  for (const x of r.scaling) L.push(`| ${x.processes} | ${x.lanes} | ${x.seconds} | ${int(x.tasks)} | ${int(x.workMsPerS)} | ${x.efficiency.toFixed(2)} |`);
  L.push('', `This machine has ${os.cpus().length} cores; the simulated workers sleep instead of computing, so rows beyond the cores measure the control plane's ability to keep more GPUs busy, not CPU contention.`, '');
  const m = r.merger;
  L.push('## Merger', '');
  L.push(`Box planning (mergeFragments, the boxes task's work) on a ${m.grid.join(' × ')} grid of FAFB chunks, ~10 objects per chunk: ${int(m.objects)} objects cut into ${int(m.fragments)} fragments by chunk borders (${int(m.split)} extra pieces), merged in ${m.mergeS} s (each chunk's boxes task merges the fragments of its 27-chunk neighbourhood): **${int(m.fragmentsPerS)} fragments/s**, ${int(m.boxesPerS)} boxes/s, on one core (bench/scale.ts's measurement). The whole grid's ≈ ${int(Math.round((m.fragments / (m.grid[0] * m.grid[1] * m.grid[2])) * r.grid.tasks.boxes))} fragments at this density would take ≈ ${Math.round((m.fragments / (m.grid[0] * m.grid[1] * m.grid[2])) * r.grid.tasks.boxes / m.fragmentsPerS / 60)} min of one merger core.`, '');
  const p = r.projection;
  const cpuH = r.cpu ? ` ${int(Math.round(r.cpu.totals.all[1]))} (${int(Math.round(r.cpu.totals.all[0]))} over the bounding box) |` : ' not measured |';
  L.push('## Projection: whole-FAFB GPU-hours on H100-class GPUs', '');
  L.push('| | patch voxels per voxel (× TTA) | GPU-hours | CPU-hours (CPU side, neuropil) |', '|---|--:|--:|--:|');
  L.push(`| one-stage (nnU-Net sliding window) | ${p.oneStageTileVoxelsPerVoxel} × ${p.tta} | ${int(p.oneStageGpuH[0])}–${int(p.oneStageGpuH[1])} | not measured (blend instead of paste) |`);
  L.push(`| two-stage (stage one + canvases) | ${p.stage1TileVoxelsPerVoxel} + ${p.canvasVoxelsPerVoxel} × ${p.tta} | ${int(p.twoStageGpuH[0])}–${int(p.twoStageGpuH[1])} |${cpuH}`);
  if (p.masked) {
    L.push(`| one-stage, with the mask | ${p.oneStageTileVoxelsPerVoxel} × ${p.tta} over ${(p.masked.voxels.predict / 1e13).toFixed(2)} × 10¹³ | ${int(p.masked.oneStageGpuH[0])}–${int(p.masked.oneStageGpuH[1])} | |`);
    L.push(`| two-stage, with the mask | (${p.stage1TileVoxelsPerVoxel} over ${(p.masked.voxels.stage1 / 1e13).toFixed(2)} + ${p.canvasVoxelsPerVoxel} over ${(p.masked.voxels.stage2 / 1e13).toFixed(2)} × 10¹³) × ${p.tta} | ${int(p.masked.twoStageGpuH[0])}–${int(p.masked.twoStageGpuH[1])} | |`);
  }
  L.push('', `Projected speed-up ${p.speedup}×${p.masked ? ` (${p.masked.speedup}× with the mask)` : ''}; the research measured ${p.research.oneStageH} h → ${r2(p.research.twoStageH)} h (${p.research.speedup}×) for FAFB part 1 on one GPU. Assumptions:`, '');
  for (const a of p.assumptions) L.push(`- ${a}`);
  L.push('');
  if (r.mask) {
    const m = r.mask;
    L.push('### The tissue mask through the skip code', '');
    L.push(`${m.shape}; ${(m.tissueVoxels / 1e13).toFixed(2)} × 10¹³ tissue voxels, ${(100 * m.tissueShare).toFixed(2)} % of the bounding box. Written in ${m.seconds.write} s; ${int(m.kinds.stage1.sampled)} task indices per kind, uniform over the fafb preset's grid (seeded), asked what each task asks before it runs (tissueReach → reachBox → anyTissue on the Zarr mask) in ${m.seconds.sample} s:`, '');
    L.push('| kind | tasks in the grid | sampled | with tissue in reach (run) | their share of the voxels | tasks run, projected |', '|---|--:|--:|--:|--:|--:|');
    for (const [k, x] of Object.entries(m.kinds)) L.push(`| ${k} | ${int(x.tasks)} | ${int(x.sampled)} | ${int(x.run)} | ${(100 * x.voxelShare).toFixed(2)} % | ≈ ${int(Math.round((x.tasks * x.run) / x.sampled))} |`);
    L.push('', 'Faces, merge and resolve always run (cheap on a skipped chunk: an empty border); relabel skips with its chunk. The CPU side below counts its own neuropil chunks (those meeting the ellipsoid).', '');
  }
  if (r.cpu) L.push(formatCpuReport(r.cpu, r.cpuCommand ?? 'npm run bench -- --fafb-sim'));
  return L.join('\n');
}

/**
 * The CPU side alone (`node --import tsx bench/fafb-sim.ts --only cpu [--quick] [--json FILE]`):
 * the cost-model run, then the CPU part; with --json, its figures replace the `cpu` field of that
 * file's earlier full run, and the whole report is printed again from it.
 */
async function onlyCpu(argv: string[]): Promise<void> {
  const quick = argv.includes('--quick');
  const json = argv.includes('--json') ? argv[argv.indexOf('--json') + 1] : undefined;
  const dir = path.resolve('bench-results', 'fafb-sim');
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  const config = simConfig();
  const f = config.stage1.spacing.map((s, a) => s / config.spacing[a]) as unknown as Vec3;
  const graph = taskGraph(config, FAFB_SHAPE, boxOfShape(FAFB_SHAPE), f);
  say('measuring task costs (one real run of synthetic-em)');
  const costs = await measureCosts(dir, quick, config, graph);
  const cpu = await cpuPart(dir, quick, costs);
  fs.rmSync(dir, { recursive: true, force: true });
  const cpuCommand = `node --import tsx bench/fafb-sim.ts --only cpu${quick ? ' --quick' : ''}`;
  const prev = json && fs.existsSync(json) ? (JSON.parse(fs.readFileSync(json, 'utf8')) as FafbSim) : undefined;
  if (json && prev) {
    const commit = (await exec('git', ['rev-parse', '--short', 'HEAD'], { cwd: HERE }).catch(() => ({ stdout: '?' }))).stdout.trim();
    const next: FafbSim = { ...prev, cpu, cpuCommand: `${cpuCommand} (commit ${commit}, ${new Date().toISOString()})` };
    fs.writeFileSync(json, JSON.stringify(next, null, 2) + '\n');
    process.stdout.write(formatFafbSim(next));
  } else {
    if (json) fs.writeFileSync(json, JSON.stringify({ cpu, cpuCommand }, null, 2) + '\n');
    process.stdout.write(formatCpuReport(cpu, cpuCommand));
  }
}

/**
 * The mask part alone (`node --import tsx bench/fafb-sim.ts --only mask --json FILE`): its figures
 * and the projection recomputed with them replace those of FILE's earlier full run; prints the whole report.
 */
async function onlyMask(argv: string[]): Promise<void> {
  const json = argv[argv.indexOf('--json') + 1];
  if (!argv.includes('--json') || !json || !fs.existsSync(json)) throw new Error('--only mask needs --json FILE of an earlier full run');
  const dir = path.resolve('bench-results', 'fafb-sim');
  fs.mkdirSync(dir, { recursive: true });
  const prev = JSON.parse(fs.readFileSync(json, 'utf8')) as FafbSim;
  const mask = await fafbMask(dir, argv.includes('--quick') ? 1000 : MASK_SAMPLES);
  const next: FafbSim = { ...prev, mask, projection: project(prev.costs, mask) };
  fs.writeFileSync(json, JSON.stringify(next, null, 2) + '\n');
  process.stdout.write(formatFafbSim(next));
}

if (process.argv[2] === '--only' && process.argv[3] === 'mask') {
  await onlyMask(process.argv.slice(4));
  process.exit(0);
}
if (process.argv[2] === '--only' && process.argv[3] === 'cpu') {
  await onlyCpu(process.argv.slice(4));
  process.exit(0);
}
// Entry point of a simulated worker process (see startSims).
if (process.argv[2] === '--sim-worker') {
  await simProcess(process.argv[3], process.argv[4], process.argv[5], Number(process.argv[6]));
}
// Entry point of a restarted coordinator (see runFafbSim): runs 3 s past its first result.
if (process.argv[2] === '--restart') {
  const r = await coordinate(process.argv[3], process.argv[4], process.argv[5], simConfig(), { seconds: 3 });
  process.stdout.write(JSON.stringify({ openS: r.openS, firstResultS: r.firstResultS, peakRssMB: r.report.peakRssMB }));
  process.exit(0);
}
