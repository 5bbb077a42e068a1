// One entry point for every task kind: (context, task) → persisted result and counters. The
// embedded runner and the distributed worker both call this and nothing else.
import type { TaskRef } from '../scheduler.ts';
import type { TaskContext, TaskStats } from './context.ts';
import type { TaskKind } from './graph.ts';
import { stage1Task } from './stage1.ts';
import { boxesTask } from './boxes.ts';
import { stage2Task } from './stage2.ts';
import { pasteTask } from './paste.ts';
import { predictTask } from './predict.ts';

export type { TaskContext, TaskStats } from './context.ts';

export function runTask(ctx: TaskContext, t: TaskRef): Promise<TaskStats> {
  const kind = t.kind as TaskKind;
  switch (kind) {
    case 'stage1': return stage1Task(ctx, t.index);
    case 'boxes': return boxesTask(ctx, t.index);
    case 'stage2': return stage2Task(ctx, t.index);
    case 'paste': return pasteTask(ctx, t.index);
    case 'predict': return predictTask(ctx, t.index);
    default: {
      const never: never = kind;
      throw new RangeError(`unknown task kind ${String(never)}`);
    }
  }
}

/** The result a kind leaves in the work store, freed once every task that needs it is done. */
export const INTERMEDIATE: Partial<Record<TaskKind, 'json' | 'bin'>> = { stage1: 'json', boxes: 'json', stage2: 'bin' };
