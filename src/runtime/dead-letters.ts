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
 * Where dead letters go when no step consumes them (no `pipeline.deadLetters()`, or a step that
 * is itself downstream of the dead-letter stream): counted and logged — the first ten, then one in
 * a thousand — so that they never vanish silently.
 */
export class DeadLetterLog {
  /** Dead letters logged so far. */
  count = 0;

  constructor(private readonly log: (line: string) => void) {}

  report(step: string, record: unknown, error: unknown): void {
    this.count++;
    if (this.count <= 10 || this.count % 1000 === 0) {
      this.log(`spate: dead letter #${this.count} from step '${step}': ${errorMessage(error)}; record: ${preview(record)}`);
    }
  }
}

/** A short printable form of a record, for logs. */
export function preview(record: unknown, max = 200): string {
  let s: string;
  try {
    s = typeof record === 'string' ? record : (JSON.stringify(record, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v)) ?? String(record));
  } catch {
    s = String(record);
  }
  return s.length > max ? s.slice(0, max) + '…' : s;
}
