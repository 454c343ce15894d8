/**
 * The demo across kill -9 (issue 10): `spate demo` on two worker threads, fed by a simulated fleet
 * in this process over HTTP, WebSocket and MQTT (with out-of-order, malformed, duplicate and
 * oversized messages), is SIGKILLed twice mid-stream and started again on the same directory.
 * Every reading the job acknowledged must be counted exactly once in the DuckDB results: per
 * device, the readings of its 10 s windows plus its readings kept aside as late equal the
 * distinct acknowledged reading ids — none lost, none counted twice — and no window is stored
 * twice.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { sendControl } from '../../src/cli/control.ts';
import { DuckDBDatabase } from '../../src/connectors/duckdb/database.ts';
import { Fleet, type Message } from '../../src/demo/fleet.ts';
import { FleetSender, type Protocol, type SenderTargets } from '../../src/demo/sender.ts';
import { until } from '../support/demo.ts';
import { freePorts } from '../support/net.ts';

const bin = join(import.meta.dirname, '..', '..', 'bin', 'spate.js');
const dir = mkdtempSync(join(tmpdir(), 'spate-demo-crash-'));
const checkpoints = join(dir, 'checkpoints');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The newest committed checkpoint's id (0: none). */
function newestCheckpoint(): number {
  let newest = 0;
  let names: string[] = [];
  try {
    names = readdirSync(checkpoints);
  } catch {
    return 0;
  }
  for (const name of names) {
    const m = /^chk-(\d+)$/.exec(name);
    if (m === null) continue;
    try {
      if (readdirSync(join(checkpoints, name)).includes('_MANIFEST')) newest = Math.max(newest, Number(m[1]));
    } catch {
      // removed by retention meanwhile
    }
  }
  return newest;
}

interface Run {
  readonly child: ChildProcess;
  readonly out: () => string;
  readonly exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function startDemo(ports: { dashboard: number; http: number; ws: number; mqtt: number }): Run {
  const child = spawn(
    process.execPath,
    [bin, 'demo', '--devices', '0', '--parallelism', '2', '--checkpoint-interval', '300', '--dir', dir,
      '--port', String(ports.dashboard), '--http-port', String(ports.http), '--ws-port', String(ports.ws), '--mqtt-port', String(ports.mqtt)],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  return { child, out: () => out, exit };
}

const count = (rows: Array<Record<string, unknown>>, key: string): Map<string, number> => new Map(rows.map((r) => [String(r['device']), Number(r[key])]));

it('acknowledged readings are counted exactly once in DuckDB across two SIGKILLs of spate demo', async () => {
  const [dashboard, http, ws, mqtt] = await freePorts(4);
  const ports = { dashboard: dashboard!, http: http!, ws: ws!, mqtt: mqtt! };
  const targets: SenderTargets = { http: `http://127.0.0.1:${ports.http}/ingest`, ws: `ws://127.0.0.1:${ports.ws}/ingest`, mqtt: `mqtt://127.0.0.1:${ports.mqtt}` };
  // What the job acknowledged: distinct reading ids per device (repeats and refused messages aside).
  const acked = new Map<string, Set<string>>();
  let acknowledged = 0;
  const fleet = new Fleet({
    devices: 60,
    rate: 1500,
    seed: 11,
    // No late fault: a late reading is held 15–60 s, longer than this test runs.
    faults: { outOfOrder: 0.05, late: 0, malformed: 0.01, duplicate: 0.03, oversized: 0.002 },
    oversizedBytes: 300 * 1024,
  });
  const onAcknowledged = (m: Message, _p: Protocol, accepted: boolean): void => {
    acknowledged++;
    if (m.id === undefined || !accepted) return;
    let ids = acked.get(m.device);
    if (ids === undefined) acked.set(m.device, (ids = new Set()));
    ids.add(m.id);
  };

  let run = startDemo(ports);
  await until('the demo to start', () => /open http/.test(run.out()), 30_000, 50);
  const sender = new FleetSender(fleet, targets, { onAcknowledged });
  try {
    for (let kill = 0; kill < 2; kill++) {
      // Kill once the run has committed a checkpoint of its own and readings flow, at a random instant.
      const before = newestCheckpoint();
      const from = acknowledged;
      await until(`run ${kill + 1} to checkpoint and take readings`, () => newestCheckpoint() > before + 1 && acknowledged > from + 2000, 30_000, 50);
      await new Promise((r) => setTimeout(r, Math.random() * 700));
      run.child.kill('SIGKILL');
      expect((await run.exit).signal, run.out()).toBe('SIGKILL');
      run = startDemo(ports);
      await until('the demo to start again', () => /open http/.test(run.out()), 30_000, 50);
      expect(run.out()).toMatch(/resuming from checkpoint/);
    }
    const from = acknowledged;
    await until('readings after the last restart', () => acknowledged > from + 3000, 30_000, 50);
    // Everything sent is acknowledged before the sender stops: then what was sent is what the
    // job must hold (a message abandoned unacknowledged may or may not have been stored).
    expect(await sender.finish(60_000)).toBe(true);
  } finally {
    await sender.stop();
  }

  // Readings ten minutes ahead on every protocol move event time past every window, which fire.
  const flushing = new FleetSender(null, targets, { onAcknowledged });
  const future = Date.now() + 600_000;
  for (const p of ['http', 'ws', 'mqtt'] as const) {
    flushing.send([{ device: 'flush', kind: 'reading', id: `flush-${p}`, payload: JSON.stringify({ id: `flush-${p}`, device: 'flush', region: 'north', time: future, db: 50 }) }], p);
  }
  expect(await flushing.finish(30_000)).toBe(true);

  const expected = new Map([...acked].filter(([d]) => d !== 'flush').map(([d, ids]) => [d, ids.size]));
  const total = [...expected.values()].reduce((a, b) => a + b, 0);
  const stored = async (): Promise<number> => {
    const result = (await sendControl(checkpoints, { command: 'query', sql: "SELECT (SELECT coalesce(sum(readings), 0) FROM device_stats WHERE device <> 'flush') + (SELECT count(*) FROM late_readings) AS n" }, 10_000)) as { rows: Array<{ n: string | number }> };
    return Number(result.rows[0]!.n);
  };
  // The windows fire and the next checkpoint commits them.
  await until(`${total} readings in DuckDB`, async () => (await stored().catch(() => -1)) >= total, 60_000, 50).catch(() => undefined);
  run.child.kill('SIGTERM');
  const exit = await run.exit;
  expect(exit.code, run.out()).toBe(0);

  const db = await DuckDBDatabase.open(join(dir, 'results.duckdb'));
  try {
    const windows = await db.query<Record<string, unknown>>("SELECT device, sum(readings)::BIGINT AS n FROM device_stats WHERE device <> 'flush' GROUP BY device");
    const late = await db.query<Record<string, unknown>>('SELECT device, count(*)::BIGINT AS n, count(DISTINCT id)::BIGINT AS ids FROM late_readings GROUP BY device');
    const twice = await db.query<Record<string, unknown>>('SELECT device, window_start, count(*)::BIGINT AS n FROM device_stats GROUP BY ALL HAVING count(*) > 1');
    expect(twice).toEqual([]);
    for (const r of late) expect(r['n']).toBe(r['ids']);
    const got = count(windows, 'n');
    for (const [device, n] of count(late, 'n')) got.set(device, (got.get(device) ?? 0) + n);
    expect(total).toBeGreaterThan(8000);
    expect(new Map([...got].sort())).toEqual(new Map([...expected].sort()));
    // The refused messages were kept as dead letters.
    const dead = await db.query<{ n: bigint }>('SELECT count(*) AS n FROM dead_letters');
    expect(Number(dead[0]!.n)).toBeGreaterThan(0);
  } finally {
    await db.close();
  }
}, 240_000);
