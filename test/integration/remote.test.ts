// Inputs by URL against real servers started here on loopback: a static HTTP server with Range
// support (serve-handler) and an S3-protocol server (s3rver), each behind a fault proxy. Runs go
// through the real CLI; each must give the local run's output bit for bit, and each injected
// fault must end as its local equivalent does: retried faults → the same output; a missing
// object → the missing-chunk failure, or with --allow-missing the local fill result; bad
// credentials and a missing bucket → exit 2 with one line naming the URL, as a bad local input.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { tessera, tesseraOk, tmpDir } from '../helpers/cli.ts';
import { sameOutput } from '../helpers/services.ts';
import { startNats, type NatsServer } from '../helpers/nats.ts';
import { type FaultProxy, type Served, S3_BUCKET, S3_KEYS, putTree, shardedCopy, startFaultProxy, startHttp, startS3 } from '../helpers/remote.ts';

let dir: string;
let served: string;
let http: Served;
let s3: Served;
let httpProxy: FaultProxy;
let s3Proxy: FaultProxy;
let cfg: string;
const local: Record<'two' | 'one' | 'holeyFill', string> = { two: '', one: '', holeyFill: '' };

/** The S3 credentials and endpoint a run's environment gives (the proxy in front of s3rver). */
const s3Env = () => ({ AWS_ACCESS_KEY_ID: S3_KEYS.accessKeyId, AWS_SECRET_ACCESS_KEY: S3_KEYS.secretAccessKey, AWS_ENDPOINT_URL_S3: s3Proxy.url, AWS_REGION: 'us-east-1' });

async function runJson(args: string[], env: Record<string, string> = {}) {
  const r = await tessera([...args, '--json'], env);
  return { ...r, report: r.stdout.trim() ? JSON.parse(r.stdout) : undefined };
}

before(async () => {
  dir = tmpDir();
  served = path.join(dir, 'served');
  fs.mkdirSync(served);
  const vol = path.join(served, 'vol.zarr');
  await tesseraOk(['synth', '--kind', 'em', '--shape', '16,128,128', '--seed', '21', '--out', vol]);
  // The same voxels as Zarr v3 shards of small inner chunks (what a bucket at FAFB scale holds).
  await shardedCopy(vol, path.join(served, 'sh.zarr'), [16, 64, 64], [8, 32, 32]);
  const holey = path.join(served, 'holey.zarr');
  fs.cpSync(vol, holey, { recursive: true });
  fs.rmSync(path.join(holey, '0', '0', '0', '0'));
  // Timeouts of 1 s so that a reply held 2.5 s by the proxy is abandoned and tried again.
  cfg = path.join(dir, 'cfg.json');
  fs.writeFileSync(cfg, JSON.stringify({ extends: 'synthetic-em', io: { remote: { timeout: 1, tries: 4 } } }));
  local.two = path.join(dir, 'local-two.zarr');
  local.one = path.join(dir, 'local-one.zarr');
  local.holeyFill = path.join(dir, 'local-holey-fill.zarr');
  await Promise.all([
    tesseraOk(['run', '--input', vol, '--output', local.two, '--config', cfg]),
    tesseraOk(['run', '--input', vol, '--output', local.one, '--config', cfg, '--mode', 'one-stage']),
    tesseraOk(['run', '--input', holey, '--output', local.holeyFill, '--config', cfg, '--mode', 'one-stage', '--allow-missing']),
  ]);
  http = await startHttp(served);
  s3 = await startS3(path.join(dir, 's3'));
  await putTree(s3.url, S3_BUCKET, 'data/vol.zarr', vol);
  await putTree(s3.url, S3_BUCKET, 'data/sh.zarr', path.join(served, 'sh.zarr'));
  httpProxy = await startFaultProxy(http.url);
  s3Proxy = await startFaultProxy(s3.url);
});

after(async () => {
  await httpProxy?.close();
  await s3Proxy?.close();
  await http?.close();
  await s3?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

test('https:// two-stage (NGFF v2 pyramid) through 503s and a reset mid-body: bit-identical to the local run; the same command resumes it (nothing redone) and status reads it', async () => {
  const chunk = /\/vol\.zarr\/0\/0\/0\/0$/;
  httpProxy.plan(chunk, { kind: 'status', status: 503 }, 2);
  httpProxy.plan(chunk, { kind: 'reset' }, 1);
  const out = path.join(dir, 'https-two.zarr');
  const args = ['run', '--input', `${httpProxy.url}/vol.zarr`, '--output', out, '--config', cfg];
  const r = await runJson(args);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(httpProxy.pending(), 0, 'every planned fault was served');
  sameOutput(local.two, out);
  const run = JSON.parse(fs.readFileSync(path.join(out, 'run.json'), 'utf8'));
  assert.equal(run.identity.input.location, `${httpProxy.url}/vol.zarr`);
  const again = await runJson(args);
  assert.equal(again.code, 0, again.stderr);
  assert.ok(Object.values(again.report.tasks as Record<string, { ran: number }>).every((t) => t.ran === 0), 'resumed: every task reused');
  const st = JSON.parse((await tesseraOk(['status', out, '--json'])).stdout);
  assert.equal(st.status, 'complete');
});

test('https:// one-stage from Zarr v3 shards (suffix range for each shard index, ranges for inner chunks): bit-identical to the local run', async () => {
  const before = httpProxy.seen.length;
  const out = path.join(dir, 'https-one.zarr');
  const r = await runJson(['run', '--input', `${httpProxy.url}/sh.zarr`, '--output', out, '--config', cfg, '--mode', 'one-stage']);
  assert.equal(r.code, 0, r.stderr);
  sameOutput(local.one, out);
  const seen = httpProxy.seen.slice(before);
  assert.ok(seen.some((s) => /\/sh\.zarr\/0\/c\/0\/0\/0 bytes=-\d+$/.test(s)), `a suffix read of a shard index: ${seen.join(' | ')}`);
  assert.ok(seen.some((s) => /\/sh\.zarr\/0\/c\/0\/0\/0 bytes=\d+-\d+$/.test(s)), 'ranged reads of inner chunks');
});

test('s3:// two-stage from shards through SlowDown bursts and a reply slower than the timeout: bit-identical to the local run', async () => {
  const shard = /\/sh\.zarr\/0\/c\/0\/0\/0$/;
  s3Proxy.plan(shard, { kind: 'slowdown' }, 2);
  s3Proxy.plan(shard, { kind: 'slow', ms: 2500 }, 1);
  const out = path.join(dir, 's3-two.zarr');
  const r = await runJson(['run', '--input', `s3://${S3_BUCKET}/data/sh.zarr`, '--output', out, '--config', cfg], s3Env());
  assert.equal(r.code, 0, r.stderr);
  assert.equal(s3Proxy.pending(), 0);
  sameOutput(local.two, out);
  const run = JSON.parse(fs.readFileSync(path.join(out, 'run.json'), 'utf8'));
  assert.equal(run.identity.input.location, `s3://${S3_BUCKET}/data/sh.zarr`);
  assert.ok(!JSON.stringify(run).includes(S3_KEYS.secretAccessKey), 'no credential in run.json');
});

test('s3:// one-stage (NGFF v2) run distributed (a worker process opens the same URL with its own credentials): bit-identical to the local run', async () => {
  let nats: NatsServer | undefined;
  try {
    nats = await startNats();
    const out = path.join(dir, 's3-one-nats.zarr');
    const r = await runJson(['run', '--nats', nats.url, '--workers', '1', '--input', `s3://${S3_BUCKET}/data/vol.zarr`, '--output', out, '--config', cfg, '--mode', 'one-stage'], s3Env());
    assert.equal(r.code, 0, r.stderr);
    sameOutput(local.one, out);
  } finally {
    await nats?.close();
  }
});

test('eval scores against ground truth at a URL (the input volume\'s labels/gt over s3://) exactly as against the local copy', async () => {
  const at = (gt: string, env: Record<string, string> = {}) => tessera(['eval', '--pred', local.two, '--gt', gt, '--json'], env);
  const here = await at(path.join(served, 'vol.zarr'));
  const there = await at(`s3://${S3_BUCKET}/data/vol.zarr`, s3Env());
  assert.equal(there.code, 0, there.stderr);
  assert.equal(here.code, 0, here.stderr);
  const [a, b] = [there, here].map((r) => JSON.parse(r.stdout) as Record<string, unknown>);
  assert.equal(a.gt, `s3://${S3_BUCKET}/data/vol.zarr`);
  assert.deepEqual({ ...a, gt: '' }, { ...b, gt: '' });
});

test('view with a URL input: neuroglancer\'s image layer reads the URL itself (not served here), the output is served', async () => {
  const { openView } = await import('../../shared/view/serve.ts');
  const v = await openView({ output: local.two, input: `${http.url}/vol.zarr`, port: 0 });
  try {
    const sources = (v.state.layers as { source: string }[]).map((l) => l.source);
    assert.equal(sources[0], `zarr://${http.url}/vol.zarr`);
    assert.equal((await fetch(`${v.url}/input/.zattrs`)).status, 404);
    assert.equal((await fetch(`${v.url}/output/segmentation/.zattrs`)).status, 200);
  } finally {
    await v.close();
  }
});

test('a missing object is a missing chunk: the task fails naming the URL and chunk; --allow-missing skips what has no stored input (HEAD over the network) as the local run does, counted', async () => {
  const failed = await runJson(['run', '--input', `${http.url}/holey.zarr`, '--output', path.join(dir, 'holey-fail.zarr'), '--config', cfg, '--mode', 'one-stage']);
  assert.equal(failed.code, 1, failed.stderr);
  assert.deepEqual(failed.report.failures.map((f: { task: string }) => f.task), ['predict/0_0_0']);
  assert.match(failed.report.failures[0].error, /^http:\/\/127\.0\.0\.1:\d+\/holey\.zarr\/0 \(chunk 0\/0\/0\): storage chunk 0\/0\/0 is missing.*--allow-missing/);
  const out = path.join(dir, 'holey-fill.zarr');
  const filled = await runJson(['run', '--input', `${http.url}/holey.zarr`, '--output', out, '--config', cfg, '--mode', 'one-stage', '--allow-missing']);
  assert.equal(filled.code, 0, filled.stderr);
  // The volume's one storage chunk is missing: its task has no stored input in reach and is
  // skipped as background without a network, over the network (HEAD requests) as on disk.
  assert.ok(filled.report.inputMissingSkipped.skippedVoxels > 0, JSON.stringify(filled.report.inputMissingSkipped));
  assert.equal(filled.report.inputMissingSkipped.skippedTasks.predict, 1);
  sameOutput(local.holeyFill, out);
});

test('bad credentials and a missing bucket: exit 2 (as a bad local input) with one line naming the URL, no secret; a chunk failing past every try fails its task naming URL and key', async () => {
  const local = await tessera(['run', '--input', path.join(dir, 'no-such.zarr'), '--output', path.join(dir, 'x.zarr'), '--config', cfg]);
  const bad = await tessera(['run', '--input', `s3://${S3_BUCKET}/data/sh.zarr`, '--output', path.join(dir, 'bad.zarr'), '--config', cfg],
    { ...s3Env(), AWS_ACCESS_KEY_ID: 'WRONGKEY', AWS_SECRET_ACCESS_KEY: 'hunter2-secret' });
  assert.equal(bad.code, local.code);
  assert.equal(bad.code, 2);
  assert.equal(bad.stderr.trim(), `tessera: s3://${S3_BUCKET}/data/sh.zarr: access denied reading zarr.json with credentials from environment (HTTP 403 InvalidAccessKeyId); check the credentials and the bucket policy`);
  assert.ok(!bad.stderr.includes('hunter2'));
  const nob = await tessera(['run', '--input', 's3://no-bucket/data/sh.zarr', '--output', path.join(dir, 'nob.zarr'), '--config', cfg], s3Env());
  assert.equal(nob.code, 2);
  assert.equal(nob.stderr.trim(), 'tessera: s3://no-bucket/data/sh.zarr: bucket "no-bucket" does not exist (NoSuchBucket)');
  s3Proxy.plan(/\/vol\.zarr\/0\/0\/0\/0$/, { kind: 'status', status: 500 }, 1000);
  try {
    const down = await runJson(['run', '--input', `s3://${S3_BUCKET}/data/vol.zarr`, '--output', path.join(dir, 'down.zarr'), '--config', cfg, '--mode', 'one-stage'], s3Env());
    assert.equal(down.code, 1, down.stderr);
    assert.match(down.report.failures[0].error, new RegExp(`^s3://${S3_BUCKET}/data/vol\\.zarr/0/0/0/0: gave up after 4 tries \\(last: HTTP 500\\)$`));
  } finally {
    s3Proxy.clear();
  }
});
