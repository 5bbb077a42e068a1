#!/usr/bin/env node
// Entry point of the `tessera` command. An installed package runs the compiled dist/ (built when
// it is packed); a clone runs the TypeScript sources — natively on Node ≥ 22.18 (type
// stripping, no build step), through tsx (a devDependency) on an older, unsupported Node.
import { existsSync } from 'node:fs';

const dist = new URL('../dist/services/cli/main.js', import.meta.url);
if (existsSync(dist)) {
  await import(dist.href);
} else {
  if (!process.features.typescript) {
    let tsx;
    try {
      tsx = await import('tsx/esm/api');
    } catch {
      process.stderr.write(`tessera: Node ${process.version} cannot run TypeScript; use a supported Node (22.18 or later, 24 or 26)\n`);
      process.exit(2);
    }
    tsx.register();
  }
  await import('../services/cli/main.ts');
}
