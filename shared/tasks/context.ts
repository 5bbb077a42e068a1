// What a task needs besides its index: the run (config, models, input, timings), the output
// arrays, the work store of intermediate results, the task graph and the stage-one grid.
import type { RunContext } from '../run/context.ts';
import type { OutputArrays } from '../run/output.ts';
import type { LowGrid } from '../volume/source.ts';
import type { VolumeArray } from '../volume/zarr.ts';
import type { TaskGraph } from './graph.ts';
import type { WorkStore } from './work.ts';
import { Lru } from '../cache.ts';
import { BufferPool } from '../array/pool.ts';
import { foregroundCount } from '../infer/sliding.ts';
import type { Vec3 } from '../geometry/box.ts';
import type { Array3 } from '../array/array3.ts';
import type { Stage1Block } from './boxes.ts';

export interface TaskContext extends RunContext {
  readonly out: OutputArrays;
  readonly work: WorkStore;
  readonly graph: TaskGraph;
  /** Two-stage: the stage-one resolution grid. */
  readonly low?: LowGrid;
  /** Benchmark oracle: fragments from this ground-truth label array instead of stage one. */
  readonly oracle?: VolumeArray;
  /** Stage-one results (fragments and borders) the boxes tasks read: each reads the blocks in its view. */
  readonly stage1Cache: Lru<Stage1Block>;
  /**
   * Decoded full-resolution storage chunks, shared by the stage-two tasks of this process
   * (`io.readCache` MiB): neighbouring blocks run close together in the scheduler's order and
   * read the chunks on their common border.
   */
  readonly inputCache: Lru<Array3>;
  /** Chunk-sized arrays the paste tasks in flight reuse (array/pool.ts). */
  readonly pasteBuffers: BufferPool;
}

/** Counters a task reports; the runner adds them up (numbers only: nothing per chunk is kept). */
export type TaskStats = Record<string, number>;

type Caches = 'stage1Cache' | 'inputCache' | 'pasteBuffers';

export function taskContext(run: RunContext, rest: Omit<TaskContext, keyof RunContext | Caches>): TaskContext {
  return {
    // 64 stage-one results: a boxes task's view (boxesReach) holds a few dozen blocks at most.
    ...run, ...rest, stage1Cache: new Lru(64), inputCache: new Lru(run.config.io.readCache * 2 ** 20),
    pasteBuffers: new BufferPool(pasteBytes(run, rest.graph.chunk), rest.graph.chunk[0] * rest.graph.chunk[1] * rest.graph.chunk[2]),
  };
}

/** What the paste tasks in flight hold: per chunk, a float32 sum per channel, the weights, the arg-max and the labels. */
function pasteBytes(run: RunContext, chunk: Vec3): number {
  const card = run.cards.fullres;
  const channels = foregroundCount(card, card.classes.length);
  return run.config.io.chunksInFlight * chunk[0] * chunk[1] * chunk[2] * (4 * (channels + 2) + 1);
}
