// `tessera report OUTPUT`: one self-contained HTML page (slices as inlined PNG, charts as inline SVG) that shows what a
// run did: orthogonal slices of the raw data with the segmentation, the boxes and (when given)
// the ground truth overlaid; busy time per phase and per task kind; boxes and canvases per
// stage-two block as a map; failures and warnings. Everything is read in bounded pieces — one
// slice window per view, one boxes file at a time, a block map over y and x only — so a report
// on a FAFB-size output costs what it costs on a small one.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { type Box, type Vec3, box, intersect, isEmpty, shapeOf, union } from '../geometry/box.ts';
import type { Array3 } from '../array/array3.ts';
import { OutputError, oneLine } from '../errors.ts';
import { readRunJson, runJsonPath } from '../run/output.ts';
import type { RunReport } from '../run/session.ts';
import type { TesseraConfig } from '../config/config.ts';
import { stage2Block } from '../tasks/graph.ts';
import { openArray, readRegion } from '../volume/zarr.ts';
import { openImage } from '../volume/ome.ts';
import { isVirtual } from '../volume/virtual.ts';
import { type BoxLine, boxesFileBlock, readBoxLines } from '../tasks/boxes-output.ts';
import { writeFileAtomic } from '../volume/store.ts';
import { Canvas } from './png.ts';
import { evaluateOutput } from '../run/eval.ts';
import { unitSymbol } from '../units.ts';

export interface ReportOptions {
  output: string;
  /** The input image (NGFF group or array); default: the run's input when it still exists. */
  input?: string;
  /** A ground-truth label array, drawn as contours. */
  gt?: string;
  /** @default OUTPUT/report.html */
  file?: string;
  /** Side of the slice windows, in voxels. @default 512 */
  window?: number;
}

export interface ReportResult {
  file: string;
  /** Figure ids, in page order. */
  figures: string[];
  /** The voxel the slices go through. */
  center: Vec3;
  boxes: number;
}

const CLASS_COLORS: ReadonlyArray<readonly number[]> = [[0, 0, 0], [255, 48, 48], [48, 128, 255], [255, 200, 0], [200, 64, 255], [0, 200, 160]];
const BOX_COLOR = [255, 230, 0];
const GT_COLOR = [0, 230, 80];

interface BlockStats {
  /** Blocks' y and x counts (the map sums over z). */
  grid: [number, number];
  boxes: Float64Array;
  canvases: Float64Array;
  total: number;
  best?: BoxLine;
}

/** One pass over boxes/*.jsonl, one file at a time: per-block counts over y, x and the best-scoring box. */
async function blockStats(out: string, shape: Vec3, block: Vec3): Promise<BlockStats | undefined> {
  const dir = path.join(out, 'boxes');
  if (!fs.existsSync(dir)) return undefined;
  const grid: [number, number] = [Math.ceil(shape[1] / block[1]), Math.ceil(shape[2] / block[2])];
  const s: BlockStats = { grid, boxes: new Float64Array(grid[0] * grid[1]), canvases: new Float64Array(grid[0] * grid[1]), total: 0 };
  for await (const d of await fs.promises.opendir(dir)) {
    const b = boxesFileBlock(d.name);
    if (!b) continue;
    const [y, x] = [b[1], b[2]];
    if (y >= grid[0] || x >= grid[1]) throw new OutputError(path.join(dir, d.name), `block outside the ${grid.join('×')} (y, x) block grid`);
    let most = -1;
    for (const line of await readBoxLines(out, b)) {
      s.boxes[y * grid[1] + x]++;
      s.total++;
      for (const p of line.placements) most = Math.max(most, p.canvas);
      if (!s.best || line.score > s.best.score) s.best = line;
    }
    s.canvases[y * grid[1] + x] += most + 1;
  }
  return s;
}

/** Intensities to 0..255 between the slice's 1st and 99th percentiles. */
function grey(a: Array3): Uint8Array {
  const n = a.data.length;
  const step = Math.max(1, Math.floor(n / 20000));
  const sample: number[] = [];
  for (let i = 0; i < n; i += step) sample.push(a.data[i]);
  sample.sort((p, q) => p - q);
  const lo = sample[Math.floor(sample.length * 0.01)] ?? 0;
  const hi = sample[Math.floor(sample.length * 0.99)] ?? 1;
  const g = new Uint8Array(n);
  for (let i = 0; i < n; i++) g[i] = Math.max(0, Math.min(255, Math.round(((a.data[i] - lo) / (hi - lo || 1)) * 255)));
  return g;
}

interface Plane {
  name: string;
  /** The fixed axis and the (row, column) axes of the picture. */
  axis: number;
  rows: number;
  cols: number;
  region: Box;
}

/** The three planes through `c`, each a window of at most `w` voxels a side (rows in z are fewer: z is thick). */
function planes(shape: Vec3, c: Vec3, w: number): Plane[] {
  const span = (a: number, len: number): [number, number] => {
    const lo = Math.max(0, Math.min(shape[a] - len, c[a] - Math.floor(len / 2)));
    return [lo, Math.min(shape[a], lo + len)];
  };
  const r = (a: number, fixed: number) => (a === fixed ? [c[a], c[a] + 1] : span(a, w));
  const mk = (name: string, axis: number, rows: number, cols: number): Plane => {
    const lo = [0, 1, 2].map((a) => r(a, axis)[0]);
    const hi = [0, 1, 2].map((a) => r(a, axis)[1]);
    return { name, axis, rows, cols, region: box(lo as unknown as Vec3, hi as unknown as Vec3) };
  };
  return [mk('xy (z fixed)', 0, 1, 2), mk('xz (y fixed)', 1, 0, 2), mk('yz (x fixed)', 2, 0, 1)];
}

/** Draw one plane: raw in grey (or black), classes tinted, ground-truth contours, box outlines. */
function drawPlane(p: Plane, raw: Array3 | undefined, seg: Array3, gt: Array3 | undefined, boxes: readonly Box[], stretch: number): Canvas {
  const s = shapeOf(p.region);
  const H = s[p.rows], W = s[p.cols];
  const sy = p.rows === 0 ? stretch : 1;
  const c = new Canvas(W, H * sy);
  const g = raw ? grey(raw) : undefined;
  // Plane arrays are 3D with one axis of length 1: index = row * W + col in C order.
  const at = (row: number, col: number) => row * W + col;
  const label = (a: Array3 | undefined, row: number, col: number) => (a && row >= 0 && col >= 0 && row < H && col < W ? Number(a.data[at(row, col)]) : 0);
  for (let row = 0; row < H; row++) for (let col = 0; col < W; col++) {
    const v = g ? g[at(row, col)] : 0;
    let px = [v, v, v];
    const k = label(seg, row, col);
    if (k > 0) {
      const t = CLASS_COLORS[k % CLASS_COLORS.length];
      px = px.map((u, i) => Math.round(u * 0.5 + t[i] * 0.5));
    }
    const gl = label(gt, row, col);
    if (gt && gl > 0 && (label(gt, row - 1, col) !== gl || label(gt, row + 1, col) !== gl || label(gt, row, col - 1) !== gl || label(gt, row, col + 1) !== gl)) px = [...GT_COLOR];
    for (let r = 0; r < sy; r++) c.set(col, row * sy + r, px);
  }
  for (const b of boxes) {
    const q = intersect(b, p.region);
    if (isEmpty(q)) continue;
    const r0 = (q.begin[p.rows] - p.region.begin[p.rows]) * sy, r1 = (q.end[p.rows] - p.region.begin[p.rows]) * sy - 1;
    const c0 = q.begin[p.cols] - p.region.begin[p.cols], c1 = q.end[p.cols] - p.region.begin[p.cols] - 1;
    c.line(c0, r0, c1, r0, BOX_COLOR); c.line(c0, r1, c1, r1, BOX_COLOR);
    c.line(c0, r0, c0, r1, BOX_COLOR); c.line(c1, r0, c1, r1, BOX_COLOR);
  }
  return c;
}

/** Horizontal bars with labels (SVG: the page's own font, sharp at any zoom): seconds per phase or task kind. */
function barChart(entries: Array<[string, number]>): string {
  const W = 640, row = 22, left = 150, H = 8 + row * Math.max(1, entries.length);
  const max = Math.max(1e-9, ...entries.map(([, v]) => v));
  const bars = entries.map(([name, v], i) => {
    const y = 4 + i * row;
    const len = Math.max(1, Math.round((v / max) * (W - left - 80)));
    return `<text x="${left - 8}" y="${y + 15}" text-anchor="end">${esc(name)}</text><rect x="${left}" y="${y + 2}" width="${len}" height="${row - 6}" fill="#4670c8"/><text x="${left + len + 6}" y="${y + 15}">${v.toFixed(1)}</text>`;
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-size="13" font-family="system-ui,sans-serif">${bars.join('')}</svg>`;
}

/** A y-x map of per-block counts, white (0) to dark blue (the maximum), with a legend; cells 12–48 px. */
function heatMap(grid: [number, number], v: Float64Array): string {
  const cell = Math.max(12, Math.min(48, Math.floor(600 / Math.max(grid[0], grid[1]))));
  const max = Math.max(1, ...v);
  const colour = (t: number) => `rgb(${Math.round(255 - 225 * t)},${Math.round(255 - 185 * t)},${Math.round(255 - 95 * t)})`;
  const cells: string[] = [];
  for (let y = 0; y < grid[0]; y++) for (let x = 0; x < grid[1]; x++) {
    const n = v[y * grid[1] + x];
    cells.push(`<rect x="${x * cell}" y="${y * cell}" width="${cell - 1}" height="${cell - 1}" fill="${colour(n / max)}"><title>block y ${y}, x ${x}: ${n}</title></rect>`);
  }
  const W = Math.max(grid[1] * cell, 160), H = grid[0] * cell + 24;
  const legend = `<text x="0" y="${grid[0] * cell + 17}">0</text><rect x="14" y="${grid[0] * cell + 6}" width="100" height="12" fill="url(#ramp)"/><text x="120" y="${grid[0] * cell + 17}">${max}</text>`;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-size="12" font-family="system-ui,sans-serif"><defs><linearGradient id="ramp"><stop offset="0" stop-color="${colour(0)}"/><stop offset="1" stop-color="${colour(1)}"/></linearGradient></defs>${cells.join('')}${legend}</svg>`;
}

/** A scale bar for a slice shown `zoom` × its voxels: a round length (1, 2 or 5 × 10^k) near a fifth of its width. */
function scaleBar(widthPx: number, perPx: number, unit: string | undefined): string {
  const target = (widthPx / 5) * perPx;
  const k = 10 ** Math.floor(Math.log10(target));
  const len = [1, 2, 5, 10].map((m) => m * k).filter((l) => l <= target).pop() ?? k;
  const px = Math.max(1, Math.round(len / perPx));
  return `<svg class="scalebar" xmlns="http://www.w3.org/2000/svg" width="${px + 90}" height="22" font-size="12" font-family="system-ui,sans-serif"><rect x="0" y="4" width="${px}" height="5" fill="#222"/><text x="${px + 6}" y="12">${+len.toPrecision(3)} ${esc(unitSymbol(unit) || 'voxels')}</text></svg>`;
}

interface Figure {
  id: string;
  title: string;
  /** A slice (PNG, shown `width` px wide with its scale bar) … */
  png?: Buffer;
  width?: number;
  bar?: string;
  /** … or a chart (inline SVG). */
  svg?: string;
}

function figureHtml(f: Figure): string {
  const body = f.png
    ? `<img alt="${esc(f.title)}" width="${f.width}" src="data:image/png;base64,${f.png.toString('base64')}">${f.bar ? `<br>${f.bar}` : ''}`
    : f.svg;
  return `<figure id="${f.id}">${body}<figcaption>${esc(f.title)}</figcaption></figure>`;
}

const esc = (s: string) => s.replace(/[&<>"]/g, (ch) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[ch]!);

export async function writeReport(o: ReportOptions): Promise<ReportResult> {
  const doc = readRunJson(o.output);
  if (!doc) throw new OutputError(o.output, 'no run.json: not a Tessera output');
  const config = doc.config as TesseraConfig | undefined;
  const report = doc.report as RunReport | undefined;
  if (!config) throw new OutputError(runJsonPath(o.output), 'run.json has no config (written by an older Tessera?)');
  const segArr = await openArray(path.join(o.output, 'segmentation', '0'));
  const shape = segArr.shape;
  const block = stage2Block(config);
  const stats = await blockStats(o.output, shape, block);
  // Slices through the best-scoring box (a sparse volume's centre is usually empty), else the centre.
  const best = stats?.best?.box;
  const center = (best ? best.begin.map((v, a) => Math.floor((v + best.end[a]) / 2)) : shape.map((s) => Math.floor(s / 2))) as unknown as Vec3;
  const inputPath = o.input ?? (report?.input && (isVirtual(report.input) || fs.existsSync(report.input)) ? report.input : undefined);
  const image = inputPath ? await openImage(inputPath) : undefined;
  const gtArr = o.gt ? await openArray(o.gt) : undefined;
  if (gtArr && gtArr.shape.some((v, a) => v !== shape[a])) throw new OutputError(o.gt!, `ground truth is ${gtArr.shape.join('×')}, the output ${shape.join('×')}`);
  const spacing = config.spacing as Vec3;
  const stretch = Math.max(1, Math.min(10, Math.round(spacing[0] / Math.min(spacing[1], spacing[2]))));

  const warnings: string[] = [];
  const figures: Figure[] = [];
  const views = planes(shape, center, o.window ?? 512);
  // The three planes cross at the centre: one read of the blocks around their union serves all.
  const boxes = stats ? await boxesNear(o.output, views.map((p) => p.region).reduce(union), block) : [];
  for (const p of views) {
    // A report is most needed when a run failed, often on bad input: an unreadable window is a
    // warning and the slice shows the segmentation on black.
    let raw: Array3 | undefined;
    if (image) {
      try { raw = await readRegion(image.levels[0].array, p.region); } catch (err) { warnings.push(`input not drawn on the ${p.name} slice: ${oneLine(err)}`); }
    }
    const seg = await readRegion(segArr, p.region);
    const gt = gtArr ? await readRegion(gtArr, p.region) : undefined;
    const id = `slice-${'zyx'[p.axis]}`;
    const canvas = drawPlane(p, raw, seg, gt, boxes, stretch);
    // Small windows are shown enlarged (pixelated), with a scale bar in the data's unit.
    const zoom = Math.max(1, Math.floor(512 / canvas.w));
    figures.push({
      id, title: `${p.name} through voxel ${center.join(', ')}: ${p.region.begin.join(',')} to ${p.region.end.join(',')}`, png: canvas.png(), width: canvas.w * zoom,
      bar: scaleBar(canvas.w * zoom, spacing[p.cols] / zoom, config.unit),
    });
  }
  if (report) {
    const phases = Object.entries(report.busySeconds).filter(([k]) => !k.startsWith('task:')).sort((a, b) => b[1] - a[1]);
    const kinds = Object.entries(report.busySeconds).filter(([k]) => k.startsWith('task:')).map(([k, v]): [string, number] => [k.slice(5), v]);
    figures.push({ id: 'time-phases', title: 'Busy seconds per phase (summed over tasks in flight and inference threads)', svg: barChart(phases) });
    figures.push({ id: 'time-tasks', title: 'Busy seconds per task kind', svg: barChart(kinds) });
  }
  if (stats) {
    figures.push({ id: 'map-boxes', title: `Boxes per stage-two block (${block.join('×')} voxels), summed over z (y down, x across)`, svg: heatMap(stats.grid, stats.boxes) });
    figures.push({ id: 'map-canvases', title: 'Canvases per stage-two block, summed over z (y down, x across)', svg: heatMap(stats.grid, stats.canvases) });
  }

  const scores = o.gt ? await scoreAgainst(o.output, o.gt, shape, warnings) : undefined;
  if (doc.status !== 'complete') warnings.push(`run status is ${doc.status}: the output is not complete`);
  if (!image) warnings.push('no input image (pass --input): slices show the segmentation on black');
  if (report?.inputMissingChunks) warnings.push(`${report.inputMissingChunks} input chunks had no file and were read as the fill value`);
  if (report?.twoStage && report.twoStage.readAmplification > 4) warnings.push(`read amplification ${report.twoStage.readAmplification.toFixed(2)}: the input's storage chunks are large for sparse reads (see docs/benchmark.md)`);
  const failures = report?.failures ?? [];
  const rows = (r: Array<[string, string]>) => r.map(([k, v]) => `<tr><th>${esc(k)}</th><td>${esc(v)}</td></tr>`).join('');
  const summary: Array<[string, string]> = [
    ['status', String(doc.status)], ['mode', config.mode], ['output', o.output], ['input', inputPath ?? '–'],
    ['volume', `${shape.join(' × ')} voxels, spacing ${spacing.join(' × ')} ${unitSymbol(config.unit)}`],
    ...(report ? [['time', `${report.seconds.total} s, ${(report.voxelsPerSecond / 1e6).toFixed(2)} Mvox/s, peak RSS ${report.peakRssMB} MB`] as [string, string]] : []),
    ...(report?.twoStage ? [['boxes', `${report.twoStage.boxes} in ${report.twoStage.canvases} canvases, fill ${report.twoStage.fillRatio.toFixed(3)}${report.twoStage.runFillRatio === undefined ? '' : ` (${report.twoStage.runFillRatio.toFixed(3)} of what ran)`}, coverage ${report.twoStage.coverage.toFixed(3)}, read amplification ${report.twoStage.readAmplification.toFixed(2)}`] as [string, string]] : []),
    ...(scores ? [['scores (--gt)', scores] as [string, string]] : []),
    ...(report ? [['tasks', Object.entries(report.tasks).map(([k, t]) => `${k} ${t.ran} ran, ${t.reused} reused${t.failed ? `, ${t.failed} failed` : ''}${t.skipped ? `, ${t.skipped} skipped` : ''}`).join('; ')] as [string, string]] : []),
  ];
  const html = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Tessera report — ${esc(path.basename(o.output))}</title>
<style>body{font:14px system-ui,sans-serif;margin:24px;color:#222}th{text-align:left;padding-right:16px;vertical-align:top}figure{margin:16px 0}img{image-rendering:pixelated;max-width:100%;border:1px solid #ccc}.warn{color:#a40}</style>
</head><body>
<h1>Tessera run report</h1>
<table>${rows(summary)}</table>
<h2>Failures</h2>
${failures.length ? `<table>${rows(failures.map((f) => [f.task, f.error]))}</table>` : '<p>none</p>'}
<h2>Warnings</h2>
${warnings.length ? `<ul>${warnings.map((w) => `<li class="warn">${esc(w)}</li>`).join('')}</ul>` : '<p>none</p>'}
<h2>Figures</h2>
<p>Slices: raw data in grey, classes tinted (red: class 1), boxes in yellow${gtArr ? ', ground truth contours in green' : ''}; z is drawn ${stretch}× taller (voxel spacing); the bar under each slice is to its scale.</p>
${figures.map(figureHtml).join('\n')}
<script>addEventListener('load', () => { const f = [...document.querySelectorAll('figure')]; const ok = f.filter((x) => { const i = x.querySelector('img'); return i ? i.complete && i.naturalWidth > 0 : x.querySelector('svg')?.getBBox().width > 0; }); document.body.dataset.figures = ok.length + '/' + f.length; });</script>
</body></html>
`;
  const file = o.file ?? path.join(o.output, 'report.html');
  await writeFileAtomic(file, html);
  return { file, figures: figures.map((f) => f.id), center, boxes: stats?.total ?? 0 };
}

/** Dice and the rest against --gt over the run's ROI, as tessera eval gives them; skipped (a warning) past 2^27 voxels or when eval refuses. */
async function scoreAgainst(output: string, gt: string, shape: readonly number[], warnings: string[]): Promise<string | undefined> {
  if (shape[0] * shape[1] * shape[2] > 2 ** 27) {
    warnings.push('no scores on the page: the volume is past 2^27 voxels; run tessera eval for them');
    return undefined;
  }
  try {
    const e = await evaluateOutput({ pred: output, gt });
    const u = unitSymbol(e.unit);
    return Object.entries(e.perClass).map(([k, s]) => `class ${k}: Dice ${s.dice.toFixed(4)}, IoU ${s.iou.toFixed(4)}, surface Dice@${e.tolerance} ${u} ${s.surfaceDice.toFixed(4)}, HD95 ${s.hd95.toFixed(2)} ${u}, AP@0.5 ${s.ap50.toFixed(3)} (${s.gtObjects} objects in the truth, ${s.predObjects} found)`).join('; ');
  } catch (err) {
    warnings.push(`no scores on the page: ${oneLine(err)}`);
    return undefined;
  }
}

/** The boxes of the blocks around `region` that meet it (a slice window spans a few blocks). */
async function boxesNear(out: string, region: Box, block: Vec3): Promise<Box[]> {
  const lo = region.begin.map((v, a) => Math.max(0, Math.floor(v / block[a]) - 1));
  const hi = region.end.map((v, a) => Math.floor((v - 1) / block[a]) + 1);
  const found: Box[] = [];
  for (let z = lo[0]; z <= hi[0]; z++) for (let y = lo[1]; y <= hi[1]; y++) for (let x = lo[2]; x <= hi[2]; x++) {
    for (const l of await readBoxLines(out, [z, y, x])) if (!isEmpty(intersect(l.box, region))) found.push(l.box);
  }
  return found;
}
