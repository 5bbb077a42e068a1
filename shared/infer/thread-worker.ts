// Inside an inference worker thread: owns ONNX Runtime sessions so that session.run(), which
// blocks its thread for the whole inference, never blocks the main event loop (NATS
// heartbeats, acks and I/O keep flowing there).
import { parentPort, workerData } from 'node:worker_threads';
import * as ort from 'onnxruntime-node';
import type { WorkerClose, WorkerInit, WorkerReply, WorkerRequest } from './thread.ts';

const init = workerData as WorkerInit;
const sessions = new Map<string, ort.InferenceSession>();
const port = parentPort!;

async function open(): Promise<{ provider: string; warning?: string }> {
  const base: ort.InferenceSession.SessionOptions = {
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
    intraOpNumThreads: init.intraOpThreads,
    interOpNumThreads: 1,
    enableCpuMemArena: true,
  };
  let provider = init.provider;
  let warning: string | undefined;
  // ONNX Runtime's own log would print a provider it cannot load as raw native error lines; the
  // fallback below says it once, in our log (errors still reach us as exceptions).
  if (provider !== 'cpu') ort.env.logLevel = 'fatal';
  for (const [key, m] of Object.entries(init.models)) {
    try {
      sessions.set(key, await ort.InferenceSession.create(m.path, { ...base, executionProviders: provider === 'cpu' ? ['cpu'] : [provider, 'cpu'] }));
    } catch (err) {
      if (provider === 'cpu') throw err;
      warning = `execution provider "${provider}" is not available here (${(err as Error).message.split('\n')[0]}); falling back to cpu`;
      provider = 'cpu';
      sessions.set(key, await ort.InferenceSession.create(m.path, { ...base, executionProviders: ['cpu'] }));
    }
    // The card's tensor names are the ones used: a card written for another graph fails here.
    const s = sessions.get(key)!;
    if (!s.inputNames.includes(m.input) || !s.outputNames.includes(m.output)) {
      throw new Error(`${m.path}: its card names input "${m.input}" and output "${m.output}", but the graph has inputs [${s.inputNames.join(', ')}] and outputs [${s.outputNames.join(', ')}]`);
    }
  }
  return { provider, warning };
}

const ready = open();
ready.then(
  (r) => port.postMessage({ type: 'ready', ...r } satisfies WorkerReply),
  (err) => port.postMessage({ type: 'failed', error: String((err as Error).message ?? err) } satisfies WorkerReply),
);

// One network call at a time per thread: session.run() returns a promise, and letting several
// overlap in one thread would oversubscribe the cores the pool was sized for.
let queue: Promise<void> = Promise.resolve();
let closing = false;
port.on('message', (req: WorkerRequest | WorkerClose) => {
  if ('type' in req) {
    // From now on queued requests are answered at once; the running one ends first.
    closing = true;
    queue = queue.then(shutDown);
    return;
  }
  queue = queue.then(() => serve(req));
});

/** Release the sessions with no run in flight, then end the thread (never torn down mid-run). */
async function shutDown(): Promise<void> {
  await ready.catch(() => {});
  for (const s of sessions.values()) await s.release().catch(() => {});
  sessions.clear();
  process.exit(0);
}

async function serve(req: WorkerRequest): Promise<void> {
  try {
    if (closing) throw new Error('inference pool closed');
    await ready;
    const s = sessions.get(req.model);
    if (!s) throw new Error(`unknown model "${req.model}"`);
    const input = new ort.Tensor('float32', req.input, req.dims);
    const t0 = performance.now();
    const m = init.models[req.model];
    const out = await s.run({ [m.input]: input }, [m.output]);
    const ms = performance.now() - t0;
    const t = out[m.output];
    const data = (t.data as Float32Array).slice();
    input.dispose?.();
    t.dispose?.();
    port.postMessage({ type: 'result', id: req.id, data, dims: t.dims.map(Number), ms } satisfies WorkerReply, [data.buffer]);
  } catch (err) {
    port.postMessage({ type: 'error', id: req.id, error: String((err as Error).message ?? err) } satisfies WorkerReply);
  }
}
