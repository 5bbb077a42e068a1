// The merger: the one component that resolves what crosses chunk borders — boxes whose
// fragments lie in several chunks (the `boxes` tasks), instance ids over chunk faces (`faces`)
// and the global id table (`resolve`). It is the worker loop over the merger's consumer: the
// same task functions as the embedded runner, restartable like a worker (its state is in the
// work store and the broker), and it never loads a model.
import { type WorkerOptions, type WorkerReport, runWorker } from '../worker/loop.ts';

export function runMerger(o: Omit<WorkerOptions, 'role'>): Promise<WorkerReport> {
  return runWorker({ ...o, role: 'merger' });
}
