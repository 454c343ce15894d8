import { describe, expect, it } from 'vitest';
import {
  CallbackSink,
  CollectSink,
  count,
  MemoryCheckpointStorage,
  GeneratorSource,
  OutputTag,
  Pipeline,
  StepFailure,
  tumbling,
  VirtualClock,
  valueState,
  type Batch,
  type DeadLetter,
  type RunningJob,
  type Sink,
} from '../src/index.ts';
import { type JobTestHooks, OperatorHarness, TestSource } from '../src/testing/index.ts';

/**
 * Waits until `condition` holds: a condition, not a duration, so that a slow machine makes the
 * test slower, never wrong. Fails after `ms` of wall-clock time.
 */
async function until(condition: () => boolean, ms = 10_000): Promise<void> {
  const deadline = performance.now() + ms;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error(`condition not met within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

/** Lets a running job (started with `hooks`) go round its loop a few times: it checks idleness and timers each time. */
async function loops(hooks: JobTestHooks, n = 5): Promise<void> {
  let count = 0;
  hooks.betweenPolls = () => void count++;
  await until(() => count >= n);
  delete hooks.betweenPolls;
}

describe('pipeline basics', () => {
  it('runs map, filter, flatMap and union on bounded input', async () => {
    const p = new Pipeline();
    const a = p.fromArray([1, 2, 3, 4, 5]);
    const b = p.fromArray([10, 20]);
    const out = a
      .filter((n) => n % 2 === 1)
      .flatMap<number>((n, o) => {
        o.emit(n);
        o.emit(n * 100);
      })
      .union(b.map((n) => n + 1))
      .collect();
    const result = await p.run();
    expect(out.values.sort((x, y) => x - y)).toEqual([1, 3, 5, 11, 21, 100, 300, 500]);
    const union = result.metrics.find((m) => m.kind === 'union')!;
    expect(union.recordsIn).toBe(8);
    expect(union.recordsOut).toBe(8);
  });

  it('carries source timestamps through stateless steps', async () => {
    const p = new Pipeline();
    const out = p.fromArray([{ t: 5 }, { t: 9 }], { timestamp: (r) => r.t }).map((r) => r.t * 2).collect();
    await p.run();
    expect(out.records).toEqual([
      { value: 10, time: 5 },
      { value: 18, time: 9 },
    ]);
  });

  it('stamps ingestion time from the clock when no timestamp is given', async () => {
    const clock = new VirtualClock(12345);
    const p = new Pipeline({ clock });
    const out = p.fromArray(['a']).collect();
    await p.run();
    expect(out.records).toEqual([{ value: 'a', time: 12345 }]);
  });

  it('explains the physical plan: chains split at keyBy and at fan-out', () => {
    const p = new Pipeline();
    const s = p.fromArray([1], { id: 'numbers' }).map((n) => n, { id: 'double' });
    s.keyBy((n) => n).window(tumbling(10)).aggregate(count(), { id: 'counts' }).collect({ id: 'out' });
    s.collect({ id: 'raw' });
    expect(p.explain()).toBe(
      [
        'task 0 ×1: numbers (source) → double (map)',
        'task 1 ×1: counts (tumbling-window)',
        '  ⇐ task 0 (forward)',
        'task 2 ×1: out (sink)',
        '  ⇐ task 1 (forward)',
        'task 3 ×1: raw (sink)',
        '  ⇐ task 0 (forward)',
      ].join('\n'),
    );
    // At parallelism 2: the array source cannot be split (and the map stays chained with it), the
    // window runs twice behind a hash exchange, the collecting sinks run in the main thread.
    expect(p.explain(2)).toBe(
      [
        'task 0 ×1: numbers (source) → double (map) [the source cannot be split]',
        'task 1 ×2: counts (tumbling-window)',
        '  ⇐ task 0 (hash, pre-aggregated)',
        'task 2 ×1, main thread: out (sink) [runs in the main thread (local sink)]',
        '  ⇐ task 1 (gather)',
        'task 3 ×1, main thread: raw (sink) [runs in the main thread (local sink)]',
        '  ⇐ task 0 (forward)',
      ].join('\n'),
    );
  });

  it('rejects duplicate step ids', () => {
    const p = new Pipeline();
    p.fromArray([1], { id: 'x' });
    expect(() => p.fromArray([1], { id: 'x' })).toThrow(/used twice/);
  });
});

describe('dead letters', () => {
  it('sends a record whose user function throws to the dead-letter stream and goes on', async () => {
    const p = new Pipeline();
    const out = p
      .fromArray([1, 2, 3, 4], { timestamp: (n) => n * 10 })
      .map((n) => {
        if (n === 3) throw new Error('three is bad');
        return n;
      }, { id: 'picky' })
      .collect();
    const dead = p.deadLetters().collect();
    const result = await p.run();
    expect(out.values).toEqual([1, 2, 4]);
    expect(dead.values).toEqual([{ step: 'picky', error: 'three is bad', record: 3, time: 30 }]);
    expect(result.deadLetters).toBe(1);
    expect(result.metrics.find((m) => m.step === 'picky')!.deadLetters).toBe(1);
  });

  it('dead-letters records whose timestamp function fails or returns a non-number', async () => {
    const p = new Pipeline();
    const out = p
      .fromArray([{ t: 1 }, { t: Number.NaN }, { t: 'x' as unknown as number }, { t: 4 }], { timestamp: (r) => r.t, id: 'src' })
      .collect();
    const dead = p.deadLetters().collect();
    await p.run();
    expect(out.values).toEqual([{ t: 1 }, { t: 4 }]);
    expect(dead.values.map((d) => d.step)).toEqual(['src', 'src']);
    expect(dead.values[0]!.error).toMatch(/not a finite number/);
  });

  it('logs dead letters when nobody consumes them', async () => {
    const lines: string[] = [];
    const p = new Pipeline({ log: (l) => lines.push(l) });
    p.fromArray(['{"a":1}', 'oops'])
      .map((s) => JSON.parse(s) as unknown, { id: 'parse' })
      .collect();
    const result = await p.run();
    expect(result.deadLetters).toBe(1);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/dead letter #1 from step 'parse': .*JSON.*record: oops/);
  });

  it('fails the job instead under errors: fail', async () => {
    const p = new Pipeline({ errors: 'fail' });
    p.fromArray([1, 2]).map((n) => {
      if (n === 2) throw new Error('boom');
      return n;
    }, { id: 'fragile' }).collect();
    await expect(p.run()).rejects.toThrow(StepFailure);
    await expect(p.run()).rejects.toThrow("step 'fragile' failed: boom");
  });
});

describe('side outputs', () => {
  it('routes records to side outputs from a process function', async () => {
    const odd = new OutputTag<number>('odd');
    const p = new Pipeline();
    const main = p.fromArray([1, 2, 3, 4]).process<number>((n, ctx) => (n % 2 === 0 ? ctx.emit(n) : ctx.output(odd, n)));
    const evens = main.collect();
    const odds = main.sideOutput(odd).collect();
    await p.run();
    expect(evens.values).toEqual([2, 4]);
    expect(odds.values).toEqual([1, 3]);
  });
});

describe('watermarks', () => {
  it('a two-input step follows the slower input', () => {
    const h = OperatorHarness.of<[number, number], number>((a, b) => a.union(b));
    h.watermark(100, 0);
    expect(h.stepMetrics().watermark).toBe(-Infinity);
    h.watermark(50, 1);
    expect(h.stepMetrics().watermark).toBe(50);
    h.watermark(200, 1);
    expect(h.stepMetrics().watermark).toBe(100);
  });

  it('an idle input stops holding the watermark back, and holds it again when active', () => {
    const h = OperatorHarness.of<[{ k: number }, { k: number }], unknown>((a, b) =>
      a.union(b).keyBy((r) => r.k).window(tumbling(10)).aggregate(count()),
    );
    h.pushTo(0, { k: 1 }, 5);
    h.watermark(20, 0);
    expect(h.values()).toEqual([]); // input 1 holds the watermark at -Infinity
    h.idle(1);
    expect(h.take()).toEqual([{ key: 1, start: 0, end: 10, value: 1 }]);
    h.pushTo(1, { k: 2 }, 25); // input 1 is active again
    h.watermark(40, 0);
    expect(h.values()).toEqual([]);
    h.watermark(40, 1);
    expect(h.take()).toEqual([{ key: 2, start: 20, end: 30, value: 1 }]);
  });

  it('detects idle sources by timeout so windows do not stall', async () => {
    const clock = new VirtualClock(0);
    const p = new Pipeline({ clock });
    const busy = new TestSource<number>();
    const silent = new TestSource<number>();
    for (let t = 0; t < 100; t += 10) busy.record(t, t);
    busy.watermark(99);
    const out = p
      .source(busy, { idleTimeout: 0 })
      .union(p.source(silent, { idleTimeout: 5000 }))
      .windowAll(tumbling(50))
      .aggregate(count())
      .collect();
    const hooks: JobTestHooks = {};
    const running = p.start({ testHooks: hooks });
    // Once every busy record (and its watermark 99) went through, the windows could fire, but the
    // silent source holds the watermark back: no output until it turns idle.
    await until(() => running.job.metrics().find((m) => m.kind === 'union')?.recordsIn === 10);
    expect(out.values).toEqual([]);
    clock.advance(4999);
    await loops(hooks);
    expect(out.values).toEqual([]); // not idle before its timeout
    clock.advance(1);
    await until(() => out.values.length >= 2);
    expect(out.values.map((r) => r.value)).toEqual([5, 5]);
    await running.stop();
  });
});

describe('processing time and timers', () => {
  it('fires processing-time timers as the virtual clock advances', () => {
    const h = OperatorHarness.of<[string], string>((s) =>
      s.keyBy((v) => v).process<string>({
        onElement(v, ctx) {
          ctx.registerProcessingTimer(ctx.now() + 1000);
        },
        onTimer(time, ctx) {
          ctx.emit(`${ctx.key}@${time}/${ctx.timeDomain}`);
        },
      }),
    );
    h.push('a', 1);
    h.advanceProcessingTime(999);
    expect(h.values()).toEqual([]);
    h.advanceProcessingTime(1);
    expect(h.values()).toEqual(['a@1000/processing-time']);
  });
});

describe('sources and sinks', () => {
  it('a generator source is deterministic and resumes from a snapshot position', async () => {
    const make = (i: number) => ({ i, sq: i * i });
    const storage = new MemoryCheckpointStorage();
    const run = async (stopAt: number | null): Promise<Array<[number, number]>> => {
      const seen: Array<[number, number]> = [];
      const p = new Pipeline({ batchSize: 3, checkpointInterval: 0 });
      let job: RunningJob | undefined;
      p.source(() => new GeneratorSource({ count: 10, make, time: (i) => i * 1000 }), { id: 'gen' }).sink(
        new CallbackSink((r, time) => {
          expect(r.sq).toBe(r.i * r.i);
          seen.push([r.i, time]);
          // Stop with a checkpoint: it records the generator's position between two polls.
          if (r.i === stopAt) void job!.stop();
        }),
      );
      job = p.start({ checkpointDir: storage });
      await job.done;
      return seen;
    };
    // Batches of 3: the stop comes while 3..5 are delivered, so the checkpoint is at 6.
    const first = await run(4);
    expect(first).toEqual([0, 1, 2, 3, 4, 5].map((i) => [i, i * 1000]));
    const resumed = await run(null);
    expect(resumed).toEqual([6, 7, 8, 9].map((i) => [i, i * 1000]));
  });

  it('reads async iterables with bounded read-ahead', async () => {
    async function* numbers() {
      for (let i = 0; i < 10_000; i++) {
        if (i % 1000 === 0) await new Promise((r) => setTimeout(r, 1));
        yield i;
      }
    }
    const p = new Pipeline();
    const out = p.fromIterable(numbers()).collect();
    await p.run();
    expect(out.values).toEqual(Array.from({ length: 10_000 }, (_, i) => i));
  });

  it('fails the job when an async source throws', async () => {
    async function* broken() {
      yield 1;
      await new Promise((r) => setTimeout(r, 1));
      throw new Error('disk on fire');
    }
    const p = new Pipeline();
    p.fromIterable(broken()).collect();
    await expect(p.run()).rejects.toThrow('disk on fire');
  });

  it('waits for a backpressured sink before polling more', async () => {
    let inFlight = 0;
    let maxInFlight = 0;
    const written: number[] = [];
    const slow: Sink<number> = {
      write(batch: Batch<number>) {
        for (let i = 0; i < batch.length; i++) written.push(batch.values[i]!);
        inFlight += batch.length;
        maxInFlight = Math.max(maxInFlight, inFlight);
      },
      backpressure() {
        if (inFlight < 64) return undefined;
        return new Promise<void>((resolve) =>
          setTimeout(() => {
            inFlight = 0;
            resolve();
          }, 1),
        );
      },
    };
    const p = new Pipeline({ batchSize: 16 });
    p.fromArray(Array.from({ length: 1000 }, (_, i) => i)).sink(slow);
    await p.run();
    expect(written).toHaveLength(1000);
    expect(maxInFlight).toBeLessThanOrEqual(64 + 16);
  });

  it('stop() ends an unbounded job and pre-commits sinks', async () => {
    const p = new Pipeline();
    const src = new TestSource<number>().record(1, 1).record(2, 2);
    let flushed = false;
    const sink = new CollectSink<number>();
    p.source(src).sink({ write: (b) => sink.write(b), preCommit: () => void (flushed = true) });
    const job = p.start();
    await until(() => sink.values.length === 2);
    src.record(3, 3);
    await until(() => sink.values.length === 3);
    await job.stop();
    expect(sink.values).toEqual([1, 2, 3]);
    expect(flushed).toBe(true);
  });
});

describe('dead-letter record shape', () => {
  it('is typed', () => {
    const d: DeadLetter = { step: 's', error: 'e', record: 1, time: 0 };
    expect(d.step).toBe('s');
  });
});

describe('bad keys and renamed steps', () => {
  it('dead-letters records whose key selector returns neither a string nor a number', async () => {
    const p = new Pipeline();
    const out = p
      .fromArray([{ k: 'a' }, { k: { nested: true } }, { k: null }, { k: 'a' }], { timestamp: () => 1 })
      .keyBy((r) => r.k as unknown as string)
      .window(tumbling(10))
      .aggregate(count(), { id: 'counts' })
      .collect();
    const dead = p.deadLetters().collect();
    await p.run();
    expect(out.values).toEqual([{ key: 'a', start: 0, end: 10, value: 2 }]);
    expect(dead.values.map((d) => d.error)).toEqual(['a key must be a string or a number, got object', 'a key must be a string or a number, got null']);
  });

  it('refuses to restore state of a step the pipeline does not have', async () => {
    const h = OperatorHarness.of<[number], unknown>((s) => s.keyBy((n) => n).window(tumbling(10)).aggregate(count(), { id: 'old-name' }));
    h.push(1, 1);
    const snapshot = h.snapshot();
    const p = new Pipeline();
    p.fromArray([1]).keyBy((n) => n).window(tumbling(10)).aggregate(count(), { id: 'new-name' }).collect();
    await expect(p.run({ restoreFrom: snapshot })).rejects.toThrow(/steps this pipeline does not have: old-name/);
  });
});

describe('state TTL', () => {
  it('sweeps expired entries even when nothing else asks for processing time', () => {
    const h = OperatorHarness.of<[string], number>((s) =>
      s
        .keyBy((k) => k)
        .state({ seen: valueState<number>({ ttl: 1000 }) })
        .process<number>({
          onElement(_k, ctx) {
            const n = (ctx.state.seen.get() ?? 0) + 1;
            ctx.state.seen.set(n);
            ctx.emit(n);
          },
        }, { id: 'counter' }),
    );
    for (let i = 0; i < 100; i++) h.push(`k${i}`, i);
    expect(h.stateSize('counter')).toBe(100);
    h.advanceProcessingTime(999);
    expect(h.stateSize('counter')).toBe(100); // nothing has expired yet
    h.advanceProcessingTime(1);
    // Every entry expired and the sweep removed it from memory (reads alone would only hide it,
    // and a snapshot skips expired entries anyway: neither shows that memory is freed).
    expect(h.stateSize('counter')).toBe(0);
    h.push('k1', 200);
    expect(h.values().at(-1)).toBe(1);
  });
});
