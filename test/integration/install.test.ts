// The package as a user installs it: `npm pack` (which compiles dist/), installed into a
// temporary prefix, then `tessera` run from another folder — help, and a small run on the
// packaged models.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ROOT, tmpDir } from '../helpers/cli.ts';

const exec = promisify(execFile);

test('npm pack → npm install -g into a prefix → `tessera` runs from another folder, compiled, on the packaged models', async () => {
  const dir = tmpDir('tessera-install-');
  try {
    const env = { ...process.env, ONNXRUNTIME_NODE_INSTALL: 'skip', npm_config_update_notifier: 'false' };
    const packed = await exec('npm', ['pack', '--json', '--pack-destination', dir], { cwd: ROOT, env, maxBuffer: 1 << 26 });
    const [info] = JSON.parse(packed.stdout) as { filename: string; files: { path: string }[] }[];
    const files = info.files.map((f) => f.path);
    assert.ok(files.includes('dist/services/cli/main.js'), 'the tarball carries the compiled CLI');
    assert.ok(!files.some((f) => f.startsWith('test/') || f.endsWith('.ts')), 'no sources or tests in the tarball');
    assert.ok(!fs.existsSync(path.join(ROOT, 'dist')), 'packing leaves no dist/ behind in the clone');
    const prefix = path.join(dir, 'prefix');
    await exec('npm', ['install', '-g', '--prefix', prefix, '--no-audit', '--no-fund', path.join(dir, info.filename)], { cwd: dir, env, maxBuffer: 1 << 26 });
    const bin = path.join(prefix, 'bin', 'tessera');
    const work = path.join(dir, 'elsewhere');
    fs.mkdirSync(work);
    const help = await exec(bin, ['--help'], { cwd: work, env });
    assert.match(help.stdout, /Usage: tessera/);
    await exec(bin, ['synth', '--kind', 'em', '--shape', '16,128,128', '--seed', '2', '--out', 'v.zarr'], { cwd: work, env });
    const run = await exec(bin, ['run', '--input', 'v.zarr', '--output', 'o.zarr', '--preset', 'synthetic-em', '--json'], { cwd: work, env, maxBuffer: 1 << 26 });
    assert.equal(JSON.parse(run.stdout).status, 'complete');
    assert.ok(fs.existsSync(path.join(work, 'o.zarr', 'segmentation')));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
