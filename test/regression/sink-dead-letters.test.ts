// Regression test for a bug found while writing the PostgreSQL sink (fixed); see the comments.
import { describe, expect, it } from 'vitest';
import { Batch, GeneratorSource, Pipeline, type Committable, type DeadLetter, type Sink, type SinkContext } from '../../src/index.ts';

/** A sink that refuses one row at every commit, as a database sink finds a constraint violation. */
class RefusingSink implements Sink<number, number> {
  private ctx!: SinkContext;
  open(ctx: SinkContext): void {
    this.ctx = ctx;
  }
  write(_batch: Batch<number>): void {}
  preCommit(checkpointId: number): Promise<number> {
    return new Promise((resolve) => setTimeout(() => resolve(checkpointId), 1));
  }
  async commit(committables: ReadonlyArray<Committable<number>>): Promise<void> {
    await new Promise((resolve) => setTimeout(resolve, 1));
    for (const c of committables) this.ctx.deadLetter({ checkpoint: c.checkpointId }, new Error('refused at commit'), NaN);
  }
}

describe('dead letters a sink reports off the data path (during a commit)', () => {
  // OperatorNode.deadLetter put the letter in the dead-letter port's buffer, which is handed
  // downstream only by the node's next flush (after its next call). A sink reports from its
  // commit, asynchronously: the letter waited for the next batch, and after the last one — always
  // the case for the final checkpoint of a bounded job — it was never delivered nor logged,
  // though counted. Now it is flushed at once, or logged once the step's input has ended.
  it('reaches the dead-letter stream while the job runs, and the log after its input ended', async () => {
    const p = new Pipeline();
    const dead = p.deadLetters().collect();
    p.source(new GeneratorSource({ count: 3_000, make: (i) => i, ratePerSecond: 10_000 })).sink(new RefusingSink(), { id: 'refusing' });
    const lines: string[] = [];
    const result = await p.run({ checkpointInterval: 20, log: (l) => lines.push(l) });
    const logged = lines.filter((l) => /dead letter #\d+ from step 'refusing': refused at commit/.test(l));
    expect(result.deadLetters).toBeGreaterThan(3);
    expect((dead.values as DeadLetter[]).every((d) => d.step === 'refusing' && d.error === 'refused at commit')).toBe(true);
    expect(dead.values.length).toBeGreaterThan(0);
    expect(dead.values.length + logged.length).toBe(result.deadLetters);
  });
});
