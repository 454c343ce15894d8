import type { OutputTag } from '../api/output-tag.ts';
import type { OperatorContext } from '../runtime/operator.ts';

/**
 * What a window does with a record that arrives after the watermark has passed its window.
 *
 * - `drop` (default): count it and drop it; the default warns once on the job's log, an explicit
 *   `drop` does not.
 * - `side-output`: count it and send it to the tag's side output.
 * - `dead-letter`: count it and send it to the dead-letter output.
 * - `update`: keep windows for `allowedLateness` ms after they fire; a late record within that
 *   time is added and the window's result is emitted again (with `window.late` true). Records
 *   later than that are handled by `beyond` (default `drop`).
 */
export type LatePolicy<T> =
  | { readonly policy: 'drop' }
  | { readonly policy: 'side-output'; readonly tag: OutputTag<T> }
  | { readonly policy: 'dead-letter' }
  | {
      readonly policy: 'update';
      readonly allowedLateness: number;
      readonly beyond?: { readonly policy: 'drop' } | { readonly policy: 'side-output'; readonly tag: OutputTag<T> } | { readonly policy: 'dead-letter' };
    };

/** The default late-data policy. */
export const DROP_LATE: LatePolicy<never> = { policy: 'drop' };

/** Applies a {@link LatePolicy} inside a window operator. */
export class LateHandler {
  /** How long fired windows are kept for updates (0 unless the policy is `update`). */
  readonly allowedLateness: number;
  /** Whether late records within the allowed lateness update results. */
  readonly updates: boolean;
  private readonly reject: { readonly policy: string; readonly tag?: OutputTag<unknown> };
  private warned = false;

  constructor(
    policy: LatePolicy<unknown>,
    private readonly ctx: OperatorContext<unknown>,
  ) {
    if (policy.policy === 'update') {
      if (!(policy.allowedLateness >= 0)) throw new RangeError(`allowedLateness must be >= 0, got ${policy.allowedLateness}`);
      this.allowedLateness = policy.allowedLateness;
      this.updates = true;
      this.reject = policy.beyond ?? DROP_LATE;
    } else {
      this.allowedLateness = 0;
      this.updates = false;
      this.reject = policy;
    }
  }

  /** A late record (or `count` records pre-aggregated in one value) that will not be part of any result. */
  rejected(value: unknown, time: number, count = 1): void {
    const m = this.ctx.metrics;
    m.lateRecords += count;
    switch (this.reject.policy) {
      case 'side-output':
        this.ctx.sideOutput(this.reject.tag!).emit(value, time);
        break;
      case 'dead-letter':
        this.ctx.deadLetter(value, new Error(`late record: time ${time} is behind the watermark and its window is closed`), time);
        break;
      default:
        m.lateDropped += count;
        // Said once, where dropping is the default rather than a choice (`onLate({ policy: 'drop' })`).
        if (!this.warned && this.reject === DROP_LATE) {
          this.warned = true;
          this.ctx.warnOnce(
            `drops late records (the first at event time ${time}, behind the watermark ${this.ctx.watermark}); ` +
              `they are counted in lateRecords and lateDropped — choose another policy with .onLate(...) to keep them`,
          );
        }
    }
  }

  /** A late record (or `count` of them, pre-aggregated) that updated an already-fired window. */
  updated(count = 1): void {
    this.ctx.metrics.lateRecords += count;
  }
}
