// `tessera status OUTPUT_OR_RUN`: where a run stands, from anywhere. An output path is read from
// disk (run.json and the done logs); a run id is read from the NATS run registry (the
// coordinator refreshes its progress every 2 s).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { busOptions, connectBus, readRun, readRunJson, runsBucket, silentLogger, InputError } from '../../shared/index.ts';
import { WorkStore } from '../../shared/tasks/work.ts';

interface KindProgress {
  done: number;
  total: number;
  failed?: number;
}

export interface StatusView {
  source: 'output' | 'nats';
  run?: string;
  output?: string;
  status: string;
  tasks: Record<string, KindProgress>;
  failures?: { task: string; error: string }[];
  updatedAt?: string;
}

/**
 * Distinct tasks in a kind's done log. A task can be logged more than once (one whose freed
 * result a resume needed again ran twice; a coordinator restarted between a task's result and
 * its ack), so lines overcount; a line cut short by a crash does not count (WorkStore's parser).
 */
async function countDone(work: WorkStore, kind: string): Promise<number> {
  // One exact number per task in a typed array (chunk indices stay far below 2^17 per axis;
  // FAFB: ~500), sorted, runs counted: 8 bytes a line, not a Set entry (~50) — a FAFB kind's
  // 10^7 done lines are 80 MB here.
  let keys = new Float64Array(1024);
  let n = 0;
  for await (const batch of work.done([kind])) {
    for (const e of batch) {
      if (n === keys.length) {
        const grown = new Float64Array(2 * n);
        grown.set(keys);
        keys = grown;
      }
      keys[n++] = (e.index[0] * 2 ** 17 + e.index[1]) * 2 ** 17 + e.index[2];
    }
  }
  const sorted = keys.subarray(0, n).sort();
  let distinct = 0;
  for (let i = 0; i < n; i++) if (i === 0 || sorted[i] !== sorted[i - 1]) distinct++;
  return distinct;
}

export async function outputStatus(out: string): Promise<StatusView> {
  const doc = readRunJson(out);
  if (!doc) throw new InputError(out, 'has no run.json: not a Tessera output (or the run never started)');
  const totals = (doc.totals ?? {}) as Record<string, number>;
  const tasks: Record<string, KindProgress> = {};
  const work = new WorkStore(path.join(out, '.work'));
  for (const [kind, total] of Object.entries(totals)) {
    tasks[kind] = { done: Math.min(total, await countDone(work, kind)), total };
  }
  const report = doc.report as { failures?: { task: string; error: string }[] } | undefined;
  return { source: 'output', output: out, status: doc.status, tasks, failures: report?.failures, updatedAt: (doc.finishedAt ?? doc.resumedAt ?? doc.startedAt) as string | undefined };
}

export async function natsStatus(run: string, url: string | undefined): Promise<StatusView> {
  const nc = await connectBus(busOptions(url, 'tessera status'), silentLogger());
  try {
    const r = await readRun(await runsBucket(nc), run);
    if (!r) throw new InputError(run, 'no such run in the NATS run registry');
    return { source: 'nats', run, output: r.output, status: r.status, tasks: r.progress ?? {}, updatedAt: r.updatedAt };
  } finally {
    await nc.close();
  }
}

/** `tessera status` (its flags are declared in main.ts, which loads this module only to run it). */
export async function printStatus(target: string, o: { nats?: string; json?: boolean }): Promise<void> {
  // A path (or a name no run id can have) that is not there is a missing output, not a run to
  // look up; a run id needs a broker to be looked up in.
  if (!fs.existsSync(target) && (/[/\\.]/.test(target) || !o.nats && !process.env.TESSERA_NATS_URL)) {
    throw new InputError(target, /[/\\.]/.test(target) ? 'no such output' : 'no such output here, and no NATS server to look it up as a run id (pass --nats URL or set TESSERA_NATS_URL)');
  }
  const v = fs.existsSync(target) ? await outputStatus(target) : await natsStatus(target, o.nats);
  if (o.json) {
    process.stdout.write(JSON.stringify(v) + '\n');
    return;
  }
  process.stdout.write(`${v.run ?? v.output}: ${v.status}${v.updatedAt ? ` (updated ${v.updatedAt})` : ''}\n`);
  for (const [k, p] of Object.entries(v.tasks)) {
    const pct = p.total ? ((100 * p.done) / p.total).toFixed(1) : '0.0';
    process.stdout.write(`  ${k.padEnd(8)} ${String(p.done).padStart(9)} / ${String(p.total).padEnd(9)} ${pct.padStart(5)} %${p.failed ? `  ${p.failed} failed or skipped` : ''}\n`);
  }
  for (const f of v.failures ?? []) process.stdout.write(`  failed ${f.task}: ${f.error}\n`);
}
