import { describe, expect, it } from 'vitest';
import { Pipeline } from '../api/pipeline.ts';
import type { Batch } from './batch.ts';
import type { Sink } from './sink.ts';
import type { Source, SourceOutput, SourceStatus } from './source.ts';

/** A sink that records every call, in order. */
class TimeRecordingSink implements Sink<number> {
  readonly calls: string[] = [];
  write(batch: Batch<number>): void {
    this.calls.push(`write ${batch.values.slice(0, batch.length).join(',')}`);
  }
  watermark(watermark: number): void {
    this.calls.push(`watermark ${watermark}`);
  }
  idle(idle: boolean): void {
    this.calls.push(`idle ${idle}`);
  }
  preCommit(): undefined {
    this.calls.push('preCommit');
    return undefined;
  }
}

/** Emits 1 and 2, goes idle, then emits 5 and ends (explicit watermarks). */
function script(): Source<number> {
  let step = 0;
  return {
    bounded: true,
    watermarks: 'explicit',
    maxParallelism: 1,
    idleTimeout: 0,
    splits: () => [{ id: 'only', position: 0 }],
    createReader: () => ({
      open: () => undefined,
      snapshot: () => [{ id: 'only', position: step }],
      ready: () => new Promise<void>((r) => setTimeout(r, 20)),
      poll(out: SourceOutput<number>): SourceStatus {
        switch (step++) {
          case 0:
            out.emit(1, 1);
            out.emit(2, 2);
            out.watermark(2);
            return 'more';
          case 1:
            out.markIdle();
            return 'wait';
          case 2:
            out.emit(5, 5);
            out.watermark(5);
            return 'more';
          default:
            return 'end';
        }
      },
    }),
  };
}

describe('a sink hears its input’s time (Sink.watermark, Sink.idle, through SinkOperator and Operator.onIdle)', () => {
  it('in line with the data: a watermark after the records it covers, idleness and its end before the records that end it, the final watermark before the final pre-commit', async () => {
    const sink = new TimeRecordingSink();
    const p = new Pipeline();
    p.source(script(), { id: 'in' })
      .map((x) => x, { id: 'through' }) // an operator between: idleness travels through operator nodes
      .sink(sink, { id: 'out' });
    await p.run();
    expect(sink.calls).toEqual(['write 1,2', 'watermark 2', 'idle true', 'idle false', 'write 5', 'watermark 5', `watermark ${Infinity}`, 'preCommit']);
  });
});

describe('a job with a scope', () => {
  it('hands its scope to every sink (none without one)', async () => {
    const scopes: Array<string | undefined> = [];
    const sink = (): Sink<number> => ({ open: (ctx) => void scopes.push(ctx.scope), write: () => undefined });
    for (const scope of ['t3', undefined]) {
      const p = new Pipeline();
      p.fromArray([1, 2, 3]).sink(sink(), { id: 'out' });
      await p.run(scope === undefined ? {} : { scope });
    }
    expect(scopes).toEqual(['t3', undefined]);
  });
});
