// `tessera run --nats URL --workers N --mergers M`: a whole distributed run on one machine —
// the coordinator in this process, N worker processes and M merger processes against the broker.
// The children get the broker's URL through the environment (never argv, where credentials
// would show in `ps`); one that dies is started again (a few times), and all are stopped when
// the coordinator ends.
import { type ChildProcess, spawn } from 'node:child_process';
import * as path from 'node:path';
import { PACKAGE_ROOT, createLogger } from '../../shared/index.ts';
import { defaultRunId, stopSignals } from './flags.ts';
import { type CoordinatorFlags, coordinate } from '../coordinator/main.ts';

export interface DistributedFlags extends CoordinatorFlags {
  workers: number;
  mergers: number;
  concurrency: number;
}

const RESTARTS = 5;

export async function runDistributed(o: DistributedFlags): Promise<number> {
  const run = o.run ?? defaultRunId(o.output);
  const log = createLogger(undefined, { run, service: 'run' });
  const cli = path.join(PACKAGE_ROOT, 'bin', 'tessera.mjs');
  const env = { ...process.env, TESSERA_NATS_URL: o.nats ?? process.env.TESSERA_NATS_URL };
  const children = new Map<ChildProcess, 'worker' | 'merger'>();
  let ending = false;
  let restarts = 0;
  // Ctrl-C / SIGTERM, or every process of a role failing for good (a run nobody works on would
  // wait for ever): either stops the coordinator; the latter exits 2.
  const signals = stopSignals();
  const gaveUp = new AbortController();
  const stopping = { signal: AbortSignal.any([signals.signal, gaveUp.signal]), code: () => signals.code() || (gaveUp.signal.aborted ? 2 : 0) };
  const start = (role: 'worker' | 'merger') => {
    const args = [cli, role, '--run', run, ...(role === 'worker' ? ['--concurrency', String(o.concurrency)] : [])];
    const child = spawn(process.execPath, args, { env, stdio: ['ignore', 'ignore', 'inherit'] });
    children.set(child, role);
    child.on('exit', (code, sig) => {
      children.delete(child);
      if (ending) return;
      log.error({ role, code, signal: sig }, `${role} process ended before the run`);
      if (restarts++ < RESTARTS) start(role);
      else if (![...children.values()].includes(role)) {
        log.error({ role }, `every ${role} process failed (see their errors above); stopping the run`);
        gaveUp.abort(new Error(`every ${role} process failed`));
      }
    });
  };
  for (let i = 0; i < o.workers; i++) start('worker');
  for (let i = 0; i < o.mergers; i++) start('merger');
  try {
    const { code } = await coordinate(o, run, stopping);
    return code;
  } finally {
    ending = true;
    await Promise.all([...children.keys()].map((c) => new Promise<void>((r) => {
      c.once('exit', () => r());
      c.kill('SIGTERM');
    })));
  }
}
