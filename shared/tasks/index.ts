// One entry point for every task kind: (context, task) → persisted result and counters. The
// embedded runner and the distributed worker both call this and nothing else.
import type { TaskRef } from '../scheduler.ts';
import type { TaskContext, TaskStats } from './context.ts';
import type { TaskKind } from './graph.ts';
import { stage1Task } from './stage1.ts';
import { boxesTask } from './boxes.ts';
import { stage2Task } from './stage2.ts';
import { pasteTask } from './paste.ts';
import { blendTask, freeTiles, predictTask } from './predict.ts';
import { facesTask, relabelTask, resolveTask } from './instances.ts';
import type { WorkStore } from './work.ts';
import type { Vec3 } from '../geometry/box.ts';

export type { TaskContext, TaskStats } from './context.ts';

export function runTask(ctx: TaskContext, t: TaskRef): Promise<TaskStats> {
  const kind = t.kind as TaskKind;
  switch (kind) {
    case 'stage1': return stage1Task(ctx, t.index);
    case 'boxes': return boxesTask(ctx, t.index);
    case 'stage2': return stage2Task(ctx, t.index);
    case 'paste': return pasteTask(ctx, t.index);
    case 'predict': return predictTask(ctx, t.index);
    case 'blend': return blendTask(ctx, t.index);
    case 'faces': return facesTask(ctx, t.index);
    case 'resolve': return resolveTask(ctx);
    case 'relabel': return relabelTask(ctx, t.index);
    default: {
      const never: never = kind;
      throw new RangeError(`unknown task kind ${String(never)}`);
    }
  }
}

/**
 * What a kind leaves in the work store for the tasks that need it, deleted once they are all
 * done. `rerun`: on resume, a task whose result was freed runs again when a task that is not
 * done needs it; paste and blend are never run again for that, since the chunk's outer voxel
 * layer they leave for faces is recomputed from the written segmentation (see faces).
 */
export const FREE: Partial<Record<TaskKind, { free: (work: WorkStore, index: Vec3) => Promise<void>; rerun: boolean }>> = {
  // Only the files each kind writes (see its task): the coordinator frees ~2 results per chunk.
  stage1: { free: (w, i) => w.remove('stage1', i, ['json', 'f32']), rerun: true },
  boxes: { free: (w, i) => w.remove('boxes', i, ['json']), rerun: true },
  stage2: { free: (w, i) => w.remove('stage2', i, ['bin']), rerun: true },
  paste: { free: (w, i) => w.removeFile('label', i, 'bin'), rerun: false },
  predict: { free: freeTiles, rerun: true },
  blend: { free: (w, i) => w.removeFile('label', i, 'bin'), rerun: false },
  resolve: { free: (w, i) => w.remove('resolve', i, ['bin']), rerun: true },
};

/**
 * Kinds whose results depend on the whole ROI (instance ids are numbered over it and join
 * across its chunks): reused only by a run over the same ROI.
 */
export const WHOLE_ROI: readonly TaskKind[] = ['faces', 'resolve', 'relabel'];
