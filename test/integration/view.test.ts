// Seeing a run: `tessera view` serves a real two-stage output over HTTP as neuroglancer reads it —
// the boxes as a precomputed annotation layer (decoded back and checked against boxes/*.jsonl),
// the Zarr arrays through zarrita's HTTP store, CORS and byte ranges, nothing outside the served
// roots — and `tessera report` writes an HTML page whose figures headless Chromium renders.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { execFileSync, spawn } from 'node:child_process';
import * as zlib from 'node:zlib';
import * as zarr from 'zarrita';
import { ROOT, brokenCopy, tessera, tesseraOk, tmpDir } from '../helpers/cli.ts';
import { type Box, intersect, isEmpty } from '../../shared/geometry/box.ts';
import { decodeAnnotations, writeBoxAnnotations } from '../../shared/view/annotations.ts';
import { openView } from '../../shared/view/serve.ts';

let dir: string;
let vol: string;
let out: string;
const CHUNK = [32, 128, 128] as const;

before(async () => {
  dir = tmpDir();
  vol = path.join(dir, 'em.zarr');
  out = path.join(dir, 'out.zarr');
  await tesseraOk(['synth', '--kind', 'em', '--shape', '32,256,256', '--seed', '11', '--out', vol]);
  // Blocks of one 32×128×128 chunk: a 1×2×2 block grid, so boxes meet several level-1 cells
  // (a smaller cropThreshold lets chunks this small merge boxes locally; larger boxes become tiles).
  const cfg = path.join(dir, 'cfg.json');
  fs.writeFileSync(cfg, JSON.stringify({ extends: 'synthetic-em', io: { chunk: CHUNK }, pack: { chunks: [1, 1, 1] }, boxes: { cropThreshold: [16, 64, 64] } }));
  await tesseraOk(['run', '--input', vol, '--output', out, '--config', cfg]);
});

after(() => fs.rmSync(dir, { recursive: true, force: true }));

interface Expected { id: bigint; box: Box; score: number }

/** The boxes as boxes/*.jsonl lists them, with the layer's global ids (block raster index × 2²⁴ + id). */
function expectedBoxes(grid: number[]): Expected[] {
  const all: Expected[] = [];
  for (const f of fs.readdirSync(path.join(out, 'boxes'))) {
    const [z, y, x] = f.replace('.jsonl', '').split('_').map(Number);
    const block = (z * grid[1] + y) * grid[2] + x;
    for (const l of fs.readFileSync(path.join(out, 'boxes', f), 'utf8').split('\n').filter(Boolean)) {
      const b = JSON.parse(l);
      all.push({ id: BigInt(block) * 2n ** 24n + BigInt(b.id), box: b.box, score: b.score });
    }
  }
  return all;
}

function readLayer(): { info: any; level0: ReturnType<typeof decodeAnnotations>; cells: Map<string, ReturnType<typeof decodeAnnotations>> } {
  const d = path.join(out, 'annotations', 'boxes');
  const info = JSON.parse(fs.readFileSync(path.join(d, 'info'), 'utf8'));
  const level0 = decodeAnnotations(fs.readFileSync(path.join(d, 'spatial0', '0_0_0')));
  const l1 = path.join(d, 'spatial1');
  const cells = new Map(fs.existsSync(l1) ? fs.readdirSync(l1).map((f) => [f, decodeAnnotations(fs.readFileSync(path.join(l1, f)))]) : []);
  return { info, level0, cells };
}

function checkLayer(limit: number): void {
  const { info, level0, cells } = readLayer();
  assert.equal(info['@type'], 'neuroglancer_annotations_v1');
  assert.equal(info.annotation_type, 'AXIS_ALIGNED_BOUNDING_BOX');
  assert.deepEqual(Object.keys(info.dimensions), ['z', 'y', 'x']);
  assert.deepEqual(info.dimensions.x, [4e-9, 'm']);
  const [l0, l1] = info.spatial;
  // Each level's grid tiles [lower, upper) exactly.
  for (const l of info.spatial) assert.deepEqual(l.grid_shape.map((g: number, a: number) => g * l.chunk_size[a]), info.upper_bound);
  const grid = info.upper_bound.map((u: number, a: number) => u / CHUNK[a]);
  if (l1) assert.deepEqual(l1.chunk_size, [...CHUNK]);
  else assert.equal(cells.size, 0, 'no level 1: every box at level 0');
  const want = expectedBoxes(grid);
  assert.ok(want.length > 5, `${want.length} boxes`);
  assert.ok(level0.length <= limit * 2 && level0.length <= l0.limit, `level 0 holds ${level0.length} (limit ${limit})`);
  const byId = new Map(want.map((w) => [w.id, w]));
  const seen = new Set<bigint>();
  for (const a of level0) {
    const w = byId.get(a.id);
    assert.ok(w, `level 0 id ${a.id} is a box`);
    assert.deepEqual(a.box, w.box);
    assert.equal(a.score, Math.fround(w.score));
    seen.add(a.id);
  }
  // Level 1: every other box in every cell it meets, and only there; no box in both levels.
  for (const w of want) {
    if (seen.has(w.id)) continue;
    for (let z = 0; z < grid[0]; z++) for (let y = 0; y < grid[1]; y++) for (let x = 0; x < grid[2]; x++) {
      const cell = { begin: [z, y, x].map((v, a) => v * CHUNK[a]), end: [z, y, x].map((v, a) => (v + 1) * CHUNK[a]) } as unknown as Box;
      const listed = (cells.get(`${z}_${y}_${x}`) ?? []).filter((a) => a.id === w.id);
      assert.equal(listed.length, isEmpty(intersect(cell, w.box)) ? 0 : 1, `box ${w.id} in cell ${z}_${y}_${x}`);
      if (listed.length) assert.deepEqual(listed[0].box, w.box);
    }
  }
  for (const list of cells.values()) for (const a of list) assert.ok(!seen.has(a.id), `box ${a.id} at both levels`);
  for (const list of cells.values()) assert.ok(list.length <= l1.limit);
  // By id: the single-annotation encoding (the record without a count or id).
  const one = want[0];
  const bytes = fs.readFileSync(path.join(out, 'annotations', 'boxes', 'by_id', one.id.toString()));
  const framed = Buffer.concat([Buffer.from(new BigUint64Array([1n]).buffer), bytes, Buffer.from(new BigUint64Array([one.id]).buffer)]);
  assert.deepEqual(decodeAnnotations(framed)[0].box, one.box);
}

test('the boxes annotation layer: every box at level 0 or in each level-1 cell it meets, ids and coordinates exact', async () => {
  const info = JSON.parse(fs.readFileSync(path.join(out, 'run.json'), 'utf8'));
  const n = await writeBoxAnnotations(out, { shape: [32, 256, 256], spacing: [40, 4, 4], unit: info.config.unit, block: [...CHUNK], limit: 3 });
  assert.ok(n > 5);
  checkLayer(3);
  const { level0, cells } = readLayer();
  assert.ok(level0.length < n, 'a small limit leaves boxes to level 1');
  assert.ok(cells.size > 1, 'boxes spread over several level-1 cells');
  // A limit above the count puts every box at level 0.
  await writeBoxAnnotations(out, { shape: [32, 256, 256], spacing: [40, 4, 4], unit: info.config.unit, block: [...CHUNK], limit: 10_000 });
  checkLayer(10_000);
  assert.equal(readLayer().level0.length, n);
});

function get(url: string, headers: Record<string, string> = {}, method = 'GET'): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    // The raw path goes out as written (no URL normalisation of `..`).
    const req = http.request({ host: u.hostname, port: u.port, path: url.slice(url.indexOf('/', 8)), method, headers }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (d) => parts.push(d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts) }));
    });
    req.on('error', reject);
    req.end();
  });
}

test('served for neuroglancer: CORS, byte ranges, 404 for unwritten chunks and anything outside the roots; zarrita reads it over HTTP', async () => {
  const v = await openView({ output: out, input: vol, port: 0 });
  try {
    const info = await get(`${v.url}/output/annotations/boxes/info`);
    assert.equal(info.status, 200);
    assert.equal(info.headers['access-control-allow-origin'], '*');
    assert.equal(JSON.parse(info.body.toString())['@type'], 'neuroglancer_annotations_v1');
    const pre = await get(`${v.url}/output/segmentation/.zattrs`, { Origin: 'https://neuroglancer-demo.appspot.com', 'Access-Control-Request-Headers': 'range' }, 'OPTIONS');
    assert.equal(pre.status, 204);
    assert.match(String(pre.headers['access-control-allow-headers']), /Range/);
    // A byte range of a real chunk file.
    const chunkFile = fs.readdirSync(path.join(out, 'segmentation', '0'), { recursive: true }).map(String)
      .find((f) => !path.basename(f).startsWith('.') && fs.statSync(path.join(out, 'segmentation', '0', f)).isFile())!;
    const whole = fs.readFileSync(path.join(out, 'segmentation', '0', chunkFile));
    const part = await get(`${v.url}/output/segmentation/0/${chunkFile}`, { Range: 'bytes=2-9' });
    assert.equal(part.status, 206);
    assert.equal(part.headers['content-range'], `bytes 2-9/${whole.length}`);
    assert.deepEqual(part.body, whole.subarray(2, 10));
    const tail = await get(`${v.url}/output/segmentation/0/${chunkFile}`, { Range: 'bytes=-4' });
    assert.deepEqual(tail.body, whole.subarray(whole.length - 4));
    assert.equal((await get(`${v.url}/output/segmentation/0/${chunkFile}`, { Range: `bytes=${whole.length}-` })).status, 416);
    const head = await get(`${v.url}/output/run.json`, {}, 'HEAD');
    assert.equal(head.status, 200);
    assert.equal(head.body.length, 0);
    assert.equal(Number(head.headers['content-length']), fs.statSync(path.join(out, 'run.json')).size);
    // Nothing outside the roots; unknown roots, unwritten chunks and directories are 404.
    for (const p of ['/output/%2e%2e/cfg.json', '/output/..%2fcfg.json', '/elsewhere/run.json', '/output/segmentation/0/9/9/9', '/output/segmentation', '/']) {
      assert.equal((await get(`${v.url}${p}`)).status, 404, p);
    }
    assert.equal((await get(`${v.url}/output/run.json`, {}, 'POST')).status, 405);
    // What neuroglancer's Zarr source does: read the arrays over HTTP.
    const seg = await zarr.open(new zarr.FetchStore(`${v.url}/output/segmentation/0`), { kind: 'array' });
    const served = await zarr.get(seg);
    const local = await zarr.get(await zarr.open(new (await import('@zarrita/storage/fs')).default(path.join(out, 'segmentation', '0')), { kind: 'array' }));
    assert.deepEqual(served.shape, [32, 256, 256]);
    assert.ok(Buffer.from((served.data as Uint8Array).buffer).equals(Buffer.from((local.data as Uint8Array).buffer)), 'the same voxels over HTTP');
    const image = await zarr.open(new zarr.FetchStore(`${v.url}/input/0`), { kind: 'array' });
    assert.deepEqual(image.shape, [32, 256, 256]);
    // The link opens the layers at these URLs.
    const state = JSON.parse(decodeURIComponent(v.link.split('#!')[1])) as { layers: Array<{ source: string }>; dimensions: Record<string, unknown> };
    assert.deepEqual(state, v.state);
    const sources = state.layers.map((l) => l.source);
    assert.deepEqual(sources, [`zarr://${v.url}/input`, `zarr://${v.url}/output/segmentation`, `zarr://${v.url}/output/instances`, `precomputed://${v.url}/output/annotations/boxes`]);
    assert.deepEqual(state.dimensions.z, [4e-8, 'm']);
    // Display order x, y, z: the main panel shows the EM's x–y sections; the centre in that order.
    assert.deepEqual(Object.keys(state.dimensions), ['x', 'y', 'z']);
    assert.deepEqual((state as unknown as { position: number[] }).position, [128, 128, 16]);
    // Class colours from the segmentation's image-label metadata.
    const segLayer = state.layers[1] as unknown as { segmentColors?: Record<string, string>; segments?: string[] };
    assert.match(segLayer.segmentColors?.['1'] ?? '', /^#[0-9a-f]{6}$/);
    assert.deepEqual(segLayer.segments, ['1']);
  } finally {
    await v.close();
  }
});

test('tessera view prints the URL and the link (to the client --neuroglancer names), serves until SIGTERM, exits 0', async () => {
  const p = spawn(process.execPath, [path.join(ROOT, 'bin', 'tessera.mjs'), 'view', out, '--port', '0', '--neuroglancer', 'http://ng.cluster.local:8000/'], { env: { ...process.env, TESSERA_LOG: 'warn' } });
  let stdout = '';
  let stderr = '';
  p.stderr.on('data', (d) => (stderr += d));
  const url = await new Promise<string>((resolve, reject) => {
    p.stdout.on('data', (d) => {
      stdout += d;
      const m = /at (http:\/\/[^\s]+)\/output/.exec(stdout);
      if (m && stdout.includes('neuroglancer: ')) resolve(m[1]);
    });
    p.on('exit', (code) => reject(new Error(`exited ${code}: ${stderr}`)));
  });
  assert.match(stdout, /neuroglancer: http:\/\/ng\.cluster\.local:8000\/#!/, 'the self-hosted client named by --neuroglancer');
  assert.match(stdout, /\(\d+ boxes as annotations\)/);
  assert.equal((await get(`${url}/output/annotations/boxes/info`)).status, 200);
  const code = await new Promise<number | null>((resolve) => { p.removeAllListeners('exit'); p.on('exit', resolve); p.kill('SIGTERM'); });
  assert.equal(code, 0, stderr);
});

test('tessera view refuses a path that is not a Tessera output, naming it', async () => {
  const r = await tessera(['view', vol, '--port', '0']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /no run\.json: not a Tessera output/);
  assert.ok(r.stderr.includes(vol));
});

/** Pixels of a PNG written by shared/report/png.ts (RGB, 8 bit, filter 0 on every row). */
function decodeOurPng(png: Buffer): { w: number; h: number; px: Buffer } {
  const w = png.readUInt32BE(16), h = png.readUInt32BE(20);
  const parts: Buffer[] = [];
  for (let at = 8; at < png.length;) {
    const len = png.readUInt32BE(at);
    if (png.toString('ascii', at + 4, at + 8) === 'IDAT') parts.push(png.subarray(at + 8, at + 8 + len));
    at += 12 + len;
  }
  const raw = zlib.inflateSync(Buffer.concat(parts));
  const px = Buffer.alloc(w * h * 3);
  for (let y = 0; y < h; y++) raw.copy(px, y * w * 3, y * (w * 3 + 1) + 1, (y + 1) * (w * 3 + 1));
  return { w, h, px };
}

const count = (img: { px: Buffer }, rgb: number[]) => {
  let n = 0;
  for (let i = 0; i < img.px.length; i += 3) if (img.px[i] === rgb[0] && img.px[i + 1] === rgb[1] && img.px[i + 2] === rgb[2]) n++;
  return n;
};

test('tessera report: an HTML page whose figures show the boxes, the segmentation and the ground truth; Chromium renders every figure', async () => {
  const file = path.join(dir, 'report.html');
  const r = await tesseraOk(['report', out, '--gt', path.join(vol, 'labels', 'gt', '0'), '--out', file, '--window', '256']);
  assert.match(r.stdout, /7 figures/);
  const html = fs.readFileSync(file, 'utf8');
  assert.doesNotMatch(html, /src="(?!data:)/, 'self-contained: no external sources');
  const figures = new Map([...html.matchAll(/<figure id="([^"]+)"><img alt="[^"]*" width="\d+" src="data:image\/png;base64,([^"]+)"/g)].map((m) => [m[1], decodeOurPng(Buffer.from(m[2], 'base64'))]));
  assert.deepEqual([...figures.keys()], ['slice-z', 'slice-y', 'slice-x']);
  // Charts are SVG (the page's font, not pixels); each slice has a scale bar in the data's unit.
  const charts = new Map([...html.matchAll(/<figure id="([^"]+)"><svg[^>]*>([\s\S]*?)<\/svg><figcaption>/g)].map((m) => [m[1], m[2]]));
  assert.deepEqual([...charts.keys()], ['time-phases', 'time-tasks', 'map-boxes', 'map-canvases']);
  assert.equal([...html.matchAll(/class="scalebar"[^>]*>.*?<text[^>]*>[\d.]+ nm<\/text>/g)].length, 3, 'a scale bar in nm under each slice');
  // With --gt the page carries the scores tessera eval gives.
  assert.match(html, /<th>scores \(--gt\)<\/th><td>class 1: Dice 0\.\d{4}/);
  // The slices go through the best-scoring box: its outline (yellow), segmentation (tinted red)
  // and ground-truth contours (green) are all on the xy slice.
  const xy = figures.get('slice-z')!;
  assert.deepEqual([xy.w, xy.h], [256, 256]);
  assert.ok(count(xy, [255, 230, 0]) > 20, 'box outlines');
  assert.ok(count(xy, [0, 230, 80]) > 20, 'ground-truth contours');
  let tinted = 0;
  for (let i = 0; i < xy.px.length; i += 3) if (xy.px[i] > xy.px[i + 1] + 60 && xy.px[i] > xy.px[i + 2] + 60) tinted++;
  assert.ok(tinted > 20, `segmentation tint (${tinted} px)`);
  // The xz slice is drawn 10× taller in z (40 nm vs 4 nm voxels).
  assert.equal(figures.get('slice-y')!.h, 32 * 10);
  // The block map has one cell per (y, x) block, boxes coloured (not all white), and a legend.
  const cells = [...charts.get('map-boxes')!.matchAll(/<rect [^>]*fill="(rgb\([^)]*\))"><title>block y \d+, x \d+: (\d+)<\/title>/g)];
  assert.ok(cells.length >= 1 && cells.some((c) => c[1] !== 'rgb(255,255,255)' && Number(c[2]) > 0), 'coloured cells with their counts');
  assert.match(html, /<h2>Failures<\/h2>\s*<p>none<\/p>/);
  // What a browser makes of it.
  const dom = execFileSync('chromium', ['--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--virtual-time-budget=10000', '--dump-dom', `file://${file}`], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 120_000 });
  assert.match(dom, /data-figures="7\/7"/, 'every figure decoded and laid out');
});

test('tessera report on a failed run lists the failure with its chunk', async () => {
  const bad = brokenCopy(vol, dir, 'bad');
  const failed = path.join(dir, 'failed.zarr');
  const run = await tessera(['run', '--input', bad.vol, '--output', failed, '--config', bad.config]);
  assert.equal(run.code, 1, run.stderr);
  const r = await tesseraOk(['report', failed]);
  const html = fs.readFileSync(path.join(failed, 'report.html'), 'utf8');
  assert.ok(r.stdout.includes(path.join(failed, 'report.html')));
  assert.match(html, /run status is failed/);
  assert.match(html, /bad\.zarr\/0.*chunk 0\/1\/1/, 'the failure names the corrupt chunk');
  assert.match(html, /no input image|<th>input<\/th><td>[^<]*bad\.zarr/);
});
