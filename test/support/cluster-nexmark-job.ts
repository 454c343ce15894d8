/**
 * The pipeline module of the cluster tests and benchmark: NEXMark events from a Kafka topic, q5,
 * q7 and q8, results into one Kafka topic in transactions (records `{ q: 'q5' | 'q7' | 'q8', ...row }`).
 *
 *   spate run test/support/cluster-nexmark-job.ts --cluster kafka://127.0.0.1:9092 --job-id J -- <input> <output> [stream|bounded] [spin µs per event]
 *
 * A streaming job never ends, so its last windows close only when the watermark passes them: the
 * input ends with one {@link END_MARKER} per partition, far ahead in event time, which advances
 * every partition's watermark and is then dropped (a bounded run drops it too, so both compute
 * over the same events). The optional spin slows every event down, so that kills, joins and
 * leaves land mid-run.
 */
import { definePipeline, KafkaSink, KafkaSource } from '../../src/index.ts';
import type { NexmarkEvent } from '../../src/nexmark/model.ts';
import { q5, q7, q8 } from '../../src/nexmark/queries.ts';

/** The event that ends a partition of the input (a bid on auction -1 an hour after the last event). */
export function endMarker(lastTime: number): NexmarkEvent {
  return { type: 'bid', auction: -1, bidder: -1, price: 0, dateTime: lastTime + 3_600_000, extra: '' };
}

const isEndMarker = (e: NexmarkEvent): boolean => e.type === 'bid' && e.auction === -1;

export default definePipeline((p, args) => {
  const [input, output, mode = 'stream', spin = '0'] = args;
  if (input === undefined || output === undefined) throw new Error('usage: -- <input topic> <output topic> [stream|bounded] [spin µs]');
  const spinMs = Number(spin) / 1000;
  let events = p
    .source(new KafkaSource<NexmarkEvent>({ topic: input, bounded: mode === 'bounded' }), { id: 'events', timestamp: (e) => e.dateTime })
    .filter((e) => !isEndMarker(e), { id: 'data' });
  if (spinMs > 0) {
    events = events.map((e) => {
      const until = performance.now() + spinMs;
      while (performance.now() < until);
      return e;
    }, { id: 'spin' });
  }
  q5(events).sink(new KafkaSink({ topic: output, value: (r) => ({ q: 'q5', ...r }) }), { id: 'q5-out' });
  q7(events).sink(new KafkaSink({ topic: output, value: (r) => ({ q: 'q7', ...r }) }), { id: 'q7-out' });
  q8(events).sink(new KafkaSink({ topic: output, value: (r) => ({ q: 'q8', ...r }) }), { id: 'q8-out' });
});
