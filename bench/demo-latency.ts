/**
 * Ingest-to-DuckDB latency of the demo job (`spate demo`, two worker threads, checkpoints every
 * 2 s), under its simulated fleet's load (2 000 readings/s over HTTP, WebSocket and MQTT):
 *
 * - **a record**: a reading refused by the schema (a dead letter, stored as it arrives) sent over
 *   HTTP until its row is visible in the `dead_letters` table — the path every record takes,
 *   through the write-ahead log, the job and the sink's commit at the next checkpoint;
 * - **a window**: a 10 s window's end until its first `device_stats` row is visible — which adds
 *   the watermark's 5 s allowance for out-of-order readings to the path above.
 *
 * Visibility is polled every 20 ms through the job's control socket (what `spate query` uses).
 *
 *   npx tsx bench/demo-latency.ts [seconds]
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sendControl } from '../src/cli/control.ts';
import { freePorts } from '../test/support/net.ts';

const seconds = Number(process.argv[2] ?? 40);
const dir = mkdtempSync(join(tmpdir(), 'spate-bench-demo-'));
const bin = join(import.meta.dirname, '..', 'bin', 'spate.js');

function percentile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
}

const query = async (sql: string): Promise<Array<Record<string, unknown>>> =>
  ((await sendControl(join(dir, 'checkpoints'), { command: 'query', sql }, 10_000)) as { rows: Array<Record<string, unknown>> }).rows;

async function main(): Promise<void> {
  const [port, http, ws, mqtt] = await freePorts(4);
  const ports = ['--port', String(port), '--http-port', String(http), '--ws-port', String(ws), '--mqtt-port', String(mqtt)];
  const job: ChildProcess = spawn(process.execPath, [bin, 'demo', '--dir', dir, '--parallelism', '2', '--rate', '2000', '--devices', '500', ...ports], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  job.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  while (!/open http/.test(out)) await new Promise((r) => setTimeout(r, 50));
  await new Promise((r) => setTimeout(r, 3000)); // the fleet's first seconds

  const sent = new Map<string, number>();
  const recordLatency: number[] = [];
  const windowLatency: number[] = [];
  const seenWindows = new Set<number>();
  let i = 0;
  const end = Date.now() + seconds * 1000;
  const sender = setInterval(() => {
    const id = `lat-${i++}`;
    sent.set(id, Date.now());
    // db as text: refused by the schema, a dead letter with the payload.
    void fetch(`http://127.0.0.1:${http}/ingest`, { method: 'POST', body: JSON.stringify({ id, device: 'bench', region: 'north', time: Date.now(), db: id }) });
  }, 250);
  while (Date.now() < end) {
    const now = Date.now();
    const dead = await query("SELECT record FROM dead_letters WHERE step = 'http' AND record LIKE '%lat-%'");
    for (const r of dead) {
      const id = /lat-\d+/.exec(String(r['record']))?.[0];
      if (id === undefined || !sent.has(id)) continue;
      recordLatency.push(now - sent.get(id)!);
      sent.delete(id);
    }
    const windows = await query('SELECT DISTINCT epoch_ms(window_end) AS e FROM device_stats');
    for (const r of windows) {
      const e = Number(r['e']);
      if (seenWindows.has(e)) continue;
      seenWindows.add(e);
      // Windows already stored when measuring began are not measured.
      if (seenWindows.size > 1 || e > now - 10_000) windowLatency.push(now - e);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  clearInterval(sender);
  job.kill('SIGTERM');
  await new Promise((r) => job.once('exit', r));
  rmSync(dir, { recursive: true, force: true });
  const row = (name: string, xs: number[]): string => `| ${name} | ${xs.length} | ${percentile(xs, 0.5)} ms | ${percentile(xs, 0.99)} ms | ${Math.max(...xs)} ms |`;
  console.log('| latency into DuckDB | samples | p50 | p99 | max |');
  console.log('|---|---:|---:|---:|---:|');
  console.log(row('a record (sent → row visible)', recordLatency));
  console.log(row('a 10 s window (window end → first row visible)', windowLatency.slice(1)));
}

await main();
