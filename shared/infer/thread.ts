// A pool of inference worker threads, each holding one ONNX Runtime session per model (models
// load once per thread). Requests go to the least-busy thread; input buffers are transferred,
// not copied. Callers bound how much they submit (sliding window, stage two).
import { Worker } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import { loaderArgs } from '../runtime.ts';
import type { Model, ModelCard } from './model.ts';
import { ModelError } from '../errors.ts';

export type Provider = 'cpu' | 'cuda' | 'tensorrt' | 'webgpu';

export interface PoolOptions {
  /** Execution provider; falls back to cpu with a warning when unavailable. @default 'cpu' */
  provider: Provider;
  /** Inference threads (each runs one batch at a time). @default 1 */
  threads: number;
  /** ONNX Runtime intra-op threads per inference thread. @default 1 */
  intraOpThreads: number;
}

/** A network a pool loads: its file and the tensor names its card gives (checked against the graph). */
export interface PoolModel {
  path: string;
  input: string;
  output: string;
}

export interface WorkerInit {
  models: Record<string, PoolModel>;
  provider: Provider;
  intraOpThreads: number;
  entry: string;
}

export type WorkerRequest = { id: number; model: string; input: Float32Array; dims: number[] };
/** Drop the requests still queued, let the running one end, release the sessions, exit the thread. */
export type WorkerClose = { type: 'close' };
export type WorkerReply =
  | { type: 'ready'; provider: string; warning?: string }
  | { type: 'failed'; error: string }
  | { type: 'result'; id: number; data: Float32Array; dims: number[]; ms: number }
  | { type: 'error'; id: number; error: string };

interface Slot {
  worker: Worker;
  busy: number;
  /** The thread has ended (asking it to stop would wait forever). */
  exited?: boolean;
}

export class InferencePool {
  private slots: Slot[] = [];
  private readonly pending = new Map<number, { resolve: (r: { data: Float32Array; dims: number[] }) => void; reject: (e: Error) => void }>();
  private nextId = 1;
  private starting: Promise<void> | undefined;
  private closed = false;
  private closing: Promise<void> | undefined;
  /** Why the pool closed: what requests pending at the close are rejected with. */
  private closeReason: Error | undefined;
  /** Set when a thread died: every later request fails with it instead of waiting forever. */
  private broken: Error | undefined;
  /** Milliseconds the threads spent inside session.run(), summed over threads (not queueing). */
  busyMs = 0;
  /** The provider actually in use, and why it differs from the one asked for. */
  provider: string = 'cpu';
  warning: string | undefined;

  private readonly models: Record<string, PoolModel>;
  private readonly o: PoolOptions;
  private readonly onWarning?: (w: string) => void;

  private constructor(models: Record<string, PoolModel>, o: PoolOptions, onWarning?: (w: string) => void) {
    this.models = models;
    this.o = o;
    this.onWarning = onWarning;
  }

  /** Threads started and every model loaded before it returns (load errors surface here). */
  static async open(models: Record<string, PoolModel>, o: PoolOptions): Promise<InferencePool> {
    const pool = new InferencePool(models, o);
    await pool.start();
    return pool;
  }

  /**
   * Threads started on the first inference request: a process that may never run a network
   * (the coordinator, the merger, a worker serving only paste tasks) never loads the models.
   */
  static lazy(models: Record<string, PoolModel>, o: PoolOptions, onWarning?: (w: string) => void): InferencePool {
    return new InferencePool(models, o, onWarning);
  }

  private start(): Promise<void> {
    if (this.closed) return Promise.reject(this.closeReason ?? new Error('inference pool closed'));
    this.starting ??= this.spawn();
    return this.starting;
  }

  private async spawn(): Promise<void> {
    const models = this.models;
    // The thread's module has this module's extension (.ts from a clone, .js compiled); only a
    // Node that cannot strip types needs tsx registered in the thread first (boot.mjs).
    const self = import.meta.url;
    const entry = (self.endsWith('.ts') ? new URL('./thread-worker.ts', import.meta.url) : new URL('./thread-worker.js', import.meta.url)).href;
    const boot = loaderArgs(fileURLToPath(self)).length ? new URL('./boot.mjs', self) : new URL(entry);
    const slots: Slot[] = [];
    const readies: Promise<WorkerReply>[] = [];
    for (let i = 0; i < this.size; i++) {
      const init: WorkerInit = { models, provider: this.o.provider, intraOpThreads: Math.max(1, this.o.intraOpThreads), entry };
      const worker = new Worker(boot, { workerData: init });
      slots.push({ worker, busy: 0 });
      readies.push(new Promise((resolve, reject) => {
        worker.once('message', resolve);
        worker.once('error', reject);
      }));
    }
    this.slots = slots;
    let replies: WorkerReply[];
    try {
      replies = await Promise.all(readies);
    } catch (err) {
      await this.abandon();
      throw new ModelError(Object.values(models).map((m) => m.path).join(', '), `inference thread failed to start: ${(err as Error).message}`, { cause: err });
    }
    const failed = replies.find((r) => r.type === 'failed');
    if (failed && failed.type === 'failed') {
      await this.abandon();
      throw new ModelError(Object.values(models).map((m) => m.path).join(', '), `cannot load: ${failed.error}`);
    }
    const first = replies[0];
    if (first.type === 'ready') {
      this.provider = first.provider;
      this.warning = first.warning;
      if (first.warning) this.onWarning?.(first.warning);
    }
    const paths = Object.values(models).map((m) => m.path).join(', ');
    for (const s of slots) {
      s.worker.on('message', (m: WorkerReply) => this.onReply(s, m));
      // Transient, not a ModelError: the model loaded, so the thread died of something else
      // (memory); a service's retry may land on a healthy process. A thread can also end with
      // no 'error' event, and its requests would otherwise never settle.
      s.worker.on('error', (err) => this.fail(new Error(`inference thread (${paths}) failed: ${err.message}`, { cause: err })));
      s.worker.on('exit', (code) => {
        s.exited = true;
        if (!this.closed) this.fail(new Error(`inference thread (${paths}) exited (code ${code})`));
      });
    }
  }

  private onReply(slot: Slot, m: WorkerReply): void {
    if (m.type !== 'result' && m.type !== 'error') return;
    slot.busy--;
    const p = this.pending.get(m.id);
    if (!p) return;
    this.pending.delete(m.id);
    if (m.type === 'result') {
      this.busyMs += m.ms;
      p.resolve({ data: m.data, dims: m.dims });
    }
    else p.reject(this.closeReason ?? new Error(m.error));
  }

  private fail(err: Error): void {
    this.broken ??= err;
    this.failAll(err);
  }

  private failAll(err: Error): void {
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }

  /** Why the pool can run nothing more (a thread died), if it cannot. */
  get failure(): Error | undefined {
    return this.broken;
  }

  /** Inference threads (started or not). */
  get size(): number {
    return Math.max(1, this.o.threads);
  }

  /**
   * Runs one batch. `input`'s buffer is transferred to the thread, not copied: after the call
   * the caller's array is detached (length 0) and must not be passed again.
   */
  async run(model: string, input: Float32Array, dims: readonly number[]): Promise<{ data: Float32Array; dims: number[] }> {
    const n = dims.reduce((a, b) => a * b, 1);
    if (input.length !== n) {
      throw new ModelError(this.models[model]?.path ?? model, `input holds ${input.length} values for dims [${dims.join(', ')}] (${n})${input.byteLength === 0 ? ': its buffer was detached, already passed to an earlier run' : ''}`);
    }
    await this.start();
    if (this.broken) throw this.broken;
    if (this.closed) throw this.closeReason ?? new Error('inference pool closed');
    const slot = this.slots.reduce((a, b) => (b.busy < a.busy ? b : a));
    const id = this.nextId++;
    slot.busy++;
    const reply = new Promise<{ data: Float32Array; dims: number[] }>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      try {
        slot.worker.postMessage({ id, model, input, dims: [...dims] } satisfies WorkerRequest, [input.buffer as ArrayBuffer]);
      } catch (err) {
        this.pending.delete(id);
        slot.busy--;
        reject(err);
      }
    });
    // A caller that stopped waiting (a sliding window left by an abort) must not turn the
    // rejection at close into an unhandled one, which ends the process: marked handled here,
    // still rejected for whoever awaits it.
    reply.catch(() => {});
    return reply;
  }

  /** A Model view of one of the pool's networks. */
  model(key: string, card: ModelCard): Model {
    return {
      card,
      run: (input, dims, signal) => {
        signal?.throwIfAborted();
        return this.run(key, input, dims);
      },
    };
  }

  /**
   * Stop: requests queued in the threads are rejected with `reason`, the batch each thread is
   * running ends first, then the threads release their sessions and exit. A thread is never
   * terminated while ONNX Runtime runs in it: that tears its native side down mid-call and
   * aborts the whole process ("terminate called after throwing an instance of 'Napi::Error'").
   */
  close(reason: Error = new Error('inference pool closed')): Promise<void> {
    this.closeReason ??= reason;
    this.closed = true;
    this.closing ??= this.shutDown();
    return this.closing;
  }

  /** A start that failed: every thread has answered (no load in flight), so terminating is safe. */
  private async abandon(): Promise<void> {
    this.closed = true;
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
  }

  private async shutDown(): Promise<void> {
    // A pool still starting: its threads must finish loading before they can be asked to stop.
    await this.starting?.catch(() => {});
    await Promise.all(this.slots.filter((s) => !s.exited).map((s) => stopThread(s.worker)));
    this.failAll(this.closeReason!);
  }
}

/** A thread that does not end this long after being asked is terminated (a hung run). */
const THREAD_STOP_MS = 60_000;

function stopThread(worker: Worker): Promise<void> {
  return new Promise<void>((resolve) => {
    let timer: NodeJS.Timeout | undefined;
    worker.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    try {
      worker.postMessage({ type: 'close' } satisfies WorkerClose);
    } catch {
      void worker.terminate();
      return;
    }
    timer = setTimeout(() => void worker.terminate(), THREAD_STOP_MS);
    timer.unref();
  });
}
