import { open } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * Holds every fsync of this process until released: appends to a write-ahead log are written but
 * not durable, as while a slow disk syncs. For tests that checkpoint nothing to files meanwhile.
 */
export async function holdSyncs(scratch: string): Promise<{ release: () => void }> {
  const probe = await open(join(scratch, 'hold-syncs-probe'), 'w');
  const proto = Object.getPrototypeOf(probe) as { sync: () => Promise<void> };
  await probe.close();
  const sync = proto.sync;
  let release: () => void = () => undefined;
  const held = new Promise<void>((r) => (release = r));
  proto.sync = async function (this: unknown) {
    await held;
    return sync.call(this);
  };
  return {
    release: () => {
      proto.sync = sync;
      release();
    },
  };
}
