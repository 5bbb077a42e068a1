// The embedded runner: the whole job in one process, no broker. It drives the same per-chunk
// functions the distributed worker runs, over the same chunk grid, so both give identical
// output.
import * as os from 'node:os';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { PACKAGE_ROOT } from '../config/load.ts';
import { type Box, boxToString, volumeOf } from '../geometry/box.ts';
import { planGrid } from '../geometry/grid.ts';
import type { TesseraConfig } from '../config/config.ts';
import type { Logger } from '../log.ts';
import { openRun } from './context.ts';
import { createOutput, finishOutput } from './output.ts';
import { oneStageChunk } from './one-stage.ts';
import { type ChunkFailure, runChunks } from './chunks.ts';
import { runTwoStage, type TwoStageStats } from './two-stage.ts';
import { oracleBoxes } from './oracle.ts';
import { openArray } from '../volume/zarr.ts';

export interface RunOptions {
  config: TesseraConfig;
  input: string;
  output: string;
  roi?: Box;
  overwrite?: boolean;
  log: Logger;
  signal?: AbortSignal;
  /** Two-stage only: take boxes from this ground-truth label array instead of stage one (benchmark oracle). */
  oracle?: string;
  /** Called as units of work finish: (phase, done, total). */
  progress?: (phase: string, done: number, total: number) => void;
}

export interface RunReport {
  mode: TesseraConfig['mode'];
  preset: string;
  input: string;
  output: string;
  roi: string;
  voxels: number;
  /** Wall-clock seconds per phase and in total. */
  seconds: Record<string, number>;
  /** Summed busy seconds per kind of work (read, write, network …), overlapping across chunks. */
  busySeconds: Record<string, number>;
  voxelsPerSecond: number;
  peakRssMB: number;
  provider: string;
  failures: ChunkFailure[];
  twoStage?: TwoStageStats;
}

/** Tessera's and ONNX Runtime's versions, from the installed packages. */
function versions(): Record<string, string> {
  const read = (f: string) => (JSON.parse(fs.readFileSync(f, 'utf8')) as { version: string }).version;
  return {
    tessera: read(path.join(PACKAGE_ROOT, 'package.json')),
    onnxruntime: read(path.join(PACKAGE_ROOT, 'node_modules', 'onnxruntime-node', 'package.json')),
  };
}

export async function runEmbedded(o: RunOptions): Promise<RunReport> {
  const t0 = performance.now();
  const ctx = await openRun({ config: o.config, input: o.input, roi: o.roi, log: o.log, signal: o.signal });
  const c = ctx.config;
  let peak = process.memoryUsage().rss;
  const sampler = setInterval(() => { peak = Math.max(peak, process.memoryUsage().rss); }, 100);
  try {
    const out = await createOutput(o.output, {
      shape: ctx.src.shape, spacing: ctx.src.spacing, unit: c.unit, chunks: c.io.outputChunk,
      classes: ctx.cards.fullres.classes, probabilities: c.output.probabilities, overwrite: o.overwrite ?? false,
    });
    const chunks = planGrid(ctx.roi, c.io.chunk, [0, 0, 0]);
    o.log.info({ mode: c.mode, chunks: chunks.length, roi: boxToString(ctx.roi), provider: ctx.pool.provider }, 'run started');
    let failures: ChunkFailure[];
    let twoStage: TwoStageStats | undefined;
    if (c.mode === 'one-stage') {
      failures = await ctx.timings.phase('oneStage', () => runChunks(ctx, chunks, (ch) => oneStageChunk(ctx, out, ch), (n) => o.progress?.('one-stage', n, chunks.length)));
    } else {
      const gt = o.oracle ? await openArray(o.oracle) : undefined;
      const r = await runTwoStage(ctx, out, chunks, o.progress, gt ? (ch) => oracleBoxes(ctx, gt, ch) : undefined);
      failures = r.failures;
      twoStage = r.stats;
    }
    peak = Math.max(peak, process.memoryUsage().rss);
    const wall = (performance.now() - t0) / 1000;
    const voxels = volumeOf(ctx.roi);
    const report: RunReport = {
      mode: c.mode,
      preset: c.name,
      input: o.input,
      output: o.output,
      roi: boxToString(ctx.roi),
      voxels,
      seconds: { ...ctx.timings.seconds(), total: Math.round(wall * 1000) / 1000 },
      busySeconds: { ...ctx.timings.busy(), network: Math.round(ctx.pool.busyMs) / 1000 },
      voxelsPerSecond: Math.round(voxels / wall),
      peakRssMB: Math.round(peak / 2 ** 20),
      provider: ctx.pool.provider,
      failures,
      twoStage,
    };
    await finishOutput(o.output, {
      report,
      config: c,
      roi: { begin: ctx.roi.begin, end: ctx.roi.end },
      models: {
        fullres: { path: c.models.fullres, sha256: ctx.cards.fullres.sha256 },
        ...(ctx.cards.lowres ? { lowres: { path: c.models.lowres, sha256: ctx.cards.lowres.sha256 } } : {}),
      },
      versions: { ...versions(), node: process.version, host: os.hostname() },
    }, failures.length ? 'failed' : 'complete');
    return report;
  } finally {
    clearInterval(sampler);
    await ctx.pool.close();
  }
}
