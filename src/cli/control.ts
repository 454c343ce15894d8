import { createHash } from 'node:crypto';
import { rmSync } from 'node:fs';
import { createConnection, createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

/**
 * The control channel of a running `spate run` job: a Unix socket named after the job's
 * checkpoint directory, so `spate savepoint DIR` finds the job that checkpoints into DIR. One JSON
 * request per connection, one JSON answer.
 */

/**
 * A request to a running job. `query` runs one read-only SQL statement on a DuckDB file the job
 * has open (`database`: its path, needed when the job has several), and answers JSON-safe rows:
 * another process cannot open the file while the job holds it.
 */
export type ControlRequest =
  | { readonly command: 'savepoint' }
  | { readonly command: 'status' }
  | { readonly command: 'query'; readonly sql: string; readonly database?: string };

/** The socket of the job checkpointing into `checkpointDir` (short: socket paths are limited to ~100 bytes). */
export function controlSocketPath(checkpointDir: string): string {
  const digest = createHash('sha256').update(resolve(checkpointDir)).digest('hex').slice(0, 16);
  return join(tmpdir(), `spate-${digest}.sock`);
}

/** Serves control requests for the job checkpointing into `checkpointDir`. */
export async function serveControl(checkpointDir: string, handle: (request: ControlRequest) => Promise<unknown>): Promise<Server> {
  const path = controlSocketPath(checkpointDir);
  // A socket left by a killed job: nobody answers on it any more.
  if (await answers(path)) throw new Error(`another job is already running with checkpoint directory ${resolve(checkpointDir)}`);
  rmSync(path, { force: true });
  const server = createServer((socket) => {
    let text = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      text += chunk;
      const nl = text.indexOf('\n');
      if (nl < 0) return;
      let request: ControlRequest;
      try {
        request = JSON.parse(text.slice(0, nl)) as ControlRequest;
      } catch {
        socket.end(JSON.stringify({ ok: false, error: 'malformed request' }) + '\n');
        return;
      }
      handle(request).then(
        (result) => socket.end(JSON.stringify({ ok: true, result }) + '\n'),
        (error: unknown) => socket.end(JSON.stringify({ ok: false, error: (error as Error).message ?? String(error) }) + '\n'),
      );
    });
    socket.on('error', () => undefined);
  });
  await new Promise<void>((ok, fail) => {
    server.once('error', fail);
    server.listen(path, () => ok());
  });
  server.unref();
  return server;
}

/** Sends a request to the job checkpointing into `checkpointDir` and returns its answer. */
export function sendControl(checkpointDir: string, request: ControlRequest, timeoutMs = 600_000): Promise<unknown> {
  const path = controlSocketPath(checkpointDir);
  return new Promise((ok, fail) => {
    const socket = createConnection(path);
    let text = '';
    const timer = setTimeout(() => {
      socket.destroy();
      fail(new Error(`the job did not answer within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.setEncoding('utf8');
    socket.on('connect', () => socket.write(JSON.stringify(request) + '\n'));
    socket.on('data', (chunk: string) => (text += chunk));
    socket.on('end', () => {
      clearTimeout(timer);
      try {
        const answer = JSON.parse(text) as { ok: boolean; result?: unknown; error?: string };
        if (answer.ok) ok(answer.result);
        else fail(new Error(answer.error));
      } catch {
        fail(new Error('the job closed the connection without an answer'));
      }
    });
    socket.on('error', (error: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      fail(error.code === 'ENOENT' || error.code === 'ECONNREFUSED' ? new Error(`no running job checkpoints into ${resolve(checkpointDir)}`) : error);
    });
  });
}

/** Whether something accepts connections on `path`. */
function answers(path: string): Promise<boolean> {
  return new Promise((ok) => {
    const socket = createConnection(path);
    socket.on('connect', () => {
      socket.destroy();
      ok(true);
    });
    socket.on('error', () => ok(false));
  });
}
