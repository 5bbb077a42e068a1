// The CPU side's whole-FAFB figures from what bench/cpu-sim.ts measured: tasks per kind on the
// grid (bounding box, and a tissue mask's neuropil), CPU-hours per kind, the reduction's levels
// from the surface model, cores per GPU, wall clock, merger replicas. Every assumption is listed
// in the result (`assumptions`) and printed with the figures.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Vec3 } from '../shared/geometry/box.ts';
import { blocksMeeting, linearOf, range3 } from '../shared/geometry/grid.ts';
import { levelBlock } from '../shared/geometry/tree.ts';
import { loadConfig } from '../shared/config/load.ts';
import { type LevelModel, NEUROPIL_VOXELS, chunkCounts, fafbTissue, reductionModel } from './cpu-model.ts';
import { type CpuMeasured, type KindResult, DENSITY, OBJECT_HI, OBJECT_LO } from './cpu-sim.ts';
import { FAFB_SHAPE } from './scale.ts';

const r2 = (x: number) => Math.round(x * 100) / 100;
const H = 3_600_000; // ms per hour

/** One kind's whole-FAFB figures: bounding box (every chunk) and neuropil (a tissue mask's chunks). */
export interface KindHours {
  kind: string;
  role: 'worker' | 'merger';
  tasks: [number, number];
  /** Mean CPU ms per task where there is tissue (measured or modelled), and the largest. */
  msPerTask: number;
  maxMs: number;
  cpuHours: [number, number];
  peakMiB: number;
  how: string;
}

export interface LevelHours {
  level: number;
  tasks: [number, number];
  /** Modelled input (open objects handed by the children) over the neuropil tasks: mean and largest; measured where run. */
  meanInput: number;
  maxInput: number;
  measuredInput?: number;
  mergeMsPerObject: number;
  resolveMsPerObject: number;
  largestMergeMs: number;
  largestResolveMs: number;
  largestPeakMiB?: number;
  cpuHours: [number, number];
  source: string;
}

export interface CpuReport {
  measured: CpuMeasured;
  grid: { chunks: number; voxels: number; tissueChunks: number; tissueVoxels: number };
  levels: LevelHours[];
  kinds: KindHours[];
  totals: { worker: [number, number]; merger: [number, number]; all: [number, number] };
  gpuHours: [number, number];
  coresPerGpu: [number, number];
  wall: Array<{ gpus: number; coresPerGpu: number; gpuWallH: [number, number]; cpuWallH: number; wallH: [number, number]; cpuShare: [number, number] }>;
  tailS: number;
  mergers: { needed: [number, number]; replicas: number; cpuPerReplica: number; memoryGiB: number; largestTaskMiB: number; worstCaseMiB: number; fits: boolean };
  workersPerGpuCores: [number, number];
  /** met: at both ends of the GPU estimate; partly: only where the GPUs are slower (the CPU side's share is smaller). */
  target: { coresPerGpu: number; share: [number, number]; met: 'met' | 'partly' | 'not met' };
  /** The block's top task: modelled vs measured input; the top-task builder vs the real task. */
  check: { level: number; modelInput: number; realInput: number; realMs: number; builtInput?: number; builtMs?: number };
  assumptions: string[];
}

/** The fafb overlay's mergers, as deploy/k8s/overlays/fafb/merger.yaml sets them. */
export function overlay(): { replicas: number; cpu: number; memoryGiB: number } {
  const y = fs.readFileSync(path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../deploy/k8s/overlays/fafb/merger.yaml'), 'utf8');
  const num = (re: RegExp) => Number(re.exec(y)?.[1] ?? NaN);
  return { replicas: num(/parallelism:\s*(\d+)/), cpu: num(/limits:\s*\n\s*cpu:\s*"?(\d+)/), memoryGiB: num(/limits:[\s\S]*?memory:\s*(\d+)Gi/) };
}

function kindOf(m: CpuMeasured, kind: string): KindResult {
  const k = m.kinds.find((x) => x.kind === kind);
  if (!k) throw new Error(`no measurement of ${kind}`);
  return k;
}

function emptyOf(m: CpuMeasured, kind: string): KindResult {
  return m.empty.find((x) => x.kind.startsWith(kind))!;
}

/** Merge and resolve rates per level: measured on the block (levels ≤ its level) or on the largest synthetic task. */
function levelRates(m: CpuMeasured, level: number): { merge: number; resolve: number; source: string; peakMiB?: number; measuredInput?: number } {
  if (level <= m.block.level) {
    const mk = kindOf(m, `merge${level}`), rk = kindOf(m, `resolve${level}`);
    const n = mk.meanInput!;
    return { merge: mk.meanMs / n, resolve: rk.meanMs / n, source: `measured (${mk.tasks} task${mk.tasks > 1 ? 's' : ''} of the block)`, peakMiB: Math.max(mk.peakMiB, rk.peakMiB), measuredInput: n };
  }
  const t = m.tops.find((x) => x.spec.level === level && x.spec.tissue && !x.spec.check)!;
  return {
    merge: t.merge.cpuMs / t.built.input, resolve: t.resolve.cpuMs / t.built.input, source: `largest task built from the surface model${m.quick ? ' (--quick: at 2 % of its size)' : ''}`,
    peakMiB: t.peakMiB, measuredInput: t.built.input,
  };
}

function levelHours(m: CpuMeasured, model: LevelModel[]): LevelHours[] {
  const floorMerge = emptyOf(m, 'merge1').meanMs;
  const floorResolve = emptyOf(m, 'resolve1').meanMs;
  return model.map((lm) => {
    const r = levelRates(m, lm.level);
    let bbox = 0, neuro = 0, sum = 0, live = 0;
    for (let i = 0; i < lm.tasks; i++) {
      let ms: number;
      if (lm.level === 1) {
        // Level 1 reads every chunk's table: its cost follows the chunks in tissue, measured full and empty.
        const full = kindOf(m, 'merge1').meanMs + kindOf(m, 'resolve1').meanMs;
        ms = floorMerge + floorResolve + (full - floorMerge - floorResolve) * lm.tissueShare[i];
      } else ms = Math.max(floorMerge, r.merge * lm.inputs[i]) + Math.max(floorResolve, r.resolve * lm.inputs[i]);
      bbox += ms;
      if (lm.tissueShare[i] > 0) { neuro += ms; sum += lm.inputs[i]; live++; }
    }
    return {
      level: lm.level, tasks: [lm.tasks, lm.tasksInTissue], meanInput: Math.round(sum / Math.max(1, live)), maxInput: Math.round(lm.maxInput),
      measuredInput: r.measuredInput, mergeMsPerObject: r.merge, resolveMsPerObject: r.resolve,
      largestMergeMs: Math.max(floorMerge, r.merge * lm.maxInput), largestResolveMs: Math.max(floorResolve, r.resolve * lm.maxInput),
      largestPeakMiB: r.peakMiB, cpuHours: [bbox / H, neuro / H], source: r.source,
    };
  });
}

/** Per-chunk kinds: measured on tissue chunks, and on an empty chunk for the rest of the bounding box. */
function chunkKind(kind: string, role: 'worker' | 'merger', full: number, max: number, empty: number, g: CpuReport['grid'], peakMiB: number, how: string): KindHours {
  const neuro = g.tissueChunks * full;
  return { kind, role, tasks: [g.chunks, g.tissueChunks], msPerTask: full, maxMs: max, cpuHours: [(neuro + (g.chunks - g.tissueChunks) * empty) / H, neuro / H], peakMiB, how };
}

export function cpuReport(m: CpuMeasured, gpuHours: [number, number], pasteBusyMsPerVoxel?: number): CpuReport {
  const config = loadConfig({ preset: 'fafb' });
  const chunk = config.io.chunk;
  const grid3 = FAFB_SHAPE.map((v, a) => Math.ceil(v / chunk[a])) as unknown as Vec3;
  const run = range3([0, 0, 0], grid3);
  const tissue = fafbTissue(FAFB_SHAPE);
  const grid = chunkCounts(run, chunk, FAFB_SHAPE, tissue);
  const model = reductionModel(run, config.io.mergeFanIn, chunk, FAFB_SHAPE, m.gen.rho, tissue);
  const levels = levelHours(m, model);
  const chunkVox = chunk[0] * chunk[1] * chunk[2];
  const p = m.paste;
  const pastePerVoxel = p.cpuMs / p.voxels;
  const boxesPerVoxel = p.boxes.cpuMs / p.boxes.voxels;
  const faces = kindOf(m, 'faces'), relabel = kindOf(m, 'relabel'), label = kindOf(m, 'label');
  const eFaces = emptyOf(m, 'faces'), eRelabel = emptyOf(m, 'relabel'), eLabel = emptyOf(m, 'label');
  const mergePeak = Math.max(...levels.map((l) => l.largestPeakMiB ?? 0));
  const kinds: KindHours[] = [
    chunkKind('boxes', 'merger', boxesPerVoxel * chunkVox, boxesPerVoxel * chunkVox, 0, grid, 0, `the cost-model run's boxes tasks re-run alone, ${(boxesPerVoxel * 1e6).toFixed(2)} × 10⁻⁶ CPU ms per voxel, scaled by voxels: an upper bound, its synthetic objects and look-alikes being denser than FAFB's clefts (box planning alone at ${Math.round(m.gen.objectsPerChunk)} objects per chunk, bench/scale.ts's mergeFragments on ${m.boxes.chunks} sampled chunks: ${ms(m.boxes.usPerChunk / 1000)} ms a chunk, ${h((m.boxes.usPerChunk / 1000) * grid.tissueChunks / H)} CPU-hours); empty chunks 0`),
    chunkKind('faces', 'merger', faces.meanMs, faces.maxMs, eFaces.meanMs, grid, faces.peakMiB, `measured on the block's ${int(faces.tasks)} chunks; empty chunks ${msu(eFaces.meanMs)}`),
    {
      kind: 'merge + resolve (all levels)', role: 'merger', tasks: [levels.reduce((s, l) => s + 2 * l.tasks[0], 0), levels.reduce((s, l) => s + 2 * l.tasks[1], 0)],
      msPerTask: (levels.reduce((s, l) => s + l.cpuHours[1], 0) * H) / levels.reduce((s, l) => s + 2 * l.tasks[1], 0),
      maxMs: Math.max(...levels.map((l) => Math.max(l.largestMergeMs, l.largestResolveMs))),
      cpuHours: [levels.reduce((s, l) => s + l.cpuHours[0], 0), levels.reduce((s, l) => s + l.cpuHours[1], 0)], peakMiB: mergePeak, how: 'per level, below',
    },
    chunkKind('relabel', 'worker', relabel.meanMs, relabel.maxMs, eRelabel.meanMs, grid, relabel.peakMiB, `measured on ${relabel.tasks} chunk${relabel.tasks > 1 ? 's' : ''} of the block (uint64 instances/0, sharded); empty chunks ${msu(eRelabel.meanMs)}`),
    {
      kind: 'paste (labelling included)', role: 'worker', tasks: [grid.chunks, grid.tissueChunks], msPerTask: pastePerVoxel * chunkVox, maxMs: pastePerVoxel * chunkVox,
      cpuHours: [(pastePerVoxel * grid.voxels) / H, (pastePerVoxel * grid.tissueVoxels) / H], peakMiB: p.peakMiB,
      how: `${(pastePerVoxel * 1e6).toFixed(1)} × 10⁻⁶ CPU ms per voxel: the cost-model run's ${p.tasks} paste task${p.tasks > 1 ? 's' : ''} re-run alone${pasteBusyMsPerVoxel ? ` (its busy seconds in the run said ${(pasteBusyMsPerVoxel * 1e6).toFixed(1)} × 10⁻⁶)` : ''}, scaled by voxels`,
    },
    chunkKind('of which labelling', 'worker', label.meanMs, label.maxMs, eLabel.meanMs, grid, label.peakMiB, `not added: labelChunk on ${label.tasks} FAFB chunk${label.tasks > 1 ? 's' : ''} rasterised from the generator (label, runs, border, their files; no pyramid), to check paste's rate at FAFB's chunk and density; empty chunks ${msu(eLabel.meanMs)}`),
  ];
  // Labelling is part of paste: shown, not added.
  const sum = (role?: string) => [0, 1].map((i) => kinds.filter((k) => (!role || k.role === role) && !k.kind.startsWith('of which')).reduce((s, k) => s + k.cpuHours[i], 0)) as [number, number];
  const totals = { worker: sum('worker'), merger: sum('merger'), all: sum() };
  const T = totals.all[1];
  const coresPerGpu: [number, number] = [T / gpuHours[1], T / gpuHours[0]];
  // The chain after the last chunk's paste: its faces, each level's largest merge then resolve, its relabel.
  const tailS = (faces.maxMs + levels.reduce((s, l) => s + l.largestMergeMs + l.largestResolveMs, 0) + relabel.maxMs) / 1000;
  const wall = [4, 8, 16].map((k) => {
    const gpus = 64;
    const gpuWallH: [number, number] = [gpuHours[0] / gpus, gpuHours[1] / gpus];
    const cpuWallH = T / (gpus * k);
    return {
      gpus, coresPerGpu: k, gpuWallH, cpuWallH, wallH: gpuWallH.map((g) => Math.max(g, cpuWallH) + tailS / 3600) as [number, number],
      cpuShare: gpuWallH.map((g) => cpuWallH / g) as [number, number],
    };
  });
  const M = totals.merger[1];
  const needed: [number, number] = [Math.ceil((M * 64) / gpuHours[1]), Math.ceil((M * 64) / gpuHours[0])];
  const worst = m.tops.find((t) => !t.spec.tissue);
  const largestTaskMiB = Math.max(faces.peakMiB, mergePeak);
  const target = wall.find((w) => w.coresPerGpu === 8)!;
  const OVERLAY = overlay();
  const lm = model[m.block.level - 1];
  const real = kindOf(m, `merge${m.block.level}`);
  const built = m.tops.find((t) => t.spec.check);
  const check = {
    level: m.block.level, modelInput: lm.inputs[linearOf(blocksMeeting(run, levelBlock(config.io.mergeFanIn, m.block.level)), m.block.region)],
    realInput: real.meanInput!, realMs: real.meanMs, builtInput: built?.built.input, builtMs: built?.merge.cpuMs,
  };
  return {
    measured: m, grid, levels, kinds, totals, gpuHours, coresPerGpu, wall, tailS, check,
    mergers: {
      needed, replicas: OVERLAY.replicas, cpuPerReplica: OVERLAY.cpu, memoryGiB: OVERLAY.memoryGiB, largestTaskMiB, worstCaseMiB: worst?.peakMiB ?? 0,
      fits: needed[1] <= OVERLAY.replicas && largestTaskMiB <= OVERLAY.memoryGiB * 1024 * 0.8,
    },
    workersPerGpuCores: [totals.worker[1] / gpuHours[1], totals.worker[1] / gpuHours[0]],
    target: { coresPerGpu: 8, share: target.cpuShare, met: Math.max(...target.cpuShare) <= 0.25 ? 'met' : Math.min(...target.cpuShare) <= 0.25 ? 'partly' : 'not met' },
    assumptions: assumptions(m, grid, tissue),
  };
}

function assumptions(m: CpuMeasured, g: CpuReport['grid'], t: ReturnType<typeof fafbTissue>): string[] {
  const int = (x: number) => Math.round(x).toLocaleString('en-US');
  return [
    `Objects: ≈ 10⁸ clefts over ≈ 5 × 10¹³ voxels of neuropil: ${DENSITY * 1e8} per 10⁸ voxels, ${r2(m.gen.objectsPerChunk)} per 96 × 1024 × 1024 chunk (measured on the block). Boxes of ${OBJECT_LO.join('–')}…${OBJECT_HI.join('–')} voxels, uniform per axis (mean 8 × 40 × 40 at 40 × 4 × 4 nm: the brief's cleft; the synthetic EM generator's clefts are smaller, 5 × 21 × 21 on average, so this crosses more faces), filled, never touching (a hard-core field: each box is one 26-connected object).`,
    `Crossing: ${(m.gen.crossingFraction * 100).toFixed(1)} % of the objects span more than one chunk (measured); a chunk face holds ${m.gen.rho.map((x) => x.toFixed(1)).join(', ')} objects per side (z, y, x faces: the surface model's ρ).`,
    `Tissue: an ellipsoid centred in the bounding box spanning all sections in z and ${(2 * t.semi[1] / FAFB_SHAPE[1]).toFixed(2)} × ${(2 * t.semi[2] / FAFB_SHAPE[2]).toFixed(2)} of y × x (the fly brain's 590 × 340 µm aspect), holding ${(NEUROPIL_VOXELS / 1e13).toFixed(0)} × 10¹³ voxels; objects only inside it. A tissue mask (--mask; its paste tasks skip the chunks with no tissue, see the projection's mask rows for this ellipsoid rasterised through the real skip code) runs the ${int(g.tissueChunks)} chunks meeting it (${(g.tissueVoxels / 1e13).toFixed(2)} × 10¹³ voxels) instead of all ${int(g.chunks)} (${(g.voxels / 1e14).toFixed(2)} × 10¹⁴).`,
    'Bounding box column: every chunk runs; chunks outside the tissue cost what an empty chunk measured (paste: its per-voxel rate, an upper bound). Neuropil column: only the chunks meeting the tissue run, each at the full-density cost.',
    'Merge and resolve above level 1 cost their level\'s measured CPU ms per input object times the modelled input of each task (its children\'s open faces in the tissue × ρ), at least an empty task\'s cost; level 1 interpolates between a full and an empty region by the share of its chunks in the tissue.',
    'CPU time is process.cpuUsage() around each task (every thread of the process), tasks one at a time, one kind per process, the first task run once before (warm JIT, as in a process that has run many); relabel and labelling take each task\'s least of two runs, paste of three: this machine\'s cores are shared hyperthreads, and a busy neighbour inflates CPU time too. Peak RSS is that process\'s (its RSS before the first task in brackets: Node and the modules). Bytes are the payloads read and written through the work store (for relabel: the files written).',
    'Not counted: the CPU parts of stage one and stage two on the GPU workers (reading and decoding the input, normalising, packing), the coordinator (bench/fafb-sim.md: ≈ 58 µs per task) and NATS. Paste\'s per-voxel rate comes from 32 × 512 × 512 chunks of the synthetic-em preset at 1 % foreground (FAFB chunks are 12× larger; its labelling is measured at FAFB\'s size apart, the "of which" row).',
  ];
}

// ------------------------------------------------------------------------------- formatting

const int = (x: number) => Math.round(x).toLocaleString('en-US');
const h = (x: number) => (x >= 100 ? int(x) : x >= 10 ? x.toFixed(1) : x >= 0.01 ? x.toFixed(2) : x > 0 ? x.toPrecision(1) : '0');
const kb = (b: number) => (b >= 1e6 ? `${(b / 1e6).toFixed(1)} MB` : `${(b / 1e3).toFixed(1)} KB`);
/** A range low–high (one number when they round alike). */
const span = (v: readonly number[], f: (x: number) => string) => {
  const [a, b] = [Math.min(...v), Math.max(...v)].map(f);
  return a === b ? a : `${a}–${b}`;
};
const pct = (x: number) => `${Math.round(x * 100)} %`;
const ms = (x: number) => (x >= 10_000 ? `${r2(x / 1000)} s` : x >= 100 ? int(x) : x.toFixed(1));
/** Milliseconds with their unit (seconds from 10 s). */
const msu = (x: number) => (x >= 10_000 ? `${r2(x / 1000)} s` : `${ms(x)} ms`);

export function formatCpuReport(c: CpuReport, command: string): string {
  const m = c.measured;
  const L: string[] = [];
  const g = m.gen;
  const ch = m.block.chunks;
  const n = (ch.hi[0] - ch.lo[0]) * (ch.hi[1] - ch.lo[1]) * (ch.hi[2] - ch.lo[2]);
  L.push('## CPU side', '');
  L.push(`Made with \`${command}\`${m.quick ? ' (--quick: a smoke run, not the record)' : ''} (${Math.round(m.cpuSeconds)} s of CPU, its steps' processes included). The instance tasks' real code (faces, merge<l>, resolve<l>, relabel; labelChunk) ran on generated data at FAFB density through a TaskContext over a temporary work store, with the fafb preset (io.chunk 96 × 1024 × 1024, fan-in 4³), then the figures are extrapolated to the whole grid (bench/cpu-sim.ts, cpu-gen.ts, cpu-model.ts, cpu-report.ts). All times are CPU time (process.cpuUsage(), per task), not wall time: this machine's ${os.cpus().length} cores are shared.`, '');
  L.push(`**Generated data.** The level-${m.block.level} region ${m.block.region.join('_')} of the reduction: ${int(n)} chunks (z ${ch.lo[0]}–${ch.hi[0] - 1}, y ${ch.lo[1]}–${ch.hi[1] - 1}, x ${ch.lo[2]}–${ch.hi[2] - 1}), inside the tissue, with ids as large as FAFB's; the borders of its forward neighbours too (${int(g.borders)} borders). ${int(g.objects)} objects (${r2(g.objectsPerChunk)} per chunk), ${int(g.parts)} parts; ${(g.crossingFraction * 100).toFixed(1)} % of the objects cross a chunk face, edge or corner; ρ = ${g.rho.map((x) => x.toFixed(2)).join(' / ')} objects on a z / y / x chunk face (one side). Per chunk: objects table ${kb(g.meanLabelBytes)}, border ${kb(g.meanBorderBytes)}, label runs ${kb(g.meanRunsBytes)} (generation ${g.genMsPerChunk} ms a chunk). Checks: labelChunk on ${kindOf(m, 'label').tasks} chunk${kindOf(m, 'label').tasks > 1 ? 's' : ''} rasterised at full size wrote the generator's three files ${m.labelIdentical ? 'byte for byte' : '**differently** (a generator bug)'}; every final id the reduction gave (${int(m.verify.checked)} open parts, ${int(m.verify.spanning)} of them of an object whose first voxel lies in another chunk) is the generated object's id (1 + the raster index of its first voxel), with its summed voxels.`, '');
  L.push('### Measured tasks', '');
  L.push('| kind | tasks | CPU ms per task (mean / max) | read per task | written per task | peak RSS MiB (before) |', '|---|--:|--:|--:|--:|--:|');
  const row = (k: KindResult, label = k.kind) => L.push(`| ${label} | ${int(k.tasks)} | ${ms(k.meanMs)} / ${ms(k.maxMs)} | ${kb(k.meanRead)} | ${kb(k.meanWritten)} | ${k.peakMiB} (${k.baseMiB}) |`);
  for (const k of m.kinds) row(k, k.meanInput !== undefined ? `${k.kind} (input ${int(k.meanInput)} objects)` : k.kind);
  for (const k of m.empty) row(k, `${k.kind.replace(' (empty chunk)', '')}, empty`);
  for (const t of m.tops) {
    L.push(`| ${t.spec.label} (${int(t.built.input)} objects in; merge + resolve) | 1 | merge ${msu(t.merge.cpuMs)}, resolve ${msu(t.resolve.cpuMs)} | ${kb(t.merge.read + t.resolve.read)} | ${kb(t.merge.written + t.resolve.written)} | ${t.peakMiB} (${t.baseMiB}) |`);
  }
  L.push(`| paste (cost-model run, re-run alone: each task's least of ${m.paste.passes.length} passes, which took ${m.paste.passes.map(int).join(', ')} ms) | ${m.paste.tasks} | ${ms(m.paste.cpuMs / m.paste.tasks)} / ${ms(m.paste.maxMs)} (${int(m.paste.voxels / m.paste.tasks)} voxels) | | | ${m.paste.peakMiB} (${m.paste.baseMiB}) |`);
  L.push(`| boxes (mergeFragments, ${m.boxes.chunks} sampled chunks) | ${m.boxes.chunks} | ${ms(m.boxes.usPerChunk / 1000)} (${int(m.boxes.fragmentsPerChunk)} fragments seen) | | | |`, '');
  L.push('### The reduction on the FAFB grid', '');
  L.push('Input = open objects a task\'s children hand it (what crosses their open faces), from the surface model; the bounding box and a tissue mask have the same objects, the mask fewer tasks.', '');
  L.push('| level | tasks (box / neuropil) | input mean / largest (modelled) | input of the task run | CPU µs per input object (merge + resolve) | largest task: merge + resolve CPU | its peak RSS MiB | CPU-hours (box / neuropil) | rates from |', '|--:|--:|--:|--:|--:|--:|--:|--:|---|');
  for (const l of c.levels) {
    L.push(`| ${l.level} | ${int(l.tasks[0])} / ${int(l.tasks[1])} | ${int(l.meanInput)} / ${int(l.maxInput)} | ${l.measuredInput !== undefined ? int(l.measuredInput) : ''} | ${((l.mergeMsPerObject + l.resolveMsPerObject) * 1000).toFixed(1)} | ${ms(l.largestMergeMs + l.largestResolveMs)} | ${l.largestPeakMiB ?? ''} | ${h(l.cpuHours[0])} / ${h(l.cpuHours[1])} | ${l.source} |`);
  }
  const worst = m.tops.find((t) => !t.spec.tissue);
  const k = c.check;
  L.push('', `Checks of the model: for the block's level-${k.level} task the surface model gives ${int(k.modelInput)} objects in; it had ${int(k.realInput)} (the model counts an object on two faces of a child twice).${k.builtInput !== undefined && k.builtMs !== undefined ? ` Built like the top tasks (the same ρ, parts and contacts per object as the block's level-1 summaries), that task takes ${int(k.builtInput)} objects in and ${msu(k.builtMs)} of CPU to merge, against ${msu(k.realMs)} for the real one: ${(k.builtMs / k.builtInput * 1000).toFixed(1)} vs ${(k.realMs / k.realInput * 1000).toFixed(1)} µs per object.` : ''}`);
  L.push('', `Largest task: ${int(Math.max(...c.levels.map((l) => l.maxInput)))} objects in (level ${c.levels.reduce((a, l) => (l.maxInput > a.maxInput ? l : a)).level}), peak RSS ${c.mergers.largestTaskMiB} MiB (target ≤ 1 GiB: ${c.mergers.largestTaskMiB <= 1024 ? 'met' : 'not met'}).${worst ? ` With objects everywhere in the bounding box at this density (no tissue: the worst case) the largest task (${worst.spec.label.split(',')[0]}) takes ${int(worst.built.input)} objects in: ${msu(worst.merge.cpuMs)} + ${msu(worst.resolve.cpuMs)} of CPU, peak RSS ${worst.peakMiB} MiB.` : ''}`, '');
  L.push('### Whole FAFB: CPU-hours per kind', '');
  L.push('| kind | runs on | tasks (bounding box / neuropil) | CPU ms per task (mean / max) | CPU-hours, bounding box | CPU-hours, neuropil | peak RSS MiB | from |', '|---|---|--:|--:|--:|--:|--:|---|');
  for (const k of c.kinds) {
    const part = k.kind.startsWith('of which');
    const hh = (x: number) => (part ? `(${h(x)})` : h(x));
    L.push(`| ${part ? `*${k.kind}*` : k.kind} | ${k.role}s | ${int(k.tasks[0])} / ${int(k.tasks[1])} | ${ms(k.msPerTask)} / ${ms(k.maxMs)} | ${hh(k.cpuHours[0])} | ${hh(k.cpuHours[1])} | ${k.peakMiB || ''} | ${k.how} |`);
  }
  L.push(`| **total** | | | | **${h(c.totals.all[0])}** | **${h(c.totals.all[1])}** | | workers ${h(c.totals.worker[1])}, mergers ${h(c.totals.merger[1])} (neuropil) |`, '');
  L.push('### Cores per GPU, wall clock, mergers', '');
  L.push(`Two-stage GPU-hours (the projection above, neuropil): ${int(c.gpuHours[0])}–${int(c.gpuHours[1])}. The CPU side's ${h(c.totals.all[1])} CPU-hours (neuropil) keep pace with the GPUs at **${c.coresPerGpu[0].toFixed(1)}–${c.coresPerGpu[1].toFixed(1)} CPU cores per GPU** (CPU-hours / GPU-hours; the workers' kinds alone ${c.workersPerGpuCores[0].toFixed(1)}–${c.workersPerGpuCores[1].toFixed(1)}, on the 8 cores a fafb worker pod has, beside stage one's and stage two's own CPU work).`, '');
  L.push('| GPUs | CPU cores per GPU | GPU wall h | CPU side wall h (all kinds) | wall h, overlapped (+ tail) | CPU side / GPU wall |', '|--:|--:|--:|--:|--:|--:|');
  for (const w of c.wall) L.push(`| ${w.gpus} | ${w.coresPerGpu} | ${span(w.gpuWallH, (x) => x.toFixed(1))} | ${w.cpuWallH.toFixed(1)} | ${span(w.wallH, (x) => x.toFixed(1))} | ${span(w.cpuShare, pct)} |`);
  L.push('', `Overlapped: the CPU kinds run as their inputs become ready, beside the GPU work, so the wall clock is the longer of the two plus the tail after the last paste (its faces, each level's largest merge and resolve, a relabel: ${r2(c.tailS)} s). Target: the CPU side ≤ 25 % of the GPU wall time on 64 H100s with ≤ 8 cores per GPU: ${span(c.target.share, pct)} — **${c.target.met === 'partly' ? 'met only at the slower end of the GPU estimate, not at the faster' : c.target.met}**.`, '');
  const mg = c.mergers;
  L.push(`**Mergers.** The merger kinds (boxes, faces, merge, resolve) take ${h(c.totals.merger[1])} CPU-hours (neuropil; ${h(c.totals.merger[0])} over the bounding box): keeping pace with 64 GPUs (GPU wall ${(c.gpuHours[0] / 64).toFixed(1)}–${(c.gpuHours[1] / 64).toFixed(1)} h) takes ${span(mg.needed, String)} merger process${mg.needed[1] > 1 ? 'es' : ''}, one busy JavaScript thread each. The fafb overlay runs ${mg.replicas} replicas of ${mg.cpuPerReplica} CPU / ${mg.memoryGiB} GiB: ${mg.needed[1] <= mg.replicas ? 'enough' : 'too few'}; the largest merger task peaks at ${mg.largestTaskMiB} MiB (objects everywhere: ${mg.worstCaseMiB} MiB), ${mg.largestTaskMiB <= mg.memoryGiB * 1024 * 0.8 ? 'within' : 'beyond'} ${mg.memoryGiB} GiB.`, '');
  L.push('Assumptions:', '');
  for (const a of c.assumptions) L.push(`- ${a}`);
  L.push('');
  return L.join('\n');
}
