import { Pipeline, type PipelineOptions } from './pipeline.ts';

const MARK = Symbol.for('spate.pipeline-module');

/** What a pipeline module's build function receives besides the pipeline. */
export type PipelineArgs = readonly string[];

/**
 * A pipeline module: how to build a pipeline on a fresh {@link Pipeline}, and its default
 * options. It is what `spate run` loads — once for a plain run, and again in every worker thread or
 * process that runs a share of the job — so `build` must build the same steps every time it is
 * called with the same arguments (step ids, kinds and edges are checked by a fingerprint), and
 * everything it captures must be created inside it (or be constant), not shared with another
 * thread.
 */
export interface PipelineModule {
  readonly [MARK]: true;
  /** Builds the steps on `p`. `args` are the arguments after `--` on the command line. */
  readonly build: (p: Pipeline, args: PipelineArgs) => void | Promise<void>;
  /** Defaults for the job (the command line and `run` options override them). */
  readonly options: PipelineOptions;
}

/**
 * Declares a pipeline module: `export default definePipeline((p, args) => { ... })` in a `.ts` or
 * `.js` file, run with `spate run file.ts -- args`. TypeScript files need no build step.
 *
 * @example
 * // pipeline.ts
 * import { definePipeline, GeneratorSource, JsonlSink, tumbling, count } from 'spate';
 *
 * export default definePipeline((p, args) => {
 *   const rate = Number(args[0] ?? 1000);
 *   p.source(new GeneratorSource({ make: (i) => ({ sensor: i % 10 }), ratePerSecond: rate, time: (i) => i }), { id: 'readings' })
 *     .keyBy((r) => r.sensor)
 *     .window(tumbling(1000))
 *     .aggregate(count(), { id: 'per-second' })
 *     .sink(new JsonlSink('counts.jsonl'), { id: 'out' });
 * }, { checkpointInterval: 2000 });
 */
export function definePipeline(build: (p: Pipeline, args: PipelineArgs) => void | Promise<void>, options: PipelineOptions = {}): PipelineModule {
  if (typeof build !== 'function') throw new TypeError('definePipeline: expected a function (p, args) => { ... }');
  return { [MARK]: true, build, options };
}

/** Whether `value` is what {@link definePipeline} returns. */
export function isPipelineModule(value: unknown): value is PipelineModule {
  return typeof value === 'object' && value !== null && (value as { [MARK]?: unknown })[MARK] === true;
}

/**
 * Loads a pipeline module file (`.ts` files through tsx, registered on first use) and returns
 * its default export, checked.
 */
export async function loadPipelineModule(url: string): Promise<PipelineModule> {
  if (/\.[cm]?tsx?$/.test(new URL(url).pathname)) await registerTypeScript();
  let mod: { default?: unknown };
  try {
    mod = (await import(url)) as { default?: unknown };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ERR_MODULE_NOT_FOUND' && (error as Error).message.includes(new URL(url).pathname)) {
      throw new Error(`no pipeline file at ${new URL(url).pathname}`);
    }
    throw error;
  }
  if (!isPipelineModule(mod.default)) {
    throw new Error(`${new URL(url).pathname} must \`export default definePipeline((p, args) => { ... })\` (from 'spate')`);
  }
  loaded.add(url);
  return mod.default;
}

const loaded = new Set<string>();

/** Whether this thread loaded module `url` with {@link loadPipelineModule} (the loader workers use too). */
export function loadedHere(url: string): boolean {
  return loaded.has(url);
}

/** Builds a fresh pipeline from a module, with the module's options under `overrides`. */
export async function buildPipeline(module: PipelineModule, args: PipelineArgs, overrides: PipelineOptions = {}): Promise<Pipeline> {
  const p = new Pipeline({ ...module.options, ...overrides });
  await module.build(p, args);
  if (p.graph.nodes.length === 0) throw new Error('the pipeline module built no steps');
  return p;
}

let registered: Promise<void> | null = null;

/** Makes `import` load TypeScript in this thread (tsx's loader), once. */
export function registerTypeScript(): Promise<void> {
  registered ??= import('tsx/esm/api').then(({ register }) => {
    register();
  });
  return registered;
}
