// The instance-id reduction at FAFB counts, on generated tables (no models, no voxels): more
// than 2^24 parts crossing chunk borders — more than a JS Map or Set can hold, which is where the
// single resolve it replaced stopped — resolved by the real joinRegion / settleRegion, with no
// step holding more than its region's surface. Objects are chains of parts along x over a grid of
// 1 × 64 × 64 chunks (fan-in 4: three levels), broken at random between chunks, so they close at
// every level.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Vec3 } from '../../shared/geometry/box.ts';
import { type Range3, range3 } from '../../shared/geometry/grid.ts';
import { carriedFaces, regionChildren, regionChunks } from '../../shared/geometry/tree.ts';
import { type Decisions, type Down, type Summary, emptyRows, joinRegion, settleRegion } from '../../shared/pipeline/merge.ts';
import { decodeDecisions, decodeSummary, encodeDecisions, encodeSummary } from '../../shared/tasks/merge.ts';

const GRID: Vec3 = [1, 64, 64];
const FAN_IN: Vec3 = [4, 4, 4];
const K = 4100; // parts per chunk, each crossing its x faces: 64 × 64 × 4100 = 16,793,600 > 2^24
const CHUNK: Vec3 = [32, 64, 64];
// Ids as far from 0 as FAFB's (past 2^48): a volume of FAFB's size, our grid at its far corner.
const VOLUME: Vec3 = [7062, 301923, 376277];
const ORIGIN: Vec3 = [7000, 290000, 370000];
const RUN: Range3 = range3([0, 0, 0], GRID);
const LEVELS = 3;
const X_FACES = 0b110000;

/** The break between chunk column cx − 1 and cx for part k of row cy (cx = 0 always breaks). */
function breaks(k: number, cy: number, cx: number): boolean {
  if (cx === 0) return true;
  let h = Math.imul(k + 1, 0x9e3779b1) ^ Math.imul(cy + 7, 0x85ebca77) ^ Math.imul(cx + 13, 0xc2b2ae3d);
  h ^= h >>> 15;
  h = Math.imul(h, 0x2c1b3c6d);
  h ^= h >>> 12;
  return (h >>> 0) % 4 === 0;
}

/** The id of part k of chunk (0, cy, cx): 1 + the raster index of its first voxel. */
function anchor(k: number, cy: number, cx: number): number {
  const z = ORIGIN[0] + (k % 32), y = ORIGIN[1] + cy * CHUNK[1] + ((k >> 5) % 64), x = ORIGIN[2] + cx * CHUNK[2] + (k >> 11);
  return (z * VOLUME[1] + y) * VOLUME[2] + x + 1;
}

/** A chunk's leaf summary, as chunkSummary gives it: every part open at the x faces, contacts to the next column. */
function leaf(c: Vec3): Summary {
  const [, cy, cx] = c;
  const open = emptyRows(K);
  const edgeA: number[] = [];
  const edgeB: number[] = [];
  for (let k = 0; k < K; k++) {
    const a = anchor(k, cy, cx);
    open.key[k] = a;
    open.cls[k] = 1;
    open.box.set([ORIGIN[0] + (k % 32), ORIGIN[1] + cy * 64, ORIGIN[2] + cx * 64, ORIGIN[0] + (k % 32) + 1, ORIGIN[1] + cy * 64 + 64, ORIGIN[2] + cx * 64 + 64], 6 * k);
    open.voxels[k] = 64;
    open.mass[k] = 32;
    if (cx + 1 < GRID[2] && !breaks(k, cy, cx + 1)) { edgeA.push(a); edgeB.push(anchor(k, cy, cx + 1)); }
  }
  // Faces with a neighbour in the run only (the grid's outer x faces have none).
  const mask = (cx > 0 ? 0b010000 : 0) | (cx + 1 < GRID[2] ? 0b100000 : 0);
  return { open, part: open.key.slice(), partKey: open.key.slice(), partMask: new Uint8Array(K).fill(mask), edgeA: Float64Array.from(edgeA), edgeB: Float64Array.from(edgeB) };
}

function chunkOfId(id: number): Vec3 {
  const i = id - 1;
  const YX = VOLUME[1] * VOLUME[2];
  const z = Math.floor(i / YX), y = Math.floor((i - z * YX) / VOLUME[2]), x = i - z * YX - y * VOLUME[2];
  return [Math.floor((z - ORIGIN[0]) / CHUNK[0]), Math.floor((y - ORIGIN[1]) / CHUNK[1]), Math.floor((x - ORIGIN[2]) / CHUNK[2])];
}

interface Stats { parts: number; closed: number; voxels: number; largestJoin: number; peakRss: number }

/** Up: the summary of region b at `level`, depth first (only one path of summaries is alive), keeping the decisions `keep` asks for. */
function up(b: Vec3, level: number, st: Stats, keep: (level: number, b: Vec3) => boolean, kept: Map<string, Decisions>): Summary {
  const kids = regionChildren(b, level, FAN_IN, RUN);
  const children = kids.map((k) => {
    if (level > 1) return up(k, level - 1, st, keep, kept);
    st.parts += K;
    return leaf(k);
  });
  const region = regionChunks(b, level, FAN_IN, RUN);
  st.largestJoin = Math.max(st.largestJoin, children.reduce((n, c) => n + c.open.key.length, 0));
  const { summary, decisions } = joinRegion(children, {
    carry: kids.map((k) => carriedFaces(regionChunks(k, level - 1, FAN_IN, RUN), region, RUN)),
    inside: (id) => { const c = chunkOfId(id); return c[1] >= region.lo[1] && c[1] < region.hi[1] && c[2] >= region.lo[2] && c[2] < region.hi[2]; },
    what: `merge${level} ${b.join('_')}`,
  });
  st.closed += decisions.closed.key.length;
  for (const v of decisions.closed.voxels) st.voxels += v;
  st.peakRss = Math.max(st.peakRss, process.memoryUsage().rss);
  if (keep(level, b)) kept.set(`${level}/${b.join('_')}`, decodeDecisions(encodeDecisions(decisions), 'test'));
  // Through the bytes the task writes.
  return decodeSummary(encodeSummary(summary), 'test');
}

/** The number of chains (objects): one per part that starts a chain. */
function chains(): number {
  let n = 0;
  for (let cy = 0; cy < GRID[1]; cy++) for (let cx = 0; cx < GRID[2]; cx++) for (let k = 0; k < K; k++) if (breaks(k, cy, cx)) n++;
  return n;
}

test('the id reduction resolves more than 2^24 border-crossing parts (FAFB-sized ids) with every task bounded by its surface', () => {
  const st: Stats = { parts: 0, closed: 0, voxels: 0, largestJoin: 0, peakRss: 0 };
  // The down-sweep is checked along two paths to the chunks: their regions' decisions are kept.
  const paths: Vec3[] = [[0, 5, 22], [0, 60, 62]];
  const onPath = (level: number, b: Vec3) => paths.some((c) => {
    const s = FAN_IN[1] ** level;
    return Math.floor(c[1] / s) === b[1] && Math.floor(c[2] / s) === b[2];
  });
  const kept = new Map<string, Decisions>();
  const top = up([0, 0, 0], LEVELS, st, onPath, kept);
  assert.ok(st.parts > 2 ** 24, `${st.parts} parts`);
  assert.equal(top.open.key.length, 0, 'nothing is open at the top');
  // Every object closed exactly once, somewhere, with all its voxels.
  assert.equal(st.closed, chains());
  assert.equal(st.voxels, 64 * st.parts);
  // The largest join held what crosses a region's open faces, not its volume: the top region
  // joins 16 level-2 regions, each handing up only its two columns of chunks on x faces.
  assert.ok(st.largestJoin <= 16 * 2 * 16 * K, `largest join ${st.largestJoin}`);
  assert.ok(st.peakRss < 2 ** 30, `peak RSS ${(st.peakRss / 2 ** 20).toFixed(0)} MiB`);

  // Down along the paths: every part of the chunk gets its chain's first id.
  for (const c of paths) {
    let down: Down | undefined;
    let b: Vec3 = [0, 0, 0];
    for (let level = LEVELS; level >= 1; level--) {
      const s = FAN_IN[1] ** (level - 1);
      const child: Vec3 = [0, Math.floor(c[1] / s), Math.floor(c[2] / s)];
      const kids = regionChildren(b, level, FAN_IN, RUN);
      const at = kids.findIndex((k) => k[1] === child[1] && k[2] === child[2]);
      down = settleRegion(kept.get(`${level}/${b.join('_')}`)!, down, `resolve${level}`)[at];
      b = child;
    }
    assert.equal(down!.key.length, K);
    let spanning = 0;
    for (let k = 0; k < K; k++) {
      let start = c[2];
      while (!breaks(k, c[1], start)) start--;
      assert.equal(down!.final[k], anchor(k, c[1], start), `chunk ${c}, part ${k}`);
      if (down!.final[k] === down!.key[k]) {
        // The chain's first part holds its summed row: voxels of all its parts.
        let end = c[2] + 1;
        while (end < GRID[2] && !breaks(k, c[1], end)) end++;
        assert.equal(down!.row.voxels[k], 64 * (end - start));
        if (end - start > 1) spanning++;
      } else assert.equal(down!.row.cls[k], 0, 'no row where the first voxel lies elsewhere');
    }
    assert.ok(spanning > 0);
  }
});
