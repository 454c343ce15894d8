/**
 * A pipeline module for the Kafka end-to-end tests, run with `spate run` (worker threads) and
 * killed with SIGKILL: NEXMark events from a Kafka topic (bounded: up to the end found at the first
 * start), q5 and q7, results to a Kafka topic in transactions.
 *
 *   spate run test/support/kafka-nexmark-job.ts --parallelism 2 --checkpoint-dir D -- <input topic> <output topic> [spin µs per event]
 *
 * Output records: `{ q: 'q5' | 'q7', ...row }`. The optional spin slows every event down (so that
 * a kill lands mid-run on a fast machine).
 */
import { definePipeline, KafkaSink, KafkaSource } from '../../src/index.ts';
import type { NexmarkEvent } from '../../src/nexmark/model.ts';
import { q5, q7 } from '../../src/nexmark/queries.ts';

export default definePipeline((p, args) => {
  const [input, output, spin] = args;
  if (input === undefined || output === undefined) throw new Error('usage: -- <input topic> <output topic> [spin µs]');
  const spinMs = Number(spin ?? 0) / 1000;
  let events = p.source(new KafkaSource<NexmarkEvent>({ topic: input, bounded: true }), { id: 'events', timestamp: (e) => e.dateTime });
  if (spinMs > 0) {
    events = events.map((e) => {
      const until = performance.now() + spinMs;
      while (performance.now() < until);
      return e;
    }, { id: 'spin' });
  }
  q5(events).sink(new KafkaSink({ topic: output, value: (r) => ({ q: 'q5', ...r }) }), { id: 'q5-out' });
  q7(events).sink(new KafkaSink({ topic: output, value: (r) => ({ q: 'q7', ...r }) }), { id: 'q7-out' });
});
