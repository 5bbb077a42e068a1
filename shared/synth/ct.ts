// Synthetic CT volumes (uint16 = HU + 1024, 2.5×0.8×0.8 mm): a body (fat rim, soft tissue),
// lungs, a spine and several organ-like ellipsoids, with sparse small lesions inside organs
// and soft tissue.
//
// The task needs a network: a lesion's mean HU differs from its host organ by 35–60 HU but lies
// inside the range spanned by the (far more abundant) organs, so no global threshold isolates
// it. What gives it away is local and crisp: it is a compact blob that stands out from the
// organ around it, it carries a fine 3D checker pattern and is much less noisy. Edges are hard.
//
// The object list is explicit (CT volumes are small enough); every voxel is a pure function of
// its absolute (z, y, x), the seed and that list, so any region renders on its own.
import { type Box, type Vec3, box, intersect, isEmpty } from '../geometry/box.ts';
import { gauss, hashInts, hashStep, mulberry32, uniform } from './random.ts';

export interface CtEllipsoid {
  /** Centre [z, y, x] (voxels, may be fractional). */
  readonly center: Vec3;
  /** Semi-axes [z, a, b] (voxels): `a` along the in-plane direction `angle`, `b` across it. */
  readonly radii: Vec3;
  /** In-plane rotation (radians) of the `a` axis from the y axis towards x. */
  readonly angle: number;
}

export interface CtTissue extends CtEllipsoid {
  readonly name: string;
  /** Mean Hounsfield units. */
  readonly hu: number;
}

export interface CtLesion extends CtEllipsoid {
  readonly hu: number;
  /** Name of the tissue it sits in. */
  readonly host: string;
  readonly bbox: Box;
  readonly voxels: number;
}

export interface CtAnatomy {
  /** Painted in order (later ones cover earlier ones) over air. */
  readonly tissues: readonly CtTissue[];
  readonly lesions: readonly CtLesion[];
}

export const CT_LEVELS = {
  air: -1000,
  fat: -100,
  soft: 40,
  lung: -820,
  bone: 650,
  /** Organ means are spread over [organMin, organMax]; lesion means stay inside this range. */
  organMin: 20,
  organMax: 170,
  sigma: 15,
  lesionSigma: 4,
  lesionChecker: 25,
  /** Lesion contrast against its host: |Δ| in [min, max] HU. */
  lesionDeltaMin: 35,
  lesionDeltaMax: 60,
} as const;

/** HU → stored uint16 value offset. */
export const CT_OFFSET = 1024;

// ---------------------------------------------------------------------------------------------
// Ellipsoid geometry.

/** Inclusive integer x-interval of the ellipsoid in row (z, y); lo > hi when empty. */
export function ellipsoidSpan(e: CtEllipsoid, z: number, y: number): [number, number] {
  const dz = (z - e.center[0]) / e.radii[0];
  const rem = 1 - dz * dz;
  if (rem < 0) return [1, 0];
  const c = Math.cos(e.angle), s = Math.sin(e.angle);
  const ia = 1 / (e.radii[1] * e.radii[1]), ib = 1 / (e.radii[2] * e.radii[2]);
  const dy = y - e.center[1];
  // a = (dy c + t s) / ra, b = (−dy s + t c) / rb, t = x − cx: a² + b² ≤ rem.
  const A = s * s * ia + c * c * ib;
  const B = 2 * dy * c * s * (ia - ib);
  const C = dy * dy * (c * c * ia + s * s * ib) - rem;
  const disc = B * B - 4 * A * C;
  if (disc < 0) return [1, 0];
  const sq = Math.sqrt(disc);
  return [Math.ceil(e.center[2] + (-B - sq) / (2 * A)), Math.floor(e.center[2] + (-B + sq) / (2 * A))];
}

export function ellipsoidContains(e: CtEllipsoid, z: number, y: number, x: number): boolean {
  const c = Math.cos(e.angle), s = Math.sin(e.angle);
  const dz = (z - e.center[0]) / e.radii[0];
  const dy = y - e.center[1], dx = x - e.center[2];
  const a = (dy * c + dx * s) / e.radii[1];
  const b = (-dy * s + dx * c) / e.radii[2];
  return dz * dz + a * a + b * b <= 1;
}

/** Half extents [z, y, x] of the ellipsoid's axis-aligned bounding box. */
function halfExtent(e: CtEllipsoid): Vec3 {
  const c = Math.cos(e.angle), s = Math.sin(e.angle);
  return [
    e.radii[0],
    Math.hypot(e.radii[1] * c, e.radii[2] * s),
    Math.hypot(e.radii[1] * s, e.radii[2] * c),
  ];
}

function ellipsoidBox(e: CtEllipsoid): Box {
  const h = halfExtent(e);
  return box(
    [Math.floor(e.center[0] - h[0]), Math.floor(e.center[1] - h[1]), Math.floor(e.center[2] - h[2])],
    [Math.ceil(e.center[0] + h[0]) + 1, Math.ceil(e.center[1] + h[1]) + 1, Math.ceil(e.center[2] + h[2]) + 1],
  );
}

function measure(e: CtEllipsoid, shape: Vec3): { bbox: Box; voxels: number; inside: boolean } {
  const eb = ellipsoidBox(e);
  let voxels = 0, inside = true;
  const lo = [Infinity, Infinity, Infinity], hi = [-Infinity, -Infinity, -Infinity];
  for (let z = eb.begin[0]; z < eb.end[0]; z++) {
    for (let y = eb.begin[1]; y < eb.end[1]; y++) {
      let [a, b] = ellipsoidSpan(e, z, y);
      if (a > b) continue;
      if (z < 0 || z >= shape[0] || y < 0 || y >= shape[1] || a < 0 || b >= shape[2]) inside = false;
      if (z < 0 || z >= shape[0] || y < 0 || y >= shape[1]) continue;
      a = Math.max(a, 0);
      b = Math.min(b, shape[2] - 1);
      if (a > b) continue;
      voxels += b - a + 1;
      lo[0] = Math.min(lo[0], z); hi[0] = Math.max(hi[0], z);
      lo[1] = Math.min(lo[1], y); hi[1] = Math.max(hi[1], y);
      lo[2] = Math.min(lo[2], a); hi[2] = Math.max(hi[2], b);
    }
  }
  if (voxels === 0) return { bbox: box([0, 0, 0], [0, 0, 0]), voxels, inside: false };
  return { bbox: box([lo[0], lo[1], lo[2]], [hi[0] + 1, hi[1] + 1, hi[2] + 1]), voxels, inside };
}

// ---------------------------------------------------------------------------------------------
// Scene.

/** Index of the tissue showing at a point (the last painted one containing it), −1 for air. */
function ownerAt(tissues: readonly CtTissue[], z: number, y: number, x: number): number {
  for (let i = tissues.length - 1; i >= 0; i--) if (ellipsoidContains(tissues[i], z, y, x)) return i;
  return -1;
}

/**
 * Anatomy and lesions for a volume. `anisotropy` is the z spacing over the in-plane spacing
 * (lesions are round in millimetres).
 */
export function ctAnatomy(seed: number, shape: Vec3, fg: number, anisotropy: number): CtAnatomy {
  const [Z, Y, X] = shape;
  const L = CT_LEVELS;
  const rng = mulberry32(hashInts(seed, 0xc7a11));
  const tissues: CtTissue[] = [];
  const cz = (Z - 1) / 2, cy = (Y - 1) / 2 + uniform(rng, -0.02, 0.02) * Y, cx = (X - 1) / 2 + uniform(rng, -0.02, 0.02) * X;
  const ry = 0.42 * Y * uniform(rng, 0.9, 1), rx = 0.46 * X * uniform(rng, 0.9, 1);
  const rz = Math.max(Z * uniform(rng, 0.8, 1.2), 1);
  const fat = Math.max(1.5, 0.07 * Math.min(ry, rx));
  tissues.push({ name: 'fat', hu: L.fat, center: [cz, cy, cx], radii: [rz, ry, rx], angle: 0 });
  const sry = ry - fat, srx = rx - fat;
  tissues.push({ name: 'soft', hu: L.soft, center: [cz, cy, cx], radii: [rz * 0.98, sry, srx], angle: 0 });
  const lungZ = uniform(rng, 0.1, 0.3) * Z;
  for (const side of [-1, 1]) {
    tissues.push({
      name: side < 0 ? 'lung-right' : 'lung-left', hu: L.lung,
      center: [lungZ, cy - 0.1 * sry, cx + side * 0.45 * srx],
      radii: [Math.max(2, 0.45 * Z), 0.55 * sry, 0.33 * srx], angle: uniform(rng, -0.15, 0.15),
    });
  }
  const n = 4 + Math.floor(rng() * 3);
  const hus: number[] = [];
  for (let i = 0; i < n; i++) hus.push(L.organMin + ((L.organMax - L.organMin) * (i + uniform(rng, 0.15, 0.85))) / n);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    const t = hus[i]; hus[i] = hus[j]; hus[j] = t;
  }
  const m = Math.min(sry, srx);
  for (let i = 0; i < n; i++) {
    const ang = uniform(rng, 0, 2 * Math.PI), rad = Math.sqrt(rng()) * 0.5;
    tissues.push({
      name: `organ-${i + 1}`, hu: hus[i],
      center: [uniform(rng, 0.2, 0.8) * Z, cy + Math.cos(ang) * rad * sry, cx + Math.sin(ang) * rad * srx],
      radii: [Math.max(2.5, uniform(rng, 0.3, 0.55) * Z), uniform(rng, 0.22, 0.4) * m, uniform(rng, 0.22, 0.4) * m],
      angle: uniform(rng, 0, Math.PI),
    });
  }
  tissues.push({
    name: 'spine', hu: L.bone, center: [cz, cy + 0.72 * sry, cx],
    radii: [Math.max(4 * Z, 4), Math.max(1.5, 0.1 * m), Math.max(1.5, 0.12 * m)], angle: 0,
  });

  // Lesions: inside one host tissue (organs, or soft tissue), fully in the volume, not touching.
  const hosts = tissues.map((t, i) => ({ t, i })).filter(({ t }) => t.name === 'soft' || t.name.startsWith('organ'));
  const hostWeight = hosts.map(({ t }) => (t.name === 'soft' ? 0 : t.radii[0] * t.radii[1] * t.radii[2]));
  const organTotal = hostWeight.reduce((a, b) => a + b, 0);
  const lesions: CtLesion[] = [];
  const budget = fg * Z * Y * X;
  let total = 0;
  const zr = 1 / anisotropy;
  for (let attempt = 0; attempt < 400 + 80 * Math.ceil(budget / 300) && total < budget; attempt++) {
    let h = hosts.findIndex(({ t }) => t.name === 'soft');
    if (organTotal > 0 && rng() < 0.75) {
      let r = rng() * organTotal;
      for (let k = 0; k < hosts.length; k++) {
        r -= hostWeight[k];
        if (hostWeight[k] > 0 && r < 0) { h = k; break; }
      }
    }
    const host = hosts[h];
    const r = uniform(rng, 4, 10);
    const radii: Vec3 = [Math.max(1.6, r * zr * uniform(rng, 0.8, 1.4)), r * uniform(rng, 0.75, 1.25), r * uniform(rng, 0.75, 1.25)];
    const angle = uniform(rng, 0, Math.PI);
    const hb = ellipsoidBox(host.t);
    const center: Vec3 = [uniform(rng, hb.begin[0], hb.end[0]), uniform(rng, hb.begin[1], hb.end[1]), uniform(rng, hb.begin[2], hb.end[2])];
    let sign = rng() < 0.5 ? -1 : 1;
    const delta = uniform(rng, L.lesionDeltaMin, L.lesionDeltaMax);
    const lesion0 = { center, radii, angle };
    // All of it (plus a voxel of margin) must show the host tissue.
    const c = Math.cos(angle), s = Math.sin(angle);
    let ok = true;
    for (const [pz, pa, pb] of [[0, 0, 0], [1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1],
      [0.7, 0.7, 0], [-0.7, 0.7, 0], [0.7, -0.7, 0], [-0.7, -0.7, 0], [0, 0.7, 0.7], [0, -0.7, 0.7], [0, 0.7, -0.7], [0, -0.7, -0.7]]) {
      const a = pa * (radii[1] + 1.5), b = pb * (radii[2] + 1.5);
      const q: Vec3 = [center[0] + pz * (radii[0] + 1), center[1] + a * c - b * s, center[2] + a * s + b * c];
      if (ownerAt(tissues, q[0], q[1], q[2]) !== host.i) { ok = false; break; }
    }
    if (!ok) continue;
    const meas = measure(lesion0, shape);
    if (!meas.inside || meas.voxels === 0) continue;
    if (lesions.some((o) => !isEmpty(intersect(grown(o.bbox, 2), meas.bbox)))) continue;
    let hu = host.t.hu + sign * delta;
    if (hu < L.organMin || hu > L.organMax) {
      sign = -sign;
      hu = host.t.hu + sign * delta;
    }
    hu = Math.min(L.organMax, Math.max(L.organMin, hu));
    if (total + meas.voxels > budget && rng() >= (budget - total) / meas.voxels) break;
    lesions.push({ ...lesion0, hu, host: host.t.name, bbox: meas.bbox, voxels: meas.voxels });
    total += meas.voxels;
  }
  return { tissues, lesions };
}

function grown(b: Box, m: number): Box {
  return box([b.begin[0] - m, b.begin[1] - m, b.begin[2] - m], [b.end[0] + m, b.end[1] + m, b.end[2] + m]);
}

// ---------------------------------------------------------------------------------------------
// Rendering.

function toU16(v: number): number {
  return v <= 0 ? 0 : v >= 65535 ? 65535 : (v + 0.5) | 0;
}

export function renderCtImage(seed: number, a: CtAnatomy, region: Box, out: Uint16Array): void {
  const [z0, y0, x0] = region.begin;
  const [z1, y1, x1] = region.end;
  const ny = y1 - y0, nx = x1 - x0;
  const L = CT_LEVELS;
  const hu = new Float64Array(nx);
  const tissues = a.tissues.filter((t) => overlapsRegion(ellipsoidBox(t), region));
  const lesions = a.lesions.filter((l) => overlapsRegion(l.bbox, region));
  for (let z = z0; z < z1; z++) {
    const hz = hashInts(seed, 0xc7015e, z);
    for (let y = y0; y < y1; y++) {
      hu.fill(L.air);
      for (const t of tissues) {
        const [s0, s1] = ellipsoidSpan(t, z, y);
        const p = Math.max(s0, x0), q = Math.min(s1, x1 - 1);
        if (p <= q) hu.fill(t.hu, p - x0, q - x0 + 1);
      }
      const hy = hashStep(hz, y);
      const row = ((z - z0) * ny + (y - y0)) * nx;
      for (let i = 0; i < nx; i++) out[row + i] = toU16(hu[i] + CT_OFFSET + L.sigma * gauss(hashStep(hy, x0 + i)));
      for (const l of lesions) {
        if (z < l.bbox.begin[0] || z >= l.bbox.end[0] || y < l.bbox.begin[1] || y >= l.bbox.end[1]) continue;
        const [s0, s1] = ellipsoidSpan(l, z, y);
        const p = Math.max(s0, x0), q = Math.min(s1, x1 - 1);
        for (let x = p; x <= q; x++) {
          const chk = ((z + y + x) & 1) === 0 ? L.lesionChecker : -L.lesionChecker;
          out[row + x - x0] = toU16(l.hu + CT_OFFSET + chk + L.lesionSigma * gauss(hashStep(hy, x)));
        }
      }
    }
  }
}

export function renderCtLabels(a: CtAnatomy, region: Box, out: Uint8Array): void {
  const [z0, y0, x0] = region.begin;
  const [z1, y1, x1] = region.end;
  const ny = y1 - y0, nx = x1 - x0;
  for (const l of a.lesions) {
    const r = intersect(l.bbox, region);
    if (isEmpty(r)) continue;
    for (let z = r.begin[0]; z < r.end[0]; z++) {
      for (let y = r.begin[1]; y < r.end[1]; y++) {
        const [s0, s1] = ellipsoidSpan(l, z, y);
        const p = Math.max(s0, x0), q = Math.min(s1, x1 - 1);
        if (p > q) continue;
        const row = ((z - z0) * ny + (y - y0)) * nx - x0;
        out.fill(1, row + p, row + q + 1);
      }
    }
  }
  void z1;
}

function overlapsRegion(b: Box, r: Box): boolean {
  return !isEmpty(intersect(b, r));
}
