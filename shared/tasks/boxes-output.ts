// The boxes of a run as users read them: one JSON-lines file per stage-two block under the
// output (`boxes/<z_y_x>.jsonl`, block index: a box per line with its role, score, placements), so that no file
// grows with the volume — `cat out.zarr/boxes/*.jsonl | jq …` reads them all. For small runs the
// runner also writes the merged view `boxes.json` (ids and canvases numbered across chunks).
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Box, Vec3 } from '../geometry/box.ts';
import { type Range3, indexId, parseIndexId } from '../geometry/grid.ts';
import type { Candidate } from '../pipeline/boxes.ts';
import type { Packing } from '../pipeline/pack.ts';
import { writeFileAtomic, writeJsonAtomic } from '../volume/store.ts';
import type { TaskContext } from './context.ts';

export interface BoxLine {
  /** The stage-two block (its index) whose canvases hold the box. */
  block: string;
  id: number;
  role: 'parent' | 'child';
  parent?: number;
  box: Candidate['box'];
  score: number;
  placements: Array<{ canvas: number; source: Candidate['box']; dest: Candidate['box']; target: Candidate['box']; resized: boolean }>;
}

export function boxesDir(out: string): string {
  return path.join(out, 'boxes');
}

/** The boxes file of stage-two block `index`. */
export function boxesFile(out: string, index: Vec3): string {
  return path.join(boxesDir(out), `${indexId(index)}.jsonl`);
}

/** The block whose boxes a file under boxes/ holds, from its name; undefined for any other file. */
export function boxesFileBlock(name: string): Vec3 | undefined {
  const i = name.endsWith('.jsonl') ? parseIndexId(name.slice(0, -'.jsonl'.length)) : undefined;
  return i && i.every((v) => v >= 0) ? i : undefined;
}

/** A block's boxes ([] when the block has no file: no boxes task wrote one there). */
export async function readBoxLines(out: string, index: Vec3): Promise<BoxLine[]> {
  const f = boxesFile(out, index);
  if (!fs.existsSync(f)) return [];
  return (await fs.promises.readFile(f, 'utf8')).split('\n').filter(Boolean).map((l) => JSON.parse(l) as BoxLine);
}

export async function writeBoxesLines(ctx: TaskContext, index: Vec3, boxes: readonly Candidate[], packing: Packing): Promise<void> {
  const where = new Map<number, BoxLine['placements']>();
  for (const p of packing.placements) {
    const l = where.get(p.boxId) ?? [];
    l.push({ canvas: p.canvas, source: p.source, dest: p.dest, target: p.target, resized: p.resized });
    where.set(p.boxId, l);
  }
  const block = indexId(index);
  const lines = boxes.map((b) => JSON.stringify({
    block, id: b.id, role: b.role, ...(b.parent !== undefined ? { parent: b.parent } : {}), box: b.box, score: b.score, placements: where.get(b.id) ?? [],
  } satisfies BoxLine));
  await writeFileAtomic(boxesFile(ctx.out.path, index), lines.length ? lines.join('\n') + '\n' : '');
}

/**
 * The merged view boxes.json over the chunks of `range` (raster order): boxes renumbered 0..,
 * canvases numbered across chunks. Only for runs with at most `limit` boxes; returns false
 * above it, and removes a boxes.json left there.
 */
export async function writeBoxesJson(out: string, range: Range3, canvasShape: Vec3, limit: number): Promise<boolean> {
  const boxes: Array<BoxLine & { key: string }> = [];
  let canvases = 0;
  let filled = 0;
  let tooMany = false;
  // Block by block, stopping as soon as the limit is passed: never a list of every block.
  for (let z = range.lo[0]; z < range.hi[0] && !tooMany; z++) for (let y = range.lo[1]; y < range.hi[1] && !tooMany; y++) for (let x = range.lo[2]; x < range.hi[2] && !tooMany; x++) {
    const file = boxesFile(out, [z, y, x]);
    if (!fs.existsSync(file)) continue;
    const lines = fs.readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as BoxLine);
    let most = -1;
    for (const b of lines) {
      for (const p of b.placements) {
        most = Math.max(most, p.canvas);
        filled += (p.dest.end[0] - p.dest.begin[0]) * (p.dest.end[1] - p.dest.begin[1]) * (p.dest.end[2] - p.dest.begin[2]);
      }
      boxes.push({ ...b, key: `${b.block}/${b.id}`, id: boxes.length, placements: b.placements.map((p) => ({ ...p, canvas: p.canvas + canvases })) });
    }
    canvases += most + 1;
    if (boxes.length > limit) tooMany = true;
  }
  // Too many for the merged view: an older one (an earlier, smaller run) must not stay behind.
  if (tooMany) {
    await fs.promises.rm(path.join(out, 'boxes.json'), { force: true });
    return false;
  }
  const cv = canvasShape[0] * canvasShape[1] * canvasShape[2];
  await writeJsonAtomic(path.join(out, 'boxes.json'), { canvasShape, canvases, fillRatio: canvases ? filled / (canvases * cv) : 0, boxes });
  return true;
}

/**
 * Where stage two ran, from an output's boxes.json: every placement's target (the voxels it
 * pasted back). Undefined when there is none (a one-stage run, or more boxes than boxes.json holds).
 */
export function readBoxTargets(out: string): Box[] | undefined {
  const file = path.join(out, 'boxes.json');
  if (!fs.existsSync(file)) return undefined;
  const doc = JSON.parse(fs.readFileSync(file, 'utf8')) as { boxes: Array<{ placements: Array<{ target: Box }> }> };
  return doc.boxes.flatMap((b) => b.placements.map((p) => p.target));
}
