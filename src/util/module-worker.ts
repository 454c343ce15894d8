import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker, type WorkerOptions } from 'node:worker_threads';

/**
 * The entry file `name` next to the calling module, with the caller's own extension: `.ts` when
 * running from the sources of a checkout, `.js` when compiled.
 */
export function siblingEntry(callerUrl: string, name: string): URL {
  return new URL(`./${name}${callerUrl.endsWith('.ts') ? '.ts' : '.js'}`, callerUrl);
}

/**
 * Starts a worker thread on an entry module: compiled JavaScript as it is; a TypeScript source
 * through a bootstrap that first registers tsx in the worker's own thread (module hooks are per
 * thread).
 */
export function startModuleWorker(entry: URL, options: WorkerOptions): Worker {
  if (!entry.pathname.endsWith('.ts')) return new Worker(entry, options);
  const tsx = JSON.stringify(tsxRegisterUrl());
  return new Worker(`import(${tsx}).then((m) => { m.register(); return import(${JSON.stringify(entry.href)}); });`, { ...options, eval: true });
}

/** The ESM entry of tsx's `register` API (resolved from tsx's package exports: tests run without import.meta.resolve). */
function tsxRegisterUrl(): string {
  const require = createRequire(import.meta.url);
  const manifest = require.resolve('tsx/package.json');
  const exports = (JSON.parse(readFileSync(manifest, 'utf8')) as { exports: Record<string, { import: { default: string } }> }).exports;
  return pathToFileURL(join(dirname(manifest), exports['./esm/api']!.import.default)).href;
}
