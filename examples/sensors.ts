/**
 * A pipeline module for `spate run`: simulated sensor readings, counted per sensor per second and
 * averaged per minute, written exactly once to JSONL files.
 *
 *   spate run examples/sensors.ts --checkpoint-dir .spate/sensors -- 2000
 *
 * The argument after `--` is the number of readings per second (default 1000).
 */
import { avg, count, definePipeline, GeneratorSource, JsonlSink, tumbling } from '../src/index.ts';

interface Reading {
  readonly sensor: string;
  readonly celsius: number;
  readonly time: number;
}

export default definePipeline((p, args) => {
  const rate = Number(args[0] ?? 1000);
  if (!(rate > 0)) throw new Error(`readings per second must be > 0, got '${args[0]}'`);
  // Event time comes from the reading's index, not the wall clock, so a restarted job regenerates
  // exactly the readings that followed its checkpoint.
  const start = Date.UTC(2026, 0, 1);
  const readings = p.source(
    new GeneratorSource<Reading>({
      ratePerSecond: rate,
      // Deterministic by index, so a restored job regenerates exactly what followed its checkpoint.
      make: (i) => ({ sensor: `s${i % 20}`, celsius: 20 + ((i * 7919) % 100) / 10, time: start + Math.floor((i * 1000) / rate) }),
      time: (i) => start + Math.floor((i * 1000) / rate),
    }),
    { id: 'readings' },
  );
  const bySensor = readings.keyBy((r) => r.sensor);
  bySensor
    .window(tumbling(1_000))
    .aggregate(count(), (sensor, n, w) => ({ sensor, second: w.start, n }), { id: 'per-second' })
    .sink(new JsonlSink('sensors-per-second.jsonl'), { id: 'per-second-out' });
  bySensor
    .window(tumbling(60_000))
    .aggregate(avg((r: Reading) => r.celsius), (sensor, mean, w) => ({ sensor, minute: w.start, mean }), { id: 'per-minute' })
    .sink(new JsonlSink('sensors-per-minute.jsonl'), { id: 'per-minute-out' });
});
