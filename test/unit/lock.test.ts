// The output lock (shared/run/lock.ts): one winner when several processes take over a stale lock
// at once, a heartbeat that never overwrites another holder's lock (it is fenced instead),
// staleness from the holder's own beat time, and zombies counted as gone.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { alive, lockOutput, lockPath, procStatState, type LockDoc } from '../../shared/run/lock.ts';
import { isTesseraError } from '../../shared/errors.ts';
import { tmpDir } from '../helpers/tmpdir.ts';

const LOCK_TS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../shared/run/lock.ts');

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Poll (a loaded machine delays timers) until `f` holds, or fail after 5 s. */
async function until(f: () => boolean, what: string): Promise<void> {
  for (const t0 = Date.now(); !f();) {
    if (Date.now() - t0 > 5_000) assert.fail(`timed out: ${what}`);
    await sleep(20);
  }
}
const readLock = (out: string) => JSON.parse(fs.readFileSync(lockPath(out), 'utf8')) as LockDoc;

/** A lock of another host whose holder last beat `ago` ms ago. */
function foreignLock(out: string, ago: number): void {
  const at = new Date(Date.now() - ago).toISOString();
  fs.writeFileSync(lockPath(out), JSON.stringify({ pid: 1, host: 'gpu-node-7', token: 'theirs', startedAt: at, beatAt: at }));
}

test('procStatState reads the state after the last parenthesis of the command name', () => {
  assert.equal(procStatState('4242 (node) S 1 4242 4242 0 -1'), 'S');
  assert.equal(procStatState('4243 (we (ird) name) Z 1 0 0'), 'Z');
  assert.equal(procStatState('garbage'), undefined);
});

test('staleness is judged from the holder\'s beatAt, not the file\'s mtime', (t) => {
  const dir = tmpDir(t);
  const out = path.join(dir, 'out.zarr');
  foreignLock(out, 1_000);
  // Its mtime is old, its beat recent: in use.
  const old = new Date(Date.now() - 600_000);
  fs.utimesSync(lockPath(out), old, old);
  assert.throws(() => lockOutput(out, { staleMs: 5_000 }), /in use by tessera pid 1 on gpu-node-7/);
  // A beat older than the stale limit (mtime fresh): taken over.
  foreignLock(out, 10_000);
  const lock = lockOutput(out, { staleMs: 5_000 });
  const doc = readLock(out);
  assert.equal(doc.pid, process.pid);
  assert.equal(doc.host, os.hostname());
  assert.match(doc.token, /^[0-9a-f]{24}$/);
  assert.ok(Date.now() - Date.parse(doc.beatAt!) < 5_000);
  lock.check();
  lock.release();
  assert.ok(!fs.existsSync(lockPath(out)));
});

test('the heartbeat never overwrites another holder\'s lock: the old holder is fenced', async (t) => {
  const dir = tmpDir(t);
  const out = path.join(dir, 'out.zarr');
  let fencedBy: unknown;
  const lock = lockOutput(out, { staleMs: 600, onFenced: (e) => { fencedBy = e; } });
  const mine = readLock(out);
  await until(() => readLock(out).beatAt !== mine.beatAt, 'the heartbeat writes beatAt');
  // Another process took it over meanwhile.
  const theirs = { pid: 999_999, host: 'other-host', token: 'theirs', startedAt: 'now', beatAt: new Date().toISOString() };
  fs.writeFileSync(lockPath(out), JSON.stringify(theirs));
  await until(() => fencedBy !== undefined, 'the heartbeat finds the lock taken');
  await sleep(300);
  assert.deepEqual(readLock(out), theirs, 'their lock is untouched');
  assert.ok(isTesseraError(fencedBy, 'FencedError'));
  assert.throws(() => lock.check(), /fenced — its lock .*out\.zarr\.lock was taken over by tessera pid 999999 on other-host/);
  lock.release();
  assert.deepEqual(readLock(out), theirs, 'release leaves their lock');
});

test('check() re-reads the lock at once when the last beat is old (after a stop), without waiting for the heartbeat', (t) => {
  const dir = tmpDir(t);
  const out = path.join(dir, 'out.zarr');
  const lock = lockOutput(out, { staleMs: 60_000 });
  lock.check(); // fresh: no read needed
  fs.writeFileSync(lockPath(out), JSON.stringify({ pid: 7, host: 'b', token: 'x', startedAt: 'now', beatAt: new Date().toISOString() }));
  lock.check(); // the last beat is recent: not re-read yet (cheap)
  // Pretend the process was stopped for a minute: Date.now() jumps.
  const now = Date.now;
  Date.now = () => now() + 60_000;
  try {
    assert.throws(() => lock.check(), /taken over by tessera pid 7 on b/);
  } finally {
    Date.now = now;
  }
  lock.release();
});

test('a zombie holder counts as gone', async (t) => {
  const dir = tmpDir(t);
  const out = path.join(dir, 'out.zarr');
  // sh forks `sleep 0.1` then becomes `sleep 5`, which never reaps it: a zombie for 5 s.
  const p = spawn('sh', ['-c', 'sleep 0.1 & echo $!; exec sleep 5'], { stdio: ['ignore', 'pipe', 'ignore'] });
  t.after(() => p.kill('SIGKILL'));
  const pid = Number(await new Promise<string>((r) => p.stdout.once('data', (d) => r(String(d)))));
  await sleep(400);
  assert.equal(procStatState(fs.readFileSync(`/proc/${pid}/stat`, 'utf8')), 'Z', 'the child is a zombie');
  assert.equal(alive(pid), false);
  assert.equal(alive(process.pid), true);
  const at = new Date().toISOString();
  fs.writeFileSync(lockPath(out), JSON.stringify({ pid, host: os.hostname(), token: 'zombie', startedAt: at, beatAt: at }));
  const lock = lockOutput(out, { staleMs: 60_000 });
  assert.equal(readLock(out).pid, process.pid);
  lock.release();
});

test('processes taking over one stale lock at the same moment: exactly one wins, every round', async (t) => {
  const dir = tmpDir(t);
  const rounds = 25;
  const takers = 3;
  const old = new Date(Date.now() - 600_000);
  for (let r = 0; r < rounds; r++) {
    foreignLock(path.join(dir, `out-${r}.zarr`), 600_000);
    fs.utimesSync(lockPath(path.join(dir, `out-${r}.zarr`)), old, old);
  }
  // Each round starts at the same wall-clock instant in every taker; they spin until then. A
  // taker stays alive (holding what it won) until every taker has answered: one that exited
  // would leave its locks to a late taker as stale — rightly taken over, but not this test.
  const t0 = Date.now() + 1_500;
  const code = `
    const { lockOutput } = await import(${JSON.stringify(LOCK_TS)});
    const res = [];
    for (let r = 0; r < ${rounds}; r++) {
      const at = ${t0} + r * 40;
      while (Date.now() < at) {}
      try { lockOutput(${JSON.stringify(dir)} + '/out-' + r + '.zarr', { staleMs: 60000 }); res.push(1); } catch (e) { res.push(/in use/.test(e.message) ? 0 : String(e.message)); }
    }
    process.stdout.write(JSON.stringify(res) + '\\n');
    process.stdin.resume();
    process.stdin.on('end', () => process.exit(0));`;
  const procs = Array.from({ length: takers }, () => spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { stdio: ['pipe', 'pipe', 'inherit'] }));
  t.after(() => { for (const p of procs) p.kill('SIGKILL'); });
  const outs = await Promise.all(procs.map((p) => new Promise<(number | string)[]>((resolve, reject) => {
    let s = '';
    p.stdout.on('data', (d) => {
      s += d;
      if (s.endsWith('\n')) resolve(JSON.parse(s));
    });
    p.on('error', reject);
    p.on('close', (c) => reject(new Error(`a taker exited (${c}) before answering: ${s}`)));
  })));
  await Promise.all(procs.map((p) => new Promise((r) => { p.once('close', r); p.stdin.end(); })));
  for (let r = 0; r < rounds; r++) {
    const got = outs.map((o) => o[r]);
    assert.equal(got.filter((x) => x === 1).length, 1, `round ${r}: exactly one winner (${JSON.stringify(got)})`);
    assert.ok(got.every((x) => x === 0 || x === 1), `round ${r}: losers see "in use": ${JSON.stringify(got)}`);
    assert.notEqual(readLock(path.join(dir, `out-${r}.zarr`)).token, 'theirs');
  }
});
