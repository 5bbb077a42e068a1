// What a task needs besides its index: the run (config, models, input, timings), the output
// arrays, the work store of intermediate results, the task graph and the stage-one grid.
import type { RunContext } from '../run/context.ts';
import type { OutputArrays } from '../run/output.ts';
import type { LowGrid } from '../volume/source.ts';
import type { VolumeArray } from '../volume/zarr.ts';
import type { TaskGraph } from './graph.ts';
import type { WorkStore } from './work.ts';
import { Lru } from '../cache.ts';
import type { Array3 } from '../array/array3.ts';
import type { Stage1Block } from './boxes.ts';
import type { Stage2Result } from './stage2.ts';

export interface TaskContext extends RunContext {
  readonly out: OutputArrays;
  readonly work: WorkStore;
  readonly graph: TaskGraph;
  /** Two-stage: the stage-one resolution grid. */
  readonly low?: LowGrid;
  /** Benchmark oracle: fragments from this ground-truth label array instead of stage one. */
  readonly oracle?: VolumeArray;
  readonly stage1Cache: Lru<Stage1Block>;
  readonly stage2Cache: Lru<Stage2Result>;
  /**
   * Decoded full-resolution storage chunks, shared by the stage-two tasks of this process
   * (`io.readCache` MiB): neighbouring blocks run close together in the scheduler's order and
   * read the chunks on their common border.
   */
  readonly inputCache: Lru<Array3>;
}

/** Counters a task reports; the runner adds them up (numbers only: nothing per chunk is kept). */
export type TaskStats = Record<string, number>;

/**
 * Stage-two results kept for the paste tasks that read them (each paste reads up to 27 blocks'
 * results, its neighbours mostly the same): capped in bytes, not results, so that memory does
 * not grow with the number of blocks a large volume holds at once.
 */
const STAGE2_CACHE_BYTES = 64 * 2 ** 20;

type Caches = 'stage1Cache' | 'stage2Cache' | 'inputCache';

export function taskContext(run: RunContext, rest: Omit<TaskContext, keyof RunContext | Caches>): TaskContext {
  return {
    ...run, ...rest, stage1Cache: new Lru(16), stage2Cache: new Lru(STAGE2_CACHE_BYTES), inputCache: new Lru(run.config.io.readCache * 2 ** 20),
  };
}
