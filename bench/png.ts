// A minimal PNG line plot (RGB, zlib from node:zlib) with a 5×7 bitmap font for axis labels:
// enough for the benchmark's roi_threshold curve without a plotting dependency.
import * as zlib from 'node:zlib';

const FONT: Record<string, string[]> = {
  '0': ['01110', '10001', '10011', '10101', '11001', '10001', '01110'],
  '1': ['00100', '01100', '00100', '00100', '00100', '00100', '01110'],
  '2': ['01110', '10001', '00001', '00010', '00100', '01000', '11111'],
  '3': ['11110', '00001', '00001', '01110', '00001', '00001', '11110'],
  '4': ['00010', '00110', '01010', '10010', '11111', '00010', '00010'],
  '5': ['11111', '10000', '11110', '00001', '00001', '10001', '01110'],
  '6': ['00110', '01000', '10000', '11110', '10001', '10001', '01110'],
  '7': ['11111', '00001', '00010', '00100', '01000', '01000', '01000'],
  '8': ['01110', '10001', '10001', '01110', '10001', '10001', '01110'],
  '9': ['01110', '10001', '10001', '01111', '00001', '00010', '01100'],
  '.': ['00000', '00000', '00000', '00000', '00000', '01100', '01100'],
  '-': ['00000', '00000', '00000', '11111', '00000', '00000', '00000'],
  ' ': ['00000', '00000', '00000', '00000', '00000', '00000', '00000'],
  '%': ['11001', '11010', '00010', '00100', '01000', '01011', '10011'],
  '/': ['00001', '00010', '00010', '00100', '01000', '01000', '10000'],
  '(': ['00010', '00100', '01000', '01000', '01000', '00100', '00010'],
  ')': ['01000', '00100', '00010', '00010', '00010', '00100', '01000'],
};
for (const [ch, rows] of Object.entries({
  a: ['00000', '00000', '01110', '00001', '01111', '10001', '01111'], c: ['00000', '00000', '01110', '10000', '10000', '10001', '01110'],
  d: ['00001', '00001', '01101', '10011', '10001', '10001', '01111'], e: ['00000', '00000', '01110', '10001', '11111', '10000', '01110'],
  h: ['10000', '10000', '10110', '11001', '10001', '10001', '10001'], i: ['00100', '00000', '01100', '00100', '00100', '00100', '01110'],
  l: ['01100', '00100', '00100', '00100', '00100', '00100', '01110'], m: ['00000', '00000', '11010', '10101', '10101', '10001', '10001'],
  n: ['00000', '00000', '10110', '11001', '10001', '10001', '10001'], o: ['00000', '00000', '01110', '10001', '10001', '10001', '01110'],
  r: ['00000', '00000', '10110', '11001', '10000', '10000', '10000'], s: ['00000', '00000', '01110', '10000', '01110', '00001', '11110'],
  t: ['01000', '01000', '11100', '01000', '01000', '01001', '00110'], u: ['00000', '00000', '10001', '10001', '10001', '10011', '01101'],
  v: ['00000', '00000', '10001', '10001', '10001', '01010', '00100'], b: ['10000', '10000', '10110', '11001', '10001', '10001', '11110'],
  p: ['00000', '00000', '11110', '10001', '11110', '10000', '10000'], k: ['10000', '10000', '10010', '10100', '11000', '10100', '10010'],
  _: ['00000', '00000', '00000', '00000', '00000', '00000', '11111'], x: ['00000', '00000', '10001', '01010', '00100', '01010', '10001'],
})) FONT[ch] = rows;

export class Canvas {
  readonly px: Uint8Array;
  constructor(readonly w: number, readonly h: number) {
    this.px = new Uint8Array(w * h * 3).fill(255);
  }
  set(x: number, y: number, c: readonly number[]): void {
    x = Math.round(x); y = Math.round(y);
    if (x < 0 || y < 0 || x >= this.w || y >= this.h) return;
    this.px.set(c, (y * this.w + x) * 3);
  }
  line(x0: number, y0: number, x1: number, y1: number, c: readonly number[], width = 1): void {
    const n = Math.max(1, Math.ceil(Math.hypot(x1 - x0, y1 - y0)));
    for (let i = 0; i <= n; i++) {
      const x = x0 + ((x1 - x0) * i) / n, y = y0 + ((y1 - y0) * i) / n;
      for (let d = -(width >> 1); d <= width >> 1; d++) { this.set(x + d, y, c); this.set(x, y + d, c); }
    }
  }
  text(x: number, y: number, s: string, c: readonly number[] = [0, 0, 0], scale = 2): void {
    for (const ch of s) {
      const g = FONT[ch] ?? FONT[' '];
      for (let r = 0; r < 7; r++) for (let k = 0; k < 5; k++) {
        if (g[r][k] === '1') for (let a = 0; a < scale; a++) for (let b = 0; b < scale; b++) this.set(x + k * scale + a, y + r * scale + b, c);
      }
      x += 6 * scale;
    }
  }
  png(): Buffer {
    const raw = Buffer.alloc((this.w * 3 + 1) * this.h);
    for (let y = 0; y < this.h; y++) {
      raw[y * (this.w * 3 + 1)] = 0;
      Buffer.from(this.px.buffer, y * this.w * 3, this.w * 3).copy(raw, y * (this.w * 3 + 1) + 1);
    }
    const chunk = (type: string, data: Buffer) => {
      const len = Buffer.alloc(4); len.writeUInt32BE(data.length);
      const td = Buffer.concat([Buffer.from(type), data]);
      const crc = Buffer.alloc(4); crc.writeUInt32BE(zlib.crc32(td) >>> 0);
      return Buffer.concat([len, td, crc]);
    };
    const ihdr = Buffer.alloc(13);
    ihdr.writeUInt32BE(this.w, 0); ihdr.writeUInt32BE(this.h, 4);
    ihdr[8] = 8; ihdr[9] = 2; ihdr[10] = 0; ihdr[11] = 0; ihdr[12] = 0;
    return Buffer.concat([Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]), chunk('IHDR', ihdr), chunk('IDAT', zlib.deflateSync(raw)), chunk('IEND', Buffer.alloc(0))]);
  }
}

export interface Series { name: string; color: readonly number[]; points: Array<[number, number]> }

/** Line plot of series sharing an x axis; each series is scaled to its own [min, max] (given in its legend). */
export function linePlot(title: string, xLabel: string, series: Series[], logX = true): Buffer {
  const W = 720, H = 460, L = 70, R = 30, T = 100, B = 60;
  const c = new Canvas(W, H);
  const xs = series.flatMap((s) => s.points.map((p) => p[0]));
  const fx = (v: number) => (logX ? Math.log10(v) : v);
  const x0 = Math.min(...xs.map(fx)), x1 = Math.max(...xs.map(fx));
  const px = (v: number) => L + ((fx(v) - x0) / (x1 - x0 || 1)) * (W - L - R);
  c.line(L, H - B, W - R, H - B, [0, 0, 0]);
  c.line(L, T, L, H - B, [0, 0, 0]);
  c.text(L, 12, title);
  c.text(W / 2 - xLabel.length * 6, H - 22, xLabel);
  for (const v of [...new Set(xs)]) { c.line(px(v), H - B, px(v), H - B + 5, [0, 0, 0]); c.text(px(v) - 12, H - B + 9, String(v), [0, 0, 0], 1); }
  series.forEach((s, si) => {
    const ys = s.points.map((p) => p[1]);
    const max = Math.max(...ys);
    const min = Math.min(...ys);
    const span = max - min || Math.abs(max) || 1;
    const py = (v: number) => H - B - 10 - ((v - min) / span) * (H - T - B - 60);
    for (let i = 1; i < s.points.length; i++) c.line(px(s.points[i - 1][0]), py(s.points[i - 1][1]), px(s.points[i][0]), py(s.points[i][1]), s.color, 3);
    for (const p of s.points) c.line(px(p[0]) - 3, py(p[1]), px(p[0]) + 3, py(p[1]), s.color, 3);
    c.text(L + 10, 36 + si * 18, `${s.name} (${min.toPrecision(3)} - ${max.toPrecision(3)})`, s.color);
  });
  return c.png();
}
