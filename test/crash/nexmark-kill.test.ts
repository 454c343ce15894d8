/**
 * kill -9 at random moments, restart, and the committed output equals a failure-free run: the
 * NEXMark queries q0, q3, q4, q5, q7, q8 and q11, in order and with disorder, each killed 3 to 5
 * times (see harness.ts for where the kills land and what is checked while the job runs).
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { BIN, type CrashReport, runCrashTest } from './harness.ts';

const root = mkdtempSync(join(tmpdir(), 'spate-crash-'));
const reports: CrashReport[] = [];
afterAll(() => {
  printReport(reports);
  rmSync(root, { recursive: true, force: true });
  // The kills landed on both sides of a commit: at least some between a manifest and its commit.
  if (reports.length === cases.length) expect(reports.reduce((n, r) => n + r.kills.filter((k) => k.beforeCommit).length, 0)).toBeGreaterThan(0);
});

const QUERIES = ['q0', 'q3', 'q4', 'q5', 'q7', 'q8', 'q11'] as const;
/** q0 writes a line per bid: fewer events keep its output (and the checks on it) small. */
const EVENTS: Record<(typeof QUERIES)[number], number> = { q0: 200_000, q3: 800_000, q4: 800_000, q5: 1_000_000, q7: 4_000_000, q8: 800_000, q11: 800_000 };
const RATE = 1000;
const DISORDER = 2000;

/** Two crash tests at a time: this machine has two cores. */
const slots = { free: 2, waiting: [] as Array<() => void> };
async function withSlot<T>(fn: () => Promise<T>): Promise<T> {
  while (slots.free === 0) await new Promise<void>((r) => slots.waiting.push(r));
  slots.free--;
  try {
    return await fn();
  } finally {
    slots.free++;
    slots.waiting.shift()?.();
  }
}

const run = promisify(execFile);

/** The failure-free output: the same command without kills (and without a checkpoint directory), and how long it took. */
async function failureFree(query: string, events: number, disorder: number, dir: string): Promise<{ lines: string[]; ms: number }> {
  const out = join(dir, 'expected.jsonl');
  const started = performance.now();
  await run(process.execPath, [BIN, 'nexmark', '--query', query, '--events', String(events), '--rate', String(RATE), '--out', out, ...(disorder > 0 ? ['--disorder', String(disorder)] : [])]);
  const ms = performance.now() - started;
  const text = readFileSync(out, 'utf8');
  return { lines: text.length === 0 ? [] : text.replace(/\n$/, '').split('\n'), ms };
}

const cases = QUERIES.flatMap((query, i) => [0, DISORDER].map((disorder, j) => ({ query, disorder, seed: 1 + i * 2 + j })));

describe('spate nexmark killed with SIGKILL and restarted', () => {
  it.concurrent.each(cases)('$query, disorder $disorder ms: the committed output equals a failure-free run', async ({ query, disorder, seed }) => {
    const report = await withSlot(async () => {
      const events = EVENTS[query];
      const base = join(root, `${query}-${disorder}`);
      mkdirSync(base, { recursive: true });
      const expected = await failureFree(query, events, disorder, base);
      // 3 to 5 kills. A run that happens to end before its first kill (a loaded machine can make
      // the timing of a short run unpredictable) is tried again from scratch, up to three times.
      let r: CrashReport | undefined;
      for (let attempt = 0; attempt < 3 && (r === undefined || r.kills.length === 0); attempt++) {
        const dir = join(base, `attempt-${attempt}`);
        mkdirSync(dir, { recursive: true });
        r = await runCrashTest({ query, events, rate: RATE, disorder, kills: 3 + (seed % 3), seed: seed + 100 * attempt, dir, expected: expected.lines, expectedMs: expected.ms });
      }
      return r!;
    });
    reports.push(report);
    expect(report.violations).toEqual([]);
    expect(report.missing).toBe(0);
    expect(report.duplicated).toBe(0);
    expect(report.lines).toBeGreaterThan(0);
    expect(report.kills.length).toBeGreaterThanOrEqual(1);
  }, 240_000);
});

function printReport(list: readonly CrashReport[]): void {
  const rows = [...list].sort((a, b) => a.query.localeCompare(b.query, 'en', { numeric: true }) || a.disorder - b.disorder);
  const lines = rows.map((r) => {
    const placed = r.kills.map((k) => `${k.strategy}@${k.afterMs}ms${k.beforeCommit ? '*' : ''}`).join(' ');
    return (
      `${r.query.padEnd(4)} disorder ${String(r.disorder).padStart(4)}  kills ${r.kills.length} of ${r.planned} planned (${r.kills.filter((k) => k.beforeCommit).length} between manifest and commit)` +
      `  starts ${r.starts}  resumed from [${r.resumedFrom.join(',')}]  ${r.lines} lines  missing ${r.missing} duplicated ${r.duplicated}` +
      `  uncommitted visible: ${r.violations.length > 0 ? 'YES' : 'no'} (${r.observations} observations)  ${r.seconds.toFixed(1)} s\n      ${placed}`
    );
  });
  console.log(`crash tests with real processes (* = killed after a manifest, before its commit):\n${lines.join('\n')}`);
}
