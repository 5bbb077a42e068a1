// Tessera's services (`tessera coordinator|worker|merger`) as child processes in a test, the
// waits the broker tests share, and the bit-for-bit comparison of two outputs.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ROOT, filesUnder, tesseraOk, tmpDir } from './cli.ts';
import { type NatsServer, startNats } from './nats.ts';

const CLI = path.join(ROOT, 'bin', 'tessera.mjs');

export type Service = ChildProcess & { err: () => string; out: () => string };

/** Every service process a test file started: killed at the end even when an assertion failed. */
export const started = new Set<ChildProcess>();

/** A service process, its stdout and stderr kept for assertions. */
export function service(args: string[], env: Record<string, string> = {}): Service {
  const p = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, TESSERA_LOG: 'warn', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  started.add(p);
  p.once('exit', () => started.delete(p));
  let err = '';
  let out = '';
  p.stderr!.on('data', (d) => (err += d));
  p.stdout!.on('data', (d) => (out += d));
  return Object.assign(p, { err: () => err, out: () => out });
}

export function killStarted(): void {
  for (const p of started) p.kill('SIGKILL');
}

/** The exit code (128 for a signal), or a rejection after `ms`. */
export function exited(p: ChildProcess, ms = 180_000): Promise<number> {
  return new Promise((resolve, reject) => {
    if (p.exitCode !== null || p.signalCode !== null) return resolve(p.exitCode ?? 128);
    const t = setTimeout(() => reject(new Error(`process ${p.pid} did not exit within ${ms} ms`)), ms);
    p.once('exit', (code, sig) => { clearTimeout(t); resolve(code ?? (sig ? 128 : -1)); });
  });
}

/** Lines of a kind's done log: tasks recorded done so far. */
export function doneLines(out: string, kind: string): number {
  const f = path.join(out, '.work', 'done', `${kind}.log`);
  return fs.existsSync(f) ? fs.readFileSync(f, 'utf8').split('\n').filter(Boolean).length : 0;
}

export async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 120_000): Promise<void> {
  const t0 = Date.now();
  while (!(await cond())) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Two outputs hold the same segmentation, instances, objects (and boxes.json where either has one), bit for bit. */
export function sameOutput(a: string, b: string): void {
  for (const sub of ['segmentation', 'instances', 'objects']) {
    const fa = filesUnder(path.join(a, sub));
    const fb = filesUnder(path.join(b, sub));
    assert.deepEqual([...fb.keys()].sort(), [...fa.keys()].sort(), `${sub}: same files`);
    for (const [k, v] of fa) assert.ok(v.equals(fb.get(k)!), `${sub}/${k} differs`);
  }
  const boxes = [a, b].map((o) => path.join(o, 'boxes.json'));
  if (boxes.some((f) => fs.existsSync(f))) assert.ok(fs.readFileSync(boxes[0]).equals(fs.readFileSync(boxes[1])), 'boxes.json differs');
}

/** What a broker test file sets up once: a synthetic volume, its config, the embedded run's output, a nats-server. */
export interface BrokerFixture {
  dir: string;
  vol: string;
  cfg: string;
  embedded: string;
  nats: NatsServer;
}

export async function openBrokerFixture(shape: string, config: Record<string, unknown>): Promise<BrokerFixture> {
  const dir = tmpDir();
  const vol = path.join(dir, 'vol.zarr');
  await tesseraOk(['synth', '--kind', 'em', '--shape', shape, '--seed', '5', '--out', vol]);
  const cfg = path.join(dir, 'cfg.json');
  fs.writeFileSync(cfg, JSON.stringify(config));
  const embedded = path.join(dir, 'embedded.zarr');
  await tesseraOk(['run', '--input', vol, '--output', embedded, '--config', cfg]);
  return { dir, vol, cfg, embedded, nats: await startNats() };
}

export async function closeBrokerFixture(f: Partial<BrokerFixture>): Promise<void> {
  killStarted();
  await f.nats?.close();
  if (f.dir) fs.rmSync(f.dir, { recursive: true, force: true });
}
