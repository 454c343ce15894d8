/**
 * A checkpoint barrier. Sources inject it between two polls; it travels in-band on every edge,
 * like a watermark, so everything before it on a channel belongs to the checkpoint and nothing
 * after it does. A step with several input channels snapshots once the barrier has arrived on all
 * of them (aligned), then forwards it.
 */
export interface Barrier {
  /** Checkpoint ids increase for the whole life of a checkpoint directory. */
  readonly id: number;
  readonly kind: 'checkpoint' | 'savepoint';
  /** A savepoint that stops the job: sources stop reading after injecting it. */
  readonly stop: boolean;
  /**
   * Whether steps snapshot their state. False for checkpoints that only commit sinks (a job
   * without checkpoint storage): sinks still pre-commit, nothing else is encoded.
   */
  readonly state: boolean;
}
