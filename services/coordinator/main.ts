// `tessera coordinator`: wiring only — flags, the NATS connection, signals, metrics → runCoordinator.
import type { Command } from 'commander';
import { type RunFlags, configFromFlags, defaultRunId, positiveIntArg, runFlags, stopSignals, intArg } from '../cli/flags.ts';
import type { CoordinatorReport } from './loop.ts';
import { printReport } from '../cli/report.ts';

export interface CoordinatorFlags extends RunFlags {
  nats?: string;
  run?: string;
  inFlight?: number;
  metricsPort?: number;
}

export function natsFlags(cmd: Command): Command {
  return cmd
    .option('--nats <url>', 'NATS server(s), comma-separated (default: $TESSERA_NATS_URL); auth and TLS from TESSERA_NATS_* variables')
    .option('--run <id>', 'run id: names the run\'s streams and registry entry (default: from the output path)')
    .option('--metrics-port <port>', 'serve Prometheus metrics on this port (0: any free port)', intArg);
}

export function coordinatorCommand(program: Command): void {
  natsFlags(runFlags(program.command('coordinator')))
    .description('open a run, publish its tasks over NATS JetStream to workers and the merger, record their results, finish run.json')
    .option('--in-flight <n>', 'tasks published and not yet finished, at most (default: config nats.inFlight)', positiveIntArg('--in-flight'))
    .action(async (o: CoordinatorFlags) => {
      const { code } = await coordinate(o, o.run ?? defaultRunId(o.output));
      if (code) process.exitCode = code;
    });
}

/** Run a coordinator to the end; returns the report and the exit code it calls for. */
export async function coordinate(o: CoordinatorFlags, run: string, stopping = stopSignals()): Promise<{ report: CoordinatorReport; code: number }> {
  // Loaded here, not at start-up: `tessera --help` and the other commands never pay for them.
  const [{ busOptions, connectBus, checkRunId }, { runCoordinator }, { createMetrics, serveMetrics }, { runProgress }] = await Promise.all([
    import('../../shared/index.ts'), import('./loop.ts'), import('../metrics.ts'), import('../cli/progress.ts'),
  ]);
  checkRunId(run);
  const { config, roi } = configFromFlags(o, o.inFlight ? { nats: { inFlight: o.inFlight } } : {});
  const bar = runProgress({ json: o.json, intervalS: o.progressInterval, bindings: { run } });
  const log = bar.log;
  const nc = await connectBus(busOptions(o.nats, `tessera coordinator ${run}`), log);
  const metrics = o.metricsPort !== undefined ? createMetrics('coordinator') : undefined;
  const served = metrics ? await serveMetrics(metrics, o.metricsPort!) : undefined;
  if (served) log.info({ port: served.port }, 'metrics on /metrics');
  try {
    const report = await runCoordinator({
      nc, run, config, input: o.input, output: o.output, roi, overwrite: o.overwrite, keepWork: o.keepWork,
      log, signal: stopping.signal, progress: bar.update, metrics: metrics?.coordinator,
    });
    bar.stop();
    return { report, code: printReport(report, o.output, !!o.json, stopping.code()) };
  } finally {
    bar.stop();
    await served?.close();
    // Flush what is pending, but never hang on a broker that is gone.
    await Promise.race([nc.drain().catch(() => undefined), new Promise((r) => setTimeout(r, 5000).unref())]);
  }
}
