/**
 * "Why hasn't my window fired?": given per-instance metrics of a real plan, which input channel
 * holds a step's watermark back, and where upstream (which split, idle, or no data) it comes from.
 */
import { describe, expect, it } from 'vitest';
import { count, GeneratorSource, Pipeline, tumbling } from '../index.ts';
import { inputChannels, physicalPlan } from '../plan/physical.ts';
import type { InstanceMetrics } from '../runtime/executor.ts';
import { formatEventTime, watermarkHolds } from './watermark-holds.ts';

/** Two sources (a: 2 splits, b: 1) → their union (step 'union-1', called u below) → keyed tumbling window w, at parallelism 2. */
function plan() {
  const p = new Pipeline();
  const a = p.source(new GeneratorSource({ make: (i) => i, splits: 2 }), { id: 'a' });
  const b = p.source(new GeneratorSource({ make: (i) => i, splits: 1 }), { id: 'b' });
  a.union(b)
    .keyBy((x) => x % 2)
    .window(tumbling(1000))
    .aggregate(count(), { id: 'w' });
  return physicalPlan(p.graph, 2);
}

const U = 'union-1';
const zero = { recordsIn: 0, recordsOut: 0, deadLetters: 0, lateRecords: 0, lateDropped: 0, duplicatesDropped: 0, keysBeyondMemoryBound: 0, checkpointPauseMs: 0, backpressureMs: 0, idle: false, ended: false };
type Channel = { watermark: number; idle?: boolean; ended?: boolean };
const ch = (watermark: number, more: Partial<Channel> = {}): Required<Channel> => ({ watermark, idle: false, ended: false, ...more });

function operator(step: string, instance: number, watermark: number, inputs: Channel[], nextEventTime = Infinity): InstanceMetrics {
  return { ...zero, step, kind: step === 'w' ? 'tumbling-window' : 'map', instance, watermark, inputs: inputs.map((c) => ch(c.watermark, c)), nextEventTime };
}

function source(step: string, instance: number, splits: Array<{ id: string; watermark: number; idle?: boolean; finished?: boolean }>): InstanceMetrics {
  const live = splits.filter((s) => !s.idle && !s.finished);
  const watermark = live.length === 0 ? -Infinity : Math.min(...live.map((s) => s.watermark));
  return { ...zero, step, kind: 'source', instance, watermark, splits: splits.map((s) => ({ idle: false, finished: false, ...s })) };
}

describe('watermarkHolds', () => {
  const physical = plan();

  it('names the channels as the plan does', () => {
    // The union's inputs: a (forward, same instance), then b (one instance, rebalanced).
    expect(inputChannels(physical, U, 1).map((c) => `${c.step}#${c.instance}`)).toEqual(['a#1', 'b#0']);
    expect(inputChannels(physical, 'w', 0).map((c) => `${c.step}#${c.instance}`)).toEqual(['union-1#0', 'union-1#1']);
  });

  it('follows the lowest channel upstream to the split that holds the window back', () => {
    const holds = watermarkHolds(physical, [
      source('a', 0, [{ id: '0/2', watermark: 5000 }]),
      source('a', 1, [{ id: '1/2', watermark: 3000 }]),
      source('b', 0, [{ id: '0/1', watermark: 1000 }]),
      operator(U, 0, 1000, [{ watermark: 5000 }, { watermark: 1000 }]),
      operator(U, 1, 1000, [{ watermark: 3000 }, { watermark: 1000 }]),
      operator('w', 0, 1000, [{ watermark: 1500 }, { watermark: 1000 }], 1999),
      // Already past its next window: not waiting.
      operator('w', 1, 2500, [{ watermark: 2500 }, { watermark: 2600 }], 1999),
    ]);
    expect(holds).toHaveLength(1);
    const h = holds[0]!;
    expect(h).toMatchObject({ step: 'w', instance: 0, watermark: 1000, nextEventTime: 1999, waitingFor: 999, reason: 'input' });
    expect(h.channel).toEqual({ index: 1, input: 0, step: U, instance: 1, watermark: 1000, behind: 999 });
    expect(h.path.map((x) => `${x.step}#${x.instance}`)).toEqual(['union-1#1', 'b#0']);
    expect(h.origin).toMatchObject({ step: 'b', instance: 0, split: '0/1', watermark: 1000, state: 'behind' });
    expect(h.summary).toBe("'w' #0 fires at 1999; its watermark is 1000 (999 ms to go): input from 'union-1' #1 holds it back at 1000 (999 ms behind); origin: split '0/1' of 'b' #0 at 1000 via 'union-1' #1");
  });

  it('says when an input has no data yet, skips idle channels and reports a step whose inputs are all idle', () => {
    const holds = watermarkHolds(physical, [
      source('a', 0, [{ id: '0/2', watermark: 5000 }]),
      source('a', 1, [{ id: '1/2', watermark: 4000 }]),
      source('b', 0, [{ id: '0/1', watermark: -Infinity }]),
      // u#0: b is idle here, so a#0 holds it at 5000; u#1: b has no data yet.
      operator(U, 0, 5000, [{ watermark: 5000 }, { watermark: -Infinity, idle: true }]),
      operator(U, 1, -Infinity, [{ watermark: 4000 }, { watermark: -Infinity }]),
      operator('w', 0, -Infinity, [{ watermark: 5000 }, { watermark: -Infinity }], 1999),
      operator('w', 1, 3000, [{ watermark: 3000, idle: true }, { watermark: 3500, idle: true }], 3999),
    ]);
    expect(holds.map((h) => [h.instance, h.reason])).toEqual([
      [0, 'no data yet'],
      [1, 'idle'],
    ]);
    expect(holds[0]!.origin).toMatchObject({ step: 'b', split: '0/1', state: 'no data yet' });
    expect(holds[0]!.summary).toContain("input from 'union-1' #1 has no data yet");
    expect(holds[1]!.channel).toBeUndefined();
    expect(holds[1]!.summary).toMatch(/every input is idle/);

    // An idle channel is skipped: u#0's watermark comes from a#0.
    const viaIdle = watermarkHolds(physical, [
      source('a', 0, [{ id: '0/2', watermark: 500 }]),
      source('b', 0, [{ id: '0/1', watermark: 100, idle: true }]),
      operator(U, 0, 500, [{ watermark: 500 }, { watermark: 100, idle: true }]),
      operator('w', 0, 500, [{ watermark: 500 }, { watermark: 900 }], 999),
    ]);
    expect(viaIdle[0]!.origin).toMatchObject({ step: 'a', instance: 0, split: '0/2', state: 'behind' });
  });

  it('reports an idle source and leaves out ended inputs and steps with nothing due', () => {
    const holds = watermarkHolds(physical, [
      source('b', 0, [{ id: '0/1', watermark: 100, idle: true }]),
      operator(U, 1, 100, [{ watermark: 0, ended: true }, { watermark: 100 }]),
      operator('w', 0, 100, [{ watermark: 900 }, { watermark: 100 }], 999),
      operator('w', 1, 100, [{ watermark: 100 }, { watermark: 100 }]), // nothing due (Infinity)
      operator(U, 0, 100, [{ watermark: 100, ended: true }, { watermark: 100, ended: true }], 500),
    ]);
    expect(holds).toHaveLength(1);
    expect(holds[0]!.origin).toMatchObject({ step: 'b', state: 'idle' });
  });

  it('formats epoch milliseconds as dates and other event times as numbers', () => {
    expect(formatEventTime(1_700_000_000_000)).toBe('2023-11-14T22:13:20.000Z');
    expect(formatEventTime(1999)).toBe('1999');
    expect(formatEventTime(-Infinity)).toBe('−∞ (no data)');
  });
});
