// What `tessera tune` writes: the chosen config (extending the starting preset or config, so
// `tessera run --config TUNED.json` runs it with the same models), the Pareto front as a
// Markdown table and a PNG plot, and the JSON report — all beside TUNED.json.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Canvas } from '../report/png.ts';
import { deepMerge } from '../config/schema.ts';
import { writeFileAtomic } from '../volume/store.ts';
import type { TrialResult, TuneOptions, TuneReport } from './tune.ts';

/** A path in a config file at `from`'s folder, rewritten for a config file in `to`'s folder. */
function rebase(p: unknown, fromDir: string, toDir: string): unknown {
  if (typeof p !== 'string' || path.isAbsolute(p)) return p;
  return path.relative(toDir, path.resolve(fromDir, p)) || '.';
}

/**
 * The tuned config: `{ extends: PRESET, …overrides }`, or the user's config file with the
 * overrides merged in (its relative model and mask paths rewritten for TUNED.json's folder).
 */
export function tunedConfig(o: Pick<TuneOptions, 'preset' | 'config' | 'mask' | 'out'>, chosen: TrialResult): Record<string, unknown> {
  const outDir = path.dirname(path.resolve(o.out));
  const mask = o.mask !== undefined ? { mask: path.resolve(o.mask) } : {};
  const tuned = { mode: 'two-stage', ...mask, ...chosen.overrides };
  if (o.preset) return { extends: o.preset, ...tuned };
  const from = path.dirname(path.resolve(o.config!));
  const doc = JSON.parse(fs.readFileSync(o.config!, 'utf8')) as Record<string, unknown>;
  const models = doc.models as Record<string, unknown> | undefined;
  if (models) doc.models = { ...models, fullres: rebase(models.fullres, from, outDir), lowres: rebase(models.lowres, from, outDir) };
  if (typeof doc.mask === 'string') doc.mask = rebase(doc.mask, from, outDir);
  else if (doc.mask && typeof doc.mask === 'object') doc.mask = { ...doc.mask, path: rebase((doc.mask as { path?: unknown }).path, from, outDir) };
  return deepMerge(doc, tuned);
}

const fx = (v: number, d = 4) => (Number.isFinite(v) ? v.toFixed(d) : '–');

function row(t: TrialResult, chosen: number): string {
  return `| ${t.index}${t.index === 0 ? ' (start)' : ''} | ${t.label} | ${t.rois} | ${fx(t.speedup, 2)}× | ${fx(t.wallSpeedup, 2)}× | ${fx(t.agreement)} | ${fx(t.recall, 3)} | ${t.gtDice !== undefined ? fx(t.gtDice) : '–'} | ${t.onFront ? '✓' : ''} | ${t.index === chosen ? '✓' : ''} |`;
}

export function paretoTable(r: TuneReport): string {
  const head = ['| trial | settings | ROIs | network-voxel speedup | wall speedup | Dice to one-stage | object recall | Dice to labels | front | chosen |', '|---:|---|---:|---:|---:|---:|---:|---:|---|---|'];
  const byCost = (a: TrialResult, b: TrialResult) => a.cost - b.cost || a.index - b.index;
  const ch = r.chosen.index;
  const goal = r.objective.kind === 'max-loss' ? `fastest with Dice to one-stage ≥ ${1 - r.objective.loss}` : `best Dice to one-stage at ≥ ${r.objective.speedup}× fewer network voxels`;
  return [
    `# tessera tune: ${r.input} from ${r.start}`, '',
    `Samples: ${r.samples.join('; ')}. One-stage there: ${r.reference.networkVoxels} network voxels, ${r.reference.seconds.toFixed(1)} s${r.reference.gtDice !== undefined ? `, Dice to labels ${r.reference.gtDice.toFixed(4)}` : ''}.`,
    `Search: successive halving, ${r.search.budget} candidates (seed ${r.search.seed}), ${r.search.rungs} rung(s); tune's own cost ${r.cost.seconds} s = ${r.cost.ratio}× one one-stage run of the sample.`,
    `Goal: ${goal}. Chosen: trial ${ch}${r.chosen.feasible ? '' : ' (no trial met the goal: the best the search found)'}.`, '',
    '## Pareto front (network voxels against Dice to one-stage, trials scored on every sample)', '', ...head,
    ...r.front.map((i) => row(r.trials[i], ch)), '',
    '## Every trial', '', ...head, ...[...r.trials].sort(byCost).map((t) => row(t, ch)), '',
  ].join('\n');
}

/** Speedup (log x) against Dice to one-stage: every trial grey, the front blue, trial 0 green, the choice red. */
export function paretoPlot(r: TuneReport): Buffer {
  const W = 720, H = 480, L = 80, R = 30, T = 60, B = 60;
  const c = new Canvas(W, H);
  const pts = r.trials.filter((t) => Number.isFinite(t.cost) && t.rois === r.samples.length);
  const xs = pts.map((t) => Math.log10(t.speedup)), ys = pts.map((t) => t.agreement);
  const x0 = Math.min(0, ...xs), x1 = Math.max(...xs, x0 + 0.1);
  const y0 = Math.min(...ys, 1) - 0.01, y1 = 1;
  const px = (t: TrialResult) => L + ((Math.log10(t.speedup) - x0) / (x1 - x0)) * (W - L - R);
  const py = (t: TrialResult) => H - B - ((t.agreement - y0) / (y1 - y0 || 1)) * (H - T - B);
  c.line(L, H - B, W - R, H - B, [0, 0, 0]);
  c.line(L, T, L, H - B, [0, 0, 0]);
  c.text(L, 12, 'tune: pareto front');
  c.text(L, 32, 'x: speedup (network voxels, log)  y: dice to one-stage', [0, 0, 0], 1);
  c.text(L - 8, H - B + 10, `${(10 ** x0).toFixed(1)}x`, [0, 0, 0], 1);
  c.text(W - R - 40, H - B + 10, `${(10 ** x1).toFixed(1)}x`, [0, 0, 0], 1);
  c.text(4, T, y1.toFixed(3), [0, 0, 0], 1);
  c.text(4, H - B - 8, y0.toFixed(3), [0, 0, 0], 1);
  const dot = (t: TrialResult, col: readonly number[], s: number) => {
    for (let d = -s; d <= s; d++) c.line(px(t) - s, py(t) + d, px(t) + s, py(t) + d, col);
  };
  for (const t of pts) dot(t, [160, 160, 160], 3);
  const front = r.front.map((i) => r.trials[i]);
  for (let i = 1; i < front.length; i++) c.line(px(front[i - 1]), py(front[i - 1]), px(front[i]), py(front[i]), [30, 90, 200], 2);
  for (const t of front) dot(t, [30, 90, 200], 4);
  if (pts.includes(r.trials[0])) dot(r.trials[0], [30, 160, 60], 5);
  dot(r.trials[r.chosen.index], [210, 40, 40], 4);
  c.text(W - R - 200, H - 24, 'green: start  red: chosen', [0, 0, 0], 1);
  return c.png();
}

export async function writeTuneOutputs(r: TuneReport, o: Pick<TuneOptions, 'preset' | 'config' | 'mask' | 'out'>): Promise<void> {
  fs.mkdirSync(path.dirname(path.resolve(o.out)), { recursive: true });
  await writeFileAtomic(r.files.table, paretoTable(r));
  await writeFileAtomic(r.files.plot, paretoPlot(r));
  await writeFileAtomic(r.files.report, JSON.stringify(r, (_, v) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 2) + '\n');
  await writeFileAtomic(o.out, JSON.stringify(tunedConfig(o, r.chosen), null, 2) + '\n');
}
