/**
 * Shared pieces of the recovery suites: scripted sources built from the oracle suites' random
 * scenarios, random crash settings, a clock driven by the input position (so that processing time
 * replays exactly), and a tally of the crash points a suite really hit.
 */
import fc from 'fast-check';
import { expect } from 'vitest';
import type { Clock, Pipeline, Source, SourceOutput, SourceReader, SourceStatus, Split } from '../../src/index.ts';
import {
  CRASH_POINTS,
  type CrashPoint,
  type CrashRun,
  expectExactlyOnce,
  type ExactlyOnceOptions,
  type Outputs,
  TestSource,
} from '../../src/testing/index.ts';
import type { Rec, Step } from '../oracle/support.ts';

export { scenarioArb, KEYS, type Rec, type Scenario, type Step } from '../oracle/support.ts';

/**
 * Property runs of a suite: `n` times SPATE_CRASH_RUNS_FACTOR (default 1), for long bug hunts.
 * SPATE_CRASH_SEED (default 0) shifts every suite's seed.
 */
export function runs(n: number): number {
  return Math.max(1, Math.round(n * Number(process.env.SPATE_CRASH_RUNS_FACTOR ?? 1)));
}

export function seed(base: number): number {
  return base + Number(process.env.SPATE_CRASH_SEED ?? 0);
}

/** A TestSource playing `steps` (records at their time, watermarks), then end of input. */
export function scripted(steps: readonly Step[], keep: (r: Rec) => boolean = () => true): TestSource<Rec> {
  const src = new TestSource<Rec>();
  for (const s of steps) {
    if (s.kind === 'wm') src.watermark(s.time);
    else if (keep(s.rec)) src.record(s.rec, s.rec.t);
  }
  return src.end();
}

/** Random crash settings: how many crashes, where (seed), batch size, checkpoint spacing, storage latency. */
export interface CrashSettings {
  readonly seed: number;
  readonly crashes: number;
  readonly batchSize: number;
  readonly checkpointEvery: number;
  readonly storageDelay: number;
  /** Key groups: few, so that keys share groups, or the default. */
  readonly maxParallelism?: number;
}

export const crashArb: fc.Arbitrary<CrashSettings> = fc.record({
  seed: fc.integer({ min: 1, max: 2 ** 31 - 1 }),
  crashes: fc.integer({ min: 1, max: 5 }),
  batchSize: fc.integer({ min: 1, max: 5 }),
  checkpointEvery: fc.integer({ min: 1, max: 6 }),
  storageDelay: fc.integer({ min: 0, max: 3 }),
  maxParallelism: fc.constantFrom(1, 3, 128),
});

/** Crash points hit by the runs of a suite, to check that the suite crashed everywhere. */
export class Coverage {
  readonly hits = new Map<CrashPoint, number>();
  crashes = 0;
  runs = 0;

  add(run: CrashRun<Outputs>): void {
    this.runs++;
    for (const c of run.crashes) {
      this.crashes++;
      this.hits.set(c.at, (this.hits.get(c.at) ?? 0) + 1);
    }
  }

  /** One line: runs, crashes, and crashes per point. */
  summary(): string {
    return `${this.runs} runs with crashes, ${this.crashes} crashes: ${CRASH_POINTS.map((p) => `${p} ${this.hits.get(p) ?? 0}`).join(', ')}`;
  }

  /** Every kind of crash point was hit at least once; prints the summary. */
  expectAll(suite: string): void {
    console.log(`${suite}: ${this.summary()}`);
    const missed = CRASH_POINTS.filter((p) => !this.hits.has(p));
    expect(missed, `crash points never hit (hits: ${JSON.stringify(Object.fromEntries(this.hits))})`).toEqual([]);
  }
}

/**
 * {@link expectExactlyOnce} with random settings; records the crash points in `coverage`. Returns
 * both runs.
 */
export async function exactlyOnce<S extends Outputs>(
  build: (p: Pipeline) => S,
  settings: CrashSettings,
  coverage: Coverage,
  options: ExactlyOnceOptions = {},
): Promise<{ expected: CrashRun<S>; actual: CrashRun<S> }> {
  const r = await expectExactlyOnce(build, { ...settings, ...options });
  coverage.add(r.actual as CrashRun<Outputs>);
  return r;
}

/** A processing-time clock set by the input: time stands where the source's last record put it. */
export class InputClock implements Clock {
  time = 0;
  now(): number {
    return this.time;
  }
}

/** A record of a {@link pacedSource}: its value, event time and the processing time at which it arrives. */
export interface Paced<T> {
  readonly value: T;
  readonly time: number;
  readonly ptime: number;
}

/**
 * A replayable source that emits one record per poll and sets `clock` to the record's arrival
 * time first: processing time is then a function of the input position, the same in every run,
 * crashed or not (a restart that takes no time). Explicit watermark `time - bound - 1` after each
 * record.
 */
export function pacedSource<T>(items: ReadonlyArray<Paced<T>>, clock: InputClock, bound = 0): Source<T> {
  return {
    bounded: true,
    watermarks: 'explicit',
    maxParallelism: 1,
    splits: (): Split[] => [{ id: 'paced', position: 0 }],
    createReader: (): SourceReader<T> => {
      let next = 0;
      let maxTime = -Infinity;
      return {
        open(splits: readonly Split[]) {
          next = (splits[0]?.position as number | undefined) ?? items.length;
          // The highest event time before the restored position: its watermark was restored.
          for (let i = 0; i < next; i++) maxTime = Math.max(maxTime, items[i]!.time);
        },
        poll(out: SourceOutput<T>): SourceStatus {
          const item = items[next];
          if (item === undefined) return 'end';
          next++;
          clock.time = item.ptime; // after a restart too: it resumes the input's own timeline
          out.emit(item.value, item.time);
          maxTime = Math.max(maxTime, item.time);
          out.watermark(maxTime - bound - 1);
          return next < items.length ? 'more' : 'end';
        },
        snapshot: (): Split[] => [{ id: 'paced', position: next }],
      };
    },
  };
}

/** Sorted canonical JSON lines, for comparing a result with an oracle as multisets. */
export function bagOf(items: readonly unknown[]): string[] {
  return items.map((x) => JSON.stringify(x, (_k, v: unknown) => (v === undefined ? null : v))).sort();
}
