// Synthetic electron-microscopy volumes (uint8, 40×4×4 nm): neurite-like Voronoi cells with
// dark membranes, textured cytoplasm, smooth illumination drift, and sparse synaptic-cleft-like
// objects lying on membranes — plus what makes real clefts hard to find.
//
// A cleft is a dark band on a membrane (3–7 px thick, 12–100 px long, 1–10 sections) with a
// vesicle cloud on its presynaptic side and a checker texture of ±7 to ±19 grey levels (faint
// in some clefts) under noise of σ 9. Look-alikes that carry no label: membrane appositions
// (the same dark band, no checker; 40 % of them with a vesicle cloud) and free vesicle clouds
// by membranes. So the texture is the only cue that decides, and it vanishes at stage one's 4×
// lower resolution: stage one finds bands and clouds, stage two must reject the appositions. A
// band's image edge is soft (one voxel blends into the membrane) while its label is the hard
// rectangle, so boundary voxels are ambiguous as in real annotations. Sections vary in contrast
// (gain 0.75–1.25 and an offset), and about 1.5 % are defective (nearly blank, or low contrast
// under heavy noise) while their labels stay: real stacks have both.
//
// Everything a voxel shows is a pure function of its absolute (z, y, x) and the seed; clefts are
// generated per tile of the volume from a seeded PRNG, so any region renders without the rest.
import { type Box, type Vec3, box, intersect, isEmpty } from '../geometry/box.ts';
import { gauss, hashInts, hashStep, mulberry32, randInt, uniform, unit } from './random.ts';

/** Voronoi grid pitch in-plane (px): neurite profiles are about this wide. */
export const EM_CELL = 64;
/** Clefts are generated per tile of this shape ([z, y, x] voxels). */
export const EM_TILE: Vec3 = [16, 256, 256];

/** Grey levels (before drift and noise). */
export const EM_LEVELS = {
  cytoplasm: 168,
  membrane: 78,
  /** Noise standard deviations. */
  cytoplasmSigma: 11,
  membraneSigma: 18,
  /**
   * Half amplitude of a cleft's checker, drawn per cleft in [min, max] (kept inside the
   * membrane spread): faint clefts exist, and set how hard the data is (7–19 puts one-stage
   * Dice in the 0.80–0.95 a real cleft model reaches; 8–20 gave 0.96, 6–17 0.72).
   */
  cleftCheckerMin: 7,
  cleftCheckerMax: 19,
  /** Amplitude of the cytoplasm's smooth granular texture. */
  texture: 9,
  /** Bands (clefts and appositions): mean and noise; only clefts carry the checker. */
  band: 70,
  bandSigma: 9,
  /** Vesicles: a dark rim around a lighter lumen. */
  vesicleRim: 92,
  vesicleLumen: 150,
} as const;

/** Look-alikes per cleft: apposition voxels per cleft voxel, free clouds per apposition. */
export const EM_DISTRACTORS = { appositions: 1, clouds: 0.5, appositionCloud: 0.4 } as const;

/** Section effects: contrast gain drift and defective sections. */
export const EM_SECTIONS = { gainAmp: 0.18, gainJitter: 0.07, defectRate: 0.015 } as const;

/** One cleft: a thick band along the membrane shared by two neighbouring Voronoi cells. */
export interface EmCleft {
  /** Sections z0 ≤ z < z1. */
  readonly z0: number;
  readonly z1: number;
  /** The two cells [cy, cx] of the grid whose shared membrane the cleft lies on. */
  readonly cellA: readonly [number, number];
  readonly cellB: readonly [number, number];
  /** Shift along the membrane from the midpoint of the two cell seeds (px). */
  readonly offset: number;
  /** Extent along the membrane and across it (px). */
  readonly length: number;
  readonly thickness: number;
  /** Tight bounding box of its voxels (inside the volume). */
  readonly bbox: Box;
  /** Number of voxels it covers. */
  readonly voxels: number;
  /** Hash naming it (seeds its vesicle cloud). */
  readonly key: number;
}

export interface EmSceneParams {
  readonly seed: number;
  readonly shape: Vec3;
  readonly fg: number;
}

// ---------------------------------------------------------------------------------------------
// Voronoi seeds: one per grid cell, jittered inside the cell, drifting slowly with z.

interface SeedBase {
  jy: number; jx: number; period: number; phase: number; amp: number;
}

function seedBase(seed: number, cy: number, cx: number): SeedBase {
  const h = hashInts(seed, 0x5eed, cy, cx);
  const h2 = hashStep(h, 1);
  const h3 = hashStep(h, 2);
  const h4 = hashStep(h, 3);
  const h5 = hashStep(h, 4);
  return {
    jy: (0.1 + 0.8 * unit(h)) * EM_CELL,
    jx: (0.1 + 0.8 * unit(h2)) * EM_CELL,
    period: 40 + 80 * unit(h3),
    phase: 2 * Math.PI * unit(h4),
    amp: 0.08 * EM_CELL * unit(h5),
  };
}

function seedY(b: SeedBase, cy: number, z: number): number {
  return cy * EM_CELL + b.jy + b.amp * Math.sin((2 * Math.PI * z) / b.period + b.phase);
}
function seedX(b: SeedBase, cx: number, z: number): number {
  return cx * EM_CELL + b.jx + b.amp * Math.cos((1.4 * Math.PI * z) / b.period + b.phase * 1.7);
}

function seedPoint(seed: number, cy: number, cx: number, z: number): [number, number] {
  const b = seedBase(seed, cy, cx);
  return [seedY(b, cy, z), seedX(b, cx, z)];
}

/** The two nearest cell seeds (searched in the 3×3 cells around the point's cell). */
function nearestTwo(seed: number, z: number, y: number, x: number): [number, number, number, number] {
  const cy = Math.floor(y / EM_CELL);
  const cx = Math.floor(x / EM_CELL);
  let d1 = Infinity, d2 = Infinity;
  let a = [0, 0], b = [0, 0];
  for (let dy = -1; dy <= 1; dy++) {
    for (let dx = -1; dx <= 1; dx++) {
      const [py, px] = seedPoint(seed, cy + dy, cx + dx, z);
      const d = (y - py) ** 2 + (x - px) ** 2;
      if (d < d1) {
        d2 = d1; b = a; d1 = d; a = [cy + dy, cx + dx];
      } else if (d < d2) {
        d2 = d; b = [cy + dy, cx + dx];
      }
    }
  }
  return [a[0], a[1], b[0], b[1]];
}

// ---------------------------------------------------------------------------------------------
// Cleft geometry.

interface Frame { cy: number; cx: number; uy: number; ux: number; ny: number; nx: number }

/** Centre, along-membrane direction u and across direction n of a cleft in section z. */
function cleftFrame(seed: number, c: Pick<EmCleft, 'cellA' | 'cellB' | 'offset'>, z: number): Frame {
  const [ay, ax] = seedPoint(seed, c.cellA[0], c.cellA[1], z);
  const [by, bx] = seedPoint(seed, c.cellB[0], c.cellB[1], z);
  const vy = by - ay, vx = bx - ax;
  const len = Math.hypot(vy, vx) || 1;
  const ny = vy / len, nx = vx / len;
  const uy = -nx, ux = ny;
  return { cy: (ay + by) / 2 + c.offset * uy, cx: (ax + bx) / 2 + c.offset * ux, uy, ux, ny, nx };
}

/** x-interval (inclusive integers, lo > hi when empty) of the cleft's rectangle in row y. */
function rowSpan(f: Frame, halfL: number, halfT: number, y: number): [number, number] {
  const dy = y - f.cy;
  let lo = -Infinity, hi = Infinity;
  // |u·d| ≤ halfL and |n·d| ≤ halfT, each linear in dx = x - cx.
  for (let k = 0; k < 2; k++) {
    const a = k === 0 ? f.ux : f.nx;
    const b = k === 0 ? f.uy * dy : f.ny * dy;
    const h = k === 0 ? halfL : halfT;
    if (Math.abs(a) < 1e-9) {
      if (Math.abs(b) > h) return [1, 0];
      continue;
    }
    let l = (-h - b) / a, r = (h - b) / a;
    if (l > r) { const t = l; l = r; r = t; }
    if (l > lo) lo = l;
    if (r < hi) hi = r;
  }
  if (lo > hi) return [1, 0];
  return [Math.ceil(f.cx + lo), Math.floor(f.cx + hi)];
}

/** Rows (inclusive) the cleft's rectangle can touch in this section. */
function rowRange(f: Frame, halfL: number, halfT: number): [number, number] {
  const ey = Math.abs(f.uy) * halfL + Math.abs(f.ny) * halfT;
  return [Math.ceil(f.cy - ey), Math.floor(f.cy + ey)];
}

function validCleft(seed: number, c: Pick<EmCleft, 'cellA' | 'cellB' | 'offset' | 'length'>, z: number): boolean {
  const f = cleftFrame(seed, c, z);
  const reach = c.length / 2 - 2;
  for (const t of [0, -reach, reach]) {
    const [a0, a1, b0, b1] = nearestTwo(seed, z, f.cy + t * f.uy, f.cx + t * f.ux);
    const isA = (p: number, q: number) => p === c.cellA[0] && q === c.cellA[1];
    const isB = (p: number, q: number) => p === c.cellB[0] && q === c.cellB[1];
    if (!((isA(a0, a1) && isB(b0, b1)) || (isB(a0, a1) && isA(b0, b1)))) return false;
  }
  return true;
}

/** Tight bbox and voxel count of a cleft inside the volume; `inside` false if it is cut by the border. */
function measure(seed: number, shape: Vec3, c: Omit<EmCleft, 'bbox' | 'voxels' | 'key'>): { bbox: Box; voxels: number; inside: boolean } {
  let voxels = 0, inside = true;
  const lo = [Infinity, Infinity, Infinity];
  const hi = [-Infinity, -Infinity, -Infinity];
  const halfL = c.length / 2, halfT = c.thickness / 2;
  for (let z = c.z0; z < c.z1; z++) {
    const f = cleftFrame(seed, c, z);
    const [r0, r1] = rowRange(f, halfL, halfT);
    for (let y = r0; y <= r1; y++) {
      let [x0, x1] = rowSpan(f, halfL, halfT, y);
      if (x0 > x1) continue;
      if (y < 0 || y >= shape[1] || x0 < 0 || x1 >= shape[2]) inside = false;
      if (y < 0 || y >= shape[1]) continue;
      x0 = Math.max(0, x0);
      x1 = Math.min(shape[2] - 1, x1);
      if (x0 > x1) continue;
      voxels += x1 - x0 + 1;
      lo[0] = Math.min(lo[0], z); hi[0] = Math.max(hi[0], z);
      lo[1] = Math.min(lo[1], y); hi[1] = Math.max(hi[1], y);
      lo[2] = Math.min(lo[2], x0); hi[2] = Math.max(hi[2], x1);
    }
  }
  if (voxels === 0) return { bbox: box([0, 0, 0], [0, 0, 0]), voxels, inside: false };
  return { bbox: box([lo[0], lo[1], lo[2]], [hi[0] + 1, hi[1] + 1, hi[2] + 1]), voxels, inside };
}

function overlaps(a: Box, b: Box, margin: Vec3): boolean {
  for (let k = 0; k < 3; k++) {
    if (a.end[k] + margin[k] <= b.begin[k] || b.end[k] + margin[k] <= a.begin[k]) return false;
  }
  return true;
}

/** Which bands a tile generates: the labelled clefts or the unlabelled appositions. */
type BandKind = 'cleft' | 'apposition';
const BAND_SALT: Record<BandKind, number> = { cleft: 0xc1ef7, apposition: 0xa9905 };

function tileBox(p: EmSceneParams, tz: number, ty: number, tx: number): Box {
  return intersect(
    box([tz * EM_TILE[0], ty * EM_TILE[1], tx * EM_TILE[2]], [(tz + 1) * EM_TILE[0], (ty + 1) * EM_TILE[1], (tx + 1) * EM_TILE[2]]),
    box([0, 0, 0], p.shape),
  );
}

/**
 * Bands on membranes drawn by one tile until `fraction` of its voxels are covered, none within
 * `margin` of another or of `avoid`.
 */
function tileBands(p: EmSceneParams, tz: number, ty: number, tx: number, kind: BandKind, fraction: number, avoid: readonly EmCleft[]): EmCleft[] {
  const [Z] = p.shape;
  const tb = tileBox(p, tz, ty, tx);
  if (isEmpty(tb) || fraction <= 0) return [];
  const rng = mulberry32(hashInts(p.seed, BAND_SALT[kind], tz, ty, tx));
  const budget = fraction * (tb.end[0] - tb.begin[0]) * (tb.end[1] - tb.begin[1]) * (tb.end[2] - tb.begin[2]);
  const out: EmCleft[] = [];
  let total = 0;
  for (let attempt = 0; attempt < 60 + 8 * Math.ceil(budget / 600) && total < budget; attempt++) {
    const nz = Math.min(Z, randInt(rng, 1, 10));
    const z0 = Math.min(tb.begin[0] + Math.floor(rng() * (tb.end[0] - tb.begin[0])), Z - nz);
    const py = uniform(rng, tb.begin[1], tb.end[1]);
    const px = uniform(rng, tb.begin[2], tb.end[2]);
    const cellA: [number, number] = [Math.floor(py / EM_CELL), Math.floor(px / EM_CELL)];
    const cellB: [number, number] = rng() < 0.5 ? [cellA[0], cellA[1] + 1] : [cellA[0] + 1, cellA[1]];
    // Log-uniform length: small clefts are common, a few are long.
    let length = MIN_LENGTH * Math.exp(rng() * Math.log(100 / MIN_LENGTH));
    const thickness = uniform(rng, 3, 7);
    const offset = uniform(rng, -6, 6);
    const ok = (l: number) => {
      for (let z = z0; z < z0 + nz; z++) if (!validCleft(p.seed, { cellA, cellB, offset, length: l }, z)) return false;
      return true;
    };
    while (length >= MIN_LENGTH && !ok(length)) length *= 0.85;
    if (length < MIN_LENGTH) continue;
    const base = { z0, z1: z0 + nz, cellA, cellB, offset, length, thickness };
    const m = measure(p.seed, p.shape, base);
    if (!m.inside || m.voxels === 0) continue;
    if (out.some((o) => overlaps(o.bbox, m.bbox, [1, 3, 3])) || avoid.some((o) => overlaps(o.bbox, m.bbox, [2, 12, 12]))) continue;
    if (total + m.voxels > budget && rng() >= (budget - total) / m.voxels) break;
    out.push({ ...base, bbox: m.bbox, voxels: m.voxels, key: hashInts(p.seed, BAND_SALT[kind], tz, ty, tx, out.length) });
    total += m.voxels;
  }
  return out;
}

const MIN_LENGTH = 12;

/** The clefts generated by one tile (a pure function of seed, shape, fg and the tile index). */
export function tileClefts(p: EmSceneParams, tz: number, ty: number, tx: number): EmCleft[] {
  return tileBands(p, tz, ty, tx, 'cleft', p.fg, []);
}

/**
 * The unlabelled membrane appositions of one tile: away from the tile's own clefts (a cleft of
 * a neighbouring tile may still touch one; clefts are painted last, so its label stays whole).
 */
function tileAppositions(p: EmSceneParams, tz: number, ty: number, tx: number, clefts: readonly EmCleft[]): EmCleft[] {
  return tileBands(p, tz, ty, tx, 'apposition', p.fg * EM_DISTRACTORS.appositions, clefts);
}

/** A vesicle cloud without a cleft: a patch beside a membrane point, fixed through its sections. */
interface FreeCloud { z0: number; z1: number; frame: Frame; halfL: number; key: number }

function tileClouds(p: EmSceneParams, tz: number, ty: number, tx: number, bands: number): FreeCloud[] {
  const tb = tileBox(p, tz, ty, tx);
  if (isEmpty(tb)) return [];
  const rng = mulberry32(hashInts(p.seed, 0xc10d5, tz, ty, tx));
  const n = Math.round(bands * EM_DISTRACTORS.clouds + rng() * 0.999);
  const out: FreeCloud[] = [];
  for (let i = 0; i < n; i++) {
    const nz = Math.min(p.shape[0], randInt(rng, 1, 8));
    const z0 = Math.min(tb.begin[0] + Math.floor(rng() * (tb.end[0] - tb.begin[0])), p.shape[0] - nz);
    const py = uniform(rng, tb.begin[1], tb.end[1]);
    const px = uniform(rng, tb.begin[2], tb.end[2]);
    const cellA: [number, number] = [Math.floor(py / EM_CELL), Math.floor(px / EM_CELL)];
    const cellB: [number, number] = rng() < 0.5 ? [cellA[0], cellA[1] + 1] : [cellA[0] + 1, cellA[1]];
    const frame = cleftFrame(p.seed, { cellA, cellB, offset: uniform(rng, -10, 10) }, z0);
    out.push({ z0, z1: z0 + nz, frame, halfL: uniform(rng, 8, 30), key: hashInts(p.seed, 0xc10d5, tz, ty, tx, i) });
  }
  return out;
}

/** How far (voxels) a cleft's bbox can reach outside the tile that generated it. */
const REACH: Vec3 = [EM_TILE[0] + 12, 2 * EM_CELL + 64, 2 * EM_CELL + 64];
/** How far a vesicle cloud reaches beyond its band (across: gap + depth + radius). */
const CLOUD_REACH = 40;

/** Calls `f` for every tile whose objects can touch `region`, in raster order. */
function forTiles(p: EmSceneParams, region: Box, f: (tz: number, ty: number, tx: number) => void): void {
  const t0: number[] = [], t1: number[] = [];
  for (let k = 0; k < 3; k++) {
    t0.push(Math.max(0, Math.floor((region.begin[k] - REACH[k]) / EM_TILE[k])));
    t1.push(Math.min(Math.ceil(p.shape[k] / EM_TILE[k]) - 1, Math.floor((region.end[k] - 1 + REACH[k]) / EM_TILE[k])));
  }
  for (let tz = t0[0]; tz <= t1[0]; tz++) {
    for (let ty = t0[1]; ty <= t1[1]; ty++) {
      for (let tx = t0[2]; tx <= t1[2]; tx++) f(tz, ty, tx);
    }
  }
}

/** All clefts whose bbox intersects `region`, in a fixed global order (tile raster, then tile order). */
export function emClefts(p: EmSceneParams, region: Box): EmCleft[] {
  const out: EmCleft[] = [];
  forTiles(p, region, (tz, ty, tx) => {
    for (const c of tileClefts(p, tz, ty, tx)) if (!isEmpty(intersect(c.bbox, region))) out.push(c);
  });
  return out;
}

/** Everything the image of `region` shows besides the background. */
interface Objects { clefts: EmCleft[]; appositions: EmCleft[]; clouds: FreeCloud[] }

function emObjects(p: EmSceneParams, region: Box): Objects {
  const o: Objects = { clefts: [], appositions: [], clouds: [] };
  const g = CLOUD_REACH;
  const wide = box([region.begin[0], region.begin[1] - g, region.begin[2] - g], [region.end[0], region.end[1] + g, region.end[2] + g]);
  const near = (b: Box) => !isEmpty(intersect(b, wide));
  forTiles(p, wide, (tz, ty, tx) => {
    const clefts = tileClefts(p, tz, ty, tx);
    const appositions = tileAppositions(p, tz, ty, tx, clefts);
    for (const c of clefts) if (near(c.bbox)) o.clefts.push(c);
    for (const c of appositions) if (near(c.bbox)) o.appositions.push(c);
    for (const c of tileClouds(p, tz, ty, tx, clefts.length + appositions.length)) {
      if (c.z1 > region.begin[0] && c.z0 < region.end[0]) o.clouds.push(c);
    }
  });
  return o;
}

// ---------------------------------------------------------------------------------------------
// Rendering.

interface Drift { z: (z: number) => number; y: Float64Array; x: Float64Array }

function drift(seed: number, region: Box): Drift {
  const h = hashInts(seed, 0xd41f7);
  const par = (k: number) => unit(hashStep(h, k));
  const wave = (amp: number, pmin: number, pmax: number, k: number) => {
    const P = pmin + (pmax - pmin) * par(k);
    const ph = 2 * Math.PI * par(k + 1);
    return (t: number) => amp * Math.sin((2 * Math.PI * t) / P + ph);
  };
  const wz = wave(6, 60, 200, 0), wy = wave(7, 500, 1500, 2), wx = wave(7, 500, 1500, 4);
  const ny = region.end[1] - region.begin[1], nx = region.end[2] - region.begin[2];
  const y = new Float64Array(ny), x = new Float64Array(nx);
  for (let i = 0; i < ny; i++) y[i] = wy(region.begin[1] + i);
  for (let i = 0; i < nx; i++) x[i] = wx(region.begin[2] + i);
  // Per-section brightness jitter, as real EM sections differ slightly.
  return { z: (z) => wz(z) + 4 * (2 * unit(hashInts(seed, 0x5ec7, z)) - 1), y, x };
}

const TEX = 8; // lattice pitch of the cytoplasm's value-noise texture (px)

/** Background (cells, membranes, texture, drift, noise) of `region` into `out` (Uint8, C order). */
function renderBackground(p: EmSceneParams, region: Box, out: Uint8Array): void {
  const [z0, y0, x0] = region.begin;
  const [z1, y1, x1] = region.end;
  const ny = y1 - y0, nx = x1 - x0;
  const G = EM_CELL;
  const L = EM_LEVELS;
  // Seed grid covering the region plus one cell each side.
  const cy0 = Math.floor(y0 / G) - 1, cy1 = Math.floor((y1 - 1) / G) + 1;
  const cx0 = Math.floor(x0 / G) - 1, cx1 = Math.floor((x1 - 1) / G) + 1;
  const W = cx1 - cx0 + 1, H = cy1 - cy0 + 1;
  const bases: SeedBase[] = [];
  for (let cy = cy0; cy <= cy1; cy++) for (let cx = cx0; cx <= cx1; cx++) bases.push(seedBase(p.seed, cy, cx));
  const PY = new Float64Array(W * H), PX = new Float64Array(W * H);
  // For each cell of the grid (its 3×3 candidates fixed): 1 / (2 |p_j − p_k|) for all pairs.
  const SEP = new Float64Array(W * H * 81);
  // Texture lattice covering the region.
  const ly0 = Math.floor(y0 / TEX), ly1 = Math.floor((y1 - 1) / TEX) + 1;
  const lx0 = Math.floor(x0 / TEX), lx1 = Math.floor((x1 - 1) / TEX) + 1;
  const LW = lx1 - lx0 + 1;
  const lat = new Float64Array((ly1 - ly0 + 1) * LW);
  const dr = drift(p.seed, region);
  const cand = new Int32Array(9);
  const dist = new Float64Array(9);
  let o = 0;
  for (let z = z0; z < z1; z++) {
    for (let cy = cy0, i = 0; cy <= cy1; cy++) {
      for (let cx = cx0; cx <= cx1; cx++, i++) {
        PY[i] = seedY(bases[i], cy, z);
        PX[i] = seedX(bases[i], cx, z);
      }
    }
    for (let ci = 1; ci < H - 1; ci++) {
      for (let cj = 1; cj < W - 1; cj++) {
        const s0 = (ci * W + cj) * 81;
        for (let k = 0; k < 9; k++) {
          const qk = (ci + ((k / 3) | 0) - 1) * W + (cj + (k % 3) - 1);
          for (let j = 0; j < 9; j++) {
            const qj = (ci + ((j / 3) | 0) - 1) * W + (cj + (j % 3) - 1);
            const dy = PY[qj] - PY[qk], dx = PX[qj] - PX[qk];
            SEP[s0 + k * 9 + j] = j === k ? 0 : 0.5 / Math.sqrt(dy * dy + dx * dx);
          }
        }
      }
    }
    const hz = hashInts(p.seed, 0x7e47, z);
    for (let ly = ly0, i = 0; ly <= ly1; ly++) {
      const hzy = hashStep(hz, ly);
      for (let lx = lx0; lx <= lx1; lx++, i++) lat[i] = 2 * unit(hashStep(hzy, lx)) - 1;
    }
    const dz = dr.z(z);
    const hn = hashInts(p.seed, 0x9015e, z);
    for (let y = y0; y < y1; y++) {
      const ci = Math.floor(y / G) - cy0;
      const hy = hashStep(hn, y);
      const dzy = dz + dr.y[y - y0];
      const ty = y / TEX;
      const li = Math.floor(ty);
      const fy = ty - li;
      const lrow = (li - ly0) * LW;
      let lastCx = -1;
      let sepBase = 0;
      for (let x = x0; x < x1; x++) {
        const cj = Math.floor(x / G) - cx0;
        if (cj !== lastCx) {
          lastCx = cj;
          sepBase = (ci * W + cj) * 81;
          for (let a = -1, k = 0; a <= 1; a++) for (let b = -1; b <= 1; b++, k++) cand[k] = (ci + a) * W + (cj + b);
        }
        // Nearest seed, then the distance to the nearest Voronoi boundary (bisector planes).
        let best = 0, bd = Infinity;
        for (let k = 0; k < 9; k++) {
          const q = cand[k];
          const ey = y - PY[q], ex = x - PX[q];
          const d = ey * ey + ex * ex;
          dist[k] = d;
          if (d < bd) { bd = d; best = k; }
        }
        let edge = Infinity;
        const sb = sepBase + best * 9;
        for (let k = 0; k < 9; k++) {
          if (k === best) continue;
          const e = (dist[k] - bd) * SEP[sb + k];
          if (e < edge) edge = e;
        }
        const w = edge <= 0.8 ? 1 : edge >= 1.8 ? 0 : 1.8 - edge;
        // Cytoplasm texture: bilinear value noise on the TEX lattice.
        const tx = x / TEX;
        const lj = Math.floor(tx);
        const fx = tx - lj;
        const a0 = lrow + (lj - lx0);
        const t0 = lat[a0] + (lat[a0 + 1] - lat[a0]) * fx;
        const t1 = lat[a0 + LW] + (lat[a0 + LW + 1] - lat[a0 + LW]) * fx;
        const tex = (t0 + (t1 - t0) * fy) * L.texture * (1 - w);
        const mean = L.cytoplasm + (L.membrane - L.cytoplasm) * w + dzy + dr.x[x - x0] + tex;
        const sigma = L.cytoplasmSigma + (L.membraneSigma - L.cytoplasmSigma) * w;
        const v = mean + sigma * gauss(hashStep(hy, x));
        out[o++] = v <= 0 ? 0 : v >= 255 ? 255 : (v + 0.5) | 0;
      }
    }
  }
  void ny; void nx;
}

/** Per-section contrast: gain around mid-grey, and the defective sections. */
interface Section { gain: number; defect: 'none' | 'blank' | 'noisy' }

function section(seed: number, z: number): Section {
  const h = hashInts(seed, 0x9a17);
  const P = 80 + 160 * unit(hashStep(h, 1));
  const S = EM_SECTIONS;
  const gain = 1 + S.gainAmp * Math.sin((2 * Math.PI * z) / P + 2 * Math.PI * unit(hashStep(h, 2)))
    + S.gainJitter * (2 * unit(hashInts(seed, 0x9a18, z)) - 1);
  const d = unit(hashInts(seed, 0xdef3c7, z));
  return { gain, defect: d >= S.defectRate ? 'none' : d < S.defectRate / 2 ? 'blank' : 'noisy' };
}

/** Section contrast and defects over the rendered `region` (after everything else is painted). */
function applySections(seed: number, region: Box, out: Uint8Array): void {
  const [z0, y0, x0] = region.begin;
  const [z1, y1, x1] = region.end;
  const plane = (y1 - y0) * (x1 - x0);
  for (let z = z0; z < z1; z++) {
    const s = section(seed, z);
    // A blank section keeps a trace of the tissue under strong noise; a noisy one loses contrast.
    const [mid, gain, sigma] = s.defect === 'blank' ? [150, 0.12, 12] : s.defect === 'noisy' ? [128, 0.45 * s.gain, 28] : [128, s.gain, 0];
    const hz = hashInts(seed, 0xde7ec7, z);
    let o = (z - z0) * plane;
    for (let y = y0; y < y1; y++) {
      const hy = hashStep(hz, y);
      for (let x = x0; x < x1; x++, o++) {
        const v = mid + gain * (out[o] - mid) + (sigma > 0 ? sigma * gauss(hashStep(hy, x)) : 0);
        out[o] = v <= 0 ? 0 : v >= 255 ? 255 : (v + 0.5) | 0;
      }
    }
  }
}

function clamp01(v: number): number {
  return v <= 0 ? 0 : v >= 1 ? 1 : v;
}

/**
 * Paint a band into `img` (soft edge: one voxel blends into what is under it; the checker only
 * for clefts) and/or its hard rectangle into `lab` (1) over `region`.
 */
function paintBand(p: EmSceneParams, c: EmCleft, checker: number, region: Box, dr: Drift | undefined, img: Uint8Array | undefined, lab: Uint8Array | undefined): void {
  const [z0, y0, x0] = region.begin;
  const [z1, y1, x1] = region.end;
  const ny = y1 - y0, nx = x1 - x0;
  const L = EM_LEVELS;
  const halfL = c.length / 2, halfT = c.thickness / 2;
  // The image reaches half a voxel past the label on each side.
  const grow = img ? 1 : 0;
  for (let z = Math.max(z0, c.z0); z < Math.min(z1, c.z1); z++) {
    const f = cleftFrame(p.seed, c, z);
    let [r0, r1] = rowRange(f, halfL + grow, halfT + grow);
    r0 = Math.max(r0, y0);
    r1 = Math.min(r1, y1 - 1);
    const dz = dr ? dr.z(z) : 0;
    const hn = hashInts(p.seed, 0xba4d, c.key, z);
    for (let y = r0; y <= r1; y++) {
      const row = ((z - z0) * ny + (y - y0)) * nx - x0;
      if (lab) {
        const [s0, s1] = rowSpan(f, halfL, halfT, y);
        const a = Math.max(s0, x0), b = Math.min(s1, x1 - 1);
        if (a <= b) lab.fill(1, row + a, row + b + 1);
      }
      if (!img || !dr) continue;
      const [s0, s1] = rowSpan(f, halfL + grow, halfT + grow, y);
      const a = Math.max(s0, x0), b = Math.min(s1, x1 - 1);
      const hy = hashStep(hn, y);
      const base = L.band + dz + dr.y[y - y0];
      const dy = y - f.cy;
      for (let x = a; x <= b; x++) {
        const dx = x - f.cx;
        const w = clamp01(halfT + 0.5 - Math.abs(f.ny * dy + f.nx * dx)) * clamp01(halfL + 0.5 - Math.abs(f.uy * dy + f.ux * dx));
        if (w <= 0) continue;
        const chk = ((z + y + x) & 1) === 0 ? checker : -checker;
        const v = base + dr.x[x - x0] + chk + L.bandSigma * gauss(hashStep(hy, x));
        img[row + x] = Math.max(0, Math.min(255, Math.round(img[row + x] * (1 - w) + v * w)));
      }
    }
  }
}

/** A cloud's placement in one section: vesicles lie on `side` of the band, `gap` to `gap + depth` across. */
interface CloudAt { f: Frame; halfL: number; side: number; gap: number; depth: number; density: number; key: number }

function bandCloud(c: EmCleft, f: Frame): CloudAt {
  const k = c.key;
  return {
    f, halfL: c.length / 2, side: (k & 1) === 0 ? 1 : -1, gap: c.thickness / 2 + 2,
    depth: 10 + 14 * unit(hashStep(k, 1)), density: 0.25 + 0.75 * unit(hashStep(k, 2)), key: k,
  };
}

/** Paint one section's vesicles of a cloud (each a dark rim around a lighter lumen, soft edges). */
function paintVesicles(seed: number, cl: CloudAt, z: number, region: Box, img: Uint8Array): void {
  const [z0, y0, x0] = region.begin;
  const [, y1, x1] = region.end;
  const ny = y1 - y0, nx = x1 - x0;
  const L = EM_LEVELS;
  const rng = mulberry32(hashInts(seed, 0x7e51c, cl.key, z));
  const n = Math.round((cl.density * 2 * cl.halfL * cl.depth) / 70);
  const { f } = cl;
  for (let i = 0; i < n; i++) {
    const r = uniform(rng, 2.5, 4);
    const t = uniform(rng, -cl.halfL, cl.halfL);
    const s = cl.side * (cl.gap + r + uniform(rng, 0, cl.depth));
    const vy = f.cy + t * f.uy + s * f.ny, vx = f.cx + t * f.ux + s * f.nx;
    const ya = Math.max(y0, Math.floor(vy - r - 1)), yb = Math.min(y1 - 1, Math.ceil(vy + r + 1));
    const xa = Math.max(x0, Math.floor(vx - r - 1)), xb = Math.min(x1 - 1, Math.ceil(vx + r + 1));
    for (let y = ya; y <= yb; y++) {
      const row = ((z - z0) * ny + (y - y0)) * nx - x0;
      for (let x = xa; x <= xb; x++) {
        const d = Math.hypot(y - vy, x - vx);
        const rim = clamp01(1.2 - Math.abs(d - r));
        const lumen = clamp01(r - 0.5 - d);
        if (rim <= 0 && lumen <= 0) continue;
        let v = img[row + x];
        v = v + (L.vesicleLumen - v) * lumen * 0.6;
        v = v + (L.vesicleRim - v) * rim;
        img[row + x] = Math.round(v);
      }
    }
  }
}

function paintClouds(p: EmSceneParams, o: Objects, region: Box, img: Uint8Array): void {
  for (let z = region.begin[0]; z < region.end[0]; z++) {
    for (const c of o.clefts) if (z >= c.z0 && z < c.z1) paintVesicles(p.seed, bandCloud(c, cleftFrame(p.seed, c, z)), z, region, img);
    for (const c of o.appositions) {
      if (z >= c.z0 && z < c.z1 && unit(hashStep(c.key, 3)) < EM_DISTRACTORS.appositionCloud) {
        paintVesicles(p.seed, bandCloud(c, cleftFrame(p.seed, c, z)), z, region, img);
      }
    }
    for (const c of o.clouds) {
      if (z < c.z0 || z >= c.z1) continue;
      paintVesicles(p.seed, { f: c.frame, halfL: c.halfL, side: (c.key & 1) === 0 ? 1 : -1, gap: 3, depth: 12 + 10 * unit(hashStep(c.key, 1)), density: 0.4 + 0.6 * unit(hashStep(c.key, 2)), key: c.key }, z, region, img);
    }
  }
}

export function renderEmImage(p: EmSceneParams, region: Box, out: Uint8Array): void {
  renderBackground(p, region, out);
  if (isEmpty(region)) return;
  const o = emObjects(p, region);
  const dr = drift(p.seed, region);
  // Order: vesicles, then appositions, then clefts, so a cleft's voxels always show its texture.
  paintClouds(p, o, region, out);
  for (const c of o.appositions) paintBand(p, c, 0, region, dr, out, undefined);
  const L = EM_LEVELS;
  for (const c of o.clefts) {
    const checker = L.cleftCheckerMin + (L.cleftCheckerMax - L.cleftCheckerMin) * unit(hashStep(c.key, 4));
    paintBand(p, c, checker, region, dr, out, undefined);
  }
  applySections(p.seed, region, out);
}

export function renderEmLabels(p: EmSceneParams, region: Box, out: Uint8Array): void {
  if (isEmpty(region)) return;
  for (const c of emClefts(p, region)) paintBand(p, c, 0, region, undefined, undefined, out);
}
