// Placeholder: the benchmark lands with the two-stage pipeline.
export async function runBench(_o: Record<string, unknown>): Promise<void> {
  throw new Error('bench: not implemented yet');
}
