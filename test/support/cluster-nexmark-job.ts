/**
 * The pipeline module of the cluster tests and benchmark: NEXMark events from a Kafka topic, q5,
 * q7 and q8, results into one Kafka topic in transactions (records `{ q: 'q5' | 'q7' | 'q8', ...row }`).
 *
 *   spate run test/support/cluster-nexmark-job.ts --cluster kafka://127.0.0.1:9092 --job-id J -- <input> <output> [stream|bounded] [spin µs per event] [queries] [group]
 *
 * `queries` (default `q5,q7,q8`) may also name, for the benchmark, `q2` (a filter: no exchange)
 * and `q2-keyed` (the same after a keyed exchange of every event: the cost of an exchange topic);
 * the benchmark follows the input's progress through the consumer group named by `group`, to
 * which the source commits its checkpointed offsets.
 *
 * A streaming job never ends, so its last windows close only when the watermark passes them: the
 * input ends with one {@link END_MARKER} per partition, far ahead in event time, which advances
 * every partition's watermark and is then dropped (a bounded run drops it too, so both compute
 * over the same events). The optional spin slows every event down, so that kills, joins and
 * leaves land mid-run.
 */
import { definePipeline, KafkaSink, KafkaSource } from '../../src/index.ts';
import type { NexmarkEvent, Q2Row } from '../../src/nexmark/model.ts';
import { q2, q5, q7, q8 } from '../../src/nexmark/queries.ts';
import { slowedDown } from './kafka-nexmark-job.ts';

/** The event that ends a partition of the input (a bid on auction -1 an hour after the last event). */
export function endMarker(lastTime: number): NexmarkEvent {
  return { type: 'bid', auction: -1, bidder: -1, price: 0, dateTime: lastTime + 3_600_000, extra: '' };
}

const isEndMarker = (e: NexmarkEvent): boolean => e.type === 'bid' && e.auction === -1;

export default definePipeline((p, args) => {
  const [input, output, mode = 'stream', spin = '0', queries = 'q5,q7,q8', group] = args;
  const wanted = new Set(queries.split(','));
  if (input === undefined || output === undefined) throw new Error('usage: -- <input topic> <output topic> [stream|bounded] [spin µs]');
  const events = slowedDown(
    p
      .source(new KafkaSource<NexmarkEvent>({ topic: input, bounded: mode === 'bounded', ...(group === undefined ? {} : { groupId: group }) }), { id: 'events', timestamp: (e) => e.dateTime })
      .filter((e) => !isEndMarker(e), { id: 'data' }),
    Number(spin),
  );
  if (wanted.has('q5')) q5(events).sink(new KafkaSink({ topic: output, value: (r) => ({ q: 'q5', ...r }) }), { id: 'q5-out' });
  if (wanted.has('q7')) q7(events).sink(new KafkaSink({ topic: output, value: (r) => ({ q: 'q7', ...r }) }), { id: 'q7-out' });
  if (wanted.has('q8')) q8(events).sink(new KafkaSink({ topic: output, value: (r) => ({ q: 'q8', ...r }) }), { id: 'q8-out' });
  if (wanted.has('q2')) q2(events).sink(new KafkaSink({ topic: output, value: (r) => ({ q: 'q2', ...r }) }), { id: 'q2-out' });
  if (wanted.has('q2-keyed')) {
    events
      .keyBy((e) => (e.type === 'person' ? e.id : e.type === 'auction' ? e.id : e.auction))
      .process<Q2Row>({
        onElement: (e, ctx) => {
          if (e.type === 'bid' && e.auction % 123 === 0) ctx.emit({ auction: e.auction, price: e.price });
        },
      }, { id: 'q2-keyed' })
      .sink(new KafkaSink({ topic: output, value: (r) => ({ q: 'q2', ...r }) }), { id: 'q2-keyed-out' });
  }
});
