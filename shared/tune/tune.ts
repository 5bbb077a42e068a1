// `tessera tune`: choose two-stage settings for this network and this data, without labels.
// Sample ROIs (given, or spread over the volume), one-stage run on each once (the reference),
// candidates drawn around the starting config and run two-stage by successive halving over the
// samples (search.ts), each scored by the network voxels it runs and its wall time against its
// agreement with one-stage (Dice, object recall). Writes the chosen config (extending the
// starting preset or config, models included), the Pareto front as a table and a plot, and one
// JSON report. Every run is cached in a work folder beside the output: a killed tune resumes.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { type Box, type Vec3, boxToString, contains, boxOfShape } from '../geometry/box.ts';
import type { TesseraConfig } from '../config/config.ts';
import { checkModels, loadConfig } from '../config/load.ts';
import { deepMerge } from '../config/schema.ts';
import type { Logger } from '../log.ts';
import { openImage } from '../volume/ome.ts';
import { anyTissue, openMask } from '../volume/mask.ts';
import { ConfigError, InputError } from '../errors.ts';
import { type Objective, type Overrides, type Point, candidates, choose, describeOverrides, hashOf, paretoFront, promote, rungRois, searchSpace, spreadRois } from './search.ts';
import { type RunScore, type TrialRunner, costOf, reference, trial } from './trials.ts';
import { writeTuneOutputs } from './output.ts';

export interface TuneOptions {
  input: string;
  preset?: string;
  config?: string;
  /** Sample ROIs; default: `samples` ROIs of one processing chunk spread over the volume. */
  rois?: Box[];
  /** Labels (an input volume with labels/gt, or a label image): also score trials against them. */
  gt?: string;
  /** Tissue mask, passed to every run (as `--mask`). */
  mask?: string;
  objective: Objective;
  /** Where the chosen config goes (TUNED.json); the table, plot, report and work folder go beside it. */
  out: string;
  /** Candidates in the first rung, the starting config included. @default 12 */
  budget?: number;
  /** Sample ROIs without `rois`. @default 2 */
  samples?: number;
  /** Seed of the candidates' draw. @default 1 */
  seed?: number;
  log: Logger;
  /** One line per finished run (stderr). */
  progress?: (line: string) => void;
  signal?: AbortSignal;
}

/** A trial as reported: its overrides and what it scored over the ROIs it reached. */
export interface TrialResult {
  index: number;
  overrides: Overrides;
  label: string;
  hash: string;
  /** Sample ROIs it ran on (successive halving stops the worse ones early). */
  rois: number;
  /** Network voxels over one-stage's on the same ROIs. */
  cost: number;
  /** 1 / cost: how many times fewer network voxels than one-stage. */
  speedup: number;
  /** One-stage wall seconds over the trial's, on the same ROIs. */
  wallSpeedup: number;
  seconds: number;
  /** Mean Dice to one-stage's segmentation over its ROIs. */
  agreement: number;
  /** Mean object recall against one-stage's objects. */
  recall: number;
  gtDice?: number;
  error?: string;
  onFront: boolean;
}

export interface TuneReport {
  input: string;
  start: string;
  objective: Objective;
  samples: string[];
  search: { method: 'successive-halving'; budget: number; seed: number; rungs: number; space: Record<string, unknown[]> };
  reference: { networkVoxels: number; seconds: number; gtDice?: number };
  trials: TrialResult[];
  /** Trial numbers on the Pareto front (among those scored on every sample), cheapest first. */
  front: number[];
  chosen: TrialResult & { feasible: boolean };
  /** Tune's own cost: every run's wall seconds (cached ones included) over one one-stage run of the sample. */
  cost: { seconds: number; referenceSeconds: number; ratio: number; runs: number; reusedRuns: number };
  files: { config: string; table: string; plot: string; report: string };
}

/** The starting config and how a trial's overrides are turned into a validated config. */
function configs(o: TuneOptions): { base: TesseraConfig; of: (over: Overrides) => TesseraConfig } {
  const fixed: Record<string, unknown> = { mode: 'two-stage', ...(o.mask !== undefined ? { mask: o.mask } : {}) };
  const of = (over: Overrides) => loadConfig({ preset: o.preset, file: o.config, overrides: deepMerge(fixed, over) });
  return { base: of({}), of };
}

/** The sample ROIs: --roi ones (checked inside the volume), else spread (with tissue when masked). */
export async function sampleRois(o: Pick<TuneOptions, 'input' | 'rois' | 'samples'>, base: TesseraConfig): Promise<Box[]> {
  const img = await openImage(o.input, base.spacing);
  const shape = img.levels[0].array.shape as unknown as Vec3;
  for (const r of o.rois ?? []) {
    if (r.begin.some((v, a) => v >= r.end[a]) || !contains(boxOfShape(shape), r)) throw new InputError(o.input, `--roi ${boxToString(r)} is not inside the volume (shape ${shape.join('x')})`);
  }
  if (o.rois?.length) return o.rois;
  const k = o.samples ?? 2;
  if (!base.mask) return spreadRois(shape, base.io.chunk, k);
  // With a tissue mask: 8k positions along the diagonal, those with tissue kept, k spread among
  // them (all of them without tissue: the plain spread — the runs then skip, and say so).
  const mask = await openMask(base.mask, { shape, spacing: img.levels[0].spacing });
  const withTissue: Box[] = [];
  for (const r of spreadRois(shape, base.io.chunk, 8 * k)) if (await anyTissue(mask, r)) withTissue.push(r);
  if (!withTissue.length) return spreadRois(shape, base.io.chunk, k);
  return [...new Set(Array.from({ length: Math.min(k, withTissue.length) }, (_, i) => withTissue[Math.floor(((i + 0.5) * withTissue.length) / k)]))];
}

export async function tune(o: TuneOptions): Promise<TuneReport> {
  if (!o.out.endsWith('.json')) throw new ConfigError('out', `${o.out} must be a .json file (the tuned config)`);
  const t0 = performance.now();
  const { base, of } = configs(o);
  const rois = await sampleRois(o, base);
  const work = o.out.replace(/\.json$/, '.tune');
  fs.mkdirSync(work, { recursive: true });
  const say = o.progress ?? (() => {});
  const runner: TrialRunner = { input: o.input, work, gt: o.gt, log: o.log, signal: o.signal };
  let runs = 0, reusedRuns = 0, seconds = 0;
  const refs: Array<{ score: RunScore; output: string }> = [];
  for (const [i, roi] of rois.entries()) {
    const r = await reference(runner, base, roi);
    runs++; reusedRuns += +r.cached; seconds += r.score.seconds;
    refs.push(r);
    say(`tune: one-stage reference ${i + 1}/${rois.length} on ${boxToString(roi)}: ${r.score.seconds.toFixed(1)} s${r.cached ? ' (cached)' : ''}`);
  }
  const space = searchSpace(base);
  const budget = o.budget ?? 12, seed = o.seed ?? 1;
  const valid = (over: Overrides) => { try { checkModels(of(over)); return true; } catch { return false; } };
  const cands = candidates(space, budget, seed, valid);
  const scores = cands.map(() => [] as RunScore[]);
  let alive = cands.map((_, i) => i);
  const point = (i: number): Point => aggregate(i, scores[i], refs.map((r) => r.score), cands[i]).point;
  for (let r = 0; r < rois.length; r++) {
    for (const i of alive) {
      for (const s of rungRois(r, rois.length).slice(scores[i].length)) {
        const res = await trial(runner, of(cands[i]), rois[s], refs[s].output);
        runs++; reusedRuns += +res.cached; seconds += res.score.seconds;
        scores[i].push(res.score);
        say(`tune: rung ${r + 1}/${rois.length}, trial ${i}/${cands.length - 1} on ROI ${s + 1}: ${line(res.score, refs[s].score)}${res.cached ? ' (cached)' : ''}`);
      }
    }
    if (r < rois.length - 1) alive = promote(alive.map(point), o.objective);
  }
  const results = cands.map((c, i) => aggregate(i, scores[i], refs.map((r) => r.score), c).result);
  const finalists = alive.map(point).filter((p) => Number.isFinite(p.cost));
  if (!finalists.length) throw new Error(`no trial ran on every sample (${results[0].error ?? 'the starting config failed'})`);
  const front = paretoFront(finalists).map((p) => p.index);
  for (const i of front) results[i].onFront = true;
  const pick = choose(finalists, o.objective);
  const refScore = sumRef(refs.map((r) => r.score));
  const report: TuneReport = {
    input: o.input, start: o.preset ?? o.config!, objective: o.objective, samples: rois.map(boxToString),
    search: { method: 'successive-halving', budget, seed, rungs: rois.length, space: Object.fromEntries(space.map((d) => [d.key, d.values])) },
    reference: refScore, trials: results, front,
    chosen: { ...results[pick.point.index], feasible: pick.feasible },
    cost: { seconds: +seconds.toFixed(2), referenceSeconds: +refScore.seconds.toFixed(2), ratio: +(seconds / refScore.seconds).toFixed(2), runs, reusedRuns },
    files: { config: o.out, table: o.out.replace(/\.json$/, '.pareto.md'), plot: o.out.replace(/\.json$/, '.pareto.png'), report: o.out.replace(/\.json$/, '.report.json') },
  };
  await writeTuneOutputs(report, o);
  o.log.debug({ seconds: (performance.now() - t0) / 1000 }, 'tune finished');
  return report;
}

function sumRef(rs: readonly RunScore[]): TuneReport['reference'] {
  const gt = rs.every((r) => r.gtDice !== undefined) ? { gtDice: rs.reduce((n, r) => n + r.gtDice!, 0) / rs.length } : {};
  return { networkVoxels: rs.reduce((n, r) => n + r.networkVoxels, 0), seconds: rs.reduce((n, r) => n + r.seconds, 0), ...gt };
}

/** A trial's scores over the first ROIs it ran on, against the references on the same ROIs. */
function aggregate(index: number, s: readonly RunScore[], refs: readonly RunScore[], over: Overrides): { point: Point; result: TrialResult } {
  const n = s.length;
  const ref = sumRef(refs.slice(0, n));
  const voxels = s.reduce((a, r) => a + costOf(r), 0);
  const secs = s.reduce((a, r) => a + r.seconds, 0);
  const mean = (f: (r: RunScore) => number) => (n ? s.reduce((a, r) => a + f(r), 0) / n : 0);
  const cost = n ? voxels / ref.networkVoxels : Infinity;
  const error = s.find((r) => r.error)?.error;
  const result: TrialResult = {
    index, overrides: over, label: describeOverrides(over), hash: hashOf(over), rois: n,
    cost, speedup: 1 / cost, wallSpeedup: secs ? ref.seconds / secs : 0, seconds: secs,
    agreement: mean((r) => r.dice), recall: mean((r) => r.recall),
    ...(s.length && s.every((r) => r.gtDice !== undefined) ? { gtDice: mean((r) => r.gtDice!) } : {}),
    ...(error ? { error } : {}), onFront: false,
  };
  return { point: { index, cost, agreement: result.agreement }, result };
}

function line(s: RunScore, ref: RunScore): string {
  if (s.error) return `failed: ${s.error}`;
  return `${(ref.networkVoxels / s.networkVoxels).toFixed(2)}× fewer network voxels, ${(ref.seconds / s.seconds).toFixed(2)}× wall, Dice to one-stage ${s.dice.toFixed(4)}, recall ${s.recall.toFixed(3)}${s.gtDice !== undefined ? `, Dice to labels ${s.gtDice.toFixed(4)}` : ''}`;
}
