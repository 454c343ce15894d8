// Regression tests: invalid job and source options must fail where the job or the source is
// created, with an error naming the option, never hang or be silently accepted.
import { describe, expect, it } from 'vitest';
import { count, Pipeline, tumbling, type JobOptions } from '../../src/index.ts';
import { OperatorHarness } from '../../src/testing/index.ts';

function pipeline(options: JobOptions = {}): Pipeline {
  const p = new Pipeline(options);
  p.fromArray([1, 2, 3], { timestamp: (n) => n })
    .keyBy((n) => n % 2)
    .window(tumbling(10))
    .aggregate(count())
    .collect();
  return p;
}

describe('job options', () => {
  it.each([
    // batchSize 0: a batch that never fills; the run loop spun forever.
    [0, 'got 0'],
    // -1, 1.5, NaN: "Invalid array length" from deep inside a collector, naming nothing.
    [-1, 'got -1'],
    [1.5, 'got 1.5'],
    [NaN, 'got NaN'],
    [Infinity, 'got Infinity'],
    [2 ** 21, 'got 2097152'],
    ['64', "got '64' (a string)"],
  ])('batchSize %s is refused when the job is created', async (batchSize, got) => {
    const message = `batchSize must be a whole number from 1 to 1048576, ${got}`;
    expect(() => pipeline({ batchSize: batchSize as number }).createJob()).toThrow(message);
    // Also as a per-run override, and through run().
    expect(() => pipeline().createJob({ batchSize: batchSize as number })).toThrow(message);
    await expect((async () => pipeline({ batchSize: batchSize as number }).run())()).rejects.toThrow(message);
  });

  it.each([0, -1, 1.5, NaN, 32_769])('maxParallelism %s is refused', (maxParallelism) => {
    // Accepted before: key groups were hash % 0 = NaN, or fractional.
    expect(() => pipeline({ maxParallelism }).createJob()).toThrow(
      new RegExp(`^maxParallelism must be a whole number from 1 to 32768, got ${maxParallelism}$`),
    );
  });

  it('the operator harness checks them too', () => {
    expect(() => OperatorHarness.of<[number], unknown>((s) => s.map((n) => n), { maxParallelism: 0 })).toThrow(/maxParallelism/);
  });

  it('errors, clock and log are checked', () => {
    expect(() => pipeline({ errors: 'ignore' as 'fail' }).createJob()).toThrow("errors must be 'dead-letter' or 'fail', got 'ignore' (a string)");
    expect(() => pipeline({ clock: {} as never }).createJob()).toThrow('clock must be an object with a now() method, got an object');
    expect(() => pipeline({ log: 'stderr' as never }).createJob()).toThrow("log must be a function, got 'stderr' (a string)");
  });

  it('valid extremes still run', async () => {
    const p = new Pipeline({ batchSize: 1, maxParallelism: 32_768 });
    const out = p.fromArray([1, 2, 3], { timestamp: (n) => n, idleTimeout: Infinity, outOfOrderness: 0.5 }).keyBy((n) => n % 2).window(tumbling(10)).aggregate(count()).collect();
    await p.run();
    expect(out.values).toHaveLength(2);
  });
});

describe('source options', () => {
  it.each([
    // idleTimeout -1 or NaN was accepted silently (a negative timeout marks the source idle at once).
    ['idleTimeout', -1],
    ['idleTimeout', NaN],
    ['idleTimeout', '5000'],
    // outOfOrderness -1 or NaN failed only when the job ran, without naming the source.
    ['outOfOrderness', -1],
    ['outOfOrderness', NaN],
    ['outOfOrderness', '10'],
  ])('%s %s is refused when the source is added, naming the source', (name, value) => {
    const p = new Pipeline();
    expect(() => p.fromArray([1], { id: 'readings', [name]: value })).toThrow(
      new RegExp(`^source 'readings': ${name} must be a number of milliseconds >= 0 .*got ${typeof value === 'string' ? `'${value}' \\(a string\\)` : String(value)}$`),
    );
  });

  it('timestamp must be a function', () => {
    const p = new Pipeline();
    expect(() => p.fromArray([1], { timestamp: 'time' as never })).toThrow("source 'source-1': timestamp must be a function, got 'time' (a string)");
  });
});
