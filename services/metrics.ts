// Prometheus metrics of the services (prom-client), served on --metrics-port at /metrics.
// One registry per process; label sets are small and fixed (task kind, outcome), never per
// chunk, so the series count stays constant on any volume.
import * as http from 'node:http';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

const BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];

export interface WorkerMetrics {
  task(kind: string, outcome: 'done' | 'failed' | 'retried', ms: number, redelivered: boolean): void;
  rejected(): void;
  /** A task message of an older scope than the run's, dropped. */
  stale?(reason: 'identity' | 'epoch'): void;
  /** Seconds the inference threads have spent in ONNX Runtime so far (busy fraction = rate / threads). */
  busy(seconds: number): void;
}

export interface CoordinatorMetrics {
  result(kind: string, ok: boolean, ms: number, delivery: number): void;
  queue(inFlight: number): void;
  /** A result of another scope than the coordinator's, rejected (never recorded). */
  stale?(reason: 'identity' | 'epoch'): void;
  /** Output voxels written (voxels/s = its rate). */
  voxels(n: number): void;
}

export interface Metrics {
  registry: Registry;
  worker: WorkerMetrics;
  coordinator: CoordinatorMetrics;
}

export function createMetrics(service: string): Metrics {
  const registry = new Registry();
  registry.setDefaultLabels({ service });
  collectDefaultMetrics({ register: registry });
  const tasks = new Counter({ name: 'tessera_tasks_total', help: 'Tasks finished, by kind and outcome (done, failed, retried).', labelNames: ['kind', 'outcome'], registers: [registry] });
  const redelivered = new Counter({ name: 'tessera_tasks_redelivered_total', help: 'Tasks received on a redelivery (a worker died or handed them back).', labelNames: ['kind'], registers: [registry] });
  const seconds = new Histogram({ name: 'tessera_task_seconds', help: 'Task run time on the worker.', labelNames: ['kind'], buckets: BUCKETS, registers: [registry] });
  const rejected = new Counter({ name: 'tessera_messages_rejected_total', help: 'Malformed or foreign messages dropped.', registers: [registry] });
  const stale = new Counter({ name: 'tessera_messages_stale_total', help: 'Task or result messages of another scope (identity, or an epoch before the scope began) dropped, by reason.', labelNames: ['reason'], registers: [registry] });
  const queue = new Gauge({ name: 'tessera_queue_in_flight', help: 'Tasks published and not yet finished (coordinator).', registers: [registry] });
  const busy = new Counter({ name: 'tessera_inference_busy_seconds_total', help: 'Seconds the inference threads spent in ONNX Runtime (busy fraction = rate / threads).', registers: [registry] });
  const voxels = new Counter({ name: 'tessera_voxels_total', help: 'Output voxels written (segmented chunks); voxels/s is its rate.', registers: [registry] });
  let lastBusy = 0;
  return {
    registry,
    worker: {
      task: (kind, outcome, ms, again) => {
        tasks.inc({ kind, outcome });
        seconds.observe({ kind }, ms / 1000);
        if (again) redelivered.inc({ kind });
      },
      rejected: () => rejected.inc(),
      stale: (reason) => stale.inc({ reason }),
      busy: (sec) => {
        if (sec > lastBusy) busy.inc(sec - lastBusy);
        lastBusy = sec;
      },
    },
    coordinator: {
      result: (kind, ok, ms, delivery) => {
        tasks.inc({ kind, outcome: ok ? 'done' : 'failed' });
        seconds.observe({ kind }, ms / 1000);
        if (delivery > 1) redelivered.inc({ kind });
      },
      queue: (n) => queue.set(n),
      stale: (reason) => stale.inc({ reason }),
      voxels: (n) => voxels.inc(n),
    },
  };
}

/** Serve /metrics on `port` (0: a free port); returns the port and a closer. */
export async function serveMetrics(m: Metrics, port: number, host = '0.0.0.0'): Promise<{ port: number; close: () => Promise<void> }> {
  const server = http.createServer((req, res) => {
    if (req.url !== '/metrics') {
      res.writeHead(404).end();
      return;
    }
    m.registry.metrics().then((text) => {
      res.writeHead(200, { 'content-type': m.registry.contentType }).end(text);
    }, (err: Error) => res.writeHead(500).end(err.message));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const addr = server.address();
  return { port: typeof addr === 'object' && addr ? addr.port : port, close: () => new Promise((r) => server.close(() => r())) };
}
