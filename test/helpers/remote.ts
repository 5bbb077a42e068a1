/// <reference path="./servers.d.ts" />
// Real servers for inputs by URL, started and stopped by the tests (and the remote bench) on
// loopback: an S3-protocol server (s3rver, an npm devDependency: pure JavaScript, no install
// scripts), a static HTTP server with Range support (serve-handler, the handler behind `npx
// serve`), and a small fault proxy put in front of either to inject what real object storage
// does under load: bursts of 503 SlowDown, a reply slower than the timeout, a connection reset
// mid-body, a missing object.
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import type { AddressInfo } from 'node:net';
import { freePort } from './nats.ts';
import { signV4 } from '../../shared/volume/s3.ts';
import type { Vec3 } from '../../shared/geometry/box.ts';

export interface Served {
  /** Base URL (http://127.0.0.1:PORT). */
  url: string;
  close(): Promise<void>;
}

function closeServer(s: http.Server): Promise<void> {
  s.closeAllConnections();
  return new Promise((resolve) => s.close(() => resolve()));
}

/** A static file server over `root` (GET, HEAD, Range incl. suffix ranges; 404 for a missing file). */
export async function startHttp(root: string): Promise<Served> {
  const handler = (await import('serve-handler')).default;
  const server = http.createServer((req, res) => void handler(req, res, { public: root, directoryListing: false, cleanUrls: false, etag: false }));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, close: () => closeServer(server) };
}

/** s3rver's built-in account (it checks the access key id; it does not verify V4 signatures). */
export const S3_KEYS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };
export const S3_BUCKET = 'tessera';

/** An S3 server whose objects live under `dir`, with bucket `tessera`. */
export async function startS3(dir: string): Promise<Served> {
  const S3rver = (await import('s3rver')).default;
  const port = await freePort();
  const s3 = new S3rver({ address: '127.0.0.1', port, directory: dir, silent: true, configureBuckets: [{ name: S3_BUCKET }] });
  await s3.run();
  return { url: `http://127.0.0.1:${port}`, close: () => s3.close() };
}

/** PUT every file under `local` to s3://bucket/prefix/… at `endpoint` (path-style, SigV4). */
export async function putTree(endpoint: string, bucket: string, prefix: string, local: string): Promise<number> {
  let n = 0;
  const walk = async (d: string, rel: string): Promise<void> => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      if (e.name === '.tmp') continue;
      const p = path.join(d, e.name);
      if (e.isDirectory()) { await walk(p, `${rel}/${e.name}`); continue; }
      const body = fs.readFileSync(p);
      const url = new URL(`${endpoint}/${bucket}/${prefix}${rel}/${e.name}`);
      const headers = signV4({ method: 'PUT', url, headers: { 'content-length': String(body.length) }, region: 'us-east-1', service: 's3', payloadHash: 'UNSIGNED-PAYLOAD', now: new Date() }, S3_KEYS);
      const res = await fetch(url, { method: 'PUT', headers, body });
      if (res.status !== 200) throw new Error(`PUT ${url}: HTTP ${res.status} ${await res.text()}`);
      n++;
    }
  };
  await walk(local, '');
  return n;
}

export type Fault =
  /** A 503 with an S3 SlowDown body. */
  | { kind: 'slowdown' }
  /** A 500 (or any status) with no body. */
  | { kind: 'status'; status: number }
  /** Wait `ms` before forwarding (past the client's timeout, the reply comes too late). */
  | { kind: 'slow'; ms: number }
  /** Forward the headers and half the body, then reset the connection. */
  | { kind: 'reset' }
  /** A 404 (S3 NoSuchKey), as for an object that is not there. */
  | { kind: 'missing' };

export interface FaultProxy extends Served {
  /** The next `times` requests whose path matches `match` get `fault` (in the order planned). */
  plan(match: RegExp, fault: Fault, times?: number): void;
  /** Faults still planned (0: every one was served). */
  pending(): number;
  /** Drop every planned fault. */
  clear(): void;
  /** Requests seen, as "METHOD path range". */
  readonly seen: string[];
}

/** A loopback proxy in front of `target` (a Served url) that injects planned faults. */
export async function startFaultProxy(target: string): Promise<FaultProxy> {
  const rules: { match: RegExp; fault: Fault; left: number }[] = [];
  const seen: string[] = [];
  const t = new URL(target);
  const forward = (req: http.IncomingMessage, res: http.ServerResponse, cut: boolean) => {
    const up = http.request({ host: t.hostname, port: t.port, method: req.method, path: req.url, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode ?? 502, r.headers);
      if (!cut) { r.pipe(res); return; }
      const chunks: Buffer[] = [];
      r.on('data', (c: Buffer) => chunks.push(c));
      r.on('end', () => {
        const all = Buffer.concat(chunks);
        res.write(all.subarray(0, Math.floor(all.length / 2)), () => res.socket?.destroy());
      });
    });
    up.on('error', () => res.socket?.destroy());
    req.pipe(up);
  };
  const server = http.createServer((req, res) => {
    seen.push(`${req.method} ${req.url} ${req.headers.range ?? ''}`.trim());
    const rule = rules.find((r) => r.left > 0 && r.match.test(req.url ?? ''));
    if (!rule) return forward(req, res, false);
    rule.left--;
    const f = rule.fault;
    switch (f.kind) {
      case 'slowdown':
        res.writeHead(503, { 'content-type': 'application/xml' }).end('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>');
        return;
      case 'status':
        res.writeHead(f.status).end();
        return;
      case 'missing':
        res.writeHead(404, { 'content-type': 'application/xml' }).end('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message></Error>');
        return;
      case 'slow':
        setTimeout(() => { if (!res.destroyed) forward(req, res, false); }, f.ms);
        return;
      case 'reset':
        forward(req, res, true);
        return;
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    plan: (match, fault, times = 1) => void rules.push({ match, fault, left: times }),
    pending: () => rules.reduce((n, r) => n + r.left, 0),
    clear: () => void rules.splice(0),
    seen,
    close: () => closeServer(server),
  };
}

/**
 * A copy of the NGFF image at `src` (its levels 0, 1, 2) as Zarr v3 with sharding: shards of
 * `shard` voxels, inner chunks of `chunks`, NGFF 0.5 attributes — what a FAFB-scale input in a
 * bucket looks like (10⁸ files otherwise).
 */
export async function shardedCopy(src: string, dst: string, shard: Vec3, chunks: Vec3): Promise<void> {
  const { openImage, createGroupV3, multiscalesAttrs, ngff05 } = await import('../../shared/volume/ome.ts');
  const { createShardedArray } = await import('../../shared/volume/shard.ts');
  const { readRegion, writeRegion } = await import('../../shared/volume/zarr.ts');
  const { boxOfShape } = await import('../../shared/geometry/box.ts');
  const img = await openImage(src);
  await createGroupV3(dst, ngff05(multiscalesAttrs('sharded', img.unit ?? 'nanometer', img.levels.map((l) => l.spacing), img.levels.map((l) => l.key))));
  for (const l of img.levels) {
    const s = l.array.shape;
    const sh = shard.map((v, a) => Math.min(v, Math.ceil(s[a] / chunks[a]) * chunks[a])) as unknown as Vec3;
    const arr = await createShardedArray(path.join(dst, l.key), { shape: s, shard: sh, chunks, dtype: l.array.dtype as 'uint8' });
    await writeRegion(arr, boxOfShape(s), await readRegion(l.array, boxOfShape(s)));
  }
}
