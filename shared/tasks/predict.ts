// Task `predict`: the one-stage baseline on one chunk (nnU-Net's sliding window at full
// resolution over the chunk and its halo, cut to the chunk, arg-maxed, written).
import type { Vec3 } from '../geometry/box.ts';
import { chunkBox } from '../geometry/grid.ts';
import { oneStageChunk } from '../run/one-stage.ts';
import type { TaskContext, TaskStats } from './context.ts';
import { labelChunk } from './instances.ts';

export async function predictTask(ctx: TaskContext, index: Vec3): Promise<TaskStats> {
  const write = chunkBox(index, ctx.graph.chunk, ctx.graph.volume);
  const { seg, probs } = await oneStageChunk(ctx, ctx.out, write);
  return { objects: await labelChunk(ctx, index, write, seg, probs) };
}
