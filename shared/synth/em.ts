// Synthetic electron-microscopy volumes (uint8, 40×4×4 nm): neurite-like Voronoi cells with
// dark membranes, textured cytoplasm, smooth illumination drift, and sparse synaptic-cleft-like
// objects lying on membranes.
//
// The task is built so that a network is needed: a cleft has the *mean* intensity of a
// membrane (membranes cover ~6 % of the volume, clefts ~0.5 %), so no intensity threshold
// isolates it, but it is a crisp, thicker band (4–6 px) carrying a fine checker pattern with
// little noise, which a small U-Net learns easily. Its edges are hard (no blur), so the label
// is exactly the set of voxels drawn with the cleft texture.
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
  cleftSigma: 4,
  /** Half amplitude of the cleft's checker pattern (kept inside the membrane spread). */
  cleftChecker: 22,
  /** Amplitude of the cytoplasm's smooth granular texture. */
  texture: 9,
} as const;

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
function measure(seed: number, shape: Vec3, c: Omit<EmCleft, 'bbox' | 'voxels'>): { bbox: Box; voxels: number; inside: boolean } {
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

/** The clefts generated by one tile (a pure function of seed, shape, fg and the tile index). */
export function tileClefts(p: EmSceneParams, tz: number, ty: number, tx: number): EmCleft[] {
  const [Z, Y, X] = p.shape;
  const tb = intersect(
    box([tz * EM_TILE[0], ty * EM_TILE[1], tx * EM_TILE[2]], [(tz + 1) * EM_TILE[0], (ty + 1) * EM_TILE[1], (tx + 1) * EM_TILE[2]]),
    box([0, 0, 0], [Z, Y, X]),
  );
  if (isEmpty(tb) || p.fg <= 0) return [];
  const rng = mulberry32(hashInts(p.seed, 0xc1ef7, tz, ty, tx));
  const budget = p.fg * (tb.end[0] - tb.begin[0]) * (tb.end[1] - tb.begin[1]) * (tb.end[2] - tb.begin[2]);
  const out: EmCleft[] = [];
  let total = 0;
  for (let attempt = 0; attempt < 60 + 8 * Math.ceil(budget / 600) && total < budget; attempt++) {
    const nz = Math.min(Z, randInt(rng, 2, 6));
    const z0 = Math.min(tb.begin[0] + Math.floor(rng() * (tb.end[0] - tb.begin[0])), Z - nz);
    const py = uniform(rng, tb.begin[1], tb.end[1]);
    const px = uniform(rng, tb.begin[2], tb.end[2]);
    const cellA: [number, number] = [Math.floor(py / EM_CELL), Math.floor(px / EM_CELL)];
    const cellB: [number, number] = rng() < 0.5 ? [cellA[0], cellA[1] + 1] : [cellA[0] + 1, cellA[1]];
    let length = uniform(rng, 20, 60);
    const thickness = uniform(rng, 4, 6);
    const offset = uniform(rng, -6, 6);
    const ok = (l: number) => {
      for (let z = z0; z < z0 + nz; z++) if (!validCleft(p.seed, { cellA, cellB, offset, length: l }, z)) return false;
      return true;
    };
    while (length >= 20 && !ok(length)) length *= 0.85;
    if (length < 20) continue;
    const base = { z0, z1: z0 + nz, cellA, cellB, offset, length, thickness };
    const m = measure(p.seed, p.shape, base);
    if (!m.inside || m.voxels === 0) continue;
    if (out.some((o) => overlaps(o.bbox, m.bbox, [1, 3, 3]))) continue;
    if (total + m.voxels > budget && rng() >= (budget - total) / m.voxels) break;
    out.push({ ...base, bbox: m.bbox, voxels: m.voxels });
    total += m.voxels;
  }
  return out;
}

/** How far (voxels) a cleft's bbox can reach outside the tile that generated it. */
const REACH: Vec3 = [EM_TILE[0] + 8, 2 * EM_CELL + 64, 2 * EM_CELL + 64];

/** All clefts whose bbox intersects `region`, in a fixed global order (tile raster, then tile order). */
export function emClefts(p: EmSceneParams, region: Box): EmCleft[] {
  const out: EmCleft[] = [];
  const t0: number[] = [], t1: number[] = [];
  for (let k = 0; k < 3; k++) {
    t0.push(Math.max(0, Math.floor((region.begin[k] - REACH[k]) / EM_TILE[k])));
    t1.push(Math.min(Math.ceil(p.shape[k] / EM_TILE[k]) - 1, Math.floor((region.end[k] - 1 + REACH[k]) / EM_TILE[k])));
  }
  for (let tz = t0[0]; tz <= t1[0]; tz++) {
    for (let ty = t0[1]; ty <= t1[1]; ty++) {
      for (let tx = t0[2]; tx <= t1[2]; tx++) {
        for (const c of tileClefts(p, tz, ty, tx)) if (!isEmpty(intersect(c.bbox, region))) out.push(c);
      }
    }
  }
  return out;
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

/** Paint clefts into `img` (texture) and/or `lab` (1) over `region`. */
function paintClefts(p: EmSceneParams, region: Box, img: Uint8Array | undefined, lab: Uint8Array | undefined): void {
  const [z0, y0, x0] = region.begin;
  const [z1, y1, x1] = region.end;
  const ny = y1 - y0, nx = x1 - x0;
  const L = EM_LEVELS;
  const clefts = emClefts(p, region);
  if (clefts.length === 0) return;
  const dr = img ? drift(p.seed, region) : undefined;
  for (const c of clefts) {
    const halfL = c.length / 2, halfT = c.thickness / 2;
    for (let z = Math.max(z0, c.z0); z < Math.min(z1, c.z1); z++) {
      const f = cleftFrame(p.seed, c, z);
      let [r0, r1] = rowRange(f, halfL, halfT);
      r0 = Math.max(r0, y0);
      r1 = Math.min(r1, y1 - 1);
      const dz = dr ? dr.z(z) : 0;
      const hn = hashInts(p.seed, 0x9015e, z);
      for (let y = r0; y <= r1; y++) {
        const [s0, s1] = rowSpan(f, halfL, halfT, y);
        const a = Math.max(s0, x0), b = Math.min(s1, x1 - 1);
        if (a > b) continue;
        const row = ((z - z0) * ny + (y - y0)) * nx - x0;
        if (lab) lab.fill(1, row + a, row + b + 1);
        if (img && dr) {
          const hy = hashStep(hn, y);
          const base = L.membrane + dz + dr.y[y - y0];
          for (let x = a; x <= b; x++) {
            const chk = ((z + y + x) & 1) === 0 ? L.cleftChecker : -L.cleftChecker;
            const v = base + dr.x[x - x0] + chk + L.cleftSigma * gauss(hashStep(hy, x));
            img[row + x] = v <= 0 ? 0 : v >= 255 ? 255 : (v + 0.5) | 0;
          }
        }
      }
    }
  }
}

export function renderEmImage(p: EmSceneParams, region: Box, out: Uint8Array): void {
  renderBackground(p, region, out);
  paintClefts(p, region, out, undefined);
}

export function renderEmLabels(p: EmSceneParams, region: Box, out: Uint8Array): void {
  paintClefts(p, region, undefined, out);
}
