// A PNG line plot for the benchmark's roi_threshold curve (the raster is shared/report/png.ts).
import { Canvas } from '../shared/report/png.ts';

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
