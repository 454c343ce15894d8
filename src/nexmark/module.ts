/**
 * The NEXMark pipeline as a pipeline module: what every worker thread of a parallel NEXMark run
 * loads. Its one argument is the run's {@link NexmarkSpec} as JSON.
 */
import { definePipeline } from '../api/define-pipeline.ts';
import { buildNexmark, type NexmarkSpec } from './run.ts';

export default definePipeline((p, args) => {
  if (args[0] === undefined) throw new Error('the NEXMark module needs its spec (JSON) as argument');
  buildNexmark(p, JSON.parse(args[0]) as NexmarkSpec);
});
