/**
 * Conformance suites for connectors: checks that any source or sink must pass to take part in
 * Spate's exactly-once checkpoints. A connector author describes how to create test input (or a
 * destination) and how to read it back; the suite drives the connector through the step contract
 * the way the runtime does — snapshots and restores into fresh objects, crashes, rescaling — and
 * reports what went wrong.
 *
 * The suites depend on no test framework: each returns a list of named checks, each an async
 * function that throws a {@link ConformanceError} when the connector breaks the contract.
 * Register them with your framework, or run them all with {@link runConformance}.
 */
import { pack, unpack } from 'msgpackr';
import { Batch } from '../runtime/batch.ts';
import type { Committable, Sink, SinkContext } from '../runtime/sink.ts';
import type { Source, SourceContext, SourceOutput, SourceReader, SourceStatus, Split, SplitOutput } from '../runtime/source.ts';
import { systemClock } from '../time/clock.ts';
import { canonicalKey, diffMultisets } from './multiset.ts';

/**
 * One conformance check: a name, and a function that resolves when the connector passes it and
 * throws a {@link ConformanceError} saying what it did wrong otherwise.
 *
 * @example
 * // vitest (or node:test, jest, mocha: any framework with `it(name, fn)`)
 * for (const check of sinkConformance(harness)) it(check.name, check.run);
 */
export interface ConformanceCheck {
  readonly name: string;
  run(): Promise<void>;
}

/**
 * A broken contract, found by a conformance check.
 *
 * @example
 * try { await check.run(); } catch (e) { if (e instanceof ConformanceError) console.log(e.message); }
 */
export class ConformanceError extends Error {
  override readonly name = 'ConformanceError';
}

/**
 * The outcome of one check run by {@link runConformance}.
 *
 * @example
 * const failed = (await runConformance(checks)).filter((r) => !r.ok).map((r) => `${r.name}: ${r.error}`);
 */
export interface ConformanceResult {
  readonly name: string;
  readonly ok: boolean;
  /** The failure's message (a {@link ConformanceError}'s, or whatever the connector threw). */
  readonly error?: string;
}

/**
 * Runs checks one after another and reports each: for a quick report, or to assert in a test that
 * a deliberately broken connector fails the suite.
 *
 * @example
 * const results = await runConformance(sourceConformance(harness));
 * console.log(results.map((r) => `${r.ok ? 'ok  ' : 'FAIL'} ${r.name}${r.error ? `: ${r.error}` : ''}`).join('\n'));
 */
export async function runConformance(checks: readonly ConformanceCheck[]): Promise<ConformanceResult[]> {
  const out: ConformanceResult[] = [];
  for (const check of checks) {
    try {
      await check.run();
      out.push({ name: check.name, ok: true });
    } catch (error) {
      out.push({ name: check.name, ok: false, error: error instanceof Error ? error.message : String(error) });
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Sinks

/**
 * What a sink author provides to {@link sinkConformance}: a destination per check, the sink
 * writing to it, and a way to read what a reader of the destination sees.
 *
 * @example
 * const harness: SinkHarness<{ id: number }, string> = {
 *   create: () => join(mkdtempSync(join(tmpdir(), 'jsonl-')), 'out.jsonl'),
 *   sink: (path) => new JsonlSink(path, { append: true }),
 *   read: (path) => (existsSync(path) ? readFileSync(path, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)) : []),
 *   record: (i) => ({ id: i }),
 *   ordered: true,
 *   parallel: false,
 * };
 */
export interface SinkHarness<T, D = unknown> {
  /** A fresh destination for one check: a new table, file, topic… */
  create(): D | Promise<D>;
  /** A new sink object writing to `destination` (each parallel instance and each restart gets its own). */
  sink(destination: D): Sink<T>;
  /**
   * What a reader of the destination sees now (committed data only), as records shaped like
   * {@link record}'s. If the destination makes a returned commit visible asynchronously (Kafka
   * writes a transaction's markers after EndTxn returns), wait here until commits that returned
   * are visible — without waiting for what is only pre-committed.
   */
  read(destination: D): readonly T[] | Promise<readonly T[]>;
  /** Test record number `i` (distinct for distinct `i`). */
  record(i: number): T;
  /** Removes the destination after a check. */
  destroy?(destination: D): void | Promise<void>;
  /** `read` returns records in the order they were committed (a file, a log): the order of commits is checked too. */
  readonly ordered?: boolean;
  /** The sink runs as several instances (default true): two instances, then a restore at parallelism 1, are checked. */
  readonly parallel?: boolean;
  /**
   * Ends a sink object as a killed process would (default: `close()`): it must release whatever a
   * restarted sink on the same destination needs (a lock, a connection).
   */
  crash?(sink: Sink<T>): void | Promise<void>;
}

/** Options of {@link sinkConformance} and {@link sourceConformance}. */
export interface ConformanceOptions {
  /** Prefixes every check's name (e.g. the connector's name). */
  readonly prefix?: string;
  /** How long a source check waits for records that should come (ms; default 10 000). */
  readonly timeoutMs?: number;
  /**
   * An unbounded source has emitted the records a check expects; how long it must then stay
   * silent for the check to conclude that nothing more comes — duplicates (ms; default 300).
   * Raise it for a source that takes longer to (re)start a stream after its first records.
   */
  readonly settleMs?: number;
}

/** One sink instance driven as the runtime drives it (see `SinkOperator`). */
class SinkDriver<T> {
  readonly dead: Array<{ record: unknown; error: string }> = [];
  private readonly batch = new Batch<T>(4);

  constructor(
    readonly sink: Sink<T>,
    private readonly h: SinkHarness<T, unknown>,
    readonly instance = 0,
    readonly parallelism = 1,
  ) {}

  /** Opens; on recovery re-commits the restored committables, then aborts what is newer. */
  async open(restoredCheckpoint?: number, restored: ReadonlyArray<Committable<unknown>> = []): Promise<void> {
    const ctx: SinkContext = {
      stepId: 'conformance',
      instance: this.instance,
      parallelism: this.parallelism,
      clock: systemClock,
      restoredCheckpoint,
      deadLetter: (record, error) => this.dead.push({ record, error: error instanceof Error ? error.message : String(error) }),
      log: () => undefined,
    };
    await this.sink.open?.(ctx);
    if (restored.length > 0) await this.sink.commit!(restored);
    await this.sink.abort?.(restoredCheckpoint);
  }

  /** Writes records `from` until `to` (exclusive), `step` apart, through one reused batch, as the runtime does. */
  write(from: number, to: number, step = 1): void {
    const b = this.batch;
    for (let i = from; i < to; i += step) {
      b.push(this.h.record(i), i);
      if (b.length === b.capacity) this.flush();
    }
    this.flush();
    if (this.dead.length > 0) throw new ConformanceError(`the sink dead-lettered valid records: ${this.dead[0]!.error}`);
  }

  private flush(): void {
    const b = this.batch;
    if (b.length === 0) return;
    this.sink.write(b);
    // The runtime refills the batch at once: a sink must copy what it keeps.
    for (let k = 0; k < b.capacity; k++) b.values[k] = { overwritten: 'the runtime reuses batches; copy what you keep' } as T;
    b.length = 0;
  }

  /** Pre-commits checkpoint `id`; the committable goes through msgpack, as a checkpoint stores it. */
  async preCommit(id: number): Promise<Committable<unknown> | null> {
    if (this.sink.preCommit === undefined || this.sink.commit === undefined) {
      throw new ConformanceError('the sink has no preCommit/commit: it writes through (at-least-once) and cannot be exactly-once');
    }
    const data = await this.sink.preCommit(id);
    if (data === undefined) return null;
    let stored: unknown;
    try {
      stored = unpack(pack(data));
    } catch (error) {
      throw new ConformanceError(`the committable of checkpoint ${id} cannot be stored in a checkpoint (msgpack): ${(error as Error).message}`);
    }
    return { checkpointId: id, instance: this.instance, data: stored };
  }

  async commit(list: ReadonlyArray<Committable<unknown> | null>): Promise<void> {
    const given = list.filter((c): c is Committable<unknown> => c !== null);
    if (given.length > 0) await this.sink.commit!(given);
  }

  async crash(): Promise<void> {
    if (this.h.crash !== undefined) await this.h.crash(this.sink);
    else await this.sink.close?.();
  }

  async close(): Promise<void> {
    await this.sink.close?.();
  }
}

/**
 * The sink conformance suite: checks that a two-phase-commit sink is exactly-once under the
 * runtime's protocol — pre-committed data is invisible, committed data is visible once, a commit
 * redone after recovery changes nothing, recovery aborts what never completed (and checkpoint ids
 * reused after it), several checkpoints commit in order, committables survive a checkpoint, and
 * (for parallel sinks) two instances restored as one re-commit both. Every check works on a
 * destination of its own and drives fresh sink objects, as a restarted job would.
 *
 * @example
 * import { describe, it } from 'vitest';
 * import { sinkConformance } from 'spate/testing';
 *
 * describe('MySink conformance', () => {
 *   for (const check of sinkConformance(harness)) it(check.name, check.run);
 * });
 */
export function sinkConformance<T, D>(harness: SinkHarness<T, D>, options: ConformanceOptions = {}): ConformanceCheck[] {
  const h = harness as SinkHarness<T, unknown>;
  const prefix = options.prefix === undefined ? '' : `${options.prefix}: `;
  const key = (i: number): string => canonicalKey(h.record(i));
  const range = (from: number, to: number): number[] => Array.from({ length: to - from }, (_, k) => from + k);

  /** Runs `fn` on a fresh destination, closing every driver and destroying the destination after. */
  const withDestination = (fn: (d: unknown, make: (instance?: number, parallelism?: number) => SinkDriver<T>) => Promise<void>) => async (): Promise<void> => {
    const d = await h.create();
    const drivers: Array<SinkDriver<T>> = [];
    const make = (instance = 0, parallelism = 1): SinkDriver<T> => {
      const driver = new SinkDriver(h.sink(d), h, instance, parallelism);
      drivers.push(driver);
      return driver;
    };
    try {
      await fn(d, make);
    } finally {
      for (const driver of drivers) await driver.close().catch(() => undefined);
      await h.destroy?.(d);
    }
  };

  /** Asserts that a reader sees exactly records `expected` (each once; in this order if `ordered`). */
  const expectVisible = async (d: unknown, expected: readonly number[], when: string, ordered = h.ordered === true): Promise<void> => {
    const got = await h.read(d);
    const want = expected.map(key);
    const have = got.map((v) => canonicalKey(v));
    const diff = multisetDiff(want, have);
    if (diff.missing.length > 0 || diff.extra.length > 0) {
      const parts: string[] = [];
      if (diff.missing.length > 0) parts.push(`missing ${diff.missing.length} (e.g. ${diff.missing.slice(0, 3).join(', ')})`);
      if (diff.extra.length > 0) parts.push(`unexpected or duplicated ${diff.extra.length} (e.g. ${diff.extra.slice(0, 3).join(', ')})`);
      throw new ConformanceError(`${when}: a reader sees ${have.length} records, expected ${want.length}: ${parts.join('; ')}`);
    }
    if (ordered && have.some((v, i) => v !== want[i])) {
      throw new ConformanceError(`${when}: the records are visible in another order than they were committed (first difference at position ${have.findIndex((v, i) => v !== want[i])})`);
    }
  };

  const checks: ConformanceCheck[] = [
    {
      name: `${prefix}pre-committed data is invisible until its checkpoint commits`,
      run: withDestination(async (d, make) => {
        const s = make();
        await s.open();
        s.write(0, 10);
        await expectVisible(d, [], 'after write, before any checkpoint');
        const c1 = await s.preCommit(1);
        await expectVisible(d, [], 'after preCommit(1), before commit');
        await s.commit([c1]);
        await expectVisible(d, range(0, 10), 'after commit of checkpoint 1');
        s.write(10, 15);
        await s.preCommit(2);
        await expectVisible(d, range(0, 10), 'checkpoint 2 pre-committed, not committed');
      }),
    },
    {
      name: `${prefix}committed data is visible exactly once, checkpoint after checkpoint`,
      run: withDestination(async (d, make) => {
        const s = make();
        await s.open();
        s.write(0, 5);
        await s.commit([await s.preCommit(1)]);
        s.write(5, 10);
        const c2 = await s.preCommit(2);
        s.write(10, 15);
        const c3 = await s.preCommit(3);
        await s.commit([c2]);
        await s.commit([c3]);
        await expectVisible(d, range(0, 15), 'after checkpoints 1, 2 and 3 committed');
        // A commit retried in the same life (its first attempt failed after doing its work).
        await s.commit([c3]);
        await expectVisible(d, range(0, 15), 'after checkpoint 3 was committed a second time');
      }),
    },
    {
      name: `${prefix}a commit redone after recovery changes nothing`,
      run: withDestination(async (d, make) => {
        const a = make();
        await a.open();
        a.write(0, 5);
        const c1 = await a.preCommit(1);
        await a.commit([c1]);
        a.write(5, 10);
        // Checkpoint 2 completes, and the process dies before its commit: c1 committed, c2 not.
        const c2 = await a.preCommit(2);
        await a.crash();
        const b = make();
        await b.open(2, [c1, c2].filter((c): c is Committable<unknown> => c !== null));
        await expectVisible(d, range(0, 10), 'recovered from checkpoint 2 (checkpoint 1 committed before the crash, checkpoint 2 not)');
        await b.commit([c1, c2]);
        await expectVisible(d, range(0, 10), 'after the restored committables were committed once more');
        b.write(10, 15);
        await b.commit([await b.preCommit(3)]);
        await expectVisible(d, range(0, 15), 'after checkpoint 3 of the recovered sink');
      }),
    },
    {
      name: `${prefix}recovery aborts what never completed, and checkpoint ids after the restored one can be used again`,
      run: withDestination(async (d, make) => {
        const a = make();
        await a.open();
        a.write(0, 5);
        const c1 = await a.preCommit(1);
        await a.commit([c1]);
        a.write(5, 10);
        await a.preCommit(2); // checkpoint 2 never completes
        a.write(10, 13); // never pre-committed
        await a.crash();
        const b = make();
        await b.open(1, c1 === null ? [] : [c1]);
        await expectVisible(d, range(0, 5), 'recovered from checkpoint 1 (checkpoint 2 never completed)');
        b.write(20, 25);
        const again = await b.preCommit(2); // the same id as the aborted checkpoint
        await b.commit([again]);
        await expectVisible(d, [...range(0, 5), ...range(20, 25)], 'after the recovered sink committed its own checkpoint 2');
        // A fresh start (no checkpoint) drops whatever is pre-committed; what was committed stays,
        // or goes if the sink replaces its output on a fresh start — but nothing in between.
        b.write(30, 35);
        await b.preCommit(3);
        await b.crash();
        const c = make();
        await c.open(undefined, []);
        const seen = (await h.read(d)).map((v) => canonicalKey(v));
        const pending = new Set(range(30, 35).map(key));
        if (seen.some((v) => pending.has(v))) throw new ConformanceError('after a fresh start, rows pre-committed (never committed) by the previous run are visible');
        if (seen.length > 0) await expectVisible(d, [...range(0, 5), ...range(20, 25)], 'after a fresh start (what was committed stays, or all of it goes)');
      }),
    },
    {
      name: `${prefix}several checkpoints committed in one call apply in checkpoint order`,
      run: withDestination(async (d, make) => {
        const s = make();
        await s.open();
        s.write(0, 5);
        const c1 = await s.preCommit(1);
        s.write(5, 10);
        const c2 = await s.preCommit(2);
        const c3 = await s.preCommit(3); // nothing written: may be null
        s.write(10, 12);
        const c4 = await s.preCommit(4);
        await s.commit([c1, c2, c3, c4]);
        await expectVisible(d, range(0, 12), 'after checkpoints 1 to 4 were committed in one call');
      }),
    },
  ];
  if (h.parallel !== false) {
    checks.push({
      name: `${prefix}two instances commit independently; restored at parallelism 1, one instance re-commits both`,
      run: withDestination(async (d, make) => {
        const s0 = make(0, 2);
        const s1 = make(1, 2);
        if (s0.sink.parallelism === 1) throw new ConformanceError('the sink allows one instance (parallelism 1): give `parallel: false` in the harness');
        await s0.open();
        await s1.open();
        s0.write(0, 20, 2);
        s1.write(1, 20, 2);
        const a1 = await s0.preCommit(1);
        const b1 = await s1.preCommit(1);
        await s1.commit([b1]);
        await s0.commit([a1]);
        // Instances commit independently: no order between them.
        await expectVisible(d, range(0, 20), 'both instances committed checkpoint 1', false);
        s0.write(20, 30, 2);
        s1.write(21, 30, 2);
        const a2 = await s0.preCommit(2);
        const b2 = await s1.preCommit(2);
        s0.write(30, 34, 2); // never pre-committed
        await s0.crash();
        await s1.crash();
        // Restored at parallelism 1: instance 0 gets the committables of old instances 0 and 1.
        const t = make(0, 1);
        await t.open(2, [a2, b2].filter((c): c is Committable<unknown> => c !== null));
        await expectVisible(d, range(0, 30), 'restored from checkpoint 2 at parallelism 1', false);
        t.write(40, 45);
        await t.commit([await t.preCommit(3)]);
        await expectVisible(d, [...range(0, 30), ...range(40, 45)], 'after checkpoint 3 at parallelism 1', false);
      }),
    });
  }
  return checks;
}

// ---------------------------------------------------------------------------------------------
// Sources

/**
 * What a source author provides to {@link sourceConformance}: test input per check, the source
 * reading it, and ways to add more (and bad) input.
 *
 * @example
 * const harness: SourceHarness<{ id: number }, string> = {
 *   bounded: true,
 *   create: (n) => { const path = tempFile(); writeFileSync(path, lines(0, n)); return path; },
 *   source: (path) => new JsonlSource(path),
 *   append: (path, n) => appendLines(path, n),
 *   appendBad: (path) => appendFileSync(path, '{ not json\n'),
 *   record: (i) => ({ id: i }),
 * };
 */
export interface SourceHarness<T, I = unknown> {
  /** Whether the source ends when its input is read (a file) or waits for more (a log, a topic). */
  readonly bounded: boolean;
  /** Fresh input for one check holding records 0 … n − 1 (a file, a topic, a write-ahead log). */
  create(records: number): I | Promise<I>;
  /** A new source object reading `input` (a restarted job builds a new one). */
  source(input: I): Source<T>;
  /**
   * Adds the next `n` records to the input (numbered on from what it holds). Required for
   * unbounded sources; for bounded ones it is called only before reading starts.
   */
  append?(input: I, records: number): void | Promise<void>;
  /** Adds input the source cannot turn into a record (a malformed message): enables the dead-letter check. */
  appendBad?(input: I): void | Promise<void>;
  /** Record `i` as the source emits it: what was emitted is compared with it (default: only counted). */
  record?(i: number): T;
  /** Removes the input after a check. */
  destroy?(input: I): void | Promise<void>;
  /** Polls per second a caught-up reader may make while nothing arrives (default 250; the runtime waits on `ready()` between). */
  readonly idlePollsPerSecond?: number;
}

/** A source output that keeps what a reader emits, per split output. */
class Recorder<T> implements SourceOutput<T> {
  readonly records: Array<{ split: string; value: T }> = [];
  readonly dead: Array<{ raw: unknown; error: unknown }> = [];
  private readonly splits = new Map<string, SplitOutput<T>>();

  emit(value: T): void {
    this.records.push({ split: '', value });
  }

  watermark(): void {}

  deadLetter(raw: unknown, error: unknown): void {
    this.dead.push({ raw, error });
  }

  markIdle(): void {}

  split(id: string): SplitOutput<T> {
    let out = this.splits.get(id);
    if (out === undefined) {
      out = {
        emit: (value: T) => void this.records.push({ split: id, value }),
        watermark: () => undefined,
        deadLetter: (raw: unknown, error: unknown) => void this.dead.push({ raw, error }),
        markIdle: () => undefined,
        split: (other: string) => this.split(other),
        finish: () => undefined,
      };
      this.splits.set(id, out);
    }
    return out;
  }
}

/** One source reader driven as the runtime drives it: polls of at most `max` records, `ready()` after `wait`. */
class ReaderDriver<T> {
  readonly out = new Recorder<T>();
  readonly reader: SourceReader<T>;
  status: SourceStatus = 'more';
  polls = 0;

  constructor(
    readonly source: Source<T>,
    private readonly timeoutMs: number,
    instance = 0,
    parallelism = 1,
    restoredCheckpoint?: number,
  ) {
    this.reader = source.createReader(sourceContext(instance, parallelism, restoredCheckpoint));
  }

  async open(splits: readonly Split[]): Promise<void> {
    await this.reader.open(splits);
  }

  /** Polls once (at most `max` records), checking the reader keeps to `max`. */
  poll(max: number): SourceStatus {
    const before = this.out.records.length;
    this.status = this.reader.poll(this.out, max);
    this.polls++;
    const emitted = this.out.records.length - before;
    if (emitted > max) throw new ConformanceError(`poll(out, ${max}) emitted ${emitted} records: a poll may emit at most max`);
    return this.status;
  }

  /**
   * Reads until `count` records in all were emitted (or the input ends), polling `max` at a time.
   * Short of them after the timeout, it throws — or, `lenient`, returns (the caller compares).
   */
  async readUntil(count: number, max = 7, lenient = false): Promise<void> {
    const deadline = Date.now() + this.timeoutMs;
    while (this.out.records.length < count) {
      if (this.status === 'end') return;
      if (Date.now() > deadline) {
        if (lenient) return;
        throw new ConformanceError(`the source emitted ${this.out.records.length} of ${count} records within ${this.timeoutMs} ms`);
      }
      const status = this.poll(Math.min(max, count - this.out.records.length));
      if (status === 'wait' && this.out.records.length < count) await this.ready(deadline - Date.now());
    }
  }

  /**
   * Reads on until no record came for `quietMs` (an unbounded source that has emitted what a
   * check expects): what comes then is more than the input holds.
   */
  async settle(quietMs: number): Promise<void> {
    const deadline = Date.now() + this.timeoutMs;
    let count = this.out.records.length;
    let last = Date.now();
    while (this.status !== 'end' && Date.now() - last < quietMs && Date.now() < deadline) {
      const status = this.poll(50);
      if (this.out.records.length !== count) {
        count = this.out.records.length;
        last = Date.now();
      }
      if (status === 'wait') await this.ready(quietMs - (Date.now() - last));
    }
  }

  /** Reads a bounded input to its end. */
  async readToEnd(): Promise<void> {
    const deadline = Date.now() + this.timeoutMs;
    while (this.status !== 'end') {
      if (Date.now() > deadline) throw new ConformanceError(`a bounded source did not end within ${this.timeoutMs} ms (${this.out.records.length} records emitted)`);
      if (this.poll(50) === 'wait') await this.ready(deadline - Date.now());
    }
  }

  /** Awaits `ready()` (at most `ms`); false on timeout. */
  async ready(ms: number): Promise<boolean> {
    if (this.reader.ready === undefined) throw new ConformanceError('poll returned wait, but the reader has no ready(): the runtime could not know when to poll again');
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), Math.max(0, ms))));
    try {
      return await Promise.race([this.reader.ready().then(() => true), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** The reader's snapshot, as a checkpoint stores it (msgpack). */
  snapshot(id: number): Split[] {
    const splits = this.reader.snapshot(id);
    try {
      return unpack(pack(splits)) as Split[];
    } catch (error) {
      throw new ConformanceError(`the snapshot of checkpoint ${id} cannot be stored in a checkpoint (msgpack): ${(error as Error).message}`);
    }
  }

  async close(): Promise<void> {
    await this.reader.close?.();
  }
}

/**
 * Runs the runtime's loop on a reader with nothing new to read, for `window` ms: poll, and after
 * `wait` await ready(). Counts the polls (a reader whose ready() resolves without input spins).
 */
async function idleLoop<T>(r: ReaderDriver<T>, window: number): Promise<{ polls: number; waited: boolean; window: number }> {
  const start = Date.now();
  let polls = 0;
  let waited = false;
  while (Date.now() - start < window) {
    polls++;
    const status = r.poll(100);
    if (status === 'end') throw new ConformanceError('an unbounded source returned end');
    if (status === 'wait') {
      waited = true;
      await r.ready(window - (Date.now() - start));
    }
  }
  return { polls, waited, window };
}

function sourceContext(instance: number, parallelism: number, restoredCheckpoint: number | undefined): SourceContext {
  return { stepId: 'conformance', clock: systemClock, instance, parallelism, restoredCheckpoint };
}

/**
 * The source conformance suite: checks that a source replays exactly what followed a snapshot
 * (read, snapshot, read on, crash, restore into a fresh object, compare), reads every record once,
 * ends when bounded, waits without busy-spinning when an unbounded input is caught up (and wakes
 * for new input), dead-letters bad input and reads on, and divides its splits between parallel
 * readers so that a restore at another parallelism reads on exactly (a reader left without
 * splits ends, or waits without busy-spinning if unbounded). Positions go through
 * msgpack, as a checkpoint stores them. Unbounded sources need `append` in the harness.
 *
 * @example
 * import { describe, it } from 'vitest';
 * import { sourceConformance } from 'spate/testing';
 *
 * describe('MySource conformance', () => {
 *   for (const check of sourceConformance(harness)) it(check.name, check.run);
 * });
 */
export function sourceConformance<T, I>(harness: SourceHarness<T, I>, options: ConformanceOptions = {}): ConformanceCheck[] {
  const h = harness as SourceHarness<T, unknown>;
  const prefix = options.prefix === undefined ? '' : `${options.prefix}: `;
  const timeoutMs = options.timeoutMs ?? 10_000;
  const settleMs = options.settleMs ?? 300;

  const withInput = (records: number, fn: (input: unknown, readers: (instance?: number, parallelism?: number, restored?: number) => ReaderDriver<T>) => Promise<void>) => async (): Promise<void> => {
    if (!h.bounded && h.append === undefined) throw new ConformanceError('an unbounded source needs `append` in the harness: the suite must control what the input holds');
    const input = await h.create(records);
    const drivers: Array<ReaderDriver<T>> = [];
    const make = (instance = 0, parallelism = 1, restored?: number): ReaderDriver<T> => {
      const driver = new ReaderDriver(h.source(input), timeoutMs, instance, parallelism, restored);
      drivers.push(driver);
      return driver;
    };
    try {
      await fn(input, make);
    } finally {
      for (const d of drivers) await d.close().catch(() => undefined);
      await h.destroy?.(input);
    }
  };

  const initialSplits = async (source: Source<T>, parallelism: number): Promise<Split[]> => {
    const splits = await source.splits(sourceContext(0, parallelism, undefined));
    if (splits.length === 0) throw new ConformanceError('splits() listed no split');
    const ids = new Set(splits.map((s) => s.id));
    if (ids.size !== splits.length) throw new ConformanceError(`splits() listed a split id twice: ${splits.map((s) => s.id).join(', ')}`);
    return unpack(pack(splits)) as Split[];
  };

  /**
   * Reads the whole input: to the end if bounded, else until `count` records (`lenient`: fewer,
   * after the timeout) and on until the source stays silent (whatever comes then is extra).
   */
  const readAll = async (d: ReaderDriver<T>, count: number, lenient = false): Promise<void> => {
    if (h.bounded) await d.readToEnd();
    else {
      await d.readUntil(count, 7, lenient);
      await d.settle(settleMs);
    }
  };

  /** Asserts the emitted values are records 0 … count − 1, each once (compared with `record` if given). */
  const expectRecords = (values: readonly T[], count: number, when: string): void => {
    const have = values.map((v) => canonicalKey(v));
    if (h.record === undefined) {
      const dup = have.length - new Set(have).size;
      if (values.length !== count || dup > 0) throw new ConformanceError(`${when}: ${values.length} records emitted, expected ${count}${dup > 0 ? ` (${dup} duplicated)` : ''}`);
      return;
    }
    const diff = multisetDiff(
      Array.from({ length: count }, (_, i) => canonicalKey(h.record!(i))),
      have,
    );
    if (diff.missing.length > 0 || diff.extra.length > 0) {
      const parts: string[] = [];
      if (diff.missing.length > 0) parts.push(`missing ${diff.missing.length} records (e.g. ${diff.missing.slice(0, 3).join(', ')})`);
      if (diff.extra.length > 0) parts.push(`unexpected or duplicated ${diff.extra.length} (e.g. ${diff.extra.slice(0, 3).join(', ')})`);
      throw new ConformanceError(`${when}: ${values.length} records emitted, expected ${count}: ${parts.join('; ')}`);
    }
  };

  const checks: ConformanceCheck[] = [
    {
      name: `${prefix}reads every record of its input once`,
      run: withInput(40, async (_input, readers) => {
        const r = readers();
        await r.open(await initialSplits(r.source, 1));
        await readAll(r, 40);
        expectRecords(
          r.out.records.map((x) => x.value),
          40,
          'one reader, the whole input',
        );
      }),
    },
    {
      name: `${prefix}replays exactly what followed a snapshot`,
      run: withInput(60, async (input, readers) => {
        const a = readers();
        await a.open(await initialSplits(a.source, 1));
        await a.readUntil(23);
        const before = a.out.records.length;
        const snapshot = a.snapshot(1);
        if (!h.bounded) await h.append!(input, 20);
        const total = h.bounded ? 60 : 80;
        await readAll(a, total);
        const afterA = a.out.records.slice(before);
        await a.close();
        // The job dies; a new one restores checkpoint 1 into a fresh source object.
        const b = readers(0, 1, 1);
        await b.open(snapshot);
        await readAll(b, afterA.length, true);
        const afterB = b.out.records;
        expectRecords(
          [...a.out.records.slice(0, before), ...afterB].map((x) => x.value),
          total,
          'what was emitted before the snapshot, then what the restored reader emitted',
        );
        // Split by split, the restored reader emits the very records, in the same order.
        for (const split of new Set([...afterA, ...afterB].map((x) => x.split))) {
          const want = afterA.filter((x) => x.split === split).map((x) => canonicalKey(x.value));
          const got = afterB.filter((x) => x.split === split).map((x) => canonicalKey(x.value));
          const at = want.findIndex((v, i) => v !== got[i]);
          if (want.length !== got.length || at !== -1) {
            throw new ConformanceError(
              `after restoring the snapshot${split === '' ? '' : ` (split ${split})`}, the reader emitted ${got.length} records where ${want.length} followed the snapshot` +
                (at === -1 ? '' : `; first difference at position ${at}: ${got[at] ?? 'nothing'} instead of ${want[at]}`),
            );
          }
        }
      }),
    },
    {
      name: `${prefix}splits are divided between parallel readers; restored at another parallelism, it reads on exactly`,
      run: withInput(60, async (input, readers) => {
        const probe = h.source(input);
        // Two readers, unless the source cannot be divided (the runtime never runs more than maxParallelism).
        const p = Math.min(2, probe.maxParallelism ?? Infinity);
        const splits = await initialSplits(probe, p);
        const rs = Array.from({ length: p }, (_, i) => readers(i, p));
        // The runtime deals splits round-robin on a fresh start.
        for (let i = 0; i < p; i++) await rs[i]!.open(splits.filter((_, k) => k % p === i));
        const emitted = (): number => rs.reduce((n, r) => n + r.out.records.length, 0);
        const deadline = Date.now() + timeoutMs;
        while (emitted() < 25 && rs.some((r) => r.status !== 'end')) {
          if (Date.now() > deadline) throw new ConformanceError(`${p} reader(s) emitted ${emitted()} records within ${timeoutMs} ms`);
          for (const r of rs) if (r.status !== 'end' && r.poll(5) === 'wait') await r.ready(5);
        }
        const snaps = rs.map((r) => r.snapshot(1));
        const ids = snaps.flat().map((s) => s.id).sort();
        const want = splits.map((s) => s.id).sort();
        if (ids.join('\u0000') !== want.join('\u0000')) {
          throw new ConformanceError(`the readers' snapshots hold splits [${ids.join(', ')}], not each of [${want.join(', ')}] once`);
        }
        const before = rs.flatMap((r) => r.out.records.map((x) => x.value));
        for (const r of rs) await r.close();
        if (!h.bounded) await h.append!(input, 20);
        const total = h.bounded ? 60 : 80;
        // Restored at parallelism 1: one reader gets every split at its position.
        const one = readers(0, 1, 1);
        await one.open(snaps.flat());
        await readAll(one, total - before.length, true);
        expectRecords([...before, ...one.out.records.map((x) => x.value)], total, `${p} reader(s), then one reader restored from their snapshots`);
        // More instances than splits (where the source allows them): a reader without splits must
        // not fail — bounded, it ends; unbounded, it waits without busy-spinning (it is there when
        // the job runs at a parallelism above the input's partitions, for as long as the job runs).
        if ((probe.maxParallelism ?? Infinity) > splits.length) {
          const idle = readers(splits.length, splits.length + 1, 1);
          await idle.open([]);
          if (h.bounded) {
            let status = idle.poll(10);
            if (status === 'wait') {
              await idle.ready(timeoutMs);
              status = idle.poll(10);
            }
            if (status !== 'end') throw new ConformanceError(`a bounded reader without splits returned ${status}, not end`);
          } else {
            const { polls, window } = await idleLoop(idle, 300);
            const allowed = ((h.idlePollsPerSecond ?? 250) * window) / 1000;
            if (polls > allowed) throw new ConformanceError(`a reader without splits was polled ${polls} times in ${window} ms: ready() resolves with nothing to read (busy-spinning; at most ${allowed} allowed)`);
          }
          if (idle.out.records.length > 0) throw new ConformanceError('a reader without splits emitted records');
        }
      }),
    },
  ];
  if (h.bounded) {
    checks.push({
      name: `${prefix}a bounded input ends, and stays ended`,
      run: withInput(15, async (_input, readers) => {
        const r = readers();
        await r.open(await initialSplits(r.source, 1));
        await r.readToEnd();
        const n = r.out.records.length;
        if (r.poll(10) !== 'end' || r.out.records.length !== n) throw new ConformanceError('polled after it ended, the reader did not return end again (or emitted more)');
        expectRecords(
          r.out.records.map((x) => x.value),
          15,
          'read to its end',
        );
      }),
    });
  }
  if (!h.bounded) {
    checks.push({
      name: `${prefix}caught up, it waits without busy-spinning, and wakes up for new input`,
      run: withInput(10, async (input, readers) => {
        const r = readers();
        await r.open(await initialSplits(r.source, 1));
        await r.readUntil(10);
        // Caught up: run the runtime's loop for a while — poll, and after `wait` await ready().
        const { polls, waited, window } = await idleLoop(r, 500);
        if (!waited) throw new ConformanceError('caught up with its input, the reader never returned wait (it reports more with nothing to read)');
        if (r.out.records.length !== 10) throw new ConformanceError(`caught up with its input, the reader emitted ${r.out.records.length - 10} records more`);
        const allowed = ((h.idlePollsPerSecond ?? 250) * window) / 1000;
        if (polls > allowed) {
          throw new ConformanceError(`caught up with its input, the reader was polled ${polls} times in ${window} ms: ready() resolves without new input (busy-spinning; at most ${allowed} allowed)`);
        }
        await h.append!(input, 5);
        await r.readUntil(15);
        expectRecords(
          r.out.records.map((x) => x.value),
          15,
          'after new input arrived',
        );
      }),
    });
  }
  if (h.appendBad !== undefined) {
    checks.push({
      name: `${prefix}bad input becomes a dead letter, and reading goes on`,
      run: withInput(5, async (input, readers) => {
        await h.appendBad!(input);
        await h.append!(input, 5);
        const r = readers();
        await r.open(await initialSplits(r.source, 1));
        if (h.bounded) await r.readToEnd();
        else {
          await r.readUntil(10);
          // The dead letter may come after the records around it were emitted: give it a moment.
          const deadline = Date.now() + timeoutMs;
          while (r.out.dead.length === 0 && Date.now() < deadline) if (r.poll(10) === 'wait') await r.ready(50);
        }
        if (r.out.dead.length !== 1) throw new ConformanceError(`one bad input gave ${r.out.dead.length} dead letters, expected 1`);
        const { raw, error } = r.out.dead[0]!;
        if (!(error instanceof Error) || error.message.length === 0) throw new ConformanceError(`the dead letter's error should be an Error with a message, got ${String(error)}`);
        if (raw === undefined) throw new ConformanceError('the dead letter does not say what the bad input was');
        expectRecords(
          r.out.records.map((x) => x.value),
          10,
          'the records around the bad input',
        );
      }),
    });
  }
  if (h.appendBad !== undefined && h.append === undefined) throw new Error('sourceConformance: `appendBad` needs `append` (good records follow the bad one)');
  return checks;
}

// ---------------------------------------------------------------------------------------------

/** What `want` has that `have` lacks, and the reverse, one entry per missing or extra copy. */
function multisetDiff(want: readonly string[], have: readonly string[]): { missing: string[]; extra: string[] } {
  const d = diffMultisets(want, have, (s) => s);
  const copies = (list: ReadonlyArray<{ item: string; count: number }>): string[] => list.flatMap((e) => Array<string>(e.count).fill(e.item));
  return { missing: copies(d.missing), extra: copies(d.extra) };
}
