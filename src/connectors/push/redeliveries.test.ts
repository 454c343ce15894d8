import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { WriteAheadLog } from '../wal/write-ahead-log.ts';
import { EntryKind, encodeEntry } from './entry.ts';
import { messageHash, messageMeta, Redeliveries } from './redeliveries.ts';

const root = mkdtempSync(join(tmpdir(), 'spate-redeliveries-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const msg = (session: string, id: number, payload = `p${id}`) => ({ session, id, hash: messageHash('t', Buffer.from(payload)) });
const done = Promise.resolve();

describe('Redeliveries', () => {
  it('recognises the redelivered suffix that the log holds, in order, and takes what follows it as new', () => {
    const r = new Redeliveries();
    for (let id = 100; id <= 110; id++) r.appended(msg('s', id), done);
    // The sender saw PUBACKs up to 105: it redelivers 106, 107, … of which the log holds up to 110.
    for (let id = 106; id <= 110; id++) expect(r.copyOf(msg('s', id)), `id ${id}`).not.toBeNull();
    expect(r.copyOf(msg('s', 111))).toBeNull();
    expect(r.copyOf(msg('s', 112))).toBeNull();
  });

  it('takes a DUP message as new when its id matches but its content does not, or its session is another', () => {
    const r = new Redeliveries();
    r.appended(msg('s', 7, 'a'), done);
    expect(r.copyOf(msg('s', 7, 'b'))).toBeNull();
    expect(r.copyOf(msg('other', 7, 'a'))).toBeNull();
    expect(r.copyOf(msg('s', 7, 'a'))).not.toBeNull();
  });

  it('forgets messages beyond its window, where a sender may have reused their ids', () => {
    const r = new Redeliveries(100);
    r.appended(msg('s', 1, 'same'), done);
    for (let id = 2; id < 300; id++) r.appended(msg('s', id), done);
    expect(r.copyOf(msg('s', 1, 'same'))).toBeNull();
  });

  it('waits for the copy to be durable before the message is acknowledged again', async () => {
    const r = new Redeliveries();
    let durable = false;
    r.appended(msg('s', 1), new Promise<void>((resolve) => setTimeout(resolve, 50)).then(() => void (durable = true)));
    await r.copyOf(msg('s', 1));
    expect(durable).toBe(true);
  });

  it('rebuilds from the log after a restart, one message per run of entries an array payload made', async () => {
    const wal = await WriteAheadLog.open(join(root, 'w'));
    const entry = (id: number, payload: string): Buffer => encodeEntry(EntryKind.Record, 0, messageMeta('t', msg('s', id, payload)), Buffer.from(payload));
    await wal.append([entry(1, 'p1'), entry(2, 'p2'), entry(2, 'p2'), entry(3, 'p3'), encodeEntry(EntryKind.Record, 0, messageMeta('t', null), Buffer.from('qos0'))]);
    await wal.close();
    const again = await WriteAheadLog.open(join(root, 'w'));
    const r = new Redeliveries();
    await r.load(again);
    expect(r.copyOf(msg('s', 2, 'p2'))).not.toBeNull();
    expect(r.copyOf(msg('s', 3, 'p3'))).not.toBeNull();
    expect(r.copyOf(msg('s', 4, 'p4'))).toBeNull();
    await again.close();
  });
});
