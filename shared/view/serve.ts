// `tessera view`: serve an output (and optionally its input) over HTTP for neuroglancer, which
// fetches Zarr and precomputed files from the browser: so every response carries CORS headers,
// Range requests are answered (Zarr v3 shards are read by byte range) and a missing file is a
// plain 404 (a Zarr reader's "chunk not written"). Read-only, GET/HEAD/OPTIONS, never a path
// outside the served roots; bound to 127.0.0.1 unless told otherwise.
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import type { AddressInfo } from 'node:net';
import type { Vec3 } from '../geometry/box.ts';
import { metresPerUnit, writeBoxAnnotations } from './annotations.ts';
import { displayUrl, isRemote } from '../volume/remote.ts';
import { InputError, OutputError } from '../errors.ts';
import { readRunJson, runJsonPath } from '../run/output.ts';
import { openArray, readGroupAttributes } from '../volume/zarr.ts';
import { isVirtual } from '../volume/virtual.ts';
import type { TesseraConfig } from '../config/config.ts';
import { stage2Block } from '../tasks/graph.ts';

export interface ServeOptions {
  /** URL prefix → directory, e.g. { output: '/data/out.zarr', input: '/data/fafb.zarr' }. */
  roots: Record<string, string>;
  /** @default '127.0.0.1' */
  host?: string;
  /** 0 picks a free port. @default 0 */
  port?: number;
}

export interface Served {
  /** http://host:port (no trailing slash). */
  url: string;
  close(): Promise<void>;
}

const CORS = {
  'Access-Control-Allow-Origin': '*',
  'Access-Control-Allow-Methods': 'GET, HEAD, OPTIONS',
  'Access-Control-Allow-Headers': 'Range, Content-Type',
  'Access-Control-Expose-Headers': 'Content-Length, Content-Range, Accept-Ranges',
};

const TYPES: Record<string, string> = { '.json': 'application/json', '.zattrs': 'application/json', '.zarray': 'application/json', '.zgroup': 'application/json', '.jsonl': 'application/x-ndjson', '.html': 'text/html' };

/** The file a URL path names under `roots`, or undefined (unknown root, `..`, or not a file). */
export function resolvePath(roots: Record<string, string>, urlPath: string): string | undefined {
  let p: string;
  try { p = decodeURIComponent(urlPath.split('?')[0]); } catch { return undefined; }
  const parts = p.split('/').filter(Boolean);
  const root = roots[parts[0] ?? ''];
  if (!root || parts.some((s) => s === '..' || s.includes('\0'))) return undefined;
  const base = path.resolve(root);
  const file = path.resolve(base, ...parts.slice(1));
  if (file !== base && !file.startsWith(base + path.sep)) return undefined;
  return file;
}

/** `bytes=a-b`, `bytes=a-`, `bytes=-n` → [start, end] inclusive within size; null = not satisfiable; undefined = no range. */
export function parseRange(header: string | undefined, size: number): [number, number] | null | undefined {
  if (!header) return undefined;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return null;
  let start: number, end: number;
  if (m[1] === '') { start = Math.max(0, size - Number(m[2])); end = size - 1; } else { start = Number(m[1]); end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1); }
  return start <= end && start < size ? [start, end] : null;
}

export async function serve(o: ServeOptions): Promise<Served> {
  const server = http.createServer((req, res) => {
    if (req.method === 'OPTIONS') { res.writeHead(204, CORS); res.end(); return; }
    if (req.method !== 'GET' && req.method !== 'HEAD') { res.writeHead(405, { ...CORS, Allow: 'GET, HEAD, OPTIONS' }); res.end(); return; }
    const file = resolvePath(o.roots, req.url ?? '/');
    let st: fs.Stats | undefined;
    try { st = file ? fs.statSync(file) : undefined; } catch { st = undefined; }
    if (!file || !st?.isFile()) { res.writeHead(404, { ...CORS, 'Content-Type': 'text/plain' }); res.end('not found\n'); return; }
    const type = TYPES[path.extname(file)] ?? (path.basename(file) === 'info' || path.basename(file) === 'zarr.json' ? 'application/json' : 'application/octet-stream');
    const range = parseRange(req.headers.range, st.size);
    if (range === null) { res.writeHead(416, { ...CORS, 'Content-Range': `bytes */${st.size}` }); res.end(); return; }
    const [start, end] = range ?? [0, st.size - 1];
    const headers = { ...CORS, 'Content-Type': type, 'Accept-Ranges': 'bytes', 'Content-Length': String(Math.max(0, end - start + 1)), ...(range ? { 'Content-Range': `bytes ${start}-${end}/${st.size}` } : {}) };
    res.writeHead(range ? 206 : 200, headers);
    if (req.method === 'HEAD' || st.size === 0) { res.end(); return; }
    const stream = fs.createReadStream(file, { start, end });
    stream.on('error', () => res.destroy());
    stream.pipe(res);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port ?? 0, o.host ?? '127.0.0.1', () => resolve());
  });
  const a = server.address() as AddressInfo;
  const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
  return {
    url: `http://${host}:${a.port}`,
    close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
}

export interface ViewerLayers {
  /** Served URL of the input image's NGFF group (optional). */
  image?: string;
  /** Served URL of the output. */
  output: string;
  spacing: Vec3;
  unit: string;
  /** The boxes annotation layer exists. */
  boxes: boolean;
  /** Centre of the view (voxels, z y x). */
  position?: Vec3;
  /** Class colours of the segmentation (label value → #rrggbb), from its image-label metadata. */
  colors?: Record<string, string>;
}

/**
 * A neuroglancer state: the image, segmentation (classes, in their label colours), instances and
 * boxes as layers. Display order x, y, z (the arrays are z, y, x): neuroglancer's main panel shows
 * the first two dimensions, and an EM volume is read in its x–y sections, not z–y.
 */
export function neuroglancerState(l: ViewerLayers): Record<string, unknown> {
  const s = metresPerUnit(l.unit);
  const layers: Array<Record<string, unknown>> = [];
  if (l.image) layers.push({ type: 'image', source: `zarr://${l.image}`, name: 'image' });
  layers.push({
    type: 'segmentation', source: `zarr://${l.output}/segmentation`, name: 'segmentation',
    ...(l.colors ? { segments: Object.keys(l.colors).filter((k) => k !== '0'), segmentColors: l.colors } : {}),
  });
  layers.push({ type: 'segmentation', source: `zarr://${l.output}/instances`, name: 'instances', visible: false });
  if (l.boxes) layers.push({ type: 'annotation', source: `precomputed://${l.output}/annotations/boxes`, name: 'boxes' });
  return {
    dimensions: { x: [l.spacing[2] * s, 'm'], y: [l.spacing[1] * s, 'm'], z: [l.spacing[0] * s, 'm'] },
    ...(l.position ? { position: [l.position[2], l.position[1], l.position[0]] } : {}),
    layers,
    layout: '4panel',
  };
}

/** The public neuroglancer client; a cluster with no way out serves its own (`--neuroglancer URL`, docs/cluster.md). */
export const PUBLIC_NEUROGLANCER = 'https://neuroglancer-demo.appspot.com';

/** A link that opens `state` in a neuroglancer client (the data stays where it is served: the browser fetches it). */
export function neuroglancerLink(state: Record<string, unknown>, client = PUBLIC_NEUROGLANCER): string {
  return `${client.replace(/\/+$/, '')}/#!${encodeURIComponent(JSON.stringify(state))}`;
}

/** The segmentation's class colours from its NGFF image-label metadata (label value → #rrggbb). */
function labelColors(output: string): Record<string, string> | undefined {
  const attrs = readGroupAttributes(path.join(output, 'segmentation')) as Record<string, unknown> | undefined;
  const label = ((attrs?.ome as Record<string, unknown> | undefined) ?? attrs)?.['image-label'] as { colors?: { 'label-value': number; rgba: number[] }[] } | undefined;
  if (!label?.colors?.length) return undefined;
  const hex = (v: number) => v.toString(16).padStart(2, '0');
  return Object.fromEntries(label.colors.map((c) => [String(c['label-value']), `#${hex(c.rgba[0])}${hex(c.rgba[1])}${hex(c.rgba[2])}`]));
}

export interface ViewOptions {
  output: string;
  /** The input image's NGFF group, served beside the output as the image layer. */
  input?: string;
  host?: string;
  port?: number;
  /** The neuroglancer client the link opens. @default PUBLIC_NEUROGLANCER */
  neuroglancer?: string;
}

export interface View extends Served {
  state: Record<string, unknown>;
  link: string;
  /** Boxes in the annotation layer (undefined for one-stage runs). */
  boxes?: number;
}

/**
 * Serve a finished (or partial) output for neuroglancer: writes the boxes annotation layer
 * from boxes/*.jsonl when a two-stage run has none yet or its boxes changed since, then serves
 * the output (and `input`) and builds the viewer state.
 */
export async function openView(o: ViewOptions): Promise<View> {
  const run = readRunJson(o.output);
  if (!run) throw new OutputError(o.output, 'no run.json: not a Tessera output');
  const config = run.config as TesseraConfig | undefined;
  if (!config) throw new OutputError(runJsonPath(o.output), 'run.json has no config (written by an older Tessera?)');
  const seg = await openArray(path.join(o.output, 'segmentation', '0'));
  const spacing = config.spacing as Vec3;
  let boxes: number | undefined;
  const info = path.join(o.output, 'annotations', 'boxes', 'info');
  if (fs.existsSync(path.join(o.output, 'boxes'))) {
    const stale = !fs.existsSync(info) || fs.statSync(info).mtimeMs < fs.statSync(path.join(o.output, 'boxes')).mtimeMs;
    const block = stage2Block(config);
    boxes = stale
      ? await writeBoxAnnotations(o.output, { shape: seg.shape, spacing, unit: config.unit, block })
      : Number((JSON.parse(fs.readFileSync(path.join(o.output, 'annotations', 'boxes', 'count.json'), 'utf8')) as { boxes: number }).boxes);
  }
  if (o.input && isVirtual(o.input)) throw new InputError(o.input, 'a virtual: input has no files to serve; leave out --input to view the output alone');
  // A URL input is not served: neuroglancer reads https://, gs:// and (public) s3:// itself.
  const remote = o.input !== undefined && isRemote(o.input);
  if (o.input && !remote && !fs.existsSync(o.input)) throw new InputError(o.input, 'no such input to serve beside the output');
  const served = await serve({ roots: { output: o.output, ...(o.input && !remote ? { input: o.input } : {}) }, host: o.host, port: o.port });
  const state = neuroglancerState({
    image: o.input ? (remote ? displayUrl(o.input) : `${served.url}/input`) : undefined, output: `${served.url}/output`, spacing, unit: config.unit,
    boxes: boxes !== undefined, position: seg.shape.map((s) => s / 2) as unknown as Vec3, colors: labelColors(o.output),
  });
  return { ...served, state, link: neuroglancerLink(state, o.neuroglancer), boxes };
}
