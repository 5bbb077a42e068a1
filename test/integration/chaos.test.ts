// The chaos benchmark's short version (CI): ≥ 10 random faults over a two-stage, a one-stage and
// a resume-with-a-larger-ROI run on a real nats-server, every role hit; each output must equal
// the embedded run's bit for bit, no task failed, never two coordinators at once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { tmpDir } from '../helpers/cli.ts';
import { formatChaosReport, runChaosBench } from '../../bench/chaos.ts';

test('chaos, short: 10+ random kills, stops and broker restarts; every run bit-identical to the embedded run', async () => {
  const dir = tmpDir('tessera-chaos-');
  try {
    const r = await runChaosBench({ dir, quick: true, kills: 10, seed: 3 });
    const table = formatChaosReport(r);
    assert.ok(r.faults.length >= 10, table);
    assert.deepEqual(r.rows.filter((x) => !x.identical).map((x) => `${x.run}: ${x.error ?? x.differences.join('; ')}`), [], table);
    assert.equal(r.rows.reduce((s, x) => s + x.twoCoordinators, 0), 0, table);
    assert.equal(r.rows.reduce((s, x) => s + x.failedTasks, 0), 0, table);
    assert.deepEqual([...new Set(r.rows.map((x) => x.mode))].sort(), ['one-stage', 'resume, larger ROI', 'two-stage']);
    assert.ok(r.passed, table);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
