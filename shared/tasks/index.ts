// One entry point for every task kind: (context, task) → persisted result and counters. The
// embedded runner and the distributed worker both call this and nothing else.
import type { TaskRef } from '../scheduler.ts';
import type { TaskContext, TaskStats } from './context.ts';
import { type TaskKind, levelOf } from './graph.ts';
import { stage1Task } from './stage1.ts';
import { boxesTask } from './boxes.ts';
import { stage2Task } from './stage2.ts';
import { pasteTask } from './paste.ts';
import { blendTask, freeTiles, predictTask } from './predict.ts';
import { relabelTask } from './instances.ts';
import { facesTask } from './faces.ts';
import { mergeTask, resolveTask } from './merge.ts';
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
    case 'relabel': return relabelTask(ctx, t.index);
    default: {
      const up = levelOf(kind, 'merge');
      if (up !== undefined) return mergeTask(ctx, up, t.index);
      const down = levelOf(kind, 'resolve');
      if (down !== undefined) return resolveTask(ctx, down, t.index);
      throw new RangeError(`unknown task kind ${String(kind)}`);
    }
  }
}

export interface Freeing {
  free: (work: WorkStore, index: Vec3) => Promise<void>;
  rerun: boolean;
}

// What a kind leaves in the work store for the tasks that need it, deleted once they are all
// done (the coordinator frees ~2 results per chunk: only the files each kind writes, see its
// task). `rerun`: on resume, a task whose result was freed runs again when a task that is not
// done needs it; paste and blend are never run again for that, since the border and label runs
// they leave are recomputed from the written segmentation (see faces and relabel).
const FREE: Partial<Record<string, Freeing>> = {
  stage1: { free: (w, i) => w.remove('stage1', i, ['json', 'bin', 'f32']), rerun: true },
  boxes: { free: (w, i) => w.remove('boxes', i, ['json']), rerun: true },
  stage2: { free: (w, i) => w.remove('stage2', i, ['bin']), rerun: true },
  paste: { free: freeLabelled, rerun: false },
  predict: { free: freeTiles, rerun: true },
  blend: { free: freeLabelled, rerun: false },
  faces: { free: (w, i) => w.remove('faces', i, ['bin']), rerun: true },
};

async function freeLabelled(w: WorkStore, i: Vec3): Promise<void> {
  await Promise.all([w.removeFile('border', i, 'bin'), w.removeFile('runs', i, 'bin')]);
}

/** How the result of `kind` is freed, if it leaves one for other tasks. */
export function freeingOf(kind: string): Freeing | undefined {
  const f = FREE[kind];
  if (f) return f;
  // Each level of the reduction leaves one file per region.
  if (levelOf(kind, 'merge') !== undefined || levelOf(kind, 'resolve') !== undefined) return { free: (w, i) => w.remove(kind, i, ['bin']), rerun: true };
  return undefined;
}
