import { connect } from '@nats-io/transport-node';
try { await connect({ servers: 'nats://127.0.0.1:4299', timeout: 2000 }); } catch (e) { console.log((e as any).name, (e as any).code, (e as Error).message, (e as any).cause); }
try { await connect({ servers: 'nats://127.0.0.1:4222', token: 'x', timeout: 2000 }); console.log('token ok (server has no auth)'); } catch (e) { console.log((e as any).name, (e as any).code, (e as Error).message); }
