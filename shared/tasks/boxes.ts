// Task `boxes`: the boxes one stage-one block owns, from the fragments of the blocks within its
// view (graph.ts boxesReach) and the contacts between their borders (boxes-merge.ts), persisted
// per block. Ready once stage one is done for every block in the view.
import type { Vec3 } from '../geometry/box.ts';
import { indexId, inRange, relatedBlocks } from '../geometry/grid.ts';
import { boxOfShape } from '../geometry/box.ts';
import { Contacts, FORWARD, contactsAcross, touchOf } from '../pipeline/border.ts';
import { type OwnedBox, mergeFragments } from '../pipeline/boxes-merge.ts';
import type { TaskContext, TaskStats } from './context.ts';
import { boxesReach } from './graph.ts';
import { type Stage1Result, blockBox } from './stage1.ts';
import { skipOf, skipped } from './mask.ts';

/** A block's stage-one result with its border (18 sections), cached: neighbouring boxes tasks read the same blocks. */
export interface Stage1Block extends Stage1Result {
  border: Uint8Array[];
}

export function readStage1(ctx: TaskContext, b: Vec3): Promise<Stage1Block> {
  return ctx.stage1Cache.get(indexId(b), async () => {
    const [r, border] = await Promise.all([
      ctx.work.readJson<Stage1Result>('stage1', b),
      ctx.work.readSections('stage1', b, Array.from({ length: 18 }, (_, i) => String(i))),
    ]);
    return { ...r, border };
  });
}

export async function boxesTask(ctx: TaskContext, b: Vec3): Promise<TaskStats> {
  const c = ctx.config;
  const why = await skipOf(ctx, 'boxes', b);
  if (why) return skipped('boxes', why);
  const s1 = ctx.graph.kinds.find((k) => k.name === 'stage1')!;
  const view = relatedBlocks(b, s1.block, boxesReach(c, ctx.low!.factor), s1.block, s1.range);
  const blocks: Vec3[] = [];
  for (let z = view.lo[0]; z < view.hi[0]; z++) for (let y = view.lo[1]; y < view.hi[1]; y++) for (let x = view.lo[2]; x < view.hi[2]; x++) blocks.push([z, y, x]);
  const results = await Promise.all(blocks.map((x) => readStage1(ctx, x)));
  const owned = await ctx.timings.time('boxes', () => {
    // Contacts between every two touching blocks of the view, each pair looked at once.
    const out = new Contacts();
    blocks.forEach((x, i) => {
      for (const d of FORWARD) {
        const y: Vec3 = [x[0] + d[0], x[1] + d[1], x[2] + d[2]];
        if (!inRange(view, y)) continue;
        const j = ((y[0] - view.lo[0]) * (view.hi[1] - view.lo[1]) + (y[1] - view.lo[1])) * (view.hi[2] - view.lo[2]) + (y[2] - view.lo[2]);
        const t = touchOf(d);
        contactsAcross(d, results[i].border[t.mine], results[j].border[t.theirs], out, `borders of stage-one blocks ${indexId(x)} and ${indexId(y)}`);
      }
    });
    return mergeFragments(results.flatMap((r) => r.fragments), out.pairs(), blockBox(ctx, b), {
      nmsThreshold: c.boxes.nmsThreshold, nmmThreshold: c.boxes.nmmThreshold, metric: c.boxes.metric, mode: c.boxes.mode,
      recrop: c.boxes.recrop, cropThreshold: c.boxes.cropThreshold, minShape: c.pack.crop, bounds: boxOfShape(ctx.src.shape),
    });
  });
  await ctx.work.writeJson('boxes', b, owned);
  return {
    parents: owned.filter((x) => x.role === 'parent').length,
    children: owned.filter((x) => x.role === 'child').length,
  };
}

export function readBoxes(ctx: TaskContext, b: Vec3): Promise<OwnedBox[]> {
  return ctx.work.readJson<OwnedBox[]>('boxes', b);
}
