/**
 * The demo's simulated fleet in a worker thread of its own (so the job's main thread, which
 * hosts the endpoints, the sinks and the dashboard, does not also generate and send the load).
 * workerData: {@link FleetWorkerData}. Posts {@link SenderStats} every second; stops on 'stop'.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { type FaultMix, Fleet } from './fleet.ts';
import { FleetSender, type SenderTargets } from './sender.ts';

export interface FleetWorkerData {
  readonly devices: number;
  readonly rate: number;
  readonly faults: FaultMix;
  readonly seed: number;
  readonly targets: SenderTargets;
  /** An oversized message's size: past the endpoints' limit. */
  readonly oversizedBytes: number;
}

const data = workerData as FleetWorkerData;
const fleet = new Fleet({ devices: data.devices, rate: data.rate, faults: data.faults, seed: data.seed, oversizedBytes: data.oversizedBytes });
const sender = new FleetSender(fleet, data.targets);
const timer = setInterval(() => parentPort!.postMessage(sender.stats), 1000);
parentPort!.on('message', (m: unknown) => {
  if (m !== 'stop') return;
  clearInterval(timer);
  void sender.stop().then(() => {
    parentPort!.postMessage(sender.stats);
    parentPort!.close();
  });
});
