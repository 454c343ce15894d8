import { timingSafeEqual, createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { serve } from '@hono/node-server';
import { type Context, Hono } from 'hono';
import { getCookie, setCookie } from 'hono/cookie';
import { type SSEStreamingApi, streamSSE } from 'hono/streaming';
import type { RunningJob } from '../api/pipeline.ts';
import type { View, ViewEntry } from '../operators/view.ts';
import type { Job } from '../runtime/job.ts';
import { jobGraph } from './graph.ts';
import { PROMETHEUS_CONTENT_TYPE, prometheusText } from './prometheus.ts';
import { type QueryEngine, readOnlyViolation } from './query-engine.ts';
import { StatusSampler } from './status-sampler.ts';

/** Options of {@link serveDashboard}. */
export interface DashboardOptions {
  /** Port to listen on (default 7070; 0 picks a free one, see `Dashboard.port`). */
  readonly port?: number;
  /**
   * Address to bind (default `127.0.0.1`). Anything but a loopback address needs a `token`:
   * the dashboard shows records, dead letters and query results.
   */
  readonly host?: string;
  /**
   * Bearer token every request must carry: `Authorization: Bearer <token>`, or `?token=<token>`
   * once in a browser (which then keeps it in a same-site, HTTP-only cookie). Optional on loopback.
   */
  readonly token?: string;
  /** Answers SQL at `/api/query` (read-only statements only); without it the endpoint answers 404. */
  readonly queries?: QueryEngine;
  /** The job's name in the page title (default `job`). */
  readonly title?: string;
  /** Milliseconds between metric samples and status pushes (default 1000). */
  readonly sampleIntervalMs?: number;
  /** Least milliseconds between two pushes of one view's updates to a browser (default 50). */
  readonly viewPushIntervalMs?: number;
  /** Rows a query answers at most (default 10 000; more are cut, with `truncated: true`). */
  readonly maxQueryRows?: number;
}

/** A running dashboard. */
export interface Dashboard {
  /** Its address, e.g. `http://127.0.0.1:7070/` (without the token). */
  readonly url: string;
  readonly host: string;
  readonly port: number;
  /** Stops serving: closes every connection (live streams included) and stops sampling. */
  close(): Promise<void>;
}

/** The parts of a dashboard before it listens (tests drive `app.request` directly). */
export interface DashboardApp {
  readonly app: Hono;
  readonly sampler: StatusSampler;
  /** Starts sampling and pushing. */
  start(): void;
  /** Stops sampling, ends every live stream. */
  stop(): Promise<void>;
}

const NOT_READY = new Set(['created', 'opening', 'restoring']);

/**
 * Serves the dashboard of a running job over HTTP: an HTML page (job graph with live rates,
 * backpressure and watermarks, dead letters and late records, checkpoints, why a window has not
 * fired, live charts of the result views) and the endpoints behind it —
 *
 * - `GET /api/status`: {@link DashboardStatus} as JSON (±∞ written as the strings `"Infinity"`
 *   and `"-Infinity"`); `GET /api/graph`: the job graph; `GET /api/events`: server-sent events
 *   (`status` every `sampleIntervalMs`, `view` with each view's updates as they happen);
 * - `GET /metrics`: Prometheus text format 0.0.4;
 * - `GET /views`, `GET /views/<name>` (entries, `?limit=`), `GET /views/<name>/<key>`: the
 *   latest record of a key. While the job opens or restores they answer 503
 *   `{"status":"restoring","phase":…}` with `Retry-After`, never an empty answer; an unknown view
 *   or key is a 404 with an `error`. A key that is the canonical decimal form of a number (as
 *   JavaScript prints it: `42`, `-1.5`, not `042` or `1.0`) is looked up as that number first,
 *   then as the string; `?keyType=string|number` forces one;
 * - `GET /api/query?sql=…` or `POST /api/query` (JSON `{"sql": …}` or the SQL as text): read-only
 *   SQL through `options.queries`.
 *
 * It binds 127.0.0.1 unless told otherwise, and refuses to bind elsewhere without a token.
 * Without a token it also refuses requests whose `Host` is not a loopback name (DNS rebinding).
 *
 * @example
 * const running = pipeline.start();
 * const dashboard = await serveDashboard(running, { port: 0 });
 * console.log(`dashboard at ${dashboard.url}`);
 * // … later
 * await dashboard.close();
 */
export async function serveDashboard(job: Job | RunningJob, options: DashboardOptions = {}): Promise<Dashboard> {
  const host = options.host ?? '127.0.0.1';
  const port = options.port ?? 7070;
  if (!(Number.isInteger(port) && port >= 0 && port < 65536)) throw new RangeError(`dashboard: port must be an integer in [0, 65535], got ${String(port)}`);
  if (!isLoopbackAddress(host) && (options.token === undefined || options.token === '')) {
    throw new Error(`dashboard: binding ${host} (not a loopback address) needs a token (option token, or --ui-token)`);
  }
  const dash = dashboardApp(job, options);
  const server = await new Promise<Server>((resolve, reject) => {
    const s = serve({ fetch: dash.app.fetch, port, hostname: host }) as Server;
    s.once('error', (error: NodeJS.ErrnoException) =>
      reject(error.code === 'EADDRINUSE' ? new Error(`dashboard: port ${port} on ${host} is in use (choose another with --ui-port, or 0 for any)`) : error),
    );
    s.once('listening', () => resolve(s));
  });
  dash.start();
  const actual = (server.address() as AddressInfo).port;
  const shown = host.includes(':') ? `[${host}]` : host;
  let closing: Promise<void> | null = null;
  return {
    url: `http://${shown}:${actual}/`,
    host,
    port: actual,
    close: () =>
      (closing ??= (async () => {
        await dash.stop();
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections();
        });
      })()),
  };
}

/** Whether `host` is a loopback address or name (127.0.0.0/8, ::1, localhost). */
export function isLoopbackAddress(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '::1' || h === '::ffff:127.0.0.1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

/** The hostname of a Host header (`[::1]:7070` → `::1`). */
function hostName(header: string): string {
  if (header.startsWith('[')) return header.slice(1, header.indexOf(']'));
  const colon = header.lastIndexOf(':');
  return colon < 0 ? header : header.slice(0, colon);
}

function sameToken(given: string | undefined, token: string): boolean {
  if (given === undefined) return false;
  // Hashes have one length: timingSafeEqual needs equal lengths, and a length must not leak.
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(token).digest();
  return timingSafeEqual(a, b);
}

/** JSON with ±∞ and NaN as strings and bigints as decimal strings (JSON has neither). */
export function toJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => {
    if (typeof v === 'number' && !Number.isFinite(v)) return Number.isNaN(v) ? 'NaN' : v > 0 ? 'Infinity' : '-Infinity';
    if (typeof v === 'bigint') return v.toString();
    return v;
  });
}

function json(c: Context, value: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return c.body(toJson(value), status as 200, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', ...headers });
}

const CANONICAL_NUMBER = /^-?(?:0|[1-9]\d*)(?:\.\d*[1-9])?$/;

/** Looks a key up as described in {@link serveDashboard}. */
function lookup(view: View<unknown>, raw: string, keyType: string | undefined): { entry: ViewEntry<unknown> | undefined; tried: string[] } {
  if (keyType === 'string') return { entry: view.get(raw), tried: ['string'] };
  const n = Number(raw);
  if (keyType === 'number') return { entry: Number.isFinite(n) && raw.trim() !== '' ? view.get(n) : undefined, tried: ['number'] };
  if (CANONICAL_NUMBER.test(raw) && String(n) === raw) return { entry: view.get(n) ?? view.get(raw), tried: ['number', 'string'] };
  return { entry: view.get(raw), tried: ['string'] };
}

/** The static files of the page: next to this module (`src/ui/static`), also when it runs compiled from `dist/ui`. */
function staticFiles(): Map<string, { body: string; type: string }> {
  let dir = fileURLToPath(new URL('./static/', import.meta.url));
  if (!existsSync(dir)) dir = fileURLToPath(new URL('../../src/ui/static/', import.meta.url));
  const require = createRequire(import.meta.url);
  const read = (path: string): string => readFileSync(path, 'utf8');
  return new Map([
    ['index.html', { body: read(`${dir}index.html`), type: 'text/html; charset=utf-8' }],
    ['dashboard.js', { body: read(`${dir}dashboard.js`), type: 'text/javascript; charset=utf-8' }],
    ['dashboard.css', { body: read(`${dir}dashboard.css`), type: 'text/css; charset=utf-8' }],
    ['uplot.js', { body: read(require.resolve('uplot/dist/uPlot.esm.js')), type: 'text/javascript; charset=utf-8' }],
    ['uplot.css', { body: read(require.resolve('uplot/dist/uPlot.min.css')), type: 'text/css; charset=utf-8' }],
  ]);
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

interface Client {
  readonly stream: SSEStreamingApi;
  /** Views this client follows (null: all). */
  readonly views: ReadonlySet<string> | null;
  pending: number;
  readonly done: () => void;
}

/**
 * Pushes to the browsers: the status at every sample, and each view's updates — the latest entry
 * of every key updated since the last push, at most one push per view every `pushIntervalMs`
 * (the first update after a quiet spell goes out on the next turn of the event loop).
 */
class Hub {
  readonly clients = new Set<Client>();
  private readonly feeds = new Map<string, { unsubscribe: () => void; pending: Map<string, ViewEntry<unknown>>; timer: NodeJS.Timeout | null; last: number }>();

  constructor(
    private readonly job: Job,
    private readonly pushIntervalMs: number,
  ) {}

  /**
   * Subscribes to the views that have become readable (after the job opened or restored), while
   * a browser listens: without one, views run without listeners (no update lists to build).
   */
  follow(): void {
    if (this.clients.size === 0) return;
    for (const name of this.job.viewNames()) {
      if (this.feeds.has(name)) continue;
      const view = this.job.view(name);
      if (view === undefined) continue;
      const feed = { unsubscribe: () => {}, pending: new Map<string, ViewEntry<unknown>>(), timer: null as NodeJS.Timeout | null, last: 0 };
      feed.unsubscribe = view.subscribe((updates) => {
        for (const u of updates) feed.pending.set(typeof u.key === 'number' ? `n${u.key}` : `s${u.key}`, u);
        if (feed.timer !== null) return;
        const wait = Math.max(0, feed.last + this.pushIntervalMs - performance.now());
        feed.timer = setTimeout(() => {
          feed.timer = null;
          feed.last = performance.now();
          const entries = [...feed.pending.values()];
          feed.pending.clear();
          // A burst over many keys: the latest thousand go out, the rest wait for the next read of the view.
          const dropped = Math.max(0, entries.length - 1000);
          this.broadcast('view', { view: name, entries: dropped > 0 ? entries.slice(-1000) : entries, dropped }, name);
        }, wait);
      });
      this.feeds.set(name, feed);
    }
  }

  broadcast(event: string, data: unknown, view?: string): void {
    if (this.clients.size === 0) return;
    const text = toJson(data);
    for (const client of this.clients) {
      if (view !== undefined && client.views !== null && !client.views.has(view)) continue;
      // A browser that does not keep up is dropped (it reconnects and reads the state afresh)
      // rather than buffered without bound.
      if (client.pending > 256) {
        this.drop(client);
        continue;
      }
      client.pending++;
      client.stream.writeSSE({ event, data: text }).then(
        () => void client.pending--,
        () => this.drop(client),
      );
    }
  }

  drop(client: Client): void {
    if (!this.clients.delete(client)) return;
    client.done();
    if (this.clients.size === 0) this.unfollow();
  }

  private unfollow(): void {
    for (const feed of this.feeds.values()) {
      feed.unsubscribe();
      if (feed.timer !== null) clearTimeout(feed.timer);
    }
    this.feeds.clear();
  }

  stop(): void {
    for (const client of [...this.clients]) this.drop(client);
    this.unfollow();
  }
}

/** Builds the dashboard's HTTP application for a job (see {@link serveDashboard}). */
export function dashboardApp(target: Job | RunningJob, options: DashboardOptions = {}): DashboardApp {
  const job: Job = 'job' in target ? target.job : target;
  const token = options.token === undefined || options.token === '' ? undefined : options.token;
  const sampler = new StatusSampler(job, { intervalMs: options.sampleIntervalMs ?? 1000 });
  const hub = new Hub(job, options.viewPushIntervalMs ?? 50);
  const files = staticFiles();
  const title = options.title ?? 'job';
  const maxRows = options.maxQueryRows ?? 10_000;
  const graph = jobGraph(job.plan, job.options.workers === undefined ? 'single' : 'workers');
  let timer: NodeJS.Timeout | null = null;

  const app = new Hono();

  app.use('*', async (c, next) => {
    if (token === undefined) {
      // Without a token only loopback names are served: a page on another site cannot reach
      // the dashboard by pointing its own name at 127.0.0.1 (DNS rebinding).
      const name = hostName(c.req.header('host') ?? '');
      if (!isLoopbackAddress(name)) return json(c, { error: `forbidden host '${name}': the dashboard answers on loopback names only` }, 403);
      return next();
    }
    const header = c.req.header('authorization');
    const bearer = header?.startsWith('Bearer ') ? header.slice(7).trim() : undefined;
    const query = c.req.query('token');
    if (sameToken(bearer, token) || sameToken(getCookie(c, 'spate_token'), token)) return next();
    if (sameToken(query, token)) {
      setCookie(c, 'spate_token', token, { httpOnly: true, sameSite: 'Strict', path: '/' });
      // A page opened with ?token=… continues without it in its address (history, screenshots).
      if (c.req.method === 'GET' && c.req.path === '/') return c.redirect('/', 303);
      return next();
    }
    if (c.req.path === '/') {
      return c.html('<!doctype html><title>Spate: token required</title><p>This dashboard needs its token: open the address printed by <code>spate run</code> (it ends with <code>?token=…</code>).</p>', 401);
    }
    return json(c, { error: 'unauthorized: send the token as Authorization: Bearer <token>' }, 401, { 'www-authenticate': 'Bearer' });
  });

  app.get('/', (c) => {
    const page = files.get('index.html')!.body.replaceAll('{{title}}', escapeHtml(title));
    return c.body(page, 200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  });
  app.get('/assets/:file', (c) => {
    const file = files.get(c.req.param('file'));
    if (file === undefined || c.req.param('file') === 'index.html') return json(c, { error: 'no such file' }, 404);
    return c.body(file.body, 200, { 'content-type': file.type, 'cache-control': 'no-cache' });
  });

  app.get('/api/info', (c) => json(c, { title, graph, views: job.viewNames(), queries: options.queries !== undefined, sampleIntervalMs: sampler.intervalMs }));
  app.get('/api/graph', (c) => json(c, graph));
  app.get('/api/status', (c) => json(c, sampler.status()));

  app.get('/api/events', (c) => {
    const only = c.req.query('views');
    const views = only === undefined ? null : new Set(only.split(',').filter((v) => v !== ''));
    return streamSSE(c, async (stream) => {
      let done!: () => void;
      const closed = new Promise<void>((resolve) => (done = resolve));
      const client: Client = { stream, views, pending: 0, done };
      stream.onAbort(() => hub.drop(client));
      hub.clients.add(client);
      hub.follow();
      await stream.writeSSE({ event: 'status', data: toJson(sampler.status()) });
      await closed;
    });
  });

  app.get('/metrics', (c) => {
    const status = job.status();
    const views = job.viewNames().map((name) => ({ name, size: job.view(name)?.size ?? null }));
    return c.body(prometheusText(status, { checkpointTotals: sampler.checkpointTotals, views }), 200, { 'content-type': PROMETHEUS_CONTENT_TYPE, 'cache-control': 'no-store' });
  });

  /** The view, or the answer that says why there is none to read. */
  const viewOr = (c: Context, name: string): View<unknown> | Response => {
    if (!job.viewNames().includes(name)) return json(c, { error: `no view named '${name}'`, views: job.viewNames() }, 404);
    const phase = job.status().phase;
    if (NOT_READY.has(phase)) return json(c, { status: 'restoring', phase }, 503, { 'retry-after': '1' });
    const view = job.view(name);
    if (view === undefined) return json(c, { status: 'unavailable', phase, error: job.status().error ?? `view '${name}' is not open` }, 503, { 'retry-after': '1' });
    return view;
  };

  app.get('/views', (c) => {
    const phase = job.status().phase;
    if (NOT_READY.has(phase)) return json(c, { status: 'restoring', phase, views: job.viewNames().map((name) => ({ name })) }, 503, { 'retry-after': '1' });
    return json(c, { status: 'ready', phase, views: job.viewNames().map((name) => ({ name, size: job.view(name)?.size ?? null })) });
  });
  app.get('/views/:name', (c) => {
    const view = viewOr(c, c.req.param('name'));
    if (view instanceof Response) return view;
    const limit = Math.min(10_000, Math.max(0, Number(c.req.query('limit') ?? 100) || 0));
    return json(c, { status: 'ready', view: view.name, size: view.size, entries: view.entries(limit) });
  });
  app.get('/views/:name/:key{.+}', (c) => {
    const name = c.req.param('name');
    const view = viewOr(c, name);
    if (view instanceof Response) return view;
    const raw = c.req.param('key');
    const keyType = c.req.query('keyType');
    if (keyType !== undefined && keyType !== 'string' && keyType !== 'number') return json(c, { error: `keyType must be string or number, got '${keyType}'` }, 400);
    const { entry, tried } = lookup(view, raw, keyType);
    if (entry === undefined) return json(c, { error: `no key '${raw}' in view '${name}' (looked up as ${tried.join(', then as ')})`, view: name, key: raw }, 404);
    return json(c, { status: 'ready', view: name, ...entry });
  });

  const runQuery = async (c: Context, sql: string | undefined): Promise<Response> => {
    if (options.queries === undefined) return json(c, { error: 'no query engine: this job serves no SQL (serveDashboard option queries)' }, 404);
    if (sql === undefined || sql.trim() === '') return json(c, { error: 'no SQL: send ?sql=… or a JSON body {"sql": …}' }, 400);
    if (sql.length > 100_000) return json(c, { error: 'the query is longer than 100 000 characters' }, 413);
    const violation = readOnlyViolation(sql);
    if (violation !== null) return json(c, { error: violation }, 400);
    const started = performance.now();
    try {
      const result = await options.queries.query(sql);
      const truncated = result.rows.length > maxRows;
      return json(c, { columns: result.columns, rows: truncated ? result.rows.slice(0, maxRows) : result.rows, truncated, ms: Math.round(performance.now() - started) });
    } catch (error) {
      return json(c, { error: error instanceof Error ? error.message : String(error) }, 400);
    }
  };
  app.get('/api/query', (c) => runQuery(c, c.req.query('sql')));
  app.post('/api/query', async (c) => {
    const type = c.req.header('content-type') ?? '';
    const text = await c.req.text();
    if (type.includes('json')) {
      let body: unknown;
      try {
        body = JSON.parse(text);
      } catch {
        return json(c, { error: 'malformed JSON: send {"sql": "SELECT …"}' }, 400);
      }
      const sql = (body as { sql?: unknown } | null)?.sql;
      return runQuery(c, typeof sql === 'string' ? sql : undefined);
    }
    return runQuery(c, text);
  });

  app.notFound((c) => json(c, { error: `no such endpoint: ${c.req.method} ${c.req.path}` }, 404));
  app.onError((error, c) => json(c, { error: error.message }, 500));

  return {
    app,
    sampler,
    start: () => {
      if (timer !== null) return;
      sampler.sample();
      timer = setInterval(() => {
        sampler.sample();
        hub.follow();
        if (hub.clients.size > 0) hub.broadcast('status', sampler.status());
      }, sampler.intervalMs);
      timer.unref();
    },
    stop: async () => {
      if (timer !== null) clearInterval(timer);
      timer = null;
      hub.stop();
    },
  };
}
