/**
 * The dashboard's HTTP endpoints against real running jobs: status with rates and named channels,
 * the graph, views (ready, restoring, unknown view or key, key types), the SSE stream, the query
 * endpoint with a stand-in engine, tokens and host checks.
 */
import { request as httpRequest } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { count, GeneratorSource, Pipeline, type RunningJob, tumbling } from '../index.ts';
import type { Sink } from '../runtime/sink.ts';
import { type Dashboard, serveDashboard } from './dashboard.ts';
import type { JobGraph } from './graph.ts';
import type { QueryEngine } from './query-engine.ts';
import type { DashboardStatus } from './status-sampler.ts';

const dir = mkdtempSync(join(tmpdir(), 'spate-dashboard-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function until<T>(probe: () => T | Promise<T>, what: string, ms = 20_000): Promise<NonNullable<T>> {
  const deadline = performance.now() + ms;
  for (;;) {
    const v = await probe();
    if (v) return v as NonNullable<T>;
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** JSON as the dashboard writes it (±∞ as strings). */
function parse(text: string): unknown {
  return JSON.parse(text, (_k, v: unknown) => (v === 'Infinity' ? Infinity : v === '-Infinity' ? -Infinity : v));
}

async function get(base: string, path: string, init?: RequestInit): Promise<{ status: number; body: any; headers: Headers }> {
  const res = await fetch(new URL(path, base), { redirect: 'manual', ...init });
  const text = await res.text();
  let body: unknown = text;
  if ((res.headers.get('content-type') ?? '').includes('json')) body = parse(text);
  return { status: res.status, body, headers: res.headers };
}

interface Count {
  readonly key: number;
  readonly n: number;
  readonly end: number;
}

/** Paced numbers, a step that dead-letters some, counts per key per 100 ms, two views. */
function numbers(): Pipeline {
  const p = new Pipeline();
  const counts = p
    .source(new GeneratorSource({ make: (i) => i, time: (i) => 1_000_000 + i * 10, ratePerSecond: 400, splits: 2 }), { id: 'numbers' })
    .map(
      (i) => {
        if (i % 50 === 7) throw new Error(`${i} is unlucky`);
        return i;
      },
      { id: 'lucky' },
    )
    .keyBy((i) => i % 3)
    .window(tumbling(100))
    .aggregate(count(), (key, n, w): Count => ({ key, n, end: w.end }), { id: 'counts' });
  counts.keyBy((r) => r.key).view('by-number');
  counts.keyBy((r) => (r.key === 0 ? '007' : `k${r.key}`)).view('by-name');
  return p;
}

describe('dashboard endpoints of a running job', () => {
  let running: RunningJob;
  let dashboard: Dashboard;
  let base: string;

  beforeAll(async () => {
    running = numbers().start({ parallelism: 2 });
    dashboard = await serveDashboard(running, { port: 0, sampleIntervalMs: 200, viewPushIntervalMs: 20 });
    base = dashboard.url;
    await until(() => running.job.view('by-number')?.size === 3 && running.job.view('by-name')?.size === 3, 'both views');
  });
  afterAll(async () => {
    await dashboard?.close();
    await running?.stop();
  });

  it('binds 127.0.0.1 and answers /api/status with rates, named input channels and watermark holds', async () => {
    expect(dashboard.host).toBe('127.0.0.1');
    expect(base).toBe(`http://127.0.0.1:${dashboard.port}/`);
    // Rates need two samples a full interval apart.
    const { status, body, headers } = await until(async () => {
      const r = await get(base, '/api/status');
      const s = r.body as DashboardStatus;
      return s.rateIntervalMs >= 160 && s.steps.find((x) => x.step === 'counts')!.inRate > 0 ? r : null;
    }, 'rates over a full interval');
    expect(status).toBe(200);
    expect(headers.get('content-type')).toMatch(/^application\/json/);
    const s = body as DashboardStatus;
    expect(s.phase).toBe('running');
    expect(s.parallelism).toBe(2);
    const source = s.steps.find((x) => x.step === 'numbers')!;
    // 400 records/s over the whole source; allow for pacing and timer jitter.
    expect(source.outRate).toBeGreaterThan(100);
    expect(source.outRate).toBeLessThan(1200);
    expect(s.steps.find((x) => x.step === 'lucky')!.deadLetters).toBeGreaterThan(0);
    expect(s.deadLetters[0]).toMatchObject({ step: 'lucky', error: expect.stringMatching(/is unlucky/) });
    // Newest first.
    expect(s.deadLetters[0]!.at).toBeGreaterThanOrEqual(s.deadLetters.at(-1)!.at);
    const windows = s.instances.filter((m) => m.step === 'counts');
    expect(windows).toHaveLength(2);
    for (const w of windows) {
      expect(w.inputs!.map((c) => c.from)).toEqual([
        { step: 'lucky', instance: 0 },
        { step: 'lucky', instance: 1 },
      ]);
      expect(w.inputs!.every((c) => c.ship === 'hash')).toBe(true);
      expect(w.backpressure).toBeGreaterThanOrEqual(0);
      expect(w.backpressure).toBeLessThanOrEqual(1);
    }
    // Event time here is not epoch milliseconds: no lag against the wall clock.
    expect(source.lagMs).toBeNull();
    expect(s.views).toEqual([
      { name: 'by-number', size: 3 },
      { name: 'by-name', size: 3 },
    ]);
    for (const h of s.holds) {
      expect(h.step).toBe('counts');
      expect(h.nextEventTime).toBeGreaterThan(h.watermark);
      expect(h.channel!.step).toBe('lucky');
      expect(h.origin.step).toBe('numbers');
    }
  });

  it('serves the graph: tasks, chained steps, exchanges with their ship kind, placement', async () => {
    const { body } = await get(base, '/api/graph');
    const g = body as JobGraph;
    expect(g.parallelism).toBe(2);
    const counts = g.steps.find((s) => s.id === 'counts')!;
    expect(counts.parallelism).toBe(2);
    const numbersTask = g.tasks.find((t) => t.steps.includes('numbers'))!;
    expect(numbersTask.steps).toEqual(['numbers', 'lucky']);
    expect(g.edges.find((e) => e.from === 'numbers' && e.to === 'lucky')!.ship).toBe('chain');
    expect(g.edges.find((e) => e.from === 'lucky' && e.to === 'counts')).toMatchObject({ ship: 'hash', preAggregated: true });
    const view = g.steps.find((s) => s.view === 'by-number')!;
    expect(g.tasks[view.task]).toMatchObject({ placement: 'main', parallelism: 1 });
    expect(g.tasks[view.task]!.layer).toBeGreaterThan(g.tasks[counts.task]!.layer);
  });

  it('reads views by key: numbers as numbers, other keys as strings, 404 with a reason', async () => {
    const views = await get(base, '/views');
    expect(views.status).toBe(200);
    expect(views.body).toMatchObject({ status: 'ready', views: [{ name: 'by-number', size: 3 }, { name: 'by-name', size: 3 }] });

    const one = await get(base, '/views/by-number/1');
    expect(one.status).toBe(200);
    expect(one.body).toMatchObject({ status: 'ready', view: 'by-number', key: 1, value: { key: 1 } });
    expect(typeof one.body.time).toBe('number');
    expect(typeof one.body.updatedAt).toBe('number');

    // '007' is not how JavaScript prints a number: looked up as the string.
    expect((await get(base, '/views/by-name/007')).body).toMatchObject({ key: '007', value: { key: 0 } });
    expect((await get(base, '/views/by-name/k2')).body).toMatchObject({ key: 'k2', value: { key: 2 } });
    expect((await get(base, `/views/by-name/${encodeURIComponent('k1')}`)).status).toBe(200);

    const missing = await get(base, '/views/by-number/7');
    expect(missing.status).toBe(404);
    expect(missing.body.error).toBe("no key '7' in view 'by-number' (looked up as number, then as string)");
    const forced = await get(base, '/views/by-number/1?keyType=string');
    expect(forced.status).toBe(404);
    expect((await get(base, '/views/by-number/1?keyType=number')).status).toBe(200);
    expect((await get(base, '/views/by-number/1?keyType=date')).status).toBe(400);

    const unknown = await get(base, '/views/nope/1');
    expect(unknown.status).toBe(404);
    expect(unknown.body).toEqual({ error: "no view named 'nope'", views: ['by-number', 'by-name'] });

    const list = await get(base, '/views/by-number?limit=2');
    expect(list.body).toMatchObject({ view: 'by-number', size: 3 });
    expect(list.body.entries).toHaveLength(2);

    const nowhere = await get(base, '/api/nowhere');
    expect(nowhere.status).toBe(404);
    expect(nowhere.body.error).toMatch(/no such endpoint/);
  });

  it('pushes status and view updates over server-sent events', async () => {
    const controller = new AbortController();
    const res = await fetch(new URL('/api/events?views=by-number', base), { signal: controller.signal });
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let text = '';
    const events: Array<{ event: string; data: any }> = [];
    const deadline = performance.now() + 10_000;
    while (!(events.some((e) => e.event === 'view') && events.filter((e) => e.event === 'status').length >= 2)) {
      if (performance.now() > deadline) throw new Error(`events so far: ${events.map((e) => e.event).join(', ')}`);
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
      let end: number;
      while ((end = text.indexOf('\n\n')) >= 0) {
        const block = text.slice(0, end);
        text = text.slice(end + 2);
        const event = /^event: (.*)$/m.exec(block)?.[1] ?? 'message';
        const data = /^data: (.*)$/m.exec(block)?.[1];
        if (data !== undefined) events.push({ event, data: parse(data) });
      }
    }
    controller.abort();
    expect(events[0]!.event).toBe('status');
    expect(events[0]!.data.phase).toBe('running');
    const view = events.find((e) => e.event === 'view')!.data;
    expect(view.view).toBe('by-number'); // only the view asked for
    expect(view.entries.length).toBeGreaterThan(0);
    expect(view.entries[0]).toMatchObject({ key: expect.any(Number), value: { n: expect.any(Number) } });
    expect(events.every((e) => e.event !== 'view' || e.data.view === 'by-number')).toBe(true);
  });

  it('serves the page and its assets, uPlot included, from this process', async () => {
    const page = await get(base, '/');
    expect(page.status).toBe(200);
    expect(page.body).toContain('<script type="module" src="/assets/dashboard.js">');
    const uplot = await get(base, '/assets/uplot.js');
    expect(uplot.status).toBe(200);
    expect(uplot.headers.get('content-type')).toMatch(/javascript/);
    expect(uplot.body).toMatch(/export \{ uPlot as default \}|export default/);
    expect((await get(base, '/assets/uplot.css')).status).toBe(200);
    expect((await get(base, '/assets/dashboard.css')).status).toBe(200);
    expect((await get(base, '/assets/secret.txt')).status).toBe(404);
  });

  it('refuses a Host header that is not a loopback name when it has no token (DNS rebinding)', async () => {
    const status = await new Promise<number>((resolve, reject) => {
      const req = httpRequest({ host: '127.0.0.1', port: dashboard.port, path: '/api/status', headers: { host: 'attacker.example:7070' } }, (res) => {
        res.resume();
        resolve(res.statusCode!);
      });
      req.on('error', reject);
      req.end();
    });
    expect(status).toBe(403);
    expect((await get(`http://localhost:${dashboard.port}/`, '/api/status')).status).toBe(200);
  });
});

/** A sink whose open waits for `gate`: the job stays in its opening (restoring) phase until then. */
class GatedSink implements Sink<unknown> {
  constructor(private readonly gate: Promise<void>) {}
  async open(): Promise<void> {
    await this.gate;
  }
  write(): void {}
}

/** A sink that takes 20 ms per batch: it reports backpressure while it is busy. */
class SlowSink implements Sink<unknown> {
  private busyUntil = 0;
  write(): void {
    this.busyUntil = performance.now() + 20;
  }
  backpressure(): Promise<void> | undefined {
    const wait = this.busyUntil - performance.now();
    return wait > 0 ? new Promise((r) => setTimeout(r, wait)) : undefined;
  }
}

describe('backpressure', () => {
  it('is the fraction of time an instance waited for downstream over the last interval', async () => {
    const p = new Pipeline();
    p.source(new GeneratorSource({ make: (i) => i }), { id: 'fast' }).sink(new SlowSink(), { id: 'slow' });
    const running = p.start({ batchSize: 64 });
    const dashboard = await serveDashboard(running, { port: 0, sampleIntervalMs: 200 });
    try {
      const status = await until(async () => {
        const s = (await get(dashboard.url, '/api/status')).body as DashboardStatus;
        return s.rateIntervalMs >= 160 ? s : null;
      }, 'a full interval');
      // The source waits for the sink nearly all the time; a fraction is never above 1.
      const fast = status.steps.find((x) => x.step === 'fast')!;
      expect(fast.backpressure).toBeGreaterThan(0.5);
      expect(fast.backpressure).toBeLessThanOrEqual(1);
      const instance = status.instances.find((m) => m.step === 'fast')!;
      expect(instance.backpressure).toBe(fast.backpressure);
      expect(instance.backpressureMs).toBeGreaterThan(0);
    } finally {
      await dashboard.close();
      await running.stop({ checkpoint: false });
    }
  });
});

describe('views while the job restores', () => {
  it('answers 503 {"status":"restoring"} until state is restored, then the restored value', async () => {
    const checkpointDir = join(dir, 'restoring');
    const build = (gate?: Promise<void>): Pipeline => {
      const p = new Pipeline();
      const counts = p
        .fromArray(Array.from({ length: 1000 }, (_, i) => i), { timestamp: (i) => i, id: 'numbers' })
        .keyBy((i) => i % 4)
        .window(tumbling(100))
        .aggregate(count(), (key, n, w) => ({ key, n, start: w.start }), { id: 'counts' });
      counts.keyBy((r) => r.key).view('latest');
      if (gate !== undefined) counts.sink(new GatedSink(gate), { id: 'gated' });
      return p;
    };
    await build().run({ checkpointDir });
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    const running = build(gate).start({ checkpointDir });
    const dashboard = await serveDashboard(running, { port: 0 });
    try {
      await until(() => running.job.status().phase === 'restoring', 'the restoring phase');
      const key = await get(dashboard.url, '/views/latest/3');
      expect(key.status).toBe(503);
      expect(key.headers.get('retry-after')).toBe('1');
      expect(key.body).toEqual({ status: 'restoring', phase: 'restoring' });
      const list = await get(dashboard.url, '/views');
      expect(list.status).toBe(503);
      expect(list.body).toMatchObject({ status: 'restoring', views: [{ name: 'latest' }] });
      expect((await get(dashboard.url, '/views/latest')).status).toBe(503);
      // An unknown view is unknown in any phase.
      expect((await get(dashboard.url, '/views/other/3')).status).toBe(404);
      const status = (await get(dashboard.url, '/api/status')).body as DashboardStatus;
      expect(status.phase).toBe('restoring');
      expect(status.views).toEqual([{ name: 'latest', size: null }]);
      open();
      await running.done;
      const restored = await get(dashboard.url, '/views/latest/3');
      expect(restored.status).toBe(200);
      expect(restored.body).toMatchObject({ status: 'ready', key: 3, value: { key: 3, start: 900, n: 25 } });
    } finally {
      open();
      await dashboard.close();
    }
  });
});

describe('the query endpoint', () => {
  let running: RunningJob;
  const calls: string[] = [];
  const engine: QueryEngine = {
    query: async (sql) => {
      calls.push(sql);
      if (sql.includes('boom')) throw new Error('Catalog Error: Table with name boom does not exist!');
      const n = /LIMIT (\d+)/.exec(sql);
      const rows = Array.from({ length: n === null ? 2 : Number(n[1]) }, (_, i) => ({ device: `d${i}`, n: i }));
      return { columns: [{ name: 'device', type: 'VARCHAR' }, { name: 'n', type: 'INTEGER' }], rows };
    },
  };

  beforeAll(() => {
    running = numbers().start();
  });
  afterAll(async () => {
    await running.stop();
  });

  it('delegates read-only SQL to the engine (GET and POST) and refuses the rest before calling it', async () => {
    const dashboard = await serveDashboard(running, { port: 0, queries: engine, maxQueryRows: 5 });
    try {
      const viaGet = await get(dashboard.url, `/api/query?sql=${encodeURIComponent('SELECT device, n FROM readings')}`);
      expect(viaGet.status).toBe(200);
      expect(viaGet.body).toMatchObject({ columns: [{ name: 'device', type: 'VARCHAR' }, { name: 'n', type: 'INTEGER' }], rows: [{ device: 'd0', n: 0 }, { device: 'd1', n: 1 }], truncated: false });
      const viaJson = await get(dashboard.url, '/api/query', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ sql: 'WITH x AS (SELECT 1) SELECT * FROM x' }) });
      expect(viaJson.status).toBe(200);
      const viaText = await get(dashboard.url, '/api/query', { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'SELECT * FROM t LIMIT 9' });
      expect(viaText.body.rows).toHaveLength(5);
      expect(viaText.body.truncated).toBe(true);
      expect(calls).toEqual(['SELECT device, n FROM readings', 'WITH x AS (SELECT 1) SELECT * FROM x', 'SELECT * FROM t LIMIT 9']);

      for (const sql of ['DELETE FROM t', 'SELECT 1; DROP TABLE t', "COPY t TO '/tmp/x'", 'WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d', "ATTACH 'x.db'", 'SELECT * INTO t2 FROM t']) {
        const refused = await get(dashboard.url, `/api/query?sql=${encodeURIComponent(sql)}`);
        expect(refused.status, sql).toBe(400);
        expect(refused.body.error, sql).toMatch(/read-only|one statement/);
      }
      expect(calls).toHaveLength(3);
      const failing = await get(dashboard.url, `/api/query?sql=${encodeURIComponent('SELECT * FROM boom')}`);
      expect(failing.status).toBe(400);
      expect(failing.body.error).toBe('Catalog Error: Table with name boom does not exist!');
      expect((await get(dashboard.url, '/api/query')).status).toBe(400);
      const malformed = await get(dashboard.url, '/api/query', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"sql": ' });
      expect(malformed.status).toBe(400);
      expect((await get(dashboard.url, '/api/info')).body.queries).toBe(true);
    } finally {
      await dashboard.close();
    }
  });

  it('answers 404 without an engine', async () => {
    const dashboard = await serveDashboard(running, { port: 0 });
    try {
      const none = await get(dashboard.url, '/api/query?sql=SELECT%201');
      expect(none.status).toBe(404);
      expect(none.body.error).toMatch(/no query engine/);
    } finally {
      await dashboard.close();
    }
  });
});

describe('the dashboard token', () => {
  let running: RunningJob;
  beforeAll(() => {
    running = numbers().start();
  });
  afterAll(async () => {
    await running.stop();
  });

  it('needs a token to bind anything but loopback', async () => {
    await expect(serveDashboard(running, { host: '0.0.0.0', port: 0 })).rejects.toThrow(/needs a token/);
    await expect(serveDashboard(running, { host: '::', port: 0, token: '' })).rejects.toThrow(/needs a token/);
  });

  it('with a token: 401 without it, a bearer header or a ?token= that becomes a cookie', async () => {
    const token = 's3cret-token';
    const dashboard = await serveDashboard(running, { port: 0, token });
    try {
      const denied = await get(dashboard.url, '/api/status');
      expect(denied.status).toBe(401);
      expect(denied.headers.get('www-authenticate')).toBe('Bearer');
      expect(denied.body.error).toMatch(/unauthorized/);
      expect((await get(dashboard.url, '/metrics')).status).toBe(401);
      expect((await get(dashboard.url, '/views/by-number/1')).status).toBe(401);
      const page = await get(dashboard.url, '/');
      expect(page.status).toBe(401);
      expect(page.body).toMatch(/needs its token/);
      expect((await get(dashboard.url, '/api/status', { headers: { authorization: 'Bearer wrong' } })).status).toBe(401);
      expect((await get(dashboard.url, '/api/status?token=wrong')).status).toBe(401);

      expect((await get(dashboard.url, '/api/status', { headers: { authorization: `Bearer ${token}` } })).status).toBe(200);
      expect((await get(dashboard.url, '/metrics', { headers: { authorization: `Bearer ${token}` } })).status).toBe(200);
      // A browser opens /?token=…: it gets a same-site cookie and the address without the token.
      const login = await get(dashboard.url, `/?token=${token}`);
      expect(login.status).toBe(303);
      expect(login.headers.get('location')).toBe('/');
      const cookie = login.headers.get('set-cookie')!;
      expect(cookie).toMatch(/spate_token=/);
      expect(cookie).toMatch(/HttpOnly/);
      expect(cookie).toMatch(/SameSite=Strict/);
      const withCookie = await get(dashboard.url, '/api/status', { headers: { cookie: cookie.split(';')[0]! } });
      expect(withCookie.status).toBe(200);
      // With a token, any Host is served (the token is the protection).
      const status = await new Promise<number>((resolve, reject) => {
        const req = httpRequest({ host: '127.0.0.1', port: dashboard.port, path: '/api/status', headers: { host: 'dashboard.example', authorization: `Bearer ${token}` } }, (res) => {
          res.resume();
          resolve(res.statusCode!);
        });
        req.on('error', reject);
        req.end();
      });
      expect(status).toBe(200);
    } finally {
      await dashboard.close();
    }
  });

  it('says which port is in use', async () => {
    const first = await serveDashboard(running, { port: 0 });
    try {
      await expect(serveDashboard(running, { port: first.port })).rejects.toThrow(`port ${first.port} on 127.0.0.1 is in use`);
    } finally {
      await first.close();
    }
  });
});
