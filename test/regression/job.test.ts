// Regression tests for bugs found in review (fixed); the comments describe the bug each test guards against.
import { describe, expect, it } from 'vitest';
import { CallbackSink, CollectSink, count, GeneratorSource, Pipeline, tumbling, VirtualClock, type Sink, type Source, type SourceOutput } from '../../src/index.ts';
import { TestSource } from '../../src/testing/index.ts';
import { readerSource } from '../support/reader-source.ts';

describe('Job: open failure', () => {
  it('closes the sinks and sources it already opened when a later source fails to open', async () => {
    const events: string[] = [];
    const good: Source<number> = readerSource(
      {
        open: () => void events.push('good source open'),
        poll: () => 'wait',
        close: () => void events.push('good source close'),
      },
      { bounded: false },
    );
    const bad: Source<number> = readerSource(
      {
        open: () => Promise.reject(new Error('ENOENT: no such file')),
        poll: () => 'end',
      },
      { bounded: true },
    );
    const sink: Sink<number> = {
      open: () => void events.push('sink open'),
      write: () => undefined,
      close: () => void events.push('sink close'),
    };
    const p = new Pipeline();
    p.source(good).union(p.source(bad)).sink(sink);
    await expect(p.run()).rejects.toThrow('ENOENT');
    // The first source (a tailing file reader holds an fs.watch handle) and the sink (a JsonlSink
    // holds a file descriptor) were opened; nothing closes them.
    expect(events).toContain('sink close');
    expect(events).toContain('good source close');
  });
});

describe('Job: lost wake-ups before sleep', () => {
  it('stop() called from a sink while no source progressed takes effect promptly', async () => {
    const p = new Pipeline();
    const src = new TestSource<number>().record(1, 1).record(2, 2).record(3, 3);
    let job: ReturnType<Pipeline['start']> | undefined;
    let stopped = 0;
    p.source(src).sink(
      new CallbackSink<number>((v) => {
        if (v === 3) {
          stopped = performance.now();
          job!.job.stop();
        }
      }),
    );
    job = p.start();
    await job.done;
    const lag = performance.now() - stopped;
    // The loop goes to sleep (up to 1 s) after stop() was requested, because sleep() never
    // checks stopRequested and wake was null when stop() ran.
    expect(lag).toBeLessThan(300);
  });

  it('a source that becomes ready before the loop goes to sleep is polled again promptly', async () => {
    // A loop-back source: the sink feeds the next item into the source while the source's poll is
    // still on the stack. poll() returned 'wait', so the loop calls ready(), which resolves at
    // once; its callback runs during `await relieveBackpressure()`, before sleep() installs
    // `wake`, so the wake-up is lost and the loop sleeps the full second, once per item.
    const src = new TestSource<number>().record(0, 0);
    const p = new Pipeline();
    const seen: number[] = [];
    p.source(src).sink(
      new CallbackSink<number>((v) => {
        seen.push(v);
        if (v < 3) src.record(v + 1, v + 1);
        else src.end();
      }),
    );
    const t0 = performance.now();
    await p.run();
    const took = performance.now() - t0;
    expect(seen).toEqual([0, 1, 2, 3]);
    expect(took).toBeLessThan(300);
  });
});

describe('SourceNode: source-provided timestamps', () => {
  it('dead-letters a record whose source time is not finite (as the timestamp-function path does)', async () => {
    const p = new Pipeline();
    const src = new TestSource<string>().record('inf', Infinity).record('-inf', -Infinity).record('ok', 5).end();
    const out = p.source(src, { id: 'in' }).collect();
    const dead = p.deadLetters().collect();
    await p.run();
    expect(out.records).toEqual([{ value: 'ok', time: 5 }]);
    expect(dead.values.map((d) => d.record)).toEqual(['inf', '-inf']);
  });
});

describe('SourceNode: a source-provided time of +Infinity and the derived watermark', () => {
  it('one record at +Infinity does not push the derived watermark to +Infinity (making everything after it late)', async () => {
    // E.g. a broker/file timestamp parsed as 1e400, or a generator bug: time(2) = Infinity.
    // (Feeding this into a window instead hangs the job: see nonfinite-times.test.ts.)
    const src = new GeneratorSource({ count: 6, make: (i) => i, time: (i) => (i === 2 ? Infinity : i * 10) });
    const p = new Pipeline({ batchSize: 2 });
    const out = p
      .source(src)
      .process<string>((i, ctx) => ctx.emit(`${i}:${ctx.timestamp <= ctx.watermark ? 'late' : 'on time'}`))
      .collect();
    const result = await p.run();
    // Expected: record 2 is a dead letter (as with a timestamp function returning Infinity);
    // records 4 and 5 (t = 40, 50) are on time. Actual: the derived watermark becomes
    // max(t) - 1 = Infinity after the second batch, and records 4 and 5 are behind it.
    expect(out.values).toEqual(['0:on time', '1:on time', '3:on time', '4:on time', '5:on time']);
    expect(result.deadLetters).toBe(1);
  });
});

describe('SourceNode: idleness of an explicit-watermark source', () => {
  it('a source that keeps advancing its watermark (no records) is not idle, and its watermark fires windows', async () => {
    const clock = new VirtualClock(0);
    let polls = 0;
    // Explicit watermarks: one record at t=5, then a heartbeat watermark every poll while the
    // processing-time clock moves on (e.g. a partition with no traffic that still reports time).
    const src: Source<number> = readerSource({
      poll(out: SourceOutput<number>) {
        polls++;
        if (polls === 1) {
          out.emit(1, 5);
          return 'more';
        }
        clock.advance(1000); // 1 s of processing time per poll
        out.watermark(polls); // event time creeps forward: 2, 3, ..., 200
        return polls < 200 ? 'more' : 'wait';
      },
      ready: () => new Promise(() => undefined),
    }, { bounded: false, watermarks: 'explicit' });
    const p = new Pipeline({ clock });
    const out = new CollectSink<unknown>();
    p.source(src, { idleTimeout: 10_000 }).windowAll(tumbling(100)).aggregate(count()).sink(out);
    const job = p.start();
    for (let i = 0; i < 200 && polls < 200; i++) await new Promise((r) => setTimeout(r, 5));
    await job.stop();
    // The watermark reached 200 > 99 long before the stop, but after 10 s without *records* the
    // source was declared idle, and from then on its watermarks are ignored downstream.
    expect(out.values).toEqual([{ key: 0, start: 0, end: 100, value: 1 }]);
  });
});
