import { crc32 } from 'node:zlib';
import type { InstanceSnapshot, SavedSplit } from '../runtime/env.ts';
import { packState, unpackState } from '../state/codec.ts';
import type { InstanceState, JobSnapshot, StepSnapshot } from './snapshot.ts';
import type { CheckpointStorage } from './storage.ts';

/**
 * The on-storage form of a checkpoint:
 *
 *   chk-0000000042/<step>.<instance>.state   one file per step instance with state
 *   chk-0000000042/_MANIFEST                 written last; the checkpoint exists once it does
 *
 * (savepoints live under `savepoint-<id>/`, and retention never deletes them). A state file is
 * the concatenation of the instance's key-group blobs, its operator state and its split
 * positions; the manifest lists, per step instance, the file, its size and CRC-32, and for every
 * part its offset, length and CRC-32 — plus the plan fingerprint, the number of key groups and
 * every instance's watermark. A checkpoint is valid only if its manifest and every file it names
 * are present with matching checksums.
 */

/** Where one part of a state file lies, and its CRC-32. */
type Part = readonly [offset: number, length: number, crc: number];

/** One step instance in the manifest. */
export interface InstanceRef {
  readonly watermark: number;
  /** State file, relative to the checkpoint's directory; null if the instance has no state. */
  readonly file: string | null;
  readonly size: number;
  readonly crc: number;
  readonly keyGroups: ReadonlyArray<readonly [keyGroup: number, offset: number, length: number, crc: number]>;
  readonly tables: Readonly<Record<string, number>>;
  readonly operator: Part | null;
  readonly splits: Part | null;
}

export interface StepRef {
  readonly kind: string;
  readonly parallelism: number;
  readonly instances: readonly InstanceRef[];
}

export interface Manifest {
  readonly format: 1;
  readonly id: number;
  readonly kind: 'checkpoint' | 'savepoint';
  readonly createdAt: number;
  readonly fingerprint: string;
  readonly maxParallelism: number;
  readonly steps: Readonly<Record<string, StepRef>>;
}

const MAGIC = Buffer.from('SPATEMF1');
export const MANIFEST = '_MANIFEST';

/** The directory of checkpoint `id`. */
export function checkpointDir(id: number, kind: 'checkpoint' | 'savepoint'): string {
  return `${kind === 'savepoint' ? 'savepoint' : 'chk'}-${String(id).padStart(10, '0')}/`;
}

/** Parses a checkpoint directory name; null if it is not one. */
export function parseCheckpointDir(name: string): { id: number; kind: 'checkpoint' | 'savepoint' } | null {
  const m = /^(chk|savepoint)-(\d+)\/$/.exec(name);
  return m === null ? null : { id: Number(m[2]), kind: m[1] === 'chk' ? 'checkpoint' : 'savepoint' };
}

/** Writes one instance's state file (if it has state) and returns its manifest entry. */
export async function writeInstanceFile(
  storage: CheckpointStorage,
  dir: string,
  step: string,
  instance: number,
  snapshot: InstanceSnapshot,
): Promise<InstanceRef> {
  const chunks: Uint8Array[] = [];
  let offset = 0;
  const add = (bytes: Uint8Array): Part => {
    chunks.push(bytes);
    const part: Part = [offset, bytes.length, crc32(bytes)];
    offset += bytes.length;
    return part;
  };
  const keyGroups: Array<readonly [number, number, number, number]> = [];
  for (const [kg, blob] of snapshot.keyed?.keyed ?? []) {
    const [o, l, c] = add(blob);
    keyGroups.push([kg, o, l, c]);
  }
  const operator = snapshot.operator === undefined ? null : add(packState(await snapshot.operator));
  const splits = snapshot.splits === undefined ? null : add(packState(snapshot.splits));
  const tables = snapshot.keyed?.tables ?? {};
  if (offset === 0 && operator === null && splits === null) {
    return { watermark: snapshot.watermark, file: null, size: 0, crc: 0, keyGroups, tables, operator, splits };
  }
  const data = Buffer.concat(chunks);
  const file = `${safeName(step)}.${instance}.state`;
  await storage.write(dir + file, data);
  return { watermark: snapshot.watermark, file, size: data.length, crc: crc32(data), keyGroups, tables, operator, splits };
}

/** Commits a checkpoint: its manifest, written atomically after every state file. */
export async function writeManifest(storage: CheckpointStorage, manifest: Manifest): Promise<number> {
  const body = packState(manifest);
  const header = Buffer.alloc(12);
  MAGIC.copy(header, 0);
  header.writeUInt32LE(crc32(body), 8);
  const data = Buffer.concat([header, body]);
  await storage.write(checkpointDir(manifest.id, manifest.kind) + MANIFEST, data);
  return data.length;
}

/** Reads and verifies a manifest. */
export async function readManifest(storage: CheckpointStorage, dir: string): Promise<Manifest> {
  const data = Buffer.from(await storage.read(dir + MANIFEST));
  if (data.length < 12 || !data.subarray(0, 8).equals(MAGIC)) throw new Error(`${dir}${MANIFEST} is not a Spate checkpoint manifest`);
  const body = data.subarray(12);
  if (crc32(body) !== data.readUInt32LE(8)) throw new Error(`${dir}${MANIFEST}: checksum mismatch`);
  return unpackState(body) as Manifest;
}

/** Loads a whole checkpoint, verifying every file and part against the manifest. */
export async function loadCheckpoint(storage: CheckpointStorage, dir: string): Promise<JobSnapshot> {
  const manifest = await readManifest(storage, dir);
  const steps = new Map<string, StepSnapshot>();
  for (const [id, step] of Object.entries(manifest.steps)) {
    const keyed = new Map<number, Uint8Array>();
    const tables: Record<string, number> = {};
    const instances: InstanceState[] = [];
    for (const ref of step.instances) {
      Object.assign(tables, ref.tables);
      if (ref.file === null) {
        instances.push({ watermark: ref.watermark });
        continue;
      }
      const data = Buffer.from(await storage.read(dir + ref.file));
      if (data.length !== ref.size) throw new Error(`${dir}${ref.file}: ${data.length} bytes, the manifest says ${ref.size}`);
      if (crc32(data) !== ref.crc) throw new Error(`${dir}${ref.file}: checksum mismatch`);
      const part = (p: Part, what: string): Uint8Array => {
        const bytes = data.subarray(p[0], p[0] + p[1]);
        if (bytes.length !== p[1] || crc32(bytes) !== p[2]) throw new Error(`${dir}${ref.file}: ${what} is damaged`);
        return bytes;
      };
      for (const [kg, o, l, c] of ref.keyGroups) keyed.set(kg, part([o, l, c], `key group ${kg}`));
      const state: { watermark: number; operator?: unknown; splits?: readonly SavedSplit[] } = { watermark: ref.watermark };
      if (ref.operator !== null) state.operator = unpackState(part(ref.operator, 'operator state'));
      if (ref.splits !== null) state.splits = unpackState(part(ref.splits, 'split positions')) as SavedSplit[];
      instances.push(state);
    }
    steps.set(id, { kind: step.kind, parallelism: step.parallelism, tables, keyed, instances });
  }
  return { id: manifest.id, kind: manifest.kind, createdAt: manifest.createdAt, fingerprint: manifest.fingerprint, maxParallelism: manifest.maxParallelism, steps };
}

/** Checkpoints and savepoints present in storage (complete or not), newest first. */
export async function listCheckpoints(storage: CheckpointStorage): Promise<Array<{ id: number; kind: 'checkpoint' | 'savepoint'; dir: string }>> {
  const out: Array<{ id: number; kind: 'checkpoint' | 'savepoint'; dir: string }> = [];
  for (const name of await storage.list('')) {
    const parsed = parseCheckpointDir(name);
    if (parsed !== null) out.push({ ...parsed, dir: name });
  }
  return out.sort((a, b) => b.id - a.id);
}

/**
 * The newest checkpoint or savepoint that loads and verifies; damaged or partial ones are skipped
 * with a warning on `log`. Null if there is none.
 */
export async function loadLatest(storage: CheckpointStorage, log: (line: string) => void): Promise<JobSnapshot | null> {
  for (const c of await listCheckpoints(storage)) {
    try {
      return await loadCheckpoint(storage, c.dir);
    } catch (error) {
      const reason = (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'incomplete (no manifest or a missing file)' : (error as Error).message;
      log(`spate: warning: skipping ${c.kind} ${c.id} in ${storage.location}: ${reason}`);
    }
  }
  return null;
}

/** A step id as a file name (ids are letters, digits and `_ . : -`). */
function safeName(step: string): string {
  return step.replace(/[^A-Za-z0-9_.-]/g, '_');
}
