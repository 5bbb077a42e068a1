// Running and scoring one trial (or the one-stage reference) on one sample ROI, cached in the
// tune's work folder under the hash of what decides its result (resolved config, input, ROI):
// a tune killed mid-way and run again reuses every finished run.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { type Box, type Vec3, boxToString, shapeOf } from '../geometry/box.ts';
import { nnunetTiles } from '../tasks/predict.ts';
import type { TesseraConfig } from '../config/config.ts';
import type { Logger } from '../log.ts';
import { runEmbedded, type RunReport } from '../run/embedded.ts';
import { evaluateOutput } from '../run/eval.ts';
import { writeFileAtomic } from '../volume/store.ts';
import { hashOf } from './search.ts';

/** One run on one ROI, as cached. */
export interface RunScore {
  /** Network voxels run (deterministic; stage one estimated, see networkVoxels). */
  networkVoxels: number;
  /** Wall seconds of the run. */
  seconds: number;
  /** Dice to one-stage's segmentation (1 for the reference itself). */
  dice: number;
  /** Object recall (component IoU ≥ 0.1) against one-stage's objects. */
  recall: number;
  /** With --gt: Dice against the labels. */
  gtDice?: number;
  /** The run failed (config refused by the models, a task failed): its cause, in one line. */
  error?: string;
}

export interface TrialRunner {
  input: string;
  work: string;
  gt?: string;
  log: Logger;
  signal?: AbortSignal;
}

const mirrorFactor = (on: boolean) => (on ? 8 : 1);
const prod = (v: readonly number[]) => v[0] * v[1] * v[2];

/**
 * Network voxels a run ran: one-stage, its tiles × the patch; two-stage, stage two's canvases
 * at their occupied extent (from the report's fill ratios) plus stage one's tiles over the ROI
 * at low resolution, counted nnU-Net's way (patch, step) — an estimate, the same for every
 * trial (stage one's settings are not searched). Mirroring multiplies by 8.
 */
export function networkVoxels(c: TesseraConfig, r: RunReport, roi: Box): number {
  if (c.mode === 'one-stage') return (r.oneStage?.tiles ?? 0) * prod(c.baseline.patch) * mirrorFactor(c.baseline.mirror);
  const t = r.twoStage!;
  const canvasVoxels = t.canvases * prod(c.pack.canvas);
  const ran = t.runFillRatio ? Math.round((t.fillRatio * canvasVoxels) / t.runFillRatio) : 0;
  const low = shapeOf(roi).map((s, a) => Math.ceil((s * c.spacing[a]) / c.stage1.spacing[a])) as unknown as Vec3;
  return ran * mirrorFactor(c.stage2.mirror) + nnunetTiles(low, c.stage1.patch, c.stage1.step) * prod(c.stage1.patch) * mirrorFactor(c.stage1.mirror);
}

/** The key of a run: what decides its output. */
export function runKey(c: TesseraConfig, input: string, roi: Box): string {
  return hashOf({ config: c, input, roi: boxToString(roi) });
}

function readCached(file: string): RunScore | undefined {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as RunScore;
  } catch {
    return undefined;
  }
}

/**
 * The one-stage reference on `roi`: run once, its output kept in the work folder (trials are
 * scored against it), its cost cached. Returns the cached score and the output's path.
 */
export async function reference(t: TrialRunner, c: TesseraConfig, roi: Box): Promise<{ score: RunScore; output: string; cached: boolean }> {
  const cfg = { ...c, mode: 'one-stage' as const };
  const key = runKey(cfg, t.input, roi);
  const output = path.join(t.work, `one-stage-${key}.zarr`);
  const file = path.join(t.work, `one-stage-${key}.json`);
  const hit = readCached(file);
  if (hit && fs.existsSync(output)) return { score: hit, output, cached: true };
  const r = await runEmbedded({ config: cfg, input: t.input, output, roi, overwrite: true, log: t.log, signal: t.signal });
  if (r.status !== 'complete') throw new Error(`the one-stage reference on ${boxToString(roi)} ${r.status}${r.failures[0] ? `: ${r.failures[0].task}: ${r.failures[0].error}` : ''}`);
  const score: RunScore = { networkVoxels: networkVoxels(cfg, r, roi), seconds: r.seconds.total, dice: 1, recall: 1 };
  if (t.gt) score.gtDice = (await evaluateOutput({ pred: output, gt: t.gt })).perClass['1']?.dice ?? 0;
  await writeFileAtomic(file, JSON.stringify(score) + '\n');
  return { score, output, cached: false };
}

/** A two-stage trial on `roi`, scored against the reference's output; cached by its key. */
export async function trial(t: TrialRunner, c: TesseraConfig, roi: Box, ref: string): Promise<{ score: RunScore; cached: boolean }> {
  const key = runKey(c, t.input, roi);
  const file = path.join(t.work, 'trials', `${key}.json`);
  const hit = readCached(file);
  if (hit) return { score: hit, cached: true };
  const output = path.join(t.work, 'trial.zarr');
  let score: RunScore;
  try {
    const r = await runEmbedded({ config: c, input: t.input, output, roi, overwrite: true, log: t.log, signal: t.signal });
    if (r.status !== 'complete') throw new Error(`${r.status}${r.failures[0] ? `: ${r.failures[0].task}: ${r.failures[0].error}` : ''}`);
    const e = await evaluateOutput({ pred: output, gt: ref });
    score = { networkVoxels: networkVoxels(c, r, roi), seconds: r.seconds.total, dice: e.perClass['1']?.dice ?? 0, recall: e.perClass['1']?.recall10 ?? 0 };
    if (t.gt) score.gtDice = (await evaluateOutput({ pred: output, gt: t.gt })).perClass['1']?.dice ?? 0;
  } catch (err) {
    // Interrupted: not a result of the trial; the next tune runs it again.
    if (t.signal?.aborted) throw err;
    score = { networkVoxels: Infinity, seconds: 0, dice: 0, recall: 0, error: (err as Error).message.split('\n')[0] };
  }
  fs.mkdirSync(path.dirname(file), { recursive: true });
  await writeFileAtomic(file, JSON.stringify({ ...score, networkVoxels: Number.isFinite(score.networkVoxels) ? score.networkVoxels : null }) + '\n');
  fs.rmSync(output, { recursive: true, force: true });
  return { score, cached: false };
}

/** Re-read a cached failed trial's infinite cost (JSON has no Infinity). */
export function costOf(s: RunScore): number {
  return s.networkVoxels === null || s.error ? Infinity : s.networkVoxels;
}

