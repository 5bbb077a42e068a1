// A run's progress where a person or a batch log reads it, and the logger that goes with it.
//
// On a terminal: one bar per task kind (done/total, rate, ETA; the kind that writes the output
// also shows voxels and their rate), and the log drawn above the bars as text lines — warnings
// and errors only unless TESSERA_LOG asks for more (the bars replace the info lines).
// Off a terminal (Kubernetes, SLURM, nohup, a file): JSON logs as everywhere else, plus one
// `progress` line every `intervalS` seconds while anything moves: tasks done/total per kind, the
// fraction of tasks done, voxels written and their rate, and an ETA from the rate so far; and a
// last one at the end.
import { createRequire } from 'node:module';
import type cliProgressTypes from 'cli-progress';
import { pino, type Logger } from 'pino';

/** Tasks done of a kind; `voxels`: the run's voxels (its ROI), given with the kind that writes them. */
export type ProgressFn = (kind: string, done: number, total: number, voxels?: number) => void;

export interface RunProgress {
  update: ProgressFn;
  stop(): void;
  /** The run's logger: text above the bars on a terminal, JSON lines otherwise. */
  log: Logger;
}

export interface ProgressOptions {
  /** Bars off (stdout carries the --json report, and the person asked for machine output). */
  json?: boolean;
  /** Seconds between progress lines off a terminal; 0: none. @default 10 */
  intervalS?: number;
  bindings?: Record<string, unknown>;
  /** Where output goes (tests). @default process.stderr */
  stream?: NodeJS.WritableStream & { isTTY?: boolean };
}

/** The kinds that write the output's voxels: their progress is the voxels' progress. */
const WRITERS = new Set(['paste', 'blend']);

interface Counts {
  done: number;
  total: number;
}

export function runProgress(o: ProgressOptions = {}): RunProgress {
  const stream = o.stream ?? process.stderr;
  if (stream.isTTY && !o.json) return terminalProgress(stream, o);
  return batchProgress(stream, o);
}

function terminalProgress(stream: NodeJS.WritableStream, o: ProgressOptions): RunProgress {
  // Required here: only a run on a terminal draws bars (twenty modules `--help` need not load).
  const cliProgress = createRequire(import.meta.url)('cli-progress') as typeof cliProgressTypes;
  const multi = new cliProgress.MultiBar({
    format: ' {phase} [{bar}] {value}/{total} {percentage}% | ETA {eta_formatted}{extra}',
    hideCursor: true, stream: stream as NodeJS.WriteStream, etaBuffer: 50, fps: 5,
  }, cliProgress.Presets.shades_classic);
  const bars = new Map<string, cliProgressTypes.SingleBar>();
  const t0 = performance.now();
  const log = pino({ level: process.env.TESSERA_LOG ?? 'warn', base: { ...o.bindings } }, { write: (line: string) => multi.log(textLine(line) + '\n') });
  return {
    log,
    update: (phase, done, total, voxels) => {
      const extra = voxels !== undefined && WRITERS.has(phase) ? voxelText(done, total, voxels, (performance.now() - t0) / 1000) : '';
      let b = bars.get(phase);
      if (!b) {
        b = multi.create(total, 0, { phase: phase.padEnd(10), extra });
        bars.set(phase, b);
      }
      b.setTotal(total);
      b.update(done, { phase: phase.padEnd(10), extra });
    },
    stop: () => multi.stop(),
  };
}

function batchProgress(stream: NodeJS.WritableStream, o: ProgressOptions): RunProgress {
  // stderr written synchronously (as createLogger does): a crash's last lines are not lost.
  const dest = o.stream ? (stream as NodeJS.WritableStream & { write(s: string): boolean }) : pino.destination(2);
  const log = pino({ level: process.env.TESSERA_LOG ?? 'info', base: { ...o.bindings } }, dest);
  const counts = new Map<string, Counts>();
  let voxels: number | undefined;
  let changed = false;
  const t0 = performance.now();
  const intervalS = o.intervalS ?? 10;
  const line = () => {
    if (!changed) return;
    changed = false;
    log.info(progressFields(counts, voxels, (performance.now() - t0) / 1000), 'progress');
  };
  const timer = intervalS > 0 ? setInterval(line, intervalS * 1000) : undefined;
  timer?.unref();
  return {
    log,
    update: (kind, done, total, v) => {
      const c = counts.get(kind);
      if (c && c.done === done && c.total === total) return;
      counts.set(kind, { done, total });
      if (v !== undefined) voxels = v;
      changed = true;
    },
    stop: () => {
      clearInterval(timer);
      // Where the run ended: the last line says it, not the last tick before it.
      if (timer) line();
    },
  };
}

/** The fields of one progress line (exported for its test). */
export function progressFields(counts: ReadonlyMap<string, Counts>, voxels: number | undefined, elapsedS: number): Record<string, unknown> {
  let done = 0;
  let total = 0;
  const tasks: Record<string, string> = {};
  for (const [k, c] of counts) {
    tasks[k] = `${c.done}/${c.total}`;
    done += c.done;
    total += c.total;
  }
  const fraction = total ? done / total : 0;
  const out: Record<string, unknown> = { tasks, fraction: round(fraction, 4), elapsedSeconds: Math.round(elapsedS) };
  // ETA from the rate so far: the kinds' tasks differ in cost, so it firms up as the run goes.
  if (fraction > 0 && fraction < 1) out.etaSeconds = Math.round((elapsedS * (1 - fraction)) / fraction);
  const writer = [...counts].find(([k]) => WRITERS.has(k))?.[1];
  if (voxels !== undefined && writer && writer.total) {
    const written = Math.round((voxels * writer.done) / writer.total);
    out.voxelsDone = written;
    out.voxels = voxels;
    if (elapsedS > 0) out.voxelsPerSecond = Math.round(written / elapsedS);
  }
  return out;
}

function voxelText(done: number, total: number, voxels: number, elapsedS: number): string {
  if (!total) return '';
  const written = (voxels * done) / total;
  return ` | ${(written / 1e6).toFixed(1)}/${(voxels / 1e6).toFixed(1)} Mvox, ${elapsedS > 0 ? (written / 1e6 / elapsedS).toFixed(2) : '0'} Mvox/s`;
}

const LEVELS: Record<number, string> = { 10: 'trace', 20: 'debug', 30: 'info', 40: 'warn', 50: 'error', 60: 'fatal' };

/** A pino JSON line as one text line: level, message, then the other fields as key=value. */
export function textLine(json: string): string {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json.trimEnd();
  }
  const rest = Object.entries(o)
    .filter(([k]) => !['level', 'time', 'pid', 'hostname', 'msg'].includes(k))
    .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`);
  return `${LEVELS[o.level as number] ?? o.level}: ${String(o.msg ?? '')}${rest.length ? `  ${rest.join(' ')}` : ''}`;
}

function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}
