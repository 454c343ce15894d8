// Regression tests for the spate command: bad option values are usage errors (exit code 2, the
// option named on stderr, no stack trace, nothing run), and SIGTERM stops demo and nexmark as
// cleanly as SIGINT (sinks flushed, summary printed, exit code 0).
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { main } from '../../src/cli/main.ts';
import { DuckDBDatabase } from '../../src/connectors/duckdb/database.ts';
import { freePorts } from '../support/net.ts';

const bin = join(import.meta.dirname, '..', '..', 'bin', 'spate.js');
const dir = mkdtempSync(join(tmpdir(), 'spate-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Runs `main` in this process and captures what it writes. */
async function run(argv: string[]): Promise<{ code: number; stderr: string; stdout: string }> {
  let stderr = '';
  let stdout = '';
  vi.spyOn(process.stderr, 'write').mockImplementation((chunk) => ((stderr += String(chunk)), true));
  vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => ((stdout += String(chunk)), true));
  vi.spyOn(console, 'log').mockImplementation((...args) => void (stdout += args.join(' ') + '\n'));
  try {
    const code = await main(argv);
    return { code, stderr, stdout };
  } finally {
    vi.restoreAllMocks();
  }
}

describe('bad option values are usage errors naming the option', () => {
  afterEach(() => vi.restoreAllMocks());
  const q0 = ['nexmark', '--query', 'q0'];
  it.each([
    // Before: a RangeError from the generator, thrown out of main (a stack trace, exit code 1).
    [[...q0, '--rate', '0'], "--rate must be a number > 0 (events per second of event time), got '0'"],
    [[...q0, '--rate', 'fast'], "--rate must be a number > 0 (events per second of event time), got 'fast'"],
    // Before: accepted, "1.5 events" generated and reported.
    [[...q0, '--events', '1.5'], "--events must be a whole number >= 1, got '1.5'"],
    [[...q0, '--events', ''], "--events must be a whole number >= 1, got ''"],
    [[...q0, '--events', '0x10'], "--events must be a whole number >= 1, got '0x10'"],
    [[...q0, '--seed', '2.5'], "--seed must be a whole number from 0 to 4294967295, got '2.5'"],
    [[...q0, '--disorder', '0.5'], "--disorder must be a whole number >= 0 (ms), got '0.5'"],
    [[...q0, '--base-time', '1.7e18'], "--base-time must be a whole number from -8640000000000000 to 8640000000000000 (epoch ms), got '1.7e18'"],
    // Before: batchSize 0 reached the job, whose run loop then spun forever.
    [[...q0, '--batch-size', '0'], "--batch-size must be a whole number from 1 to 1048576, got '0'"],
    [[...q0, '--parallelism', 'two'], "--parallelism must be a whole number from 1 to 32768, got 'two'"],
    // Before: the JSONL sink failed to open once the job ran: ENOENT with a stack trace.
    [[...q0, '--out', '/nonexistent-spate-dir/q0.jsonl'], '--out /nonexistent-spate-dir/q0.jsonl: directory /nonexistent-spate-dir does not exist'],
    [[...q0, '--events-out', join(dir, 'missing', 'e.jsonl')], `--events-out ${join(dir, 'missing', 'e.jsonl')}: directory ${join(dir, 'missing')} does not exist`],
    [[...q0, '--out', dir], `--out ${dir}: is a directory, not a file`],
    // Before: a plain Error thrown out of main (stack trace, exit code 1).
    [['demo', '--seconds', 'abc'], "--seconds must be a number from 0 to 2147483 (0: run until stopped), got 'abc'"],
    [['demo', '--seconds=-1'], "--seconds must be a number from 0 to 2147483 (0: run until stopped), got '-1'"],
    // parseArgs refuses `--seconds -1` itself (ambiguous): also a usage error.
    [['demo', '--seconds', '-1'], "Option '--seconds' argument is ambiguous"],
    // Before: setTimeout overflowed and the demo stopped after 1 ms.
    [['demo', '--seconds', '3000000'], "--seconds must be a number from 0 to 2147483 (0: run until stopped), got '3000000'"],
    [['demo', '--rate', '0'], "--rate must be a number > 0 and <= 1000000 (readings per second), got '0'"],
    [['demo', '--port', '70000'], "--port must be a whole number from 1 to 65532, got '70000'"],
    [['demo', '--faults', 'late=2'], '--faults: fault late must be a fraction from 0 to 1'],
    [['demo', '--store', 'mysql'], "--store must be duckdb or postgres, got 'mysql'"],
    [['query'], 'a SQL statement is required'],
    // Before: bench ran with NaN events or an unknown query, failing inside a child process.
    [['bench', '--events', 'many'], "--events must be a whole number >= 1, got 'many'"],
    [['bench', '--runs', '1.5'], "--runs must be a whole number >= 1, got '1.5'"],
    [['bench', '--query', 'q5,q6'], "--query: unknown 'q6'; a comma-separated list of none, q0"],
  ])('%j', async (argv, message) => {
    const r = await run(argv);
    expect(r.code).toBe(2);
    expect(r.stderr.startsWith(`spate: ${message}`)).toBe(true);
    expect(r.stderr).toContain('Usage:');
    expect(r.stdout).toBe('');
  });

  it.each([
    // spate run --cluster: what belongs together, and what a cluster job keeps in Kafka instead.
    // Cluster jobs: what belongs together, and what a cluster job keeps in Kafka instead.
    [['run', 'job.ts', '--cluster', 'kafka://127.0.0.1:9092'], '--cluster needs --job-id ID (processes with the same id are one job)'],
    [['run', 'job.ts', '--job-id', 'j'], '--job-id needs --cluster kafka://HOST:PORT'],
    [['run', 'job.ts', '--cluster', 'http://127.0.0.1:9092', '--job-id', 'j'], "--cluster must be kafka://HOST:PORT[,HOST:PORT…], got 'http://127.0.0.1:9092'"],
    [['run', 'job.ts', '--cluster', 'kafka://127.0.0.1:9092', '--job-id', 'j', '--checkpoint-dir', 'd'], '--checkpoint-dir cannot be used with --cluster (a cluster job keeps its checkpoints in Kafka)'],
    [['run', 'job.ts', '--metrics-port', '9100'], '--metrics-port needs --cluster (a single-process job serves /metrics with --ui)'],
    [['run', 'job.ts', '--cluster', 'kafka://127.0.0.1:9092', '--job-id', 'j', '--metrics-port', '70000'], "--metrics-port must be a whole number from 0 to 65535, got '70000'"],
    [['run', 'job.ts', '--cluster', 'kafka://127.0.0.1:9092', '--job-id', 'a/b'], "--job-id 'a/b' may only contain letters, digits, '.', '_' and '-' (1 to 100 of them)"],
    // A checkpoint is a Kafka transaction open for about one interval: Kafka caps that at 15 minutes.
    [['run', 'job.ts', '--cluster', 'kafka://127.0.0.1:9092', '--job-id', 'j', '--checkpoint-interval', '600000'], "--checkpoint-interval must be a number from 1 to 300000 (ms), got '600000'"],
  ])('%j', async (argv, message) => {
    const r = await run(argv);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(`spate: ${message}\n\nspate run --help lists the options\n`);
  });

  it('as a real process: exit code 2, no stack trace', async () => {
    const exec = promisify(execFile);
    const cases = [
      ['demo', '--seconds', 'abc'],
      ['nexmark', '--query', 'q5', '--out', '/nonexistent-spate-dir/q5.jsonl'],
    ];
    await Promise.all(
      cases.map(async (argv) => {
        const e = await exec(process.execPath, [bin, ...argv]).then(
          () => expect.fail(`${argv.join(' ')} succeeded`),
          (error: { code: number; stderr: string; stdout: string }) => error,
        );
        expect(e.code).toBe(2);
        expect(e.stderr).toMatch(/^spate: --(seconds|out) /);
        expect(e.stderr).not.toMatch(/\n\s+at /);
        expect(e.stdout).toBe('');
      }),
    );
  });
});

/** A running `spate` process whose output is read line by line. */
class Spate {
  readonly child: ChildProcess;
  stdout = '';
  stderr = '';
  private readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(argv: string[]) {
    this.child = spawn(process.execPath, [bin, ...argv], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child.stdout!.setEncoding('utf8').on('data', (d: string) => (this.stdout += d));
    this.child.stderr!.setEncoding('utf8').on('data', (d: string) => (this.stderr += d));
    this.exited = new Promise((resolve) => this.child.on('exit', (code, signal) => resolve({ code, signal })));
  }

  /** Resolves with the first match of `pattern` in stdout or stderr (fails after `ms`). */
  waitFor(stream: 'stdout' | 'stderr', pattern: RegExp, ms = 20_000): Promise<RegExpMatchArray> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        const m = this[stream].match(pattern);
        if (m !== null) resolve(m);
        return m !== null;
      };
      if (check()) return;
      const timer = setTimeout(() => {
        this.child.kill('SIGKILL');
        reject(new Error(`no ${pattern} on ${stream} after ${ms} ms; stdout: ${this.stdout}; stderr: ${this.stderr}`));
      }, ms);
      this.child[stream]!.on('data', () => check() && clearTimeout(timer));
      void this.exited.then(() => !check() && (clearTimeout(timer), reject(new Error(`exited without ${pattern}; stdout: ${this.stdout}; stderr: ${this.stderr}`))));
    });
  }

  /** Waits for the process to exit (killing it after `ms`). */
  exit(ms = 20_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    const timer = setTimeout(() => this.child.kill('SIGKILL'), ms);
    return this.exited.finally(() => clearTimeout(timer));
  }
}

const lines = (path: string): number => readFileSync(path, 'utf8').split('\n').filter((l) => l !== '').length;

describe('signals stop demo and nexmark cleanly', () => {
  it('demo: SIGTERM while readings flow commits the sinks, prints the summary and exits 0', async () => {
    const ports = await freePorts(4);
    const demoDir = join(dir, 'demo');
    const p = new Spate(['demo', '--dir', demoDir, '--port', String(ports[0]), '--http-port', String(ports[1]), '--ws-port', String(ports[2]), '--mqtt-port', String(ports[3]), '--faults', 'malformed=0.05']);
    await p.waitFor('stdout', /open http/);
    // Readings flow, and malformed ones become dead letters (stored as they arrive).
    await p.waitFor('stderr', /http listening/);
    await new Promise((r) => setTimeout(r, 2000));
    p.child.kill('SIGTERM');
    // Before: the default SIGTERM action killed the process: no summary, signal SIGTERM.
    expect(await p.exit()).toEqual({ code: 0, signal: null });
    const summary = p.stderr.match(/spate: demo stopped by SIGTERM in [\d.]+ s; [1-9]\d* checkpoint\(s\)(?:, \d+ failed)?; (\d+) dead letter/);
    expect(summary, p.stderr).not.toBeNull();
    expect(p.stderr).toMatch(/http +source +[1-9]\d* in/);
    // The final checkpoint committed what the job had taken: every dead letter it counted is in the file.
    const rows = await DuckDBDatabase.query<{ n: bigint }>(join(demoDir, 'results.duckdb'), 'SELECT count(*) AS n FROM dead_letters');
    expect(Number(rows[0]!.n)).toBeGreaterThan(0);
    expect(Number(rows[0]!.n)).toBe(Number(summary![1]));
  });

  it('nexmark: SIGTERM mid-run writes the results so far and the summary, exit code 0', async () => {
    const out = join(dir, 'q5.jsonl');
    // At the default 10 000 events per second of event time, a window fires every 20 000 events.
    const p = new Spate(['nexmark', '--query', 'q5', '--events', '1000000000', '--out', out]);
    const progress = await p.waitFor('stderr', /^q5: ([\d,]+) events/m);
    p.child.kill('SIGTERM');
    // Before: no handler at all: killed by the signal, no summary, the output file unflushed.
    expect(await p.exit()).toEqual({ code: 0, signal: null });
    const m = p.stdout.match(/^q5 +([\d,]+) events in [\d.]+ s = [\d.]+[kM] events\/s \(([\d,]+) result rows\), stopped by SIGTERM\n$/);
    expect(m, p.stdout).not.toBeNull();
    const events = Number(m![1]!.replaceAll(',', ''));
    expect(events).toBeGreaterThanOrEqual(Number(progress[1]!.replaceAll(',', '')));
    expect(events).toBeLessThan(1e9);
    const rows = Number(m![2]!.replaceAll(',', ''));
    expect(rows).toBeGreaterThan(0);
    expect(lines(out)).toBe(rows); // every row counted was written
  });

  it('nexmark: SIGINT the same way, also with --json and --query all (stops at the running query)', async () => {
    const out = join(dir, 'all.jsonl');
    const p = new Spate(['nexmark', '--query', 'all', '--events', '1000000000', '--json', '--out', out]);
    await p.waitFor('stderr', /^q0: [\d,]+ events/m);
    p.child.kill('SIGINT');
    expect(await p.exit()).toEqual({ code: 0, signal: null });
    const results = p.stdout.trim().split('\n').map((l) => JSON.parse(l) as { query: string; events: number; results: number; stopped?: string });
    expect(results).toHaveLength(1);
    expect(results[0]).toMatchObject({ query: 'q0', stopped: 'SIGINT' });
    expect(results[0]!.events).toBeGreaterThan(0);
    expect(lines(join(dir, 'all.q0.jsonl'))).toBe(results[0]!.results);
  });
});
