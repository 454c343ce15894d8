import type { Source, SourceReader, Split } from '../../src/index.ts';

/** A reader-like object for tests: only `poll` is required. */
export type TestReader<T> = Partial<SourceReader<T>> & Pick<SourceReader<T>, 'poll'> & { open?(splits: readonly Split[]): void | Promise<void> };

/** A one-split source around a hand-written reader (tests of the runtime's handling of sources). */
export function readerSource<T>(reader: TestReader<T>, options: { bounded: boolean; watermarks?: 'explicit' | 'derived' }): Source<T> {
  return {
    bounded: options.bounded,
    watermarks: options.watermarks,
    maxParallelism: 1,
    splits: () => [{ id: 'only', position: 0 }],
    createReader: () => ({ snapshot: () => [{ id: 'only', position: 0 }], open: () => undefined, ...reader }) as SourceReader<T>,
  };
}
