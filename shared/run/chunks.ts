// Running one piece of work per chunk with bounded concurrency: the in-process counterpart of
// the work queue the distributed worker consumes.
import pLimit from 'p-limit';
import type { Chunk } from '../geometry/grid.ts';
import type { RunContext } from './context.ts';

export interface ChunkFailure {
  chunk: string;
  error: string;
}

/**
 * Run `work` on every chunk, `io.chunksInFlight` at a time. A chunk that fails is recorded and
 * the rest go on (the run report lists failures); an abort stops everything.
 */
export async function runChunks(
  ctx: RunContext, chunks: readonly Chunk[], work: (chunk: Chunk) => Promise<void>, onDone?: (n: number) => void,
): Promise<ChunkFailure[]> {
  const limit = pLimit(ctx.config.io.chunksInFlight);
  const failures: ChunkFailure[] = [];
  let done = 0;
  await Promise.all(chunks.map((ch) => limit(async () => {
    ctx.signal?.throwIfAborted();
    try {
      await work(ch);
    } catch (err) {
      if (ctx.signal?.aborted) throw err;
      failures.push({ chunk: ch.id, error: (err as Error).message });
      ctx.log.error({ chunk: ch.id, err }, 'chunk failed');
    }
    onDone?.(++done);
    ctx.log.debug({ chunk: ch.id, done, total: chunks.length }, 'chunk done');
  })));
  return failures.sort((a, b) => (a.chunk < b.chunk ? -1 : 1));
}
