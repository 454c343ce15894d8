/**
 * Helpers for the tests of `spate demo` as a user runs it: the real command in a child process on
 * free ports, its printed dashboard address, `spate query`, the dashboard's JSON endpoints, and
 * waiting on conditions with deadlines (the tests run on loaded two-core machines).
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { join } from 'node:path';
import { freePorts } from './net.ts';

export { freePorts };

export const ROOT = join(import.meta.dirname, '..', '..');
export const BIN = join(ROOT, 'bin', 'spate.js');
export const CHROMIUM = process.env['SPATE_CHROMIUM'] ?? '/usr/bin/chromium';

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Polls `probe` until it returns something other than undefined/false (returned), or throws once
 * `ms` have passed, naming `what` and the last value or error seen.
 */
export async function until<T>(what: string, probe: () => Promise<T | undefined | false> | T | undefined | false, ms = 30_000, every = 250): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown = undefined;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined && v !== false) return v;
      last = v;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what} (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
    await sleep(every);
  }
}

/** A running `spate demo`. */
export interface DemoProcess {
  readonly child: ChildProcess;
  readonly dir: string;
  /** The dashboard address it printed (`http://127.0.0.1:P/`). */
  readonly url: string;
  readonly ports: { readonly port: number; readonly http: number; readonly ws: number; readonly mqtt: number };
  stdout(): string;
  stderr(): string;
  /** Resolves with the exit code (null: killed by a signal) once the process has ended. */
  readonly exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Sends SIGTERM and waits (up to `ms`) for the exit. */
  stop(ms?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Kills it at once if it still runs (cleanup after a failed test). */
  kill(): Promise<void>;
}

/**
 * Starts `spate demo --dir DIR --port … --http-port … --ws-port … --mqtt-port … ARGS` on free
 * ports and waits until it prints its dashboard address. A port taken by someone else between
 * picking and binding (EADDRINUSE) makes it try again on others.
 */
export async function startDemo(dir: string, args: readonly string[], options: { readonly startMs?: number; readonly env?: NodeJS.ProcessEnv } = {}): Promise<DemoProcess> {
  for (let attempt = 1; ; attempt++) {
    const [port, http, ws, mqtt] = await freePorts(4);
    const argv = [BIN, 'demo', '--dir', dir, '--port', String(port), '--http-port', String(http), '--ws-port', String(ws), '--mqtt-port', String(mqtt!), ...args];
    const child = spawn(process.execPath, argv, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...options.env } });
    let out = '';
    let err = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    let exited: { code: number | null; signal: NodeJS.Signals | null } | null = null;
    void exit.then((e) => (exited = e));
    const deadline = Date.now() + (options.startMs ?? 45_000);
    let url: string | null = null;
    while (url === null && exited === null && Date.now() < deadline) {
      url = /open (http:\/\/\S+)/.exec(out)?.[1] ?? null;
      if (url === null) await sleep(50);
    }
    if (url === null) {
      if (exited === null) {
        child.kill('SIGKILL');
        await exit;
        throw new Error(`spate demo printed no dashboard address within ${options.startMs ?? 45_000} ms\nstdout:\n${out}\nstderr:\n${err}`);
      }
      if (/EADDRINUSE/.test(err) && attempt < 3) continue;
      throw new Error(`spate demo exited (${JSON.stringify(exited)}) before printing its dashboard address\nstdout:\n${out}\nstderr:\n${err}`);
    }
    const running: DemoProcess = {
      child,
      dir,
      url,
      ports: { port: port!, http: http!, ws: ws!, mqtt: mqtt! },
      stdout: () => out,
      stderr: () => err,
      exit,
      async stop(ms = 30_000) {
        if (exited === null) child.kill('SIGTERM');
        let timer: NodeJS.Timeout | undefined;
        const timeout = new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`spate demo did not exit within ${ms} ms of SIGTERM\nstdout:\n${out}\nstderr:\n${err}`)), ms);
        });
        try {
          return await Promise.race([exit, timeout]);
        } finally {
          clearTimeout(timer);
        }
      },
      async kill() {
        if (exited !== null || child.exitCode !== null || child.signalCode !== null) return;
        child.kill('SIGKILL');
        await exit;
      },
    };
    return running;
  }
}

/** Runs `spate ARGS` to its end. */
export function spate(args: readonly string[], timeoutMs = 60_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { cwd: ROOT, timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof (error as { code?: unknown }).code === 'number' ? ((error as { code: number }).code) : -1;
      resolve({ code, stdout, stderr });
    });
  });
}

/** `spate query --json ARGS "SQL"`: the rows, or an error with what it printed. */
export async function spateQuery(sql: string, args: readonly string[]): Promise<Array<Record<string, unknown>>> {
  const r = await spate(['query', '--json', ...args, sql]);
  if (r.code !== 0) throw new Error(`spate query ${args.join(' ')} exited ${r.code}: ${r.stderr.trim() || r.stdout.trim()}`);
  return r.stdout.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** GET a dashboard endpoint as JSON. */
export async function getJson<T = unknown>(base: string, path: string): Promise<T> {
  const res = await fetch(new URL(path, base), { signal: AbortSignal.timeout(15_000) });
  const text = await res.text();
  if (!res.ok) throw new Error(`GET ${path}: ${res.status} ${text}`);
  return JSON.parse(text) as T;
}

/** POST /api/query: the rows (an error carries the dashboard's message). */
export async function apiQuery(base: string, sql: string): Promise<{ columns: Array<{ name: string }>; rows: Array<Record<string, unknown>> }> {
  const res = await fetch(new URL('/api/query', base), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ sql }), signal: AbortSignal.timeout(15_000) });
  const text = await res.text();
  if (!res.ok) throw new Error(`/api/query ${JSON.stringify(sql)}: ${res.status} ${text}`);
  return JSON.parse(text) as { columns: Array<{ name: string }>; rows: Array<Record<string, unknown>> };
}

/** A step of /api/status. */
export interface StepStatus {
  readonly step: string;
  readonly kind: string;
  readonly recordsIn: number;
  readonly recordsOut: number;
  readonly deadLetters: number;
}

/** The steps of the job's /api/status, by id. */
export async function steps(base: string): Promise<Map<string, StepStatus>> {
  const status = await getJson<{ steps: StepStatus[] }>(base, '/api/status');
  return new Map(status.steps.map((s) => [s.step, s]));
}

/** The number in a `count(*)` answer (DuckDB and PostgreSQL answer BIGINT as a string). */
export const count = (rows: ReadonlyArray<Record<string, unknown>>, column = 'n'): number => Number(rows[0]?.[column] ?? NaN);
