// Synthetic CT volumes (uint16 = HU + 1024, 2.5×0.8×0.8 mm): a body (fat rim, soft tissue),
// lungs, a spine and several organ-like ellipsoids, with sparse lesions inside organs and soft
// tissue (the label), unlabelled look-alikes, and the scanner's slice-to-slice imperfections.
//
// The task needs a network, and not a trivial one. A lesion's mean HU differs from its host by
// 20–60 HU (faint ones included) but lies inside the range spanned by the (far more abundant)
// organs, so no global threshold isolates it. Sizes are log-uniform (in-plane radius 2–14
// voxels: small ones are frequent and hard). What gives a lesion away is local: a faint fine 3D
// checker texture (±10–14 HU) and somewhat lower noise (σ 9.5 vs 15) than tissue — weak
// enough that a voxel must be judged from its neighbourhood. Edges are soft in the image
// (partial volume: intensity blends into the host over about a voxel) while the label stays the
// hard ellipsoid, so boundary voxels are genuinely ambiguous.
//
// Unlabelled distractors make "a blob with lesion-like contrast" insufficient (none comes within
// 2 voxels of a lesion's box; their number scales with the body's volume):
// - vessels: long curving tubes (radius 1.5–3 voxels) through organs and soft tissue, in-plane or
//   across sections, with lesion-like HU and tissue noise: in a single section a vessel crossing
//   it looks like a small round lesion; only 3D continuity and the missing texture reject it;
// - cysts: round soft-edged blobs with lesion-like size and contrast but tissue noise and no
//   checker: shape and contrast alone do not decide, the texture does;
// - calcifications: small bright blobs (250–600 HU), to be ignored despite their strong edges.
// Scanner effects, pure functions of (seed, z): a slow sinusoidal HU drift across sections (10–30
// HU) plus small per-section jitter, and a mild per-section gain about the soft-tissue level, so
// absolute HU is not a reliable cue; and rare defective sections (about 1.5 %) with heavy extra
// noise and/or streaks (bright and dark lines through a point), which must not produce false
// positives or wreck the neighbouring sections' predictions.
//
// The object lists are explicit (CT volumes are small enough); every voxel is a pure function of
// its absolute (z, y, x), the seed and those lists, so any region renders on its own.
import { type Box, type Vec3, box, intersect, isEmpty } from '../geometry/box.ts';
import { gauss, hashInts, hashStep, mulberry32, uniform, unit } from './random.ts';

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
  /** Amplitude (HU) of its ± checker texture. */
  readonly checker: number;
  /** Name of the tissue it sits in. */
  readonly host: string;
  /** Tight box of the label (the hard ellipsoid); the image's soft rim reaches a voxel beyond. */
  readonly bbox: Box;
  readonly voxels: number;
}

/** An unlabelled blob painted in the image only: a cyst (lesion-like) or a calcification. */
export interface CtBlob extends CtEllipsoid {
  readonly kind: 'cyst' | 'calcification';
  readonly hu: number;
  /** Box of the painted voxels (soft rim included). */
  readonly bbox: Box;
}

/** An unlabelled tube: capsules of `radius` around the polyline `points`, painted in the image only. */
export interface CtVessel {
  readonly kind: 'vessel';
  readonly hu: number;
  /** In-plane voxels. */
  readonly radius: number;
  /** z voxel size over in-plane voxel size: distances are measured with z scaled by it. */
  readonly zScale: number;
  /** Centre line [z, y, x] (voxels). */
  readonly points: readonly Vec3[];
  /** Box of the painted voxels (soft rim included). */
  readonly bbox: Box;
}

export type CtDistractor = CtVessel | CtBlob;

export interface CtAnatomy {
  /** Painted in order (later ones cover earlier ones) over air. */
  readonly tissues: readonly CtTissue[];
  readonly lesions: readonly CtLesion[];
  /** Unlabelled look-alikes (image only), never within 2 voxels of a lesion's box. */
  readonly distractors: readonly CtDistractor[];
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
  /** Tissue noise σ (HU); vessels, cysts and calcifications have it too. */
  sigma: 15,
  lesionSigma: 9.5,
  /** Lesion checker amplitude: uniform in [min, max] HU per lesion. */
  lesionCheckerMin: 10,
  lesionCheckerMax: 14,
  /** Lesion (and cyst, vessel) contrast against its host: |Δ| in [min, max] HU. */
  lesionDeltaMin: 20,
  lesionDeltaMax: 60,
  /** Lesion in-plane radius, log-uniform in [min, max] voxels. */
  lesionRadiusMin: 2,
  lesionRadiusMax: 14,
  /** Width (voxels) over which lesions and distractors blend into their host (partial volume). */
  rim: 1,
  vesselRadiusMin: 1.5,
  vesselRadiusMax: 3,
  /** Vessel length (in-plane voxels, z scaled to in-plane units). */
  vesselLengthMin: 30,
  vesselLengthMax: 120,
  cystRadiusMin: 2,
  cystRadiusMax: 10,
  calcRadiusMin: 1,
  calcRadiusMax: 2.5,
  calcHuMin: 250,
  calcHuMax: 600,
  /** Per-section offset: sine over z of amplitude in [min, max] HU, period in [min, max] sections. */
  driftMin: 10,
  driftMax: 30,
  driftPeriodMin: 40,
  driftPeriodMax: 160,
  /** Per-section offset jitter σ (HU). */
  driftJitter: 4,
  /** Per-section gain about `soft`: 1 + sine of amplitude up to gainAmp + jitter of σ gainJitter. */
  gainAmp: 0.05,
  gainJitter: 0.01,
  /** Probability that a section is defective. */
  defectRate: 0.015,
  /** Noise σ of a noisy defective section, as a multiple of `sigma`. */
  defectNoise: 3,
  /** Streak amplitude |HU| in [min, max]. */
  streakMin: 80,
  streakMax: 300,
} as const;

/** Distractors per 10⁶ voxels of body (expected counts). */
export const CT_DISTRACTOR_DENSITY = { vessel: 10, cyst: 6, calcification: 10 } as const;

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
  const hosts = hostTissues(tissues);
  const lesions: CtLesion[] = [];
  const budget = fg * Z * Y * X;
  let total = 0;
  const zr = 1 / anisotropy;
  let overshoots = 0;
  const taken = new BoxIndex(); // lesion boxes grown by the 2-voxel gap
  for (let attempt = 0; attempt < 400 + 80 * Math.ceil(budget / 100) && total < budget && overshoots < 30; attempt++) {
    const host = pickHost(rng, hosts);
    const r = logUniform(rng, L.lesionRadiusMin, L.lesionRadiusMax);
    const radii: Vec3 = [Math.max(1.6, r * zr * uniform(rng, 0.8, 1.4)), r * uniform(rng, 0.75, 1.25), r * uniform(rng, 0.75, 1.25)];
    const angle = uniform(rng, 0, Math.PI);
    const hb = ellipsoidBox(host.t);
    const center: Vec3 = [uniform(rng, hb.begin[0], hb.end[0]), uniform(rng, hb.begin[1], hb.end[1]), uniform(rng, hb.begin[2], hb.end[2])];
    const hu = contrastHu(rng, host.t.hu);
    const checker = uniform(rng, L.lesionCheckerMin, L.lesionCheckerMax);
    const lesion0 = { center, radii, angle };
    // All of it (plus a voxel of margin) must show the host tissue.
    if (!fitsHost(tissues, host.i, lesion0)) continue;
    const meas = measure(lesion0, shape);
    if (!meas.inside || meas.voxels === 0) continue;
    if (taken.meets(meas.bbox)) continue;
    // One that overshoots the budget is kept only if that lands nearer it than stopping short.
    if (total + meas.voxels - budget > budget - total) { overshoots++; continue; }
    lesions.push({ ...lesion0, hu, checker, host: host.t.name, bbox: meas.bbox, voxels: meas.voxels });
    taken.add(grown(meas.bbox, 2));
    total += meas.voxels;
  }
  return { tissues, lesions, distractors: ctDistractors(seed, Z, anisotropy, tissues, lesions) };
}

/** Boxes bucketed on a coarse grid: whether a box meets any stored one, without a full scan. */
class BoxIndex {
  private readonly cells = new Map<number, Box[]>();
  private static readonly CELL = 32;

  private each(b: Box, f: (key: number) => boolean | void): boolean {
    const C = BoxIndex.CELL, o = 16; // cells may start slightly below 0
    const lo = b.begin.map((v) => Math.floor(v / C) + o), hi = b.end.map((v) => Math.floor((v - 1) / C) + o);
    for (let z = lo[0]; z <= hi[0]; z++) {
      for (let y = lo[1]; y <= hi[1]; y++) {
        for (let x = lo[2]; x <= hi[2]; x++) if (f((z * 65536 + y) * 65536 + x)) return true;
      }
    }
    return false;
  }

  add(b: Box): void {
    if (isEmpty(b)) return;
    this.each(b, (k) => {
      const l = this.cells.get(k);
      if (l) l.push(b);
      else this.cells.set(k, [b]);
    });
  }

  meets(b: Box): boolean {
    if (isEmpty(b)) return false;
    return this.each(b, (k) => this.cells.get(k)?.some((o) => !isEmpty(intersect(o, b))));
  }
}

interface Host { readonly t: CtTissue; readonly i: number; readonly w: number }

/** Tissues that host lesions and distractors: soft tissue and organs (weight: organ volume). */
function hostTissues(tissues: readonly CtTissue[]): Host[] {
  return tissues.flatMap((t, i) => (t.name === 'soft' || t.name.startsWith('organ')
    ? [{ t, i, w: t.name === 'soft' ? 0 : t.radii[0] * t.radii[1] * t.radii[2] }] : []));
}

/** Soft tissue a quarter of the time (or when there are no organs), else an organ by volume. */
function pickHost(rng: () => number, hosts: readonly Host[]): Host {
  const organTotal = hosts.reduce((a, h) => a + h.w, 0);
  let h = hosts.findIndex(({ t }) => t.name === 'soft');
  if (organTotal > 0 && rng() < 0.75) {
    let r = rng() * organTotal;
    for (let k = 0; k < hosts.length; k++) {
      r -= hosts[k].w;
      if (hosts[k].w > 0 && r < 0) { h = k; break; }
    }
  }
  return hosts[h];
}

function logUniform(rng: () => number, lo: number, hi: number): number {
  return lo * Math.exp(rng() * Math.log(hi / lo));
}

/** A mean HU 20–60 above or below the host's, inside the organ range. */
function contrastHu(rng: () => number, host: number): number {
  const L = CT_LEVELS;
  let sign = rng() < 0.5 ? -1 : 1;
  const delta = uniform(rng, L.lesionDeltaMin, L.lesionDeltaMax);
  let hu = host + sign * delta;
  if (hu < L.organMin || hu > L.organMax) {
    sign = -sign;
    hu = host + sign * delta;
  }
  return Math.min(L.organMax, Math.max(L.organMin, hu));
}

/** Whether the ellipsoid, plus a margin (1.5 voxels in-plane, 1 in z), shows only tissue `host`. */
function fitsHost(tissues: readonly CtTissue[], host: number, e: CtEllipsoid): boolean {
  const { center, radii, angle } = e;
  const c = Math.cos(angle), s = Math.sin(angle);
  for (const [pz, pa, pb] of FIT_PROBES) {
    const a = pa * (radii[1] + 1.5), b = pb * (radii[2] + 1.5);
    if (ownerAt(tissues, center[0] + pz * (radii[0] + 1), center[1] + a * c - b * s, center[2] + a * s + b * c) !== host) return false;
  }
  return true;
}

const FIT_PROBES: readonly Vec3[] = [[0, 0, 0], [1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1],
  [0.7, 0.7, 0], [-0.7, 0.7, 0], [0.7, -0.7, 0], [-0.7, -0.7, 0], [0, 0.7, 0.7], [0, -0.7, 0.7], [0, 0.7, -0.7], [0, -0.7, -0.7]];

// ---------------------------------------------------------------------------------------------
// Distractors.

/**
 * Unlabelled look-alikes for a scene with `Z` sections: a pure function of the seed, the
 * tissues and the lesions (which they keep 2 voxels away from). Counts follow the body volume.
 */
export function ctDistractors(seed: number, Z: number, anisotropy: number, tissues: readonly CtTissue[],
  lesions: readonly CtLesion[]): CtDistractor[] {
  const L = CT_LEVELS;
  const out: CtDistractor[] = [];
  const hosts = hostTissues(tissues);
  if (hosts.length === 0 || tissues.length === 0) return out;
  const rng = mulberry32(hashInts(seed, 0xd157ac7));
  // Body voxels inside the sections [0, Z): the fat ellipsoid's cross-sections.
  const body = tissues[0];
  let bodyVoxels = 0;
  for (let z = 0; z < Z; z++) {
    const dz = (z - body.center[0]) / body.radii[0];
    if (dz * dz < 1) bodyVoxels += Math.PI * body.radii[1] * body.radii[2] * (1 - dz * dz);
  }
  const count = (density: number): number => {
    const x = (density * bodyVoxels) / 1e6;
    return Math.floor(x + rng());
  };
  const nVessel = count(CT_DISTRACTOR_DENSITY.vessel);
  const nCyst = count(CT_DISTRACTOR_DENSITY.cyst);
  const nCalc = count(CT_DISTRACTOR_DENSITY.calcification);
  const taken = new BoxIndex();
  for (const l of lesions) taken.add(grown(l.bbox, 2));
  const clear = (b: Box): boolean => !taken.meets(b);
  const isHost = (p: Vec3): boolean => {
    const o = ownerAt(tissues, p[0], p[1], p[2]);
    return o >= 0 && hosts.some((h) => h.i === o);
  };
  /** A point in the host's box showing the host, inside sections [0, Z); null if none found. */
  const pointIn = (host: Host): Vec3 | null => {
    const hb = ellipsoidBox(host.t);
    const z0 = Math.max(hb.begin[0], 0), z1 = Math.min(hb.end[0], Z);
    if (z1 <= z0) return null;
    for (let k = 0; k < 20; k++) {
      const p: Vec3 = [uniform(rng, z0, z1), uniform(rng, hb.begin[1], hb.end[1]), uniform(rng, hb.begin[2], hb.end[2])];
      if (ownerAt(tissues, p[0], p[1], p[2]) === host.i) return p;
    }
    return null;
  };
  const zr = 1 / anisotropy;

  // Vessels: a random walk of 4-voxel steps (z scaled to in-plane units) whose heading turns
  // slowly; mostly in-plane, a third of them steep (across sections). It ends where it would
  // leave soft tissue and organs, or come near a lesion.
  for (let k = 0, tries = 0; k < nVessel && tries < 20 * nVessel; tries++) {
    const host = pickHost(rng, hosts);
    const p0 = pointIn(host);
    const radius = uniform(rng, L.vesselRadiusMin, L.vesselRadiusMax);
    const hu = contrastHu(rng, host.t.hu);
    const length = uniform(rng, L.vesselLengthMin, L.vesselLengthMax);
    let azimuth = uniform(rng, 0, 2 * Math.PI);
    const steep = rng() < 0.35;
    let elevation = (steep ? uniform(rng, 0.9, 1.45) : uniform(rng, -0.35, 0.35)) * (rng() < 0.5 ? -1 : 1);
    if (!p0) continue;
    const points: Vec3[] = [p0];
    let bb = capsuleBox(p0, p0, radius, anisotropy);
    if (!clear(bb)) continue;
    const step = 4;
    for (let t = 0; t < length / step; t++) {
      azimuth += 0.3 * gaussRng(rng);
      elevation += 0.12 * gaussRng(rng);
      elevation = Math.max(-1.45, Math.min(1.45, elevation));
      const q = points[points.length - 1];
      const p: Vec3 = [
        q[0] + (step * Math.sin(elevation)) / anisotropy,
        q[1] + step * Math.cos(elevation) * Math.cos(azimuth),
        q[2] + step * Math.cos(elevation) * Math.sin(azimuth),
      ];
      if (p[0] < -1 || p[0] > Z || !isHost(p)) break;
      const sb = capsuleBox(q, p, radius, anisotropy);
      if (!clear(sb)) break;
      points.push(p);
      bb = union(bb, sb);
    }
    if (points.length < 4) continue;
    out.push({ kind: 'vessel', hu, radius, zScale: anisotropy, points, bbox: bb });
    k++;
  }

  // Round blobs: `count` tries to place each, clear of lesions (a cyst must also fit its host).
  const blobs = (kind: 'cyst' | 'calcification', count: number, radius: () => number, zMin: number, huOf: (host: number) => number, fit: boolean) => {
    for (let k = 0, tries = 0; k < count && tries < 20 * count; tries++) {
      const host = pickHost(rng, hosts);
      const r = radius();
      const radii: Vec3 = [Math.max(zMin, r * zr * uniform(rng, 0.8, 1.4)), r * uniform(rng, 0.8, 1.2), r * uniform(rng, 0.8, 1.2)];
      const angle = uniform(rng, 0, Math.PI);
      const hu = huOf(host.t.hu);
      const center = pointIn(host);
      if (!center) continue;
      const e = { center, radii, angle };
      if (fit && !fitsHost(tissues, host.i, e)) continue;
      const bbox = ellipsoidBox(grownEllipsoid(e, L.rim));
      if (!clear(bbox)) continue;
      out.push({ kind, hu, ...e, bbox });
      k++;
    }
  };
  // Cysts: lesion-like in size, place and contrast; no texture, tissue noise.
  blobs('cyst', nCyst, () => logUniform(rng, L.cystRadiusMin, L.cystRadiusMax), 1.6, (h) => contrastHu(rng, h), true);
  // Calcifications: small and bright, anywhere in soft tissue and organs.
  blobs('calcification', nCalc, () => uniform(rng, L.calcRadiusMin, L.calcRadiusMax), 0.8, () => uniform(rng, L.calcHuMin, L.calcHuMax), false);
  return out;
}

/** Boxes covering the voxels a distractor paints (a vessel: one per capsule), each clear of lesions. */
export function ctDistractorBoxes(d: CtDistractor): Box[] {
  if (d.kind !== 'vessel') return [d.bbox];
  const out: Box[] = [];
  for (let k = 1; k < d.points.length; k++) out.push(capsuleBox(d.points[k - 1], d.points[k], d.radius, d.zScale));
  return out;
}

function gaussRng(rng: () => number): number {
  return rng() + rng() + rng() + rng() - 2; // σ ≈ 0.58, bounded
}

function grownEllipsoid(e: CtEllipsoid, m: number): CtEllipsoid {
  return { center: e.center, radii: [e.radii[0] + m, e.radii[1] + m, e.radii[2] + m], angle: e.angle };
}

/** Box of the voxels within radius + rim of the segment [p, q] (z distances scaled by zScale). */
function capsuleBox(p: Vec3, q: Vec3, radius: number, zScale: number): Box {
  const m = radius + CT_LEVELS.rim, mz = m / zScale;
  return box(
    [Math.floor(Math.min(p[0], q[0]) - mz), Math.floor(Math.min(p[1], q[1]) - m), Math.floor(Math.min(p[2], q[2]) - m)],
    [Math.ceil(Math.max(p[0], q[0]) + mz) + 1, Math.ceil(Math.max(p[1], q[1]) + m) + 1, Math.ceil(Math.max(p[2], q[2]) + m) + 1],
  );
}

function union(a: Box, b: Box): Box {
  return box(
    [Math.min(a.begin[0], b.begin[0]), Math.min(a.begin[1], b.begin[1]), Math.min(a.begin[2], b.begin[2])],
    [Math.max(a.end[0], b.end[0]), Math.max(a.end[1], b.end[1]), Math.max(a.end[2], b.end[2])],
  );
}

function grown(b: Box, m: number): Box {
  return box([b.begin[0] - m, b.begin[1] - m, b.begin[2] - m], [b.end[0] + m, b.end[1] + m, b.end[2] + m]);
}

// ---------------------------------------------------------------------------------------------
// Rendering.

function toU16(v: number): number {
  return v <= 0 ? 0 : v >= 65535 ? 65535 : (v + 0.5) | 0;
}

/** Per-section level change, a pure function of (seed, z): HU ↦ soft + gain·(HU − soft) + offset. */
export function ctSectionLevel(seed: number, z: number): { gain: number; offset: number } {
  const L = CT_LEVELS;
  const h = hashInts(seed, 0xd41f7);
  const amp = L.driftMin + (L.driftMax - L.driftMin) * unit(hashStep(h, 1));
  const period = L.driftPeriodMin + (L.driftPeriodMax - L.driftPeriodMin) * unit(hashStep(h, 2));
  const gAmp = L.gainAmp * unit(hashStep(h, 4));
  const gPeriod = L.driftPeriodMin + (L.driftPeriodMax - L.driftPeriodMin) * unit(hashStep(h, 5));
  const hz = hashInts(seed, 0xd41f7, z);
  const TAU = 2 * Math.PI;
  return {
    offset: amp * Math.sin((TAU * z) / period + TAU * unit(hashStep(h, 3))) + L.driftJitter * gauss(hashStep(hz, 1)),
    gain: 1 + gAmp * Math.sin((TAU * z) / gPeriod + TAU * unit(hashStep(h, 6))) + L.gainJitter * gauss(hashStep(hz, 2)),
  };
}

export interface CtStreak { readonly py: number; readonly px: number; readonly cos: number; readonly sin: number; readonly amp: number; readonly inv2w2: number }

/** A defective section's extra noise σ (0: none) and streaks; null for a normal section. */
export function ctSectionDefect(seed: number, z: number, body?: CtEllipsoid): { noise: number; streaks: CtStreak[] } | null {
  const L = CT_LEVELS;
  const h = hashInts(seed, 0xdefec7, z);
  if (unit(h) >= L.defectRate) return null;
  const u = unit(hashStep(h, 1));
  const noise = u < 0.7 ? L.sigma * Math.sqrt(L.defectNoise * L.defectNoise - 1) : 0;
  const streaks: CtStreak[] = [];
  if (u >= 0.4) {
    // Lines through one point in the body (a metal-like source), at random angles.
    const rng = mulberry32(hashStep(h, 2));
    const cy = body ? body.center[1] + uniform(rng, -0.4, 0.4) * body.radii[1] : 128;
    const cx = body ? body.center[2] + uniform(rng, -0.4, 0.4) * body.radii[2] : 128;
    const n = 2 + Math.floor(rng() * 5);
    for (let k = 0; k < n; k++) {
      const t = uniform(rng, 0, Math.PI), w = uniform(rng, 0.5, 1.5);
      streaks.push({
        py: cy, px: cx, cos: Math.cos(t), sin: Math.sin(t),
        amp: uniform(rng, L.streakMin, L.streakMax) * (rng() < 0.5 ? -1 : 1), inv2w2: 1 / (2 * w * w),
      });
    }
  }
  return { noise, streaks };
}

/** An ellipsoid prepared for soft-edged painting. */
interface Soft {
  readonly cz: number; readonly cy: number; readonly cx: number;
  readonly c: number; readonly s: number;
  readonly iz: number; readonly ia: number; readonly ib: number;
  readonly hu: number; readonly checker: number;
  /** Painted box: the ellipsoid's voxels and its rim. */
  readonly bbox: Box;
}

function soft(e: CtEllipsoid, hu: number, checker: number, bbox: Box): Soft {
  return {
    cz: e.center[0], cy: e.center[1], cx: e.center[2], c: Math.cos(e.angle), s: Math.sin(e.angle),
    iz: 1 / (e.radii[0] * e.radii[0]), ia: 1 / (e.radii[1] * e.radii[1]), ib: 1 / (e.radii[2] * e.radii[2]),
    hu, checker, bbox,
  };
}

/**
 * Partial-volume weight of voxel (z, y, x) in an ellipsoid: 0.5 + (signed distance to the
 * surface, positive inside, in voxels) / rim, clamped to [0, 1]; ≥ 0.5 exactly on the label.
 */
function softWeight(e: Soft, dz: number, dy: number, dx: number): number {
  const a = dy * e.c + dx * e.s, b = -dy * e.s + dx * e.c;
  const q = dz * dz * e.iz + a * a * e.ia + b * b * e.ib;
  const gz = dz * e.iz, ga = a * e.ia, gb = b * e.ib;
  const g = 2 * Math.sqrt(gz * gz + ga * ga + gb * gb);
  if (g < 1e-9) return q <= 1 ? 1 : 0;
  const w = 0.5 + (1 - q) / (g * CT_LEVELS.rim);
  return w <= 0 ? 0 : w >= 1 ? 1 : w;
}

interface Segment { readonly pz: number; readonly py: number; readonly px: number; readonly dz: number; readonly dy: number; readonly dx: number; readonly il2: number; readonly bbox: Box }

function inRow(b: Box, z: number, y: number): boolean {
  return z >= b.begin[0] && z < b.end[0] && y >= b.begin[1] && y < b.end[1];
}

export function renderCtImage(seed: number, a: CtAnatomy, region: Box, out: Uint16Array): void {
  const [z0, y0, x0] = region.begin;
  const [z1, y1, x1] = region.end;
  const ny = y1 - y0, nx = x1 - x0;
  const L = CT_LEVELS;
  const mean = new Float64Array(nx), hu = new Float64Array(nx), wv = new Float64Array(nx);
  const tissues = a.tissues.filter((t) => overlapsRegion(ellipsoidBox(t), region));
  const lesions = a.lesions.filter((l) => overlapsRegion(grown(l.bbox, 1), region))
    .map((l) => soft(l, l.hu, l.checker, grown(l.bbox, 1)));
  const ds = a.distractors.filter((d) => overlapsRegion(d.bbox, region));
  const blobs = ds.flatMap((d) => (d.kind === 'vessel' ? [] : [soft(d, d.hu, 0, d.bbox)]));
  const vessels = ds.flatMap((d) => {
    if (d.kind !== 'vessel') return [];
    const segs: Segment[] = [];
    for (let k = 1; k < d.points.length; k++) {
      const p = d.points[k - 1], q = d.points[k];
      const bb = capsuleBox(p, q, d.radius, d.zScale);
      if (!overlapsRegion(bb, region)) continue;
      const dz = (q[0] - p[0]) * d.zScale, dy = q[1] - p[1], dx = q[2] - p[2];
      segs.push({ pz: p[0] * d.zScale, py: p[1], px: p[2], dz, dy, dx, il2: 1 / Math.max(1e-9, dz * dz + dy * dy + dx * dx), bbox: bb });
    }
    return [{ v: d, segs }];
  });
  const body = a.tissues.length ? a.tissues[0] : undefined;
  // Small per-row helpers: each gets optimised on its own, so a rare path (a defective section,
  // the first vessel) does not deoptimise the whole loop.
  for (let z = z0; z < z1; z++) {
    const hz = hashInts(seed, 0xc7015e, z);
    const { gain, offset } = ctSectionLevel(seed, z);
    const defect = ctSectionDefect(seed, z, body);
    const hd = hashInts(seed, 0xdefec8, z);
    const add = L.soft * (1 - gain) + offset + CT_OFFSET;
    for (let y = y0; y < y1; y++) {
      const hy = hashStep(hz, y);
      fillTissues(mean, tissues, z, y, x0, x1);
      addNoise(hu, mean, L.sigma, hy, x0, nx);
      for (const v of vessels) if (inRow(v.v.bbox, z, y)) paintVessel(hu, mean, wv, v.v, v.segs, z, y, x0, x1);
      for (const e of blobs) if (inRow(e.bbox, z, y)) paintBlob(hu, mean, e, z, y, x0, x1);
      for (const e of lesions) if (inRow(e.bbox, z, y)) paintLesion(hu, e, hy, z, y, x0, x1);
      if (defect) applyDefect(hu, defect.noise, defect.streaks, hashStep(hd, y), y, x0, nx);
      store(out, ((z - z0) * ny + (y - y0)) * nx, hu, gain, add, nx);
    }
  }
}

function fillTissues(mean: Float64Array, tissues: readonly CtTissue[], z: number, y: number, x0: number, x1: number): void {
  mean.fill(CT_LEVELS.air);
  for (const t of tissues) {
    const [s0, s1] = ellipsoidSpan(t, z, y);
    const p = Math.max(s0, x0), q = Math.min(s1, x1 - 1);
    if (p <= q) mean.fill(t.hu, p - x0, q - x0 + 1);
  }
}

function addNoise(hu: Float64Array, mean: Float64Array, sigma: number, hy: number, x0: number, nx: number): void {
  for (let i = 0; i < nx; i++) hu[i] = mean[i] + sigma * gauss(hashStep(hy, x0 + i));
}

/** A tube with tissue noise: the largest weight over its capsules. */
function paintVessel(hu: Float64Array, mean: Float64Array, wv: Float64Array, v: CtVessel, segs: readonly Segment[],
  z: number, y: number, x0: number, x1: number): void {
  const rim = CT_LEVELS.rim;
  let lo = x1 - x0, hi = -1;
  const reach = v.radius + 0.5 * rim;
  for (const g of segs) {
    if (!inRow(g.bbox, z, y)) continue;
    const p = Math.max(g.bbox.begin[2], x0), q = Math.min(g.bbox.end[2], x1);
    const vz = z * v.zScale - g.pz, vy = y - g.py;
    for (let x = p; x < q; x++) {
      const vx = x - g.px;
      let t = (vz * g.dz + vy * g.dy + vx * g.dx) * g.il2;
      t = t < 0 ? 0 : t > 1 ? 1 : t;
      const ez = vz - t * g.dz, ey = vy - t * g.dy, ex = vx - t * g.dx;
      const d2 = ez * ez + ey * ey + ex * ex;
      if (d2 >= reach * reach) continue;
      let w = 0.5 + (v.radius - Math.sqrt(d2)) / rim;
      if (w > 1) w = 1;
      const i = x - x0;
      if (w > wv[i]) wv[i] = w;
      if (i < lo) lo = i;
      if (i > hi) hi = i;
    }
  }
  for (let i = lo; i <= hi; i++) {
    const w = wv[i];
    if (w <= 0) continue;
    hu[i] += w * (v.hu - mean[i]);
    mean[i] += w * (v.hu - mean[i]);
    wv[i] = 0;
  }
}

/** A cyst or calcification: tissue noise about its own mean. */
function paintBlob(hu: Float64Array, mean: Float64Array, e: Soft, z: number, y: number, x0: number, x1: number): void {
  const p = Math.max(e.bbox.begin[2], x0), q = Math.min(e.bbox.end[2], x1);
  for (let x = p; x < q; x++) {
    const w = softWeight(e, z - e.cz, y - e.cy, x - e.cx);
    if (w <= 0) continue;
    const i = x - x0;
    hu[i] += w * (e.hu - mean[i]);
    mean[i] += w * (e.hu - mean[i]);
  }
}

/** A lesion: checker texture and its own (lower) noise, blended into the host over the rim. */
function paintLesion(hu: Float64Array, e: Soft, hy: number, z: number, y: number, x0: number, x1: number): void {
  const p = Math.max(e.bbox.begin[2], x0), q = Math.min(e.bbox.end[2], x1);
  const ls = CT_LEVELS.lesionSigma;
  for (let x = p; x < q; x++) {
    const w = softWeight(e, z - e.cz, y - e.cy, x - e.cx);
    if (w <= 0) continue;
    const i = x - x0;
    const chk = ((z + y + x) & 1) === 0 ? e.checker : -e.checker;
    const v = e.hu + chk + ls * gauss(hashStep(hy, x));
    hu[i] += w * (v - hu[i]);
  }
}

function applyDefect(hu: Float64Array, noise: number, streaks: readonly CtStreak[], hdy: number, y: number, x0: number, nx: number): void {
  if (noise > 0) for (let i = 0; i < nx; i++) hu[i] += noise * gauss(hashStep(hdy, x0 + i));
  for (const s of streaks) {
    // Distance to the line through (py, px) along (cos, sin).
    const base = (y - s.py) * s.sin;
    for (let i = 0; i < nx; i++) {
      const d = base - (x0 + i - s.px) * s.cos;
      const e = d * d * s.inv2w2;
      if (e < 12) hu[i] += s.amp * Math.exp(-e);
    }
  }
}

function store(out: Uint16Array, row: number, hu: Float64Array, gain: number, add: number, nx: number): void {
  for (let i = 0; i < nx; i++) out[row + i] = toU16(gain * hu[i] + add);
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
