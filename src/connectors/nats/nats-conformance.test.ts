/**
 * The connector conformance suites of `spate/testing` run against the JetStream source and sink,
 * on the real NATS server (`scripts/services.sh up nats`), a stream of its own per check.
 */
import { afterAll, describe, it } from 'vitest';
import { type SinkHarness, sinkConformance, type SourceHarness, sourceConformance } from '../../testing/index.ts';
import { JetStreamSink } from './sink.ts';
import { JetStreamSource } from './source.ts';
import { cleanupStreams, manager, NATS_URL, publish, readAll, testStream } from '../../../test/support/nats.ts';

interface Item {
  readonly id: number;
  readonly name: string;
}
const item = (i: number): Item => ({ id: i, name: `item ${i}` });
const connection = { servers: NATS_URL };
afterAll(cleanupStreams);

type Stream = Awaited<ReturnType<typeof testStream>>;
const drop = async (s: Stream): Promise<void> => void (await (await manager()).streams.delete(s.name).catch(() => undefined));

describe('sink conformance: JetStreamSink', () => {
  const harness: SinkHarness<Item, Stream> = {
    create: () => testStream('conf_sink'),
    sink: (s) => new JetStreamSink<Item>({ connection, subject: s.subject('out') }),
    read: async (s) => (await readAll(s.name)).map((m) => JSON.parse(m.data) as Item),
    record: item,
    destroy: drop,
  };
  for (const check of sinkConformance(harness)) it(check.name, check.run);
});

describe('source conformance: JetStreamSource', () => {
  /** A stream whose records alternate between two subject partitions (two splits). */
  interface Input {
    readonly stream: Stream;
    next: number;
  }
  const append = async (input: Input, n: number): Promise<void> => {
    const from = input.next;
    input.next += n;
    await publish(Array.from({ length: n }, (_, k) => ({ subject: input.stream.subject(`p${(from + k) % 2}`), data: JSON.stringify(item(from + k)) })));
  };
  const harness: SourceHarness<Item, Input> = {
    bounded: false,
    create: async (n) => {
      const input = { stream: await testStream('conf_source'), next: 0 };
      await append(input, n);
      return input;
    },
    source: (input) => new JetStreamSource<Item>({ connection, stream: input.stream.name, subjects: [input.stream.subject('p0'), input.stream.subject('p1')], batch: 64 }),
    append,
    appendBad: async (input) => publish([{ subject: input.stream.subject('p0'), data: '{"id": ' }]),
    record: item,
    destroy: (input) => drop(input.stream),
  };
  for (const check of sourceConformance(harness)) it(check.name, check.run);
  // Bounded: reads up to the stream's end as of opening, then ends.
  const bounded: SourceHarness<Item, Input> = {
    ...harness,
    bounded: true,
    source: (input) => new JetStreamSource<Item>({ connection, stream: input.stream.name, subjects: [input.stream.subject('p0'), input.stream.subject('p1')], batch: 64, bounded: true }),
  };
  for (const check of sourceConformance(bounded, { prefix: 'bounded' })) it(check.name, check.run);
});
