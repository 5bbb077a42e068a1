#!/usr/bin/env node
// Entry point of the `tessera` command: registers the TypeScript loader, then runs the CLI.
// No build step: `npx tessera …` works right after `npm ci`.
import { register } from 'tsx/esm/api';

register();
await import('../services/cli/main.ts');
