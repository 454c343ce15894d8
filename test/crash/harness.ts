/**
 * Crash tests with real processes: run `spate nexmark ... --checkpoint-dir D --out F` as a child
 * process, kill it with SIGKILL at random moments (after a random delay, or right after — or a
 * little after — a new checkpoint appears in D, so that kills land both before and after the
 * sink commits), restart it until it exits 0, and check the output:
 *
 * - while it runs, F is watched: it never shrinks, every line it shows is in the failure-free
 *   output (no more copies than there), and every byte it shows belongs to a checkpoint whose
 *   manifest exists (the commit log `F.commits` places each committed part at its offset) —
 *   i.e. uncommitted data is never visible;
 * - at the end, everything ever observed is a prefix of the final file, and the final file equals
 *   the failure-free output as a multiset of lines: nothing missing, nothing duplicated.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { open, readFile, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { seededRandom } from '../../src/util/random.ts';

export const BIN = join(import.meta.dirname, '..', '..', 'bin', 'spate.js');

/** One crash test: a query, its input, and how many times to kill it. */
export interface CrashConfig {
  readonly query: string;
  readonly events: number;
  readonly rate: number;
  readonly disorder: number;
  /** Kills to make (the run may end sooner: then fewer). */
  readonly kills: number;
  readonly seed: number;
  /** Working directory: D = dir/checkpoints, F = dir/out.jsonl. */
  readonly dir: string;
  /** The failure-free output, one JSON line per row. */
  readonly expected: readonly string[];
  /** How long the failure-free run took (ms, start-up included): random kill delays fall within it. */
  readonly expectedMs: number;
}

/** How one kill was placed and what it interrupted. */
export interface KillRecord {
  readonly strategy: 'delay' | 'on-checkpoint' | 'after-checkpoint';
  /** Milliseconds after the spawn. */
  readonly afterMs: number;
  /** Newest complete checkpoint at the kill. */
  readonly checkpoint: number | null;
  /** A complete checkpoint's rows were pre-committed but not (fully) appended yet: killed between manifest and commit. */
  readonly beforeCommit: boolean;
}

/** What a crash test saw. */
export interface CrashReport {
  readonly query: string;
  readonly disorder: number;
  readonly events: number;
  readonly kills: KillRecord[];
  /** Kills planned (the run may have ended before all of them). */
  readonly planned: number;
  /** Child processes started (kills + 1). */
  readonly starts: number;
  /** Checkpoints the restarts resumed from (from their stderr). */
  readonly resumedFrom: number[];
  readonly observations: number;
  /** Violations of the output's invariants seen while it ran (uncommitted or wrong data visible, shrinking). */
  readonly violations: string[];
  readonly missing: number;
  readonly duplicated: number;
  readonly lines: number;
  readonly seconds: number;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Ids of the complete checkpoints (with a manifest) in D. */
function completeCheckpoints(dir: string): number[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const ids: number[] = [];
  for (const n of names) {
    const m = /^chk-(\d+)$/.exec(n);
    if (m !== null && existsSync(join(dir, n, '_MANIFEST'))) ids.push(Number(m[1]));
  }
  return ids;
}

interface LogEntry {
  readonly checkpoint: number;
  readonly start: number;
  readonly size: number;
  readonly done: boolean;
}

async function readCommitLog(path: string): Promise<LogEntry[]> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    return [];
  }
  const out: LogEntry[] = [];
  for (const line of text.split('\n')) {
    if (line.length === 0) continue;
    try {
      out.push(JSON.parse(line) as LogEntry);
    } catch {
      // a torn last line
    }
  }
  return out;
}

/** Watches the output file of a crash test across all its child processes. */
class OutputWatcher {
  observations = 0;
  readonly violations: string[] = [];
  private size = 0;
  private readonly chunks: Buffer[] = [];
  private partial = '';
  private readonly seen = new Map<string, number>();
  private maxComplete = 0;

  constructor(
    private readonly out: string,
    private readonly checkpoints: string,
    private readonly expected: ReadonlyMap<string, number>,
  ) {}

  /** One observation: new bytes, then the commit log, then the manifests (in that order, see below). */
  async observe(): Promise<void> {
    let size: number;
    try {
      size = (await stat(this.out)).size;
    } catch {
      return; // not created yet
    }
    this.observations++;
    if (size < this.size) {
      this.violation(`the output shrank from ${this.size} to ${size} bytes`);
      return;
    }
    if (size > this.size) {
      const h = await open(this.out, 'r');
      try {
        const buf = Buffer.alloc(size - this.size);
        const { bytesRead } = await h.read(buf, 0, buf.length, this.size);
        this.chunks.push(buf.subarray(0, bytesRead));
        this.countLines(buf.subarray(0, bytesRead).toString('utf8'));
        this.size += bytesRead;
      } finally {
        await h.close();
      }
    }
    // Every visible byte must belong to a checkpoint that was complete: the sink writes a part
    // only after the checkpoint's manifest, and records the part's offset in the commit log
    // before writing it. Reading the size first, then the log, then the manifests, a visible
    // byte's log entry and manifest are necessarily seen.
    const log = await readCommitLog(`${this.out}.commits`);
    for (const id of completeCheckpoints(this.checkpoints)) this.maxComplete = Math.max(this.maxComplete, id);
    let covered = 0;
    for (const e of log) {
      if (e.checkpoint > this.maxComplete) this.violation(`checkpoint ${e.checkpoint} is being committed, but the newest complete checkpoint is ${this.maxComplete}`);
      else covered = Math.max(covered, e.start + e.size);
    }
    if (this.size > covered) this.violation(`${this.size} bytes visible, but committed checkpoints account for ${covered}`);
  }

  private countLines(text: string): void {
    const lines = (this.partial + text).split('\n');
    this.partial = lines.pop()!;
    for (const line of lines) {
      const n = (this.seen.get(line) ?? 0) + 1;
      this.seen.set(line, n);
      const allowed = this.expected.get(line) ?? 0;
      if (n > allowed) this.violation(allowed === 0 ? `a line that the failure-free run never wrote is visible: ${line.slice(0, 120)}` : `a line is visible ${n} times, ${allowed} expected: ${line.slice(0, 120)}`);
    }
  }

  private violation(message: string): void {
    if (this.violations.length < 20 && !this.violations.includes(message)) this.violations.push(message);
  }

  /** Everything observed, which must be a prefix of the final file. */
  observed(): Buffer {
    return Buffer.concat(this.chunks);
  }
}

/** Counts of each line. */
export function countLines(lines: readonly string[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const l of lines) m.set(l, (m.get(l) ?? 0) + 1);
  return m;
}

/** Runs one crash test to the end; see the module comment. */
export async function runCrashTest(c: CrashConfig): Promise<CrashReport> {
  const started = performance.now();
  const random = seededRandom(c.seed);
  const out = join(c.dir, 'out.jsonl');
  const checkpoints = join(c.dir, 'checkpoints');
  const expected = countLines(c.expected);
  const watcher = new OutputWatcher(out, checkpoints, expected);
  const args = [
    BIN, 'nexmark', '--query', c.query, '--events', String(c.events), '--rate', String(c.rate),
    '--checkpoint-interval', '100', '--checkpoint-dir', checkpoints, '--out', out,
    ...(c.disorder > 0 ? ['--disorder', String(c.disorder)] : []),
  ];
  const kills: KillRecord[] = [];
  const resumedFrom: number[] = [];
  let starts = 0;
  for (;;) {
    starts++;
    if (starts > c.kills + 5) throw new Error(`${c.query}: still not finished after ${starts - 1} starts`);
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
    let done: { code: number | null; signal: NodeJS.Signals | null } | null = null;
    void exited.then((e) => (done = e));
    const spawnedAt = performance.now();
    const before = Math.max(0, ...completeCheckpoints(checkpoints));
    // The kill plan of this process: none once the planned kills are made.
    const plan = kills.length >= c.kills ? null : pickStrategy(random);
    // A random moment of the run (100 ms to 1.5 s, within ~90% of what a whole run takes).
    let killAt = plan === 'delay' ? 100 + random() * Math.max(50, Math.min(1400, 0.9 * c.expectedMs - 100)) : Infinity;
    let killed = false;
    while (done === null) {
      await watcher.observe();
      if (plan !== null && !killed) {
        const now = performance.now() - spawnedAt;
        if (killAt === Infinity && plan !== 'delay') {
          const newest = Math.max(0, ...completeCheckpoints(checkpoints));
          if (newest > before) killAt = now + (plan === 'on-checkpoint' ? 0 : 5 + random() * 60);
        }
        if (now >= killAt) {
          killed = await kill(child, exited);
          if (killed) kills.push({ strategy: plan, afterMs: Math.round(now), ...(await interrupted(out, checkpoints)) });
          continue;
        }
      }
      await Promise.race([exited, sleep(plan === null || killAt !== Infinity || plan === 'delay' ? 10 : 2)]);
    }
    await watcher.observe();
    const m = /resuming from checkpoint (\d+)/.exec(stderr);
    if (m !== null) resumedFrom.push(Number(m[1]));
    const exit = done as { code: number | null; signal: NodeJS.Signals | null };
    if (killed) continue;
    if (exit.code === 0) break;
    throw new Error(`${c.query}: the child failed (code ${exit.code}, signal ${exit.signal}):\n${stderr}`);
  }
  const finalBytes = readFileSync(out);
  const observed = watcher.observed();
  const violations = [...watcher.violations];
  if (!finalBytes.subarray(0, observed.length).equals(observed)) violations.push('what was observed while the job ran is not a prefix of the final output (committed bytes were changed)');
  const text = finalBytes.toString('utf8');
  const lines = text.length === 0 ? [] : text.replace(/\n$/, '').split('\n');
  const got = countLines(lines);
  let missing = 0;
  let duplicated = 0;
  for (const [line, n] of expected) missing += Math.max(0, n - (got.get(line) ?? 0));
  for (const [line, n] of got) duplicated += Math.max(0, n - (expected.get(line) ?? 0));
  return {
    query: c.query,
    disorder: c.disorder,
    events: c.events,
    kills,
    planned: c.kills,
    starts,
    resumedFrom,
    observations: watcher.observations,
    violations,
    missing,
    duplicated,
    lines: lines.length,
    seconds: (performance.now() - started) / 1000,
  };
}

function pickStrategy(random: () => number): KillRecord['strategy'] {
  const r = random();
  return r < 0.3 ? 'delay' : r < 0.65 ? 'on-checkpoint' : 'after-checkpoint';
}

/** SIGKILLs the child; false if it had already exited by itself. */
async function kill(child: ChildProcess, exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>): Promise<boolean> {
  const alive = child.exitCode === null && child.signalCode === null;
  if (alive) child.kill('SIGKILL');
  const e = await exited;
  return alive && e.signal === 'SIGKILL';
}

/** What a kill interrupted: the newest complete checkpoint, and whether its commit was still due. */
async function interrupted(out: string, checkpoints: string): Promise<{ checkpoint: number | null; beforeCommit: boolean }> {
  const complete = completeCheckpoints(checkpoints);
  const newest = complete.length === 0 ? null : Math.max(...complete);
  if (newest === null) return { checkpoint: null, beforeCommit: false };
  // A pending part `<id>-<instance>` of a complete checkpoint, or a commit begun and not done.
  let pending: string[] = [];
  try {
    pending = await readdir(`${out}.pending`);
  } catch {
    // no pending directory yet
  }
  const sealed = pending.some((name) => {
    const id = Number(name.split('-')[0]);
    return Number.isInteger(id) && id <= newest;
  });
  const log = await readCommitLog(`${out}.commits`);
  const begun = new Map<number, boolean>();
  for (const e of log) begun.set(e.checkpoint, (begun.get(e.checkpoint) ?? false) || e.done);
  const unfinished = [...begun.values()].some((done) => !done);
  return { checkpoint: newest, beforeCommit: sealed || unfinished };
}
