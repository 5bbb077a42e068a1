// `tessera worker` and `tessera merger`: wiring only — flags, the NATS connection, signals,
// metrics → runWorker / runMerger. SIGTERM or Ctrl-C hands the tasks in hand back and exits
// 143 / 130: only a worker whose run ended exits 0, so a Kubernetes Job replaces a preempted
// worker instead of counting its exit as the index's success.
import type { Command } from 'commander';
import type { Role } from '../../shared/index.ts';
import { intArg, positiveIntArg, stopSignals } from '../cli/flags.ts';

interface WorkerFlags {
  nats?: string;
  run: string;
  concurrency: number;
  root?: string[];
  metricsPort?: number;
}

export function workerCommand(program: Command, role: Role): void {
  program.command(role)
    .description(role === 'worker'
      ? 'pull a run\'s chunk tasks (stage one, stage two, paste, relabel) from NATS and run them; exits when the run ends'
      : 'pull a run\'s border tasks (boxes across chunks, instance faces, the global id table) from NATS and run them; exits when the run ends')
    .requiredOption('--run <id>', 'the run id the coordinator registered')
    .option('--nats <url>', 'NATS server(s) (default: $TESSERA_NATS_URL); auth and TLS from TESSERA_NATS_* variables')
    .option('--concurrency <n>', 'tasks in hand at once (the next task\'s reads overlap this one\'s inference)', positiveIntArg('--concurrency'), 2)
    .option('--root <dir...>', 'refuse runs whose input or output lies outside these directories')
    .option('--metrics-port <port>', 'serve Prometheus metrics on this port (0: any free port)', intArg)
    .action(async (o: WorkerFlags) => {
      // Loaded here, not at start-up: `tessera --help` and the other commands never pay for them.
      const [{ busOptions, connectBus, createLogger, checkRunId }, { runWorker }, { createMetrics, serveMetrics }] = await Promise.all([
        import('../../shared/index.ts'), import('./loop.ts'), import('../metrics.ts'),
      ]);
      checkRunId(o.run);
      const log = createLogger(undefined, { run: o.run, service: role });
      const { signal, code } = stopSignals();
      const nc = await connectBus(busOptions(o.nats, `tessera ${role} ${o.run}`), log);
      const metrics = o.metricsPort !== undefined ? createMetrics(role) : undefined;
      const served = metrics ? await serveMetrics(metrics, o.metricsPort!) : undefined;
      if (served) log.info({ port: served.port }, 'metrics on /metrics');
      try {
        await runWorker({ nc, run: o.run, role, concurrency: o.concurrency, roots: o.root, log, signal, metrics: metrics?.worker });
      } finally {
        await served?.close();
        // Flush what is pending, but never hang on a broker that is gone.
        await Promise.race([nc.drain().catch(() => undefined), new Promise((r) => setTimeout(r, 5000).unref())]);
      }
      // Tasks still running in this process were handed back; do not wait for them.
      process.exit(code());
    });
}
