// Inputs by URL, the parts that need no server: SigV4 against AWS's published examples, the
// credential chain (environment, profile, web identity through a fake STS), URL handling, what
// is retried, and the store's answers to what servers do (suffix ranges ignored or misread, 404,
// 403, throttling, timeouts) through a fake fetch.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { credentialChain, parseIni, signV4, webIdentityRequest, EMPTY_SHA256 } from '../../shared/volume/s3.ts';
import { RemoteClient, RemoteStore, checkRemoteUrl, displayUrl, isRemote, remoteJoin, remoteParent, retryableFailure, retryableStatus } from '../../shared/volume/remote.ts';
import { jittered, backoff } from '../../shared/bus/backoff.ts';
import { isTesseraError } from '../../shared/errors.ts';

test('SigV4: the S3 GetObject example of the AWS docs (Range bytes=0-9) and the test suite\'s get-vanilla give the published signatures', () => {
  const h = signV4({
    method: 'GET', url: new URL('https://examplebucket.s3.amazonaws.com/test.txt'), headers: { range: 'bytes=0-9' },
    region: 'us-east-1', service: 's3', payloadHash: EMPTY_SHA256, now: new Date('2013-05-24T00:00:00Z'),
  }, { accessKeyId: 'AKIAIOSFODNN7EXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY' });
  assert.equal(h.authorization, 'AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41');
  assert.equal(h['x-amz-date'], '20130524T000000Z');
  // The SigV4 test suite (service "service", no x-amz-content-sha256): get-vanilla, and
  // get-vanilla-query-order-key-case (the query is sorted before signing).
  const suite = (url: string) => signV4({
    method: 'GET', url: new URL(url), headers: {}, region: 'us-east-1', service: 'service', contentHashHeader: false, now: new Date('2015-08-30T12:36:00Z'),
  }, { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY' }).authorization;
  assert.equal(suite('https://example.amazonaws.com/'), 'AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31');
  assert.match(suite('https://example.amazonaws.com/?Param2=value2&Param1=value1'), /Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500$/);
  // A session token is sent and signed.
  const v = signV4({ method: 'GET', url: new URL('https://b.s3.amazonaws.com/k'), headers: {}, region: 'us-east-1', service: 's3', now: new Date() },
    { accessKeyId: 'A', secretAccessKey: 'S', sessionToken: 'TOKEN' });
  assert.match(v.authorization, /SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token, Signature=[0-9a-f]{64}$/);
  assert.equal(v['x-amz-security-token'], 'TOKEN');
});

test('credential chain: environment first, then the shared profile (AWS_PROFILE), then web identity, else anonymous; secrets never in errors', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tessera-cred-'));
  try {
    const file = path.join(dir, 'credentials');
    fs.writeFileSync(file, '[default]\naws_access_key_id = DEFKEY\naws_secret_access_key = defsecret\n\n[profile lab]\naws_access_key_id=LABKEY\naws_secret_access_key=labsecret\naws_session_token=labtoken\n');
    assert.equal(parseIni(fs.readFileSync(file, 'utf8')).get('lab')?.get('aws_session_token'), 'labtoken');
    const env = { AWS_ACCESS_KEY_ID: 'ENVKEY', AWS_SECRET_ACCESS_KEY: 'envsecret', AWS_SHARED_CREDENTIALS_FILE: file };
    const e = credentialChain(env);
    assert.equal(e.source, 'environment');
    assert.equal((await e.get())?.accessKeyId, 'ENVKEY');
    const d = credentialChain({ AWS_SHARED_CREDENTIALS_FILE: file });
    assert.equal(d.source, 'profile');
    assert.equal((await d.get())?.accessKeyId, 'DEFKEY');
    const l = await credentialChain({ AWS_SHARED_CREDENTIALS_FILE: file, AWS_PROFILE: 'lab' }).get();
    assert.deepEqual(l, { accessKeyId: 'LABKEY', secretAccessKey: 'labsecret', sessionToken: 'labtoken' });
    assert.throws(() => credentialChain({ AWS_SHARED_CREDENTIALS_FILE: file, AWS_PROFILE: 'nope' }), (err: Error) =>
      isTesseraError(err, 'InputError') && /profile "nope"/.test(err.message) && !/defsecret|labsecret|DEFKEY|LABKEY/.test(err.message));
    assert.equal(credentialChain({}, { home: dir }).source, 'anonymous');
    assert.equal(await credentialChain({}, { home: dir }).get(), undefined);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('web identity: the STS AssumeRoleWithWebIdentity request carries the role, the token file\'s token and a session name; the credentials come back; a refusal names the role, never the token', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tessera-wi-'));
  try {
    const tokenFile = path.join(dir, 'token');
    fs.writeFileSync(tokenFile, 'eyJTOKEN.SECRET\n');
    const env = { AWS_WEB_IDENTITY_TOKEN_FILE: tokenFile, AWS_ROLE_ARN: 'arn:aws:iam::123:role/tessera', AWS_ROLE_SESSION_NAME: 'w1' };
    const req = webIdentityRequest(env, 'eyJTOKEN.SECRET', 'eu-west-1');
    assert.equal(req.url, 'https://sts.eu-west-1.amazonaws.com/');
    const form = new URLSearchParams(req.body);
    assert.deepEqual(Object.fromEntries(form), { Action: 'AssumeRoleWithWebIdentity', Version: '2011-06-15', RoleArn: 'arn:aws:iam::123:role/tessera', RoleSessionName: 'w1', WebIdentityToken: 'eyJTOKEN.SECRET' });
    const calls: { url: string; body: string; method: string }[] = [];
    const ok: typeof fetch = async (url, init) => {
      calls.push({ url: String(url), body: String(init?.body), method: String(init?.method) });
      return new Response('<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials><AccessKeyId>ASIAX</AccessKeyId><SecretAccessKey>tempsecret</SecretAccessKey><SessionToken>sess</SessionToken><Expiration>2099-01-01T00:00:00Z</Expiration></Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>', { status: 200 });
    };
    const p = credentialChain({ ...env, AWS_ENDPOINT_URL_STS: 'http://127.0.0.1:9/' }, { fetch: ok, home: dir, region: 'eu-west-1' });
    assert.equal(p.source, 'web-identity');
    const c = await p.get();
    assert.equal(c?.accessKeyId, 'ASIAX');
    assert.equal(c?.sessionToken, 'sess');
    await p.get();
    assert.equal(calls.length, 1, 'credentials kept until near expiry');
    assert.equal(calls[0].url, 'http://127.0.0.1:9/');
    assert.equal(calls[0].method, 'POST');
    assert.equal(new URLSearchParams(calls[0].body).get('WebIdentityToken'), 'eyJTOKEN.SECRET');
    const refused: typeof fetch = async () => new Response('<ErrorResponse><Error><Code>AccessDenied</Code><Message>Not authorized eyJTOKEN</Message></Error></ErrorResponse>', { status: 403 });
    await assert.rejects(credentialChain(env, { fetch: refused, home: dir }).get(), (err: Error) =>
      isTesseraError(err, 'InputError') && /arn:aws:iam::123:role\/tessera refused \(HTTP 403 AccessDenied\)/.test(err.message) && !/eyJ/.test(err.message));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('URLs: which inputs are remote; shown without user info or query; joined and walked up; s3:// to path-style with an endpoint, virtual-hosted on AWS; gs:// to storage.googleapis.com', () => {
  assert.ok(isRemote('s3://b/p') && isRemote('https://h/x') && isRemote('HTTP://h/x') && isRemote('gs://b/x'));
  assert.ok(!isRemote('vol.zarr') && !isRemote('/data/s3://x') && !isRemote('virtual:em?shape=1,1,1'));
  assert.equal(displayUrl('https://h.org/a/vol.zarr/?X-Amz-Signature=abc'), 'https://h.org/a/vol.zarr');
  assert.equal(remoteJoin('https://h.org/a/vol.zarr/?sig=1', '0'), 'https://h.org/a/vol.zarr/0?sig=1');
  assert.equal(remoteParent('s3://b/fafb/vol.zarr/1'), 's3://b/fafb/vol.zarr');
  assert.equal(remoteParent('s3://b'), undefined);
  assert.throws(() => checkRemoteUrl('https://user:pw@h.org/vol.zarr'), (err: Error) => /credentials in the URL/.test(err.message) && !/pw/.test(err.message));
  assert.throws(() => checkRemoteUrl('s3:///nobucket'), /expected s3:\/\/BUCKET\/PREFIX/);
  const minio = new RemoteClient({ s3Endpoint: 'http://minio:9000/' }, { env: {} });
  assert.equal(minio.httpUrl('s3://bkt/fafb/vol.zarr', '/0/c/1/2/3').href, 'http://minio:9000/bkt/fafb/vol.zarr/0/c/1/2/3');
  const aws = new RemoteClient({}, { env: { AWS_REGION: 'eu-central-1' } });
  assert.equal(aws.httpUrl('s3://bkt/vol.zarr', '/zarr.json').href, 'https://bkt.s3.eu-central-1.amazonaws.com/vol.zarr/zarr.json');
  assert.equal(aws.httpUrl('s3://my.bkt/vol.zarr', '/zarr.json').href, 'https://s3.eu-central-1.amazonaws.com/my.bkt/vol.zarr/zarr.json');
  const envEndpoint = new RemoteClient({}, { env: { AWS_ENDPOINT_URL_S3: 'https://storage.googleapis.com' } });
  assert.equal(envEndpoint.httpUrl('s3://bkt/v.zarr', '/.zattrs').href, 'https://storage.googleapis.com/bkt/v.zarr/.zattrs');
  assert.equal(aws.httpUrl('gs://pub/em/v.zarr', '/0/.zarray').href, 'https://storage.googleapis.com/pub/em/v.zarr/0/.zarray');
});

test('retry classification: 5xx, 429 and S3 throttling codes are retried, other 4xx are not; timeouts and resets are, a stop is not; jittered backoff stays within the exponential cap', () => {
  for (const s of [500, 502, 503, 504, 429]) assert.ok(retryableStatus(s), String(s));
  for (const s of [200, 206, 400, 401, 403, 404, 416]) assert.ok(!retryableStatus(s), String(s));
  assert.ok(retryableStatus(400, 'RequestTimeout') && retryableStatus(503, 'SlowDown'));
  const timeout = Object.assign(new Error('timed out'), { name: 'TimeoutError' });
  assert.ok(retryableFailure(timeout, undefined));
  assert.ok(retryableFailure(new TypeError('fetch failed', { cause: { code: 'ECONNRESET' } }), undefined));
  const stopped = new AbortController();
  stopped.abort();
  assert.ok(!retryableFailure(timeout, stopped.signal));
  assert.ok(!retryableFailure(new Error('a bug'), undefined));
  for (let a = 0; a < 12; a++) {
    assert.equal(jittered(a, 10_000, () => 1), backoff(a, 10_000));
    assert.equal(jittered(a, 10_000, () => 0), 0);
  }
});

/** A fake server: `reply(request)` answers each request; every request is recorded. */
function fakeFetch(reply: (r: { url: string; method: string; range?: string }, n: number) => Response | Promise<Response>) {
  const seen: { url: string; method: string; range?: string }[] = [];
  const f = (async (url: string | URL, init?: RequestInit) => {
    const h = (init?.headers ?? {}) as Record<string, string>;
    const r = { url: String(url), method: init?.method ?? 'GET', ...(h.range ? { range: h.range } : {}) };
    seen.push(r);
    return reply(r, seen.length);
  }) as typeof fetch;
  return { f, seen };
}

const SHARD = Uint8Array.from({ length: 100 }, (_, i) => i);

test('store: a suffix range misread as 0-N (s3rver) or ignored (200) or refused (416) still gives the last N bytes; the index is fetched once', async () => {
  const misread = fakeFetch((r) => {
    if (r.range === 'bytes=-10') return new Response(SHARD.slice(0, 11), { status: 206, headers: { 'content-range': 'bytes 0-10/100' } });
    const [a, b] = r.range!.slice(6).split('-').map(Number);
    return new Response(SHARD.slice(a, b + 1), { status: 206, headers: { 'content-range': `bytes ${a}-${b}/100` } });
  });
  const s = new RemoteStore('https://h/vol.zarr', new RemoteClient({}, { fetch: misread.f, env: {} }));
  assert.deepEqual([...(await s.getRange('/c/0/0/0', { suffixLength: 10 }))!], [90, 91, 92, 93, 94, 95, 96, 97, 98, 99]);
  assert.deepEqual([...(await s.getRange('/c/0/0/0', { suffixLength: 10 }))!], [90, 91, 92, 93, 94, 95, 96, 97, 98, 99]);
  assert.deepEqual([...(await s.getRange('/c/0/0/0', { offset: 5, length: 3 }))!], [5, 6, 7]);
  assert.deepEqual(misread.seen.map((r) => r.range), ['bytes=-10', 'bytes=90-99', 'bytes=5-7']);
  const ignored = fakeFetch(() => new Response(SHARD, { status: 200 }));
  const s2 = new RemoteStore('https://h/vol.zarr', new RemoteClient({}, { fetch: ignored.f, env: {} }));
  assert.deepEqual([...(await s2.getRange('/c/1/0/0', { suffixLength: 3 }))!], [97, 98, 99]);
  assert.deepEqual([...(await s2.getRange('/c/1/0/0', { offset: 5, length: 3 }))!], [5, 6, 7]);
  await assert.rejects(s2.getRange('/c/1/0/0', { offset: 98, length: 5 }), /asked for 5 bytes at 98, got 2/);
  const refused = fakeFetch((r) => (r.method === 'HEAD' ? new Response(null, { status: 200, headers: { 'content-length': '100' } })
    : r.range === 'bytes=-4' ? new Response(null, { status: 416 }) : new Response(SHARD.slice(96), { status: 206, headers: { 'content-range': 'bytes 96-99/100' } })));
  const s3 = new RemoteStore('https://h/vol.zarr', new RemoteClient({}, { fetch: refused.f, env: {} }));
  assert.deepEqual([...(await s3.getRange('/c/0/0/1', { suffixLength: 4 }))!], [96, 97, 98, 99]);
  assert.deepEqual(refused.seen.map((r) => `${r.method} ${r.range ?? ''}`), ['GET bytes=-4', 'HEAD ', 'GET bytes=96-99']);
});

test('store: 404 is a missing chunk (onMissing for chunks and shards, not metadata); 403 and NoSuchBucket are one-line InputErrors naming the URL', async () => {
  const missing: string[] = [];
  const nf = fakeFetch(() => new Response('<Error><Code>NoSuchKey</Code></Error>', { status: 404 }));
  const s = new RemoteStore('s3://b/vol.zarr', new RemoteClient({ s3Endpoint: 'http://x' }, { fetch: nf.f, env: {} }), (k) => missing.push(k));
  assert.equal(await s.get('/zarr.json'), undefined);
  assert.equal(await s.get('/0/0/0'), undefined);
  assert.equal(await s.getRange('/c/0/0/0', { suffixLength: 16 }), undefined);
  assert.deepEqual(missing, ['/0/0/0', '/c/0/0/0']);
  // has() (the missing-input skip's question, a HEAD): 404 is false and no missing chunk read.
  assert.equal(await s.has('/0/0/1'), false);
  assert.deepEqual(missing, ['/0/0/0', '/c/0/0/0']);
  assert.equal(nf.seen.at(-1)?.method, 'HEAD');
  const ok = fakeFetch(() => new Response(null, { status: 200 }));
  assert.equal(await new RemoteStore('https://h/vol.zarr', new RemoteClient({}, { fetch: ok.f, env: {} })).has('/0/0/0'), true);
  const denied = fakeFetch(() => new Response('<Error><Code>AccessDenied</Code></Error>', { status: 403 }));
  const d = new RemoteStore('s3://b/vol.zarr', new RemoteClient({ s3Endpoint: 'http://x' }, { fetch: denied.f, env: { AWS_ACCESS_KEY_ID: 'K', AWS_SECRET_ACCESS_KEY: 'topsecret' } }));
  await assert.rejects(d.get('/zarr.json'), (err: Error) => isTesseraError(err, 'InputError')
    && err.message === 's3://b/vol.zarr: access denied reading zarr.json with credentials from environment (HTTP 403 AccessDenied); check the credentials and the bucket policy');
  assert.equal(denied.seen.length, 1, '403 is not retried');
  await assert.rejects(d.has('/0/0/0'), /access denied reading 0\/0\/0/);
  const moved = fakeFetch(() => new Response('<Error><Code>PermanentRedirect</Code></Error>', { status: 301, headers: { 'x-amz-bucket-region': 'eu-west-2' } }));
  const m = new RemoteStore('s3://b/vol.zarr', new RemoteClient({}, { fetch: moved.f, env: { AWS_REGION: 'us-east-1' } }));
  await assert.rejects(m.get('/zarr.json'), /s3:\/\/b\/vol\.zarr: the bucket is in region eu-west-2, requests were signed for us-east-1: set AWS_REGION \(or io\.s3\.region\) to eu-west-2$/);
  const nb = fakeFetch(() => new Response('<Error><Code>NoSuchBucket</Code></Error>', { status: 404 }));
  const b = new RemoteStore('s3://gone/vol.zarr', new RemoteClient({ s3Endpoint: 'http://x' }, { fetch: nb.f, env: {} }));
  await assert.rejects(b.get('/zarr.json'), /^InputError: s3:\/\/gone\/vol\.zarr: bucket "gone" does not exist \(NoSuchBucket\)$|bucket "gone" does not exist/);
});

test('store: 503 SlowDown and resets are retried to success (counted); past the tries a RemoteError names the URL and key; a stalled reply times out and is retried', async () => {
  const flaky = fakeFetch((_r, n) => {
    if (n === 1) return new Response('<Error><Code>SlowDown</Code></Error>', { status: 503 });
    if (n === 2) throw new TypeError('fetch failed', { cause: { code: 'ECONNRESET' } });
    return new Response(SHARD, { status: 200 });
  });
  const c = new RemoteClient({ tries: 3 }, { fetch: flaky.f, env: {} });
  const s = new RemoteStore('https://h/vol.zarr', c);
  assert.equal((await s.get('/0/0/0'))?.length, 100);
  assert.equal(c.stats.retries, 2);
  assert.equal(c.stats.requests, 3);
  const down = fakeFetch(() => new Response(null, { status: 500 }));
  const d = new RemoteStore('https://h/vol.zarr', new RemoteClient({ tries: 2 }, { fetch: down.f, env: {} }));
  await assert.rejects(d.get('/0/1/2'), (err: Error) => isTesseraError(err, 'RemoteError') && !err.permanent
    && err.message === 'https://h/vol.zarr/0/1/2: gave up after 2 tries (last: HTTP 500)');
  let calls = 0;
  const stall = (async (_u: unknown, init?: RequestInit) => {
    calls++;
    if (calls === 1) return new Promise<Response>((_, reject) => init!.signal!.addEventListener('abort', () => reject(init!.signal!.reason)));
    return new Response(SHARD, { status: 200 });
  }) as typeof fetch;
  const t = new RemoteStore('https://h/vol.zarr', new RemoteClient({ tries: 2, timeout: 0.05 }, { fetch: stall, env: {} }));
  assert.equal((await t.get('/0/0/1'))?.length, 100);
  assert.equal(calls, 2);
});

test('config: io.s3.endpoint / io.s3.region / io.remote reach the client a run reads its input through; the identity leaves them out', async () => {
  const { loadConfig } = await import('../../shared/config/load.ts');
  const { remoteClient } = await import('../../shared/run/context.ts');
  const c = loadConfig({ preset: 'synthetic-em', overrides: { io: { s3: { endpoint: 'http://minio.lab:9000', region: 'eu-west-1' }, remote: { requests: 3, timeout: 5, tries: 2 } } } });
  const client = remoteClient(c);
  assert.equal(client.httpUrl('s3://em/vol.zarr', '/zarr.json').href, 'http://minio.lab:9000/em/vol.zarr/zarr.json');
  assert.equal(client.region, 'eu-west-1');
  assert.deepEqual({ ...client.settings }, { requests: 3, timeout: 5, tries: 2, s3Endpoint: 'http://minio.lab:9000', s3Region: 'eu-west-1' });
  const { runIdentity } = await import('../../shared/run/identity.ts');
  const cards = { fullres: { sha256: 'a' }, lowres: { sha256: 'b' } } as never;
  const input = { location: 's3://em/vol.zarr', metadata: 'm', levels: [] };
  const d = loadConfig({ preset: 'synthetic-em' });
  assert.equal(runIdentity(c, cards, input).hash, runIdentity(d, cards, input).hash, 'speed and endpoint settings do not change the run');
});
