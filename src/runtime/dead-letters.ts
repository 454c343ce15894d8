import type { Clock } from '../time/clock.ts';
import type { Collector } from './collector.ts';
import type { DeadLetter } from './operator.ts';

/** A user function or parser failed and the job is fail-fast: the job stops with this error. */
export class StepFailure extends Error {
  constructor(
    readonly step: string,
    readonly record: unknown,
    cause: unknown,
  ) {
    super(`step '${step}' failed: ${errorMessage(cause)}`, { cause });
    this.name = 'StepFailure';
  }
}

/** The message of anything thrown. */
export function errorMessage(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}

/**
 * Where every step sends records it cannot process. With a consumer attached
 * (`pipeline.deadLetters()`), dead letters flow there as records; otherwise they are logged (the
 * first ten, then one in a thousand) so they never vanish silently. Fail-fast turns them into a
 * job failure instead.
 */
export class DeadLetterChannel {
  /** Dead letters reported so far. */
  count = 0;
  private output: Collector<DeadLetter> | null = null;

  constructor(
    private readonly failFast: boolean,
    private readonly clock: Clock,
    private readonly log: (line: string) => void = (line) => process.stderr.write(line + '\n'),
  ) {}

  /** Routes dead letters to a stream instead of the log. */
  attach(output: Collector<DeadLetter>): void {
    this.output = output;
  }

  report(step: string, record: unknown, error: unknown, time: number): void {
    if (this.failFast) throw error instanceof StepFailure ? error : new StepFailure(step, record, error);
    this.count++;
    const letter: DeadLetter = { step, error: errorMessage(error), record, time };
    if (this.output !== null && this.output.connected) {
      this.output.emit(letter, Number.isFinite(time) ? time : this.clock.now());
      this.output.flush();
      return;
    }
    if (this.count <= 10 || this.count % 1000 === 0) {
      this.log(`spate: dead letter #${this.count} from step '${step}': ${letter.error}; record: ${preview(record)}`);
    }
  }
}

function preview(record: unknown): string {
  let s: string;
  try {
    s = typeof record === 'string' ? record : JSON.stringify(record) ?? String(record);
  } catch {
    s = String(record);
  }
  return s.length > 200 ? s.slice(0, 200) + '…' : s;
}
