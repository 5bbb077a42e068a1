// `tessera tune`'s search, pure: the space of two-stage settings around a starting config, the
// candidates drawn from it (deterministic given a seed; the starting config is always trial 0),
// successive halving over the sample ROIs, the Pareto front of cost against agreement with
// one-stage, and the rules that choose one trial from it. No I/O here (tune.ts runs the trials).
//
// Why successive halving and not a TPE-style search: the budget is a handful of trials (each is
// a real run), and a density model over ~8 parameters needs a few dozen observations before it
// beats random draws; successive halving needs none, is trivially deterministic, and spends the
// budget where the fidelity axis we have (how many sample ROIs a trial is scored on) pays:
// every candidate on the first ROI, the better third promoted to the next, and so on.
import { createHash } from 'node:crypto';
import type { Vec3 } from '../geometry/box.ts';
import type { TesseraConfig } from '../config/config.ts';
import { mulberry32, randInt } from '../synth/random.ts';

/** Nested overrides of a config, as a config file spells them: `{ boxes: { roiThreshold: 0.03 } }`. */
export type Overrides = Record<string, Record<string, unknown>>;

/** One searched parameter: its dotted key and the values tried (the starting config's first). */
export interface Dimension { key: string; values: unknown[] }

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
const uniq = (vs: unknown[]) => vs.filter((v, i) => vs.findIndex((w) => same(v, w)) === i);
const clampVec = (v: number[], lo: number, hi: Vec3) => v.map((x, a) => Math.max(lo, Math.min(hi[a], Math.round(x)))) as unknown as Vec3;

/**
 * The values tried per parameter, from the starting config (bench/tune.ts's sweeps, made
 * relative to the config so they fit any network and data): stage one's threshold ×⅓, ×3, ÷10;
 * margins and contexts from none to a few voxels per axis (z and in-plane apart: a z-context of
 * 0 is what costs most on real EM, design.md); crop and re-crop sizes ¾ and 1½ of the config's
 * (within the canvas); NMM thresholds; canvas occupancy (crops per canvas, gaps).
 */
export function searchSpace(c: TesseraConfig): Dimension[] {
  const b = c.boxes, p = c.pack, canvas = p.canvas;
  const contexts: Vec3[] = [];
  for (const z of uniq([p.context[0], 0, 1, 2]) as number[]) {
    for (const yx of uniq([p.context[1], 0, 4, 8, 16]) as number[]) contexts.push(clampVec([z, yx, yx], 0, canvas));
  }
  const t = b.roiThreshold;
  return [
    { key: 'boxes.roiThreshold', values: uniq([t, +(t / 3).toPrecision(3), +Math.min(0.9, t * 3).toPrecision(3), +(t / 10).toPrecision(3)]) },
    { key: 'boxes.margin', values: uniq([b.margin, [0, 2, 2], [1, 4, 4], [2, 8, 8]]) },
    { key: 'pack.context', values: uniq([p.context, ...contexts]) },
    { key: 'pack.crop', values: uniq([p.crop, clampVec(p.crop.map((v) => v * 0.75), 1, canvas), clampVec(p.crop.map((v) => v * 1.5), 1, canvas)]) },
    { key: 'boxes.recrop', values: uniq([b.recrop, clampVec(b.recrop.map((v) => v * 0.875), 1, canvas), clampVec(b.recrop.map((v) => v * 0.75), 1, canvas)]) },
    { key: 'boxes.nmmThreshold', values: uniq([b.nmmThreshold, 0.1, 0.2, 0.35, 0.5]) },
    { key: 'pack.maxPerCanvas', values: uniq([p.maxPerCanvas, 0, 1, 2, 4]) },
    { key: 'pack.gap', values: uniq([p.gap, [0, 0, 0], [0, 4, 4], [1, 8, 8]]) },
  ];
}

/** Overrides that set `key` (dotted, two levels) to `v`, merged into `o`. */
function set(o: Overrides, key: string, v: unknown): void {
  const [group, name] = key.split('.');
  o[group] = { ...(o[group] ?? {}), [name]: v };
}

/** JSON with sorted keys at every level: the same overrides give the same text, whatever their order. */
export function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v && typeof v === 'object') return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`).join(',')}}`;
  return JSON.stringify(v);
}

export function hashOf(v: unknown): string {
  return createHash('sha256').update(canonical(v)).digest('hex').slice(0, 16);
}

/**
 * `n` candidates: trial 0 is the starting config (no overrides); the others draw each
 * parameter's value uniformly (random search as successive halving's first rung), skipping
 * duplicates and those `valid` refuses (a crop that no longer fits, say). Same space, n and
 * seed, same candidates.
 */
export function candidates(space: readonly Dimension[], n: number, seed: number, valid: (o: Overrides) => boolean = () => true): Overrides[] {
  const out: Overrides[] = [{}];
  const seen = new Set([canonical({})]);
  const rng = mulberry32(seed);
  for (let tries = 0; out.length < n && tries < n * 200; tries++) {
    const o: Overrides = {};
    for (const d of space) {
      const v = d.values[randInt(rng, 0, d.values.length - 1)];
      if (!same(v, d.values[0])) set(o, d.key, v);
    }
    const k = canonical(o);
    if (seen.has(k)) continue;
    seen.add(k);
    if (valid(o)) out.push(o);
  }
  return out;
}

/** A short label of a trial's overrides for tables: `roiThreshold=0.03 context=1×4×4`. */
export function describeOverrides(o: Overrides): string {
  const parts: string[] = [];
  for (const g of Object.keys(o).sort()) {
    for (const k of Object.keys(o[g]).sort()) {
      const v = o[g][k];
      parts.push(`${k}=${Array.isArray(v) ? v.join('×') : String(v)}`);
    }
  }
  return parts.length ? parts.join(' ') : '(starting config)';
}

/** What a trial scored, summed or averaged over the ROIs it ran on. */
export interface Point {
  /** Trial number (0: the starting config). */
  index: number;
  /** Network voxels run over the one-stage run's, on the same ROIs (lower is cheaper; 1/cost is the speedup). */
  cost: number;
  /** Dice to one-stage's segmentation (1: identical). */
  agreement: number;
}

/** The objective the user gave: fastest within a loss of agreement, or best agreement at a speedup. */
export type Objective = { kind: 'max-loss'; loss: number } | { kind: 'min-speedup'; speedup: number };

export function feasible(p: Point, o: Objective): boolean {
  return o.kind === 'max-loss' ? 1 - p.agreement <= o.loss + 1e-12 : 1 / p.cost >= o.speedup - 1e-12;
}

/**
 * Order of preference (best first). `max-loss`: feasible trials by cost, then agreement; the
 * infeasible after them by agreement (closest to the bound first). `min-speedup`: feasible by
 * agreement, then cost; the infeasible by cost (fastest first). Ties: the lower trial number, so
 * the order is total and deterministic. The first is always on the Pareto front.
 */
export function compare(a: Point, b: Point, o: Objective): number {
  const fa = feasible(a, o), fb = feasible(b, o);
  if (fa !== fb) return fa ? -1 : 1;
  const byCost = a.cost - b.cost, byAgreement = b.agreement - a.agreement;
  const first = o.kind === 'max-loss' ? (fa ? byCost : byAgreement) : (fa ? byAgreement : byCost);
  const second = o.kind === 'max-loss' ? (fa ? byAgreement : byCost) : (fa ? byCost : byAgreement);
  return first || second || a.index - b.index;
}

export function rank(points: readonly Point[], o: Objective): Point[] {
  return [...points].sort((a, b) => compare(a, b, o));
}

/** The chosen trial and whether it meets the objective (else the best the search found, said so). */
export function choose(points: readonly Point[], o: Objective): { point: Point; feasible: boolean } {
  if (!points.length) throw new Error('no trial finished');
  const point = rank(points, o)[0];
  return { point, feasible: feasible(point, o) };
}

/** a dominates b: no costlier, no worse agreement, and better in one. */
export function dominates(a: Point, b: Point): boolean {
  return a.cost <= b.cost && a.agreement >= b.agreement && (a.cost < b.cost || a.agreement > b.agreement);
}

/** The non-dominated points, cheapest first (equal points both stay). O(n log n). */
export function paretoFront(points: readonly Point[]): Point[] {
  const s = [...points].filter((p) => Number.isFinite(p.cost)).sort((a, b) => a.cost - b.cost || b.agreement - a.agreement || a.index - b.index);
  const front: Point[] = [];
  let best = -Infinity;
  for (const p of s) {
    const last = front[front.length - 1];
    if (p.agreement > best || (last && p.cost === last.cost && p.agreement === last.agreement)) {
      front.push(p);
      best = Math.max(best, p.agreement);
    }
  }
  return front;
}

/**
 * Successive halving: which trials go on to the next rung (one more sample ROI). The better
 * third by the objective (at least one), and trial 0 always, so the starting config is scored on
 * every ROI the choice is.
 */
export function promote(points: readonly Point[], o: Objective): number[] {
  const keep = rank(points, o).slice(0, Math.max(1, Math.ceil(points.length / 3))).map((p) => p.index);
  if (points.some((p) => p.index === 0) && !keep.includes(0)) keep.push(0);
  return keep.sort((a, b) => a - b);
}

/** The ROIs rung r scores on: the first r + 1 samples, the last rung all of them. */
export function rungRois(r: number, samples: number): number[] {
  return Array.from({ length: Math.min(samples, r + 1) }, (_, i) => i);
}

/**
 * `k` sample ROIs of one processing chunk each (clipped to the volume), spread along the
 * volume's diagonal and snapped to the chunk grid so a sample is the work of whole chunks;
 * duplicates (a volume of fewer chunks than k) are dropped. Deterministic.
 */
export function spreadRois(shape: Vec3, chunk: Vec3, k: number): Array<{ begin: Vec3; end: Vec3 }> {
  const size = shape.map((s, a) => Math.min(s, chunk[a]));
  const out: Array<{ begin: Vec3; end: Vec3 }> = [];
  for (let i = 0; i < k; i++) {
    const begin = shape.map((s, a) => {
      const centre = Math.floor(((i + 0.5) / k) * s);
      const snapped = Math.floor(Math.max(0, centre - size[a] / 2) / chunk[a]) * chunk[a];
      return Math.max(0, Math.min(s - size[a], snapped));
    }) as unknown as Vec3;
    const roi = { begin, end: begin.map((b, a) => b + size[a]) as unknown as Vec3 };
    if (!out.some((r) => same(r, roi))) out.push(roi);
  }
  return out;
}
