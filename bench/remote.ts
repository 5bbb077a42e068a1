// `npm run bench -- --remote`: reading the input over the network. One synthetic EM volume as
// Zarr v3 shards with small inner chunks is read by one process (a worker's reads: two regions
// in flight, io.concurrency requests per region) from local disk, from https:// (serve-handler)
// and from s3:// (s3rver), the servers in a process of their own on loopback. Two access
// patterns, as the tasks read:
//   - chunks: every processing chunk with its halo (stage one / one-stage predict);
//   - boxes: seeded random 12×128×128 crops (stage two's reads of its boxes).
// Reported per source: decoded MB/s delivered to the reader, requests, and read amplification =
// bytes fetched / encoded bytes of the inner chunks the reads need (taken from the shards'
// indexes): shard indexes, retries and anything read twice count against it. Loopback has no
// latency or bandwidth limit, so MB/s here is the client's cost per byte (decode, requests),
// the ceiling a worker reaches before its network does.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { type Box, type Vec3, box, boxOfShape, grow, intersect, volumeOf } from '../shared/geometry/box.ts';
import { writeSynth } from '../shared/run/synth.ts';
import { openImage } from '../shared/volume/ome.ts';
import { readRegion } from '../shared/volume/zarr.ts';
import { RemoteClient } from '../shared/volume/remote.ts';
import { PACKAGE_ROOT } from '../shared/config/load.ts';
import { mulberry32 } from '../shared/synth/random.ts';
import { S3_BUCKET, S3_KEYS, putTree } from '../test/helpers/remote.ts';

export interface RemoteBenchOptions { dir?: string; quick?: boolean; json?: string }

interface Row { source: string; pattern: string; seconds: number; mbPerSecond: number; requests: number; fetchedMB: number; neededMB: number; amplification: number | null }

export interface RemoteBenchReport { shape: Vec3; shard: Vec3; chunks: Vec3; cpus: number; rows: Row[] }

const SHARD: Vec3 = [32, 256, 256];
const INNER: Vec3 = [8, 64, 64];
const CHUNK: Vec3 = [32, 256, 256];
const HALO: Vec3 = [4, 32, 32];
const CROP: Vec3 = [12, 128, 128];

/** The read regions of a pattern, inside the volume. */
function regions(pattern: 'chunks' | 'boxes', shape: Vec3, quick: boolean): Box[] {
  const vol = boxOfShape(shape);
  if (pattern === 'boxes') {
    const r = mulberry32(11);
    return Array.from({ length: quick ? 24 : 96 }, () => {
      const b = CROP.map((c, a) => Math.floor(r() * (shape[a] - c + 1))) as unknown as Vec3;
      return box(b, b.map((v, a) => v + CROP[a]) as unknown as Vec3);
    });
  }
  const out: Box[] = [];
  for (let z = 0; z < shape[0]; z += CHUNK[0]) for (let y = 0; y < shape[1]; y += CHUNK[1]) for (let x = 0; x < shape[2]; x += CHUNK[2]) {
    out.push(intersect(grow(box([z, y, x], [z + CHUNK[0], y + CHUNK[1], x + CHUNK[2]]), HALO), vol));
  }
  return out;
}

/** Encoded bytes of every inner chunk the regions touch (each counted once per region), from the local shards' indexes. */
function neededBytes(level0: string, shape: Vec3, rs: Box[]): number {
  const per = SHARD.map((s, a) => s / INNER[a]);
  const n = per[0] * per[1] * per[2];
  const indexes = new Map<string, DataView | null>();
  const index = (sz: number, sy: number, sx: number) => {
    const k = `${sz}/${sy}/${sx}`;
    if (!indexes.has(k)) {
      const f = path.join(level0, 'c', String(sz), String(sy), String(sx));
      if (!fs.existsSync(f)) indexes.set(k, null);
      else {
        const b = fs.readFileSync(f);
        indexes.set(k, new DataView(b.buffer, b.byteOffset + b.length - (n * 16 + 4), n * 16));
      }
    }
    return indexes.get(k)!;
  };
  let total = 0;
  for (const r of rs) {
    const lo = r.begin.map((v, a) => Math.floor(v / INNER[a]));
    const hi = r.end.map((v, a) => Math.ceil(Math.min(v, shape[a]) / INNER[a]));
    for (let z = lo[0]; z < hi[0]; z++) for (let y = lo[1]; y < hi[1]; y++) for (let x = lo[2]; x < hi[2]; x++) {
      const dv = index(Math.floor(z / per[0]), Math.floor(y / per[1]), Math.floor(x / per[2]));
      if (!dv) continue;
      const i = ((z % per[0]) * per[1] + (y % per[1])) * per[2] + (x % per[2]);
      const len = dv.getBigUint64(i * 16 + 8, true);
      if (len !== 0xffffffffffffffffn) total += Number(len);
    }
  }
  return total;
}

/** Read every region, two in flight (io.chunksInFlight), each with 8 requests at once (io.concurrency). */
async function readAll(input: string, rs: Box[], client?: RemoteClient): Promise<number> {
  const img = await openImage(input, [40, 4, 4], client ? { remote: client } : {});
  const a = img.levels[0].array;
  const t0 = performance.now();
  let next = 0;
  const lane = async () => { while (next < rs.length) await readRegion(a, rs[next++], 'constant', 0, { concurrency: 8 }); };
  await Promise.all([lane(), lane()]);
  return (performance.now() - t0) / 1000;
}

async function startServers(dir: string, s3dir: string): Promise<{ http: string; s3: string; stop: () => void }> {
  const p = spawn(process.execPath, ['--import', 'tsx', path.join(PACKAGE_ROOT, 'bench', 'remote-servers.ts'), dir, s3dir], { cwd: PACKAGE_ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
  const line = await new Promise<string>((resolve, reject) => {
    readline.createInterface({ input: p.stdout! }).once('line', resolve);
    p.once('exit', (code) => reject(new Error(`bench servers exited ${code}`)));
  });
  const urls = JSON.parse(line) as { http: string; s3: string };
  return { ...urls, stop: () => p.kill('SIGTERM') };
}

export async function runRemoteBench(o: RemoteBenchOptions = {}): Promise<RemoteBenchReport> {
  const shape: Vec3 = o.quick ? [64, 512, 512] : [128, 1024, 1024];
  const dir = fs.mkdtempSync(path.join(o.dir ? path.resolve(o.dir) : os.tmpdir(), 'tessera-remote-bench-'));
  fs.mkdirSync(dir, { recursive: true });
  const vol = path.join(dir, 'vol.zarr');
  await writeSynth({ kind: 'em', shape, seed: 7, fg: 0.01, out: vol, shard: SHARD, chunks: INNER });
  const servers = await startServers(dir, path.join(dir, 's3'));
  const rows: Row[] = [];
  try {
    await putTree(servers.s3, S3_BUCKET, 'bench/vol.zarr', vol);
    const env = { AWS_ACCESS_KEY_ID: S3_KEYS.accessKeyId, AWS_SECRET_ACCESS_KEY: S3_KEYS.secretAccessKey, AWS_ENDPOINT_URL_S3: servers.s3 };
    for (const pattern of ['chunks', 'boxes'] as const) {
      const rs = regions(pattern, shape, !!o.quick);
      const decodedMB = rs.reduce((n, r) => n + volumeOf(r), 0) / 1e6;
      const needed = neededBytes(path.join(vol, '0'), shape, rs);
      for (const source of ['local', 'https', 's3'] as const) {
        const client = source === 'local' ? undefined : new RemoteClient({}, { env });
        const input = source === 'local' ? vol : source === 'https' ? `${servers.http}/vol.zarr` : `s3://${S3_BUCKET}/bench/vol.zarr`;
        const seconds = await readAll(input, rs, client);
        const fetched = client?.stats.bytes;
        rows.push({
          source, pattern, seconds: round(seconds), mbPerSecond: round(decodedMB / seconds), requests: client?.stats.requests ?? 0,
          fetchedMB: fetched === undefined ? 0 : round(fetched / 1e6), neededMB: round(needed / 1e6), amplification: fetched === undefined ? null : round(fetched / needed),
        });
      }
    }
  } finally {
    servers.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const report: RemoteBenchReport = { shape, shard: SHARD, chunks: INNER, cpus: os.availableParallelism(), rows };
  if (o.json) fs.writeFileSync(o.json, JSON.stringify(report, null, 2) + '\n');
  return report;
}

const round = (v: number) => Math.round(v * 1000) / 1000;

export function formatRemoteReport(r: RemoteBenchReport): string {
  const lines = [
    `Remote reads — em ${r.shape.join('×')} uint8 as Zarr v3, shards ${r.shard.join('×')}, inner chunks ${r.chunks.join('×')} (zstd), one reading process, ${r.cpus} CPUs, servers on loopback in another process`,
    '',
    '| source | pattern | seconds | MB/s (decoded) | requests | fetched MB | needed MB | amplification |',
    '|---|---|---|---|---|---|---|---|',
    ...r.rows.map((x) => `| ${x.source} | ${x.pattern} | ${x.seconds} | ${x.mbPerSecond} | ${x.requests || '–'} | ${x.fetchedMB || '–'} | ${x.neededMB} | ${x.amplification ?? '–'} |`),
    '',
  ];
  return lines.join('\n');
}
