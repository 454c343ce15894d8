import { Pipeline } from '../api/pipeline.ts';
import type { Stream } from '../api/stream.ts';
import { parseCheckpointDir } from '../checkpoint/manifest.ts';
import { type CheckpointStorage, MemoryCheckpointStorage } from '../checkpoint/storage.ts';
import type { JobOptions, JobResult, Job } from '../runtime/job.ts';
import { type Clock, VirtualClock } from '../time/clock.ts';
import { canonicalKey, diffMultisets, type MultisetDiff } from './multiset.ts';
import type { Timed } from './operator-harness.ts';
import { CommittedStore, type SinkPoint, type SinkPointDetail, TransactionalCollectSink } from './transactional-sink.ts';
import { seededRandom } from '../util/random.ts';

/**
 * Where a job can be made to crash:
 *
 * - `poll`: between two polls of the sources (the top of the job's loop);
 * - `write`: inside an output sink's `write`, after the batch was buffered (rows in flight);
 * - `pre-commit`: when a checkpoint's barrier reached an output sink and its rows were
 *   pre-committed, while other steps may not have snapshotted yet;
 * - `state-written`: after one state file of a checkpoint was written, before its manifest (a
 *   partial checkpoint, which recovery must skip);
 * - `manifest-written`: after a checkpoint's manifest was written (the checkpoint is complete),
 *   before any sink heard so and committed;
 * - `commit`: after an output sink committed one checkpoint's transaction (others, and other
 *   sinks, may not have), including the re-commit of a restarted job's recovery.
 *
 * @example
 * await runWithCrashes(build, { crashes: [{ at: CrashPoint.ManifestWritten, checkpoint: 2 }] });
 */
export const CrashPoint = {
  Poll: 'poll',
  Write: 'write',
  PreCommit: 'pre-commit',
  StateWritten: 'state-written',
  ManifestWritten: 'manifest-written',
  Commit: 'commit',
} as const;
export type CrashPoint = (typeof CrashPoint)[keyof typeof CrashPoint];

/**
 * Every {@link CrashPoint}, in the order a checkpoint passes them.
 *
 * @example
 * const plan = CRASH_POINTS.map((at) => ({ at, afterPolls: 10 })); // one crash at each kind of point
 */
export const CRASH_POINTS: readonly CrashPoint[] = Object.values(CrashPoint);

/**
 * Where one run of the job crashes: at the first point of kind `at` once `afterPolls` loop
 * iterations of that run have passed and, if `checkpoint` is given, at the point of that
 * checkpoint (ids keep increasing across restarts). A run that ends before reaching its point
 * does not crash.
 *
 * @example
 * const plan: CrashSpec[] = [
 *   { at: 'poll', afterPolls: 25 },                 // run 0 dies between two polls
 *   { at: 'state-written', checkpoint: 3 },         // run 1 dies in the middle of checkpoint 3
 *   { at: 'commit', afterPolls: 0 },                // run 2 dies while re-committing on recovery
 * ];
 */
export interface CrashSpec {
  readonly at: CrashPoint;
  readonly afterPolls?: number;
  readonly checkpoint?: number;
}

/**
 * Options of {@link runWithCrashes} and {@link expectExactlyOnce}.
 *
 * @example
 * const options: CrashOptions = { crashes: 3, seed: 42, checkpointEvery: 5, batchSize: 8 };
 */
export interface CrashOptions {
  /**
   * How to crash: a number of crashes placed at random (from `seed`), or one {@link CrashSpec}
   * per run (run i crashes as `crashes[i]`; the run after the last spec goes to the end).
   * Default 3.
   */
  readonly crashes?: number | readonly CrashSpec[];
  /** Seed of the random crash plan and storage delays (default 1). */
  readonly seed?: number;
  /**
   * A checkpoint every this many polls (default 4), which makes checkpoints fall at the same
   * places in every run; 0 for none but `checkpointInterval`'s and the final one.
   */
  readonly checkpointEvery?: number;
  /** Also checkpoint every this many ms of wall-clock time, as a deployed job does (default 0: off). */
  readonly checkpointInterval?: number;
  /**
   * Checkpoint storage writes take a random 0..`storageDelay` polls to complete (default 2), so
   * that records keep flowing while a checkpoint is in flight, as with a real disk.
   */
  readonly storageDelay?: number;
  /** Processing time: ms a `VirtualClock` advances per poll (default 1). */
  readonly tick?: number;
  /**
   * The processing-time clock shared by every run (default: a virtual clock at 0). A
   * `VirtualClock` is advanced by `tick` per poll, and the uninterrupted reference run gets a
   * fresh one at the same time; any other clock is left to the test — a clock that a source sets
   * from the records it reads makes processing time a function of the input position, so that
   * processing-time timers and TTLs replay exactly as they first ran.
   */
  readonly clock?: Clock;
  /** Checkpoint storage shared by every run (default: a fresh `MemoryCheckpointStorage`). */
  readonly storage?: CheckpointStorage;
  /**
   * Random crashes fall within this many polls of a run's restored position (default: the number
   * of polls of an uninterrupted run, which is then made first and returned as `uninterrupted`).
   */
  readonly horizon?: number;
  readonly batchSize?: number;
  readonly maxParallelism?: number;
  readonly errors?: JobOptions['errors'];
  readonly retainedCheckpoints?: number;
  /** A run that neither ends nor crashes within this many ms of wall-clock time fails the test (default 60 000). */
  readonly timeout?: number;
}

/**
 * The outputs a pipeline under test returns: one stream, or streams by name.
 *
 * @example
 * const build = (p: Pipeline) => {
 *   const w = p.fromArray(bids).keyBy((b) => b.auction).window(tumbling(10_000)).onLate({ policy: 'side-output', tag: late }).aggregate(count());
 *   return { counts: w, late: w.sideOutput(late), dead: p.deadLetters() }; // three outputs, checked each
 * };
 */
export type Outputs = Stream<any> | { readonly [name: string]: Stream<any> };

type ElementOf<S> = S extends Stream<infer T> ? T : never;

/**
 * The committed values of {@link Outputs}: an array, or arrays by name.
 *
 * @example
 * const run = await runWithCrashes((p) => ({ even: evens(p), odd: odds(p) }));
 * run.output.even; // number[]
 */
export type Collected<S> = S extends Stream<infer T> ? T[] : { -readonly [K in keyof S]: Array<ElementOf<S[K]>> };

/**
 * The committed records (value and timestamp) of {@link Outputs}.
 *
 * @example
 * const run = await runWithCrashes((p) => p.fromArray([1, 2], { timestamp: (n) => n * 1000 }));
 * run.records; // [{ value: 1, time: 1000 }, { value: 2, time: 2000 }]
 */
export type CollectedRecords<S> = S extends Stream<infer T> ? Array<Timed<T>> : { -readonly [K in keyof S]: Array<Timed<ElementOf<S[K]>>> };

/**
 * One crash: where it happened and what was at stake.
 *
 * @example
 * for (const c of run.crashes) console.log(`run ${c.incarnation} died at ${c.at} of checkpoint ${c.checkpoint}`);
 */
export interface CrashEvent {
  /** The run that crashed (0 is the first). */
  readonly incarnation: number;
  readonly at: CrashPoint;
  /** The checkpoint whose point it was, if any. */
  readonly checkpoint?: number;
  /** The sink step, for sink points. */
  readonly step?: string;
  /** The storage object just written, for `state-written` and `manifest-written`. */
  readonly object?: string;
  /** For `commit`: whether it was the re-commit of a restarted job's recovery. */
  readonly recovery?: boolean;
  /** Loop iterations (polls) of this run before the crash. */
  readonly polls: number;
  /** The checkpoint this run had resumed from (null: from the start). */
  readonly restoredFrom: number | null;
  /** Rows committed (visible) in all outputs at the crash. */
  readonly committedRows: number;
  /** Rows pre-committed, not yet committed, at the crash (recovery commits or aborts them). */
  readonly preparedRows: number;
  /** Rows written to the outputs but not pre-committed: lost with the process, replayed by the next run. */
  readonly lostRows: number;
}

/**
 * One run of the job within {@link runWithCrashes}.
 *
 * @example
 * run.incarnations.map((r) => r.restoredFrom); // e.g. [null, 3, 3, 7]
 */
export interface IncarnationReport {
  readonly incarnation: number;
  readonly restoredFrom: number | null;
  readonly polls: number;
  /** Checkpoints this run completed. */
  readonly checkpoints: number;
  readonly crash: CrashEvent | null;
}

/**
 * The outcome of {@link runWithCrashes}.
 *
 * @example
 * const run = await runWithCrashes((p) => p.fromArray([1, 2, 3]).map((n) => n * 2), { crashes: 2 });
 * run.output; // [2, 4, 6]: committed exactly once despite the crashes
 */
export interface CrashRun<S extends Outputs> {
  /** Committed values of every output, in commit order. */
  readonly output: Collected<S>;
  /** Committed values with their timestamps. */
  readonly records: CollectedRecords<S>;
  /** The crashes, in order. */
  readonly crashes: readonly CrashEvent[];
  /** Every run, the last one being the one that finished. */
  readonly incarnations: readonly IncarnationReport[];
  /** The result of the run that finished. */
  readonly result: JobResult;
  /** What the jobs logged (resumes, skipped partial checkpoints, warnings), each line prefixed with its run. */
  readonly log: readonly string[];
  /** The uninterrupted run made to size a random crash plan, if one was made. */
  readonly uninterrupted?: CrashRun<S>;
}

/**
 * Thrown by a crashed job's `run()` (the kit's stand-in for the process dying).
 *
 * @example
 * try { await job.run(); } catch (e) { if (e instanceof SimulatedCrash) console.log(e.event.at); }
 */
export class SimulatedCrash extends Error {
  constructor(readonly event: CrashEvent) {
    super(`simulated crash of run ${event.incarnation} at ${event.at}${event.checkpoint === undefined ? '' : ` of checkpoint ${event.checkpoint}`} after ${event.polls} polls`);
    this.name = 'SimulatedCrash';
  }
}

const never = (): Promise<never> => new Promise<never>(() => undefined);

/** What the runs of one {@link runWithCrashes} call share. */
interface RunState {
  readonly options: CrashOptions;
  readonly rng: () => number;
  readonly clock: Clock;
  readonly storage: CheckpointStorage;
  readonly stores: Array<CommittedStore<unknown>>;
  readonly log: string[];
  /** Logical progress (polls of an uninterrupted run) at which each checkpoint was triggered. */
  readonly progressAt: Map<number, number>;
  readonly horizon: number;
}

/** One run of the job, from build to crash or end. */
class Incarnation {
  alive = true;
  polls = 0;
  job: Job | null = null;
  crash: CrashEvent | null = null;
  readonly sinks: Array<TransactionalCollectSink<unknown>> = [];
  readonly crashed: Promise<CrashEvent>;
  private resolveCrash!: (event: CrashEvent) => void;
  private chosen: CrashSpec | null | undefined = undefined;
  private readonly delayed: Array<{ due: number; release: () => void }> = [];
  private startProgress = 0;

  constructor(
    readonly index: number,
    private readonly run: RunState,
    private readonly plan: readonly CrashSpec[] | number,
  ) {
    this.crashed = new Promise((resolve) => (this.resolveCrash = resolve));
  }

  get restoredFrom(): number | null {
    return this.job?.restoredFrom?.id ?? null;
  }

  /** This run's crash, decided when it is first needed (the restored checkpoint is known by then). */
  private spec(): CrashSpec | null {
    if (this.chosen !== undefined) return this.chosen;
    const restored = this.restoredFrom;
    this.startProgress = restored === null ? 0 : (this.run.progressAt.get(restored) ?? this.run.horizon);
    if (typeof this.plan !== 'number') this.chosen = this.plan[this.index] ?? null;
    else if (this.index >= this.plan) this.chosen = null;
    else {
      const rng = this.run.rng;
      const at = CRASH_POINTS[Math.floor(rng() * CRASH_POINTS.length)]!;
      const room = Math.max(1, this.run.horizon - this.startProgress);
      this.chosen = { at, afterPolls: Math.floor(rng() * room) };
    }
    return this.chosen;
  }

  /** A crash point was reached: crash if it is this run's. */
  point(at: CrashPoint, detail: { checkpoint?: number; step?: string; object?: string; recovery?: boolean }): void {
    if (!this.alive) return;
    const spec = this.spec();
    if (spec === null || spec.at !== at || this.polls < (spec.afterPolls ?? 0)) return;
    if (spec.checkpoint !== undefined && spec.checkpoint !== detail.checkpoint) return;
    this.die(at, detail);
  }

  private die(at: CrashPoint, detail: { checkpoint?: number; step?: string; object?: string; recovery?: boolean }): void {
    this.alive = false;
    let committed = 0;
    let prepared = 0;
    for (const s of this.run.stores) {
      committed += s.records.length;
      prepared += s.preparedRows;
    }
    let lost = 0;
    for (const s of this.sinks) lost += s.buffered;
    const event: CrashEvent = {
      incarnation: this.index,
      at,
      ...definedOnly(detail),
      polls: this.polls,
      restoredFrom: this.restoredFrom,
      committedRows: committed,
      preparedRows: prepared,
      lostRows: lost,
    };
    this.crash = event;
    // From here on nothing the dead run does reaches the stores or the checkpoint storage.
    for (const s of this.run.stores) s.crash();
    this.job?.kill(new SimulatedCrash(event));
    this.resolveCrash(event);
  }

  /**
   * The job's loop hook: counts polls, moves processing time, releases storage writes, triggers
   * checkpoints; then lets the event loop run once, so that the I/O of a checkpoint in flight
   * progresses by polls (see `storageDelay`), not by how many microtasks a poll happens to take.
   */
  betweenPolls(job: Job): Promise<void> | undefined {
    this.step(job);
    return this.alive ? new Promise<void>((resolve) => setImmediate(resolve)) : undefined;
  }

  private step(job: Job): void {
    this.polls++;
    const clock = this.run.clock;
    if (clock instanceof VirtualClock) clock.advance(this.run.options.tick ?? 1);
    this.release(false);
    this.point('poll', {});
    if (!this.alive) return;
    const every = this.run.options.checkpointEvery ?? 4;
    if (every > 0 && this.polls % every === 0 && !job.checkpointing && job.sources.some((s) => !s.ended && !s.stopped)) {
      job.checkpoint().catch(() => undefined); // a failed checkpoint is logged by the job
      const id = job.checkpoints().at(-1)?.id;
      if (id !== undefined) this.run.progressAt.set(id, this.startProgress + this.polls);
    }
  }

  /** Completes delayed storage writes that are due (all of them with `all`). */
  private release(all: boolean): void {
    for (let i = 0; i < this.delayed.length; ) {
      const d = this.delayed[i]!;
      if (all || d.due <= this.polls) {
        this.delayed.splice(i, 1);
        d.release();
      } else i++;
    }
  }

  /**
   * A storage write's latency: a random number of polls, or a few ms when the job is not polling
   * (it waits for its final checkpoint, say).
   */
  storageLatency(): Promise<void> {
    const max = this.run.options.storageDelay ?? 2;
    const polls = max <= 0 ? 0 : Math.floor(this.run.rng() * (max + 1));
    if (polls === 0) return Promise.resolve();
    return new Promise<void>((resolve) => {
      let done = false;
      const release = (): void => {
        if (done) return;
        done = true;
        clearTimeout(fallback);
        resolve();
      };
      const fallback = setTimeout(release, 5 * polls);
      this.delayed.push({ due: this.polls + polls, release });
    });
  }
}

function definedOnly<T extends object>(o: T): Partial<T> {
  const out: Partial<T> = {};
  for (const [k, v] of Object.entries(o)) if (v !== undefined) (out as Record<string, unknown>)[k] = v;
  return out;
}

/**
 * The checkpoint storage as one run sees it: writes take a while (see `storageDelay`), each
 * written object is a crash point, and once the run is dead nothing it does reaches the shared
 * storage — its pending writes and deletes never happen, as with a killed process.
 */
class CrashableStorage implements CheckpointStorage {
  readonly location: string;

  constructor(
    private readonly inner: CheckpointStorage,
    private readonly run: Incarnation,
  ) {
    this.location = inner.location;
  }

  async write(name: string, data: Uint8Array): Promise<void> {
    if (!this.run.alive) return never();
    await this.run.storageLatency();
    if (!this.run.alive) return never();
    await this.inner.write(name, data);
    const slash = name.indexOf('/');
    const checkpoint = parseCheckpointDir(name.slice(0, slash + 1))?.id;
    const manifest = name.endsWith('/_MANIFEST');
    this.run.point(manifest ? 'manifest-written' : 'state-written', { ...(checkpoint === undefined ? {} : { checkpoint }), object: name });
    if (!this.run.alive) return never();
  }

  async read(name: string): Promise<Uint8Array> {
    if (!this.run.alive) return never();
    return this.inner.read(name);
  }

  async list(prefix: string): Promise<string[]> {
    if (!this.run.alive) return never();
    return this.inner.list(prefix);
  }

  async deletePrefix(prefix: string): Promise<void> {
    if (!this.run.alive) return never();
    return this.inner.deletePrefix(prefix);
  }
}

/** The clock of an uninterrupted reference run: a fresh virtual clock at the same time, or the test's own clock. */
function referenceClock(clock: Clock | undefined): Clock {
  if (clock === undefined) return new VirtualClock(0);
  return clock instanceof VirtualClock ? new VirtualClock(clock.now()) : clock;
}

function isStream(o: Outputs): o is Stream<unknown> {
  return typeof (o as Stream<unknown>).sink === 'function' && 'node' in o;
}

/**
 * Runs a pipeline to the end with crashes injected, as `kill -9` would: each crash kills the job
 * on the spot — no final checkpoint, no sink commit, no close, nothing flushed — and a fresh
 * pipeline, built again by `build`, resumes from the newest complete checkpoint in the shared
 * storage and replays the input from there. Returns what the outputs committed.
 *
 * `build` adds sources and steps to a fresh {@link Pipeline} and returns the stream(s) to check;
 * the kit writes each through a {@link TransactionalCollectSink} (two-phase commit) into a
 * {@link CommittedStore} that survives the crashes, so the output is what a reader of a
 * transactional database would see. `build` must be deterministic (same steps, same ids, sources
 * that replay by position). Processing time comes from a virtual clock advanced by `tick` per
 * poll; checkpoints are taken every `checkpointEvery` polls, so a seed reproduces a run (up to
 * the event loop's timing of storage writes).
 *
 * Crashes land at {@link CrashPoint}s: between polls, with rows in flight, at a sink's pre-commit,
 * after part of a checkpoint's state files (before its manifest), after the manifest (before the
 * sinks commit), between commits and during recovery's re-commit.
 *
 * @example
 * const run = await runWithCrashes(
 *   (p) => p.fromArray(bids, { timestamp: (b) => b.time }).keyBy((b) => b.auction).window(tumbling(10_000)).aggregate(count()),
 *   { crashes: 3, seed: 7, batchSize: 4 },
 * );
 * run.crashes.length; // 3 (or fewer if the job ended before a planned crash)
 * run.output;         // the window counts, each exactly once
 */
export async function runWithCrashes<S extends Outputs>(build: (p: Pipeline) => S, options: CrashOptions = {}): Promise<CrashRun<S>> {
  const crashes = options.crashes ?? 3;
  let uninterrupted: CrashRun<S> | undefined;
  let horizon = options.horizon ?? 0;
  if (typeof crashes === 'number' && crashes > 0 && options.horizon === undefined) {
    uninterrupted = await runWithCrashes(build, { ...options, crashes: [], storage: new MemoryCheckpointStorage(), clock: referenceClock(options.clock) });
    horizon = uninterrupted.incarnations[0]!.polls;
  }
  const run: RunState = {
    options,
    rng: seededRandom(options.seed ?? 1),
    clock: options.clock ?? new VirtualClock(0),
    storage: options.storage ?? new MemoryCheckpointStorage(),
    stores: [],
    log: [],
    progressAt: new Map(),
    horizon,
  };
  const incarnations: IncarnationReport[] = [];
  const events: CrashEvent[] = [];
  let names: string[] | null = null;
  let single = true;
  for (let index = 0; ; index++) {
    const inc = new Incarnation(index, run, crashes);
    const p = new Pipeline();
    const outputs = build(p);
    single = isStream(outputs);
    const named: Array<[string, Stream<unknown>]> = single ? [['', outputs as Stream<unknown>]] : Object.entries(outputs as Record<string, Stream<unknown>>);
    if (names === null) {
      names = named.map(([n]) => n);
      for (let i = 0; i < names.length; i++) run.stores.push(new CommittedStore<unknown>());
    } else if (named.length !== names.length || named.some(([n], i) => n !== names![i])) {
      throw new Error(`runWithCrashes: build returned other outputs in run ${index} (${named.map(([n]) => n).join(', ')}) than in run 0 (${names.join(', ')})`);
    }
    named.forEach(([name, stream], i) => {
      const sink = new TransactionalCollectSink<unknown>(run.stores[i]!, {
        onPoint: (point: SinkPoint, detail: SinkPointDetail) => inc.point(point, detail),
      });
      inc.sinks.push(sink);
      stream.sink(sink, { id: name === '' ? 'crash-kit-output' : `crash-kit-output:${name}` });
    });
    const job = p.createJob({
      checkpointDir: new CrashableStorage(run.storage, inc),
      checkpointInterval: options.checkpointInterval ?? 0,
      clock: run.clock,
      log: (line) => run.log.push(`[run ${index}] ${line}`),
      testHooks: { betweenPolls: (j) => inc.betweenPolls(j) },
      ...(options.batchSize === undefined ? {} : { batchSize: options.batchSize }),
      ...(options.maxParallelism === undefined ? {} : { maxParallelism: options.maxParallelism }),
      ...(options.errors === undefined ? {} : { errors: options.errors }),
      ...(options.retainedCheckpoints === undefined ? {} : { retainedCheckpoints: options.retainedCheckpoints }),
    });
    inc.job = job;
    const running = job.run();
    running.catch(() => undefined); // a crashed run's rejection is expected; a real failure is rethrown below
    const timeout = options.timeout ?? 60_000;
    let timer: NodeJS.Timeout | undefined;
    const outcome = await Promise.race([
      running.then(
        (result) => ({ kind: 'done' as const, result }),
        (error: unknown) => ({ kind: 'failed' as const, error }),
      ),
      inc.crashed.then((event) => ({ kind: 'crashed' as const, event })),
      new Promise<{ kind: 'timeout' }>((resolve) => {
        timer = setTimeout(() => resolve({ kind: 'timeout' }), timeout);
      }),
    ]);
    clearTimeout(timer);
    const report = (): IncarnationReport => ({
      incarnation: index,
      restoredFrom: inc.restoredFrom,
      polls: inc.polls,
      checkpoints: job.checkpoints().filter((c) => c.status === 'completed').length,
      crash: inc.crash,
    });
    if (outcome.kind === 'crashed' || (outcome.kind === 'failed' && outcome.error instanceof SimulatedCrash)) {
      const event = outcome.kind === 'crashed' ? outcome.event : (outcome.error as SimulatedCrash).event;
      incarnations.push(report());
      events.push(event);
      continue;
    }
    if (outcome.kind === 'timeout') {
      job.kill(new Error('timed out'));
      throw new Error(`runWithCrashes: run ${index} neither ended nor crashed within ${timeout} ms (${inc.polls} polls)\n${formatCrashes(events)}`);
    }
    if (outcome.kind === 'failed') {
      const error = outcome.error as Error;
      throw Object.assign(new Error(`runWithCrashes: run ${index} failed: ${error?.message ?? String(error)}\n${formatCrashes(events)}`), { cause: error });
    }
    incarnations.push(report());
    const problems: string[] = [];
    run.stores.forEach((s, i) => {
      const label = names![i] === '' ? 'the output' : `output '${names![i]}'`;
      for (const problem of s.problems) problems.push(`${label}: ${problem}`);
      if (s.preparedRows > 0) problems.push(`${label}: ${s.preparedRows} rows were pre-committed and never committed`);
    });
    if (problems.length > 0) throw new Error(`runWithCrashes: the sink protocol was broken:\n  ${problems.join('\n  ')}\n${formatCrashes(events)}`);
    const output = single ? run.stores[0]!.values : Object.fromEntries(names!.map((n, i) => [n, run.stores[i]!.values]));
    const records = single ? run.stores[0]!.records.slice() : Object.fromEntries(names!.map((n, i) => [n, run.stores[i]!.records.slice()]));
    return {
      output: output as Collected<S>,
      records: records as CollectedRecords<S>,
      crashes: events,
      incarnations,
      result: outcome.result,
      log: run.log,
      ...(uninterrupted === undefined ? {} : { uninterrupted }),
    };
  }
}

/**
 * Describes the crashes of a run, one line each (for failure messages and reports).
 *
 * @example
 * console.log(formatCrashes(run.crashes));
 * // run 0: crashed at manifest-written of checkpoint 2 after 9 polls (from the start; 12 rows committed, 4 prepared, 3 in flight)
 */
export function formatCrashes(crashes: readonly CrashEvent[]): string {
  if (crashes.length === 0) return 'no crashes';
  return crashes
    .map(
      (c) =>
        `run ${c.incarnation}: crashed at ${c.at}${c.checkpoint === undefined ? '' : ` of checkpoint ${c.checkpoint}`}` +
        `${c.recovery ? ' (recovery)' : ''} after ${c.polls} polls (${c.restoredFrom === null ? 'from the start' : `restored from ${c.restoredFrom}`}; ` +
        `${c.committedRows} rows committed, ${c.preparedRows} prepared, ${c.lostRows} in flight)`,
    )
    .join('\n');
}

/**
 * Options of {@link expectExactlyOnce}: those of {@link runWithCrashes}, and how to compare.
 *
 * @example
 * await expectExactlyOnce(build, { crashes: 4, seed, compare: 'values' });
 */
export interface ExactlyOnceOptions extends CrashOptions {
  /**
   * `records` (default) compares values with their timestamps; `values` only values (when output
   * timestamps depend on processing time, say).
   */
  readonly compare?: 'records' | 'values';
}

/**
 * The committed output of a run with crashes is not that of an uninterrupted run.
 *
 * @example
 * try { await expectExactlyOnce(build); } catch (e) { if (e instanceof ExactlyOnceViolation) console.log(e.diffs); }
 */
export class ExactlyOnceViolation extends Error {
  constructor(
    message: string,
    /** Per output (by name; '' for a single output), how the committed output differs. */
    readonly diffs: ReadonlyMap<string, MultisetDiff<unknown>>,
  ) {
    super(message);
    this.name = 'ExactlyOnceViolation';
  }
}

/**
 * Proves exactly-once for a pipeline: runs it without crashes, then with crashes
 * ({@link runWithCrashes}), and checks that every output committed the same rows as a multiset
 * — nothing missing, nothing duplicated. Throws {@link ExactlyOnceViolation} naming the missing
 * and extra rows and where the job crashed; returns both runs otherwise.
 *
 * @example
 * import { expectExactlyOnce } from 'spate/testing';
 *
 * it('counts bids per auction exactly once across crashes', async () => {
 *   const { actual } = await expectExactlyOnce(
 *     (p) => p.fromArray(bids, { timestamp: (b) => b.time }).keyBy((b) => b.auction).window(tumbling(10_000)).aggregate(count()),
 *     { crashes: 3, seed: 1, batchSize: 4 },
 *   );
 *   expect(actual.crashes.length).toBeGreaterThan(0);
 * });
 */
export async function expectExactlyOnce<S extends Outputs>(
  build: (p: Pipeline) => S,
  options: ExactlyOnceOptions = {},
): Promise<{ expected: CrashRun<S>; actual: CrashRun<S> }> {
  const actual = await runWithCrashes(build, options);
  const expected = actual.uninterrupted ?? (await runWithCrashes(build, { ...options, crashes: [], storage: new MemoryCheckpointStorage(), clock: referenceClock(options.clock) }));
  const key = options.compare === 'values' ? (r: Timed<unknown>) => canonicalKey(r.value) : (r: Timed<unknown>) => canonicalKey(r);
  const pairs: Array<[string, ReadonlyArray<Timed<unknown>>, ReadonlyArray<Timed<unknown>>]> = Array.isArray(expected.records)
    ? [['', expected.records as Array<Timed<unknown>>, actual.records as Array<Timed<unknown>>]]
    : Object.keys(expected.records).map((n) => [
        n,
        (expected.records as Record<string, Array<Timed<unknown>>>)[n]!,
        (actual.records as Record<string, Array<Timed<unknown>>>)[n]!,
      ]);
  const diffs = new Map<string, MultisetDiff<unknown>>();
  const lines: string[] = [];
  for (const [name, exp, act] of pairs) {
    const d = diffMultisets<Timed<unknown>>(exp, act, key);
    diffs.set(name, d);
    if (d.equal) continue;
    const label = name === '' ? 'the output' : `output '${name}'`;
    const show = (list: ReadonlyArray<{ item: Timed<unknown>; count: number }>): string =>
      list
        .slice(0, 8)
        .map((e) => `${e.count}× ${canonicalKey(options.compare === 'values' ? e.item.value : e.item)}`)
        .join('\n      ') + (list.length > 8 ? `\n      … ${list.length - 8} more` : '');
    const missing = d.missing.reduce((n, e) => n + e.count, 0);
    const extra = d.extra.reduce((n, e) => n + e.count, 0);
    lines.push(`${label}: ${exp.length} rows expected, ${act.length} committed; ${missing} missing, ${extra} extra (duplicated or wrong)`);
    if (missing > 0) lines.push(`    missing:\n      ${show(d.missing)}`);
    if (extra > 0) lines.push(`    extra:\n      ${show(d.extra)}`);
  }
  if (lines.length > 0) {
    throw new ExactlyOnceViolation(
      `exactly-once violated (seed ${options.seed ?? 1}):\n${lines.join('\n')}\ncrashes:\n${formatCrashes(actual.crashes)}`,
      diffs,
    );
  }
  return { expected, actual };
}
