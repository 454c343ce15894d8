import { mkdirSync } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';

/**
 * Where checkpoints are kept: an object-store-like interface (names with `/`, whole objects
 * written and read), so that other backends — S3, a Kafka snapshot topic — can follow the
 * file-system one. `write` must be atomic and durable: once it resolves, a reader sees the whole
 * object after any crash, and a crash before that leaves no partial object under the name.
 */
export interface CheckpointStorage {
  /** Human-readable location, for logs. */
  readonly location: string;
  write(name: string, data: Uint8Array): Promise<void>;
  /** Rejects with an error whose `code` is 'ENOENT' if there is no such object. */
  read(name: string): Promise<Uint8Array>;
  /** Names of objects directly under `prefix` (a "directory"), and of sub-prefixes ending in `/`. */
  list(prefix: string): Promise<string[]>;
  /** Removes every object whose name starts with `prefix`. */
  deletePrefix(prefix: string): Promise<void>;
}

/**
 * Checkpoints in a directory. An object is written to a temporary file, fsynced, renamed into
 * place and the directory fsynced, so a crash at any instant leaves either the old state or the
 * whole new object.
 */
export class FileCheckpointStorage implements CheckpointStorage {
  readonly location: string;

  constructor(dir: string) {
    this.location = resolve(dir);
    mkdirSync(this.location, { recursive: true });
  }

  async write(name: string, data: Uint8Array): Promise<void> {
    const path = this.path(name);
    const dir = dirname(path);
    await mkdir(dir, { recursive: true });
    const tmp = `${path}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
    const handle = await open(tmp, 'w');
    try {
      await handle.writeFile(data);
      await handle.sync();
    } catch (error) {
      await handle.close().catch(() => undefined);
      await rm(tmp, { force: true });
      throw error;
    }
    await handle.close();
    await rename(tmp, path);
    await syncDir(dir);
  }

  read(name: string): Promise<Uint8Array> {
    return readFile(this.path(name));
  }

  async list(prefix: string): Promise<string[]> {
    const dir = this.path(prefix);
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw error;
    }
    return entries.filter((e) => !e.name.includes('.tmp-')).map((e) => (e.isDirectory() ? `${e.name}/` : e.name));
  }

  async deletePrefix(prefix: string): Promise<void> {
    const path = this.path(prefix);
    const isDir = prefix.endsWith('/') || (await stat(path).then((s) => s.isDirectory(), () => false));
    await rm(path, { recursive: isDir, force: true });
  }

  private path(name: string): string {
    if (name.split('/').includes('..')) throw new Error(`invalid checkpoint object name '${name}'`);
    return join(this.location, name);
  }
}

async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Checkpoints in memory (tests, and jobs that checkpoint only to commit their sinks). */
export class MemoryCheckpointStorage implements CheckpointStorage {
  readonly location = 'memory';
  readonly objects = new Map<string, Uint8Array>();

  async write(name: string, data: Uint8Array): Promise<void> {
    this.objects.set(name, data.slice());
  }

  async read(name: string): Promise<Uint8Array> {
    const data = this.objects.get(name);
    if (data === undefined) throw Object.assign(new Error(`no checkpoint object '${name}'`), { code: 'ENOENT' });
    return data;
  }

  async list(prefix: string): Promise<string[]> {
    return listUnder(this.objects.keys(), prefix);
  }

  async deletePrefix(prefix: string): Promise<void> {
    for (const name of [...this.objects.keys()]) if (name.startsWith(prefix)) this.objects.delete(name);
  }
}

/**
 * What {@link CheckpointStorage.list} answers for a store that knows all its object names: the
 * names directly under `prefix`, and the sub-prefixes (ending in `/`) of the deeper ones, once each.
 */
export function listUnder(names: Iterable<string>, prefix: string): string[] {
  const out = new Set<string>();
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    const rest = name.slice(prefix.length);
    const slash = rest.indexOf('/');
    out.add(slash < 0 ? rest : rest.slice(0, slash + 1));
  }
  return [...out];
}
