// Run the real `tessera` CLI as a child process (what a user runs), capturing its output.
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const CLI = path.join(ROOT, 'bin', 'tessera.mjs');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function tessera(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, TESSERA_LOG: 'warn', ...env } });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('error', reject);
    p.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

/** Like tessera() but fails with the child's stderr when it exits non-zero. */
export async function tesseraOk(args: string[]): Promise<CliResult> {
  const r = await tessera(args);
  if (r.code !== 0) throw new Error(`tessera ${args.join(' ')} exited ${r.code}:\n${r.stderr}`);
  return r;
}

export function tmpDir(prefix = 'tessera-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** Every file under dir (relative path → bytes), for bit-exact comparison of outputs. */
export function filesUnder(dir: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out.set(path.relative(dir, p), fs.readFileSync(p));
    }
  };
  walk(dir);
  return out;
}

/**
 * A copy of `vol` whose full-resolution storage chunk 0/1/1 holds garbage, and a one-stage
 * config over 16×128×128 chunks, so that the tasks reading that chunk fail by its name.
 */
export function brokenCopy(vol: string, dir: string, name: string): { vol: string; config: string } {
  const broken = path.join(dir, `${name}.zarr`);
  fs.cpSync(vol, broken, { recursive: true });
  fs.writeFileSync(path.join(broken, '0', '0', '1', '1'), Buffer.from('not a blosc chunk at all'));
  const config = path.join(dir, `${name}.json`);
  fs.writeFileSync(config, JSON.stringify({ extends: 'synthetic-em', mode: 'one-stage', io: { chunk: [16, 128, 128] } }));
  return { vol: broken, config };
}

/** Debian's python3 can import `modules` (e.g. "zarr, numpy"): the other tools some tests compare with. */
export function hasPython(modules: string): boolean {
  try {
    execFileSync('/usr/bin/python3', ['-c', `import ${modules}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
