// A private nats-server for a test (Debian's package): a free port, file-backed JetStream in a
// temporary directory, stopped and restarted on the same port and store, killed when the
// test process ends.
import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

export const NATS_SERVER = ['/usr/sbin/nats-server', '/usr/bin/nats-server', '/usr/local/bin/nats-server'].find((p) => fs.existsSync(p)) ?? 'nats-server';

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

function accepting(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.connect(port, '127.0.0.1');
    c.once('connect', () => { c.destroy(); resolve(true); });
    c.once('error', () => resolve(false));
  });
}

export interface NatsServer {
  url: string;
  port: number;
  /** Stop (SIGTERM) and wait for the exit. */
  stop(): Promise<void>;
  /** Start again on the same port and store. */
  start(): Promise<void>;
  /** Stop for good and remove the store. */
  close(): Promise<void>;
  /** Send `signal` (SIGKILL: the store is left as a crash leaves it) and wait for the exit. */
  kill(signal: NodeJS.Signals): Promise<void>;
}

export async function startNats(o: { user?: string; password?: string; token?: string; tls?: { cert: string; key: string } } = {}): Promise<NatsServer> {
  const port = await freePort();
  const store = fs.mkdtempSync(path.join(os.tmpdir(), 'tessera-nats-'));
  let proc: ChildProcess | undefined;
  const args = [
    '-a', '127.0.0.1', '-p', String(port), '-js', '-sd', store,
    ...(o.user ? ['--user', o.user, '--pass', o.password ?? ''] : []),
    ...(o.token ? ['--auth', o.token] : []),
    ...(o.tls ? ['--tls', '--tlscert', o.tls.cert, '--tlskey', o.tls.key] : []),
  ];
  const kill = () => proc?.kill('SIGKILL');
  process.once('exit', kill);
  const server: NatsServer = {
    url: `nats://127.0.0.1:${port}`,
    port,
    async start() {
      proc = spawn(NATS_SERVER, args, { stdio: 'ignore' });
      const t0 = Date.now();
      while (!(await accepting(port))) {
        if (proc.exitCode !== null) throw new Error(`nats-server exited with ${proc.exitCode}`);
        if (Date.now() - t0 > 10_000) throw new Error('nats-server did not start within 10 s');
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    async stop() {
      const p = proc;
      if (!p || p.exitCode !== null) return;
      await new Promise<void>((r) => { p.once('exit', () => r()); p.kill('SIGTERM'); });
      proc = undefined;
    },
    async kill(signal) {
      const p = proc;
      if (!p || p.exitCode !== null) return;
      await new Promise<void>((r) => { p.once('exit', () => r()); p.kill(signal); });
      proc = undefined;
    },
    async close() {
      await server.stop();
      process.removeListener('exit', kill);
      fs.rmSync(store, { recursive: true, force: true });
    },
  };
  await server.start();
  return server;
}
