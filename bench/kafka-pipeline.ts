/**
 * The pipeline module of the Kafka benchmark (bench/kafka.ts), run in worker threads:
 * Kafka source → q0 → Kafka sink.
 *
 *   args: <input topic> <output topic> <exactly-once|at-least-once> <bounded|unbounded>
 */
import { definePipeline, KafkaSink, KafkaSource } from '../src/index.ts';
import type { NexmarkEvent } from '../src/nexmark/model.ts';
import { q0 } from '../src/nexmark/queries.ts';

export default definePipeline((p, args) => {
  const [input, output, guarantee, mode] = args;
  const events = p.source(new KafkaSource<NexmarkEvent>({ topic: input!, bounded: mode !== 'unbounded', idleTimeout: 1_000 }), { id: 'events' });
  q0(events).sink(new KafkaSink({ topic: output!, guarantee: guarantee as 'exactly-once' | 'at-least-once' }), { id: 'out' });
});
