/**
 * Names a side output of a step. The type parameter is the type of the records sent to it.
 *
 * @example
 * const late = new OutputTag<Bid>('late-bids');
 * const counts = bids.keyBy((b) => b.auction).window(tumbling(10_000)).onLate({ policy: 'side-output', tag: late }).aggregate(count());
 * counts.sideOutput(late).sink(new ConsoleSink());
 */
export class OutputTag<T> {
  /** Type carrier only; never set. */
  declare readonly __type?: T;

  constructor(readonly id: string) {
    if (id.length === 0 || id === 'main') throw new Error(`invalid output tag id '${id}'`);
  }
}
