// Placeholder until the two-stage pipeline lands (see issue 3).
import type { Chunk } from '../geometry/grid.ts';
import type { RunContext } from './context.ts';
import type { OutputArrays } from './output.ts';
import type { ChunkFailure } from './one-stage.ts';

export interface TwoStageStats {
  parents: number;
  children: number;
  boxes: number;
  canvases: number;
  fillRatio: number;
}

export async function runTwoStage(
  _ctx: RunContext, _out: OutputArrays, _chunks: readonly Chunk[], _progress?: (phase: string, done: number, total: number) => void,
): Promise<{ failures: ChunkFailure[]; stats: TwoStageStats }> {
  throw new Error('two-stage mode is not implemented yet');
}
