// BullMQ-Node side of the comparison (benchmarks/compare.py). Mirrors
// benchmarks/systems/_runner.py: same scenarios, same payload, same Redis counter keys.
//
//   node bench.mjs versions
//   node bench.mjs run --scenario process --url redis://127.0.0.1:6379 --n 20000 --concurrency 50 --procs 1
//   node bench.mjs worker --url ... --concurrency 50 [--sleep 0.01]     (spawned by "run")
//
// "run" prints one JSON object on its last stdout line.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { Queue, Worker } from 'bullmq';
import IORedis from 'ioredis';

const QUEUE = 'bench';
const KEY_DONE = 'bench:done';
const KEY_FIRST = 'bench:first';
const KEY_LAST = 'bench:last';
const KEY_LAT = 'bench:lat';
const KEY_READY = 'bench:ready';
const BULK_CHUNK = 500;
const ADD_TASKS = 50;
const LATENCY_RATE = 200;
const MIXED_SLEEP = 0.01;
const MIXED_CONCURRENCY = 100;
// Variant "retention": BullMQ keeps minique's default retention of completed jobs (the
// last 1,000, none older than 24 h) where its own default keeps them all, so that both
// sides delete the jobs they finish (benchmarks/compare.py: bullmq-node-retention).
const KEEP_COMPLETED = { count: 1000, age: 86400 };

function retention(variant) {
  if (variant === '' || variant === undefined) return {};
  if (variant === 'retention') return { removeOnComplete: KEEP_COMPLETED };
  throw new Error(`unknown variant ${variant}`);
}

class NotAvailable extends Error {}

function parseArgs(argv) {
  const args = {
    command: argv[0], scenario: '', url: 'redis://127.0.0.1:6379', n: 1000, concurrency: 1,
    procs: 1, sleep: 0, timeout: 120, 'max-seconds': 300, variant: '',
  };
  for (let i = 1; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, '');
    const value = argv[i + 1];
    args[key] = typeof args[key] === 'number' ? Number(value) : value;
  }
  return args;
}

function connectionFromUrl(url) {
  const u = new URL(url);
  return { host: u.hostname, port: Number(u.port || 6379) };
}

function payload(i) {
  return { i, user: 'u-' + String(i % 100000).padStart(5, '0'), tags: ['bench', 'noop'], n: 3.5 };
}

// CLOCK_MONOTONIC in seconds (ns resolution); on Linux it is system-wide, so timestamps
// taken in the producer and in the worker processes are directly comparable.
const wall = () => Number(process.hrtime.bigint()) / 1e9;
const perf = () => performance.now() / 1000;
const sleep = (s) => new Promise((r) => setTimeout(r, s * 1000));

function versions() {
  const require = createRequire(import.meta.url);
  const pkg = (name) => JSON.parse(readFileSync(require.resolve(`${name}/package.json`), 'utf8')).version;
  return { 'bullmq (node)': pkg('bullmq'), ioredis: pkg('ioredis'), node: process.version };
}

// ---------------------------------------------------------------------------- worker side
class Recorder {
  constructor(redis, sleepS) {
    this.redis = redis;
    this.sleepS = sleepS;
    this.count = 0;
    this.flushed = 0;
    this.first = null;
    this.firstSent = false;
    this.last = 0;
    this.lat = [];
    this.timer = setInterval(() => this.flush(), 10);
  }

  async handle(data) {
    const t = wall();
    if (this.first === null) this.first = t;
    if (data.t !== undefined) this.lat.push(t - data.t);
    if (this.sleepS) await sleep(this.sleepS);
    this.last = wall();
    this.count += 1;
  }

  flush() {
    const pipe = this.redis.pipeline();
    let any = false;
    if (this.count !== this.flushed) {
      pipe.incrby(KEY_DONE, this.count - this.flushed);
      pipe.hset(KEY_LAST, String(process.pid), String(this.last));
      this.flushed = this.count;
      any = true;
    }
    if (this.first !== null && !this.firstSent) {
      pipe.hsetnx(KEY_FIRST, String(process.pid), String(this.first));
      this.firstSent = true;
      any = true;
    }
    if (this.lat.length) {
      pipe.rpush(KEY_LAT, ...this.lat.map(String));
      this.lat = [];
      any = true;
    }
    if (any) pipe.exec().catch(() => {});
  }
}

async function workerMain(args) {
  setTimeout(() => process.exit(3), args['max-seconds'] * 1000).unref();
  const redis = new IORedis(args.url);
  const rec = new Recorder(redis, Number(args.sleep));
  await redis.incr(KEY_READY);
  const worker = new Worker(QUEUE, async (job) => { await rec.handle(job.data); }, {
    connection: connectionFromUrl(args.url),
    concurrency: Number(args.concurrency),
    ...retention(args.variant),
  });
  worker.on('error', (err) => console.error(err));
  const stop = async () => { await worker.close(); process.exit(0); };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

// ------------------------------------------------------------------------ controller side
class Run {
  constructor(args) {
    this.args = args;
    this.n = Number(args.n);
    this.deadline = perf() + Number(args.timeout);
    this.redis = new IORedis(args.url);
    this.queue = new Queue(QUEUE, { connection: connectionFromUrl(args.url) });
    this.workers = [];
  }

  left() { return this.deadline - perf(); }

  spawnWorkers(procs, concurrency, sleepS) {
    const script = fileURLToPath(import.meta.url);
    const argv = [script, 'worker', '--url', this.args.url, '--concurrency', String(concurrency),
      '--sleep', String(sleepS), '--max-seconds', String(Number(this.args.timeout) + 30),
      '--variant', this.args.variant];
    const err = process.env.BENCH_DEBUG ? 'inherit' : 'ignore';
    for (let i = 0; i < procs; i++) {
      const child = spawn(process.execPath, argv, { stdio: ['ignore', 'ignore', err] });
      this.workers.push(child);
    }
  }

  async stopWorkers() {
    await Promise.all(this.workers.map((child) => new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      const kill = setTimeout(() => child.kill('SIGKILL'), 3000);
      child.on('exit', () => { clearTimeout(kill); resolve(); });
      child.kill('SIGTERM');
    })));
    this.workers = [];
  }

  checkWorkers() {
    for (const child of this.workers) {
      if (child.exitCode !== null) throw new Error(`a worker process exited early with code ${child.exitCode}`);
    }
  }

  async waitReady(procs) {
    while (Number(await this.redis.get(KEY_READY) || 0) < procs) {
      this.checkWorkers();
      if (this.left() < 0) throw new Error('workers never became ready');
      await sleep(0.01);
    }
    await this.queue.waitUntilReady();
  }

  async waitDone(n) {
    for (;;) {
      const done = Number(await this.redis.get(KEY_DONE) || 0);
      if (done >= n) return;
      this.checkWorkers();
      if (this.left() < 0) throw new Error(`TimeoutError: only ${done} of ${n} jobs completed before the timeout`);
      await sleep(0.01); // timing comes from the workers' own timestamps
    }
  }

  async verify(n) {
    const end = perf() + 10;
    for (;;) {
      const c = await this.queue.getJobCounts('completed', 'waiting', 'active', 'failed', 'delayed');
      const kept = this.args.variant === 'retention' ? Math.min(n, KEEP_COMPLETED.count) : n;
      if (c.completed === kept && c.failed === 0 && c.waiting + c.active + c.delayed === 0) break;
      if (perf() > end) throw new Error(`library does not report ${kept} completed: ${JSON.stringify(c)}`);
      await sleep(0.02);
    }
    await sleep(0.05);
    const done = Number(await this.redis.get(KEY_DONE) || 0);
    if (done !== n) throw new Error(`${done} job executions for ${n} jobs`);
  }

  async span() {
    const firsts = (await this.redis.hvals(KEY_FIRST)).map(Number);
    const lasts = (await this.redis.hvals(KEY_LAST)).map(Number);
    return [Math.min(...firsts), Math.max(...lasts)];
  }

  async expectQueued(n) {
    const queued = await this.queue.getWaitingCount();
    if (queued !== n) throw new Error(`${queued} jobs queued after adding ${n}`);
  }

  async addBulk(items) {
    await this.queue.addBulk(items.map((data) => ({ name: 'noop', data })));
  }

  async addConcurrent(n, tasks) {
    const one = async (start) => {
      for (let i = start; i < n; i += tasks) await this.queue.add('noop', payload(i));
    };
    await Promise.all(Array.from({ length: tasks }, (_, k) => one(k)));
  }

  async fill(n) {
    for (let s = 0; s < n; s += BULK_CHUNK) {
      const items = [];
      for (let i = s; i < Math.min(n, s + BULK_CHUNK); i++) items.push(payload(i));
      await this.addBulk(items);
    }
    await this.expectQueued(n);
  }

  // --- scenarios
  async add_one() {
    const t0 = perf();
    for (let i = 0; i < this.n; i++) await this.queue.add('noop', payload(i));
    const seconds = perf() - t0;
    await this.expectQueued(this.n);
    return { seconds };
  }

  async add_bulk() {
    const batches = [];
    for (let s = 0; s < this.n; s += BULK_CHUNK) {
      const items = [];
      for (let i = s; i < Math.min(this.n, s + BULK_CHUNK); i++) items.push(payload(i));
      batches.push(items);
    }
    const t0 = perf();
    for (const batch of batches) await this.addBulk(batch);
    const seconds = perf() - t0;
    await this.expectQueued(this.n);
    return { seconds, chunk: BULK_CHUNK };
  }

  async add_concurrent() {
    const t0 = perf();
    await this.addConcurrent(this.n, ADD_TASKS);
    const seconds = perf() - t0;
    await this.expectQueued(this.n);
    return { seconds, tasks: ADD_TASKS };
  }

  async process() {
    const conc = Number(this.args.concurrency);
    const procs = Number(this.args.procs);
    await this.fill(this.n);
    this.spawnWorkers(procs, conc, 0);
    await this.waitDone(this.n);
    const [first, last] = await this.span();
    await this.verify(this.n);
    return { seconds: last - first, concurrency: conc, procs };
  }

  async mixed() {
    this.spawnWorkers(1, MIXED_CONCURRENCY, MIXED_SLEEP);
    await this.waitReady(1);
    await sleep(0.5);
    const t0 = wall();
    await this.addConcurrent(this.n, ADD_TASKS);
    await this.waitDone(this.n);
    const [, last] = await this.span();
    await this.verify(this.n);
    return { seconds: last - t0, concurrency: MIXED_CONCURRENCY, sleep_ms: MIXED_SLEEP * 1000 };
  }

  async latency() {
    const conc = Number(this.args.concurrency);
    this.spawnWorkers(1, conc, 0);
    await this.waitReady(1);
    await sleep(1.0);
    const t0 = perf();
    for (let i = 0; i < this.n; i++) {
      const delay = t0 + i / LATENCY_RATE - perf();
      if (delay > 0) await sleep(delay);
      const data = payload(i);
      data.t = wall();
      await this.queue.add('noop', data);
    }
    const addSeconds = perf() - t0;
    await this.waitDone(this.n);
    await this.verify(this.n);
    const lat = (await this.redis.lrange(KEY_LAT, 0, -1)).map(Number).sort((a, b) => a - b);
    if (lat.length !== this.n) throw new Error(`${lat.length} latency samples for ${this.n} jobs`);
    const pct = (p) => lat[Math.min(lat.length - 1, Math.round((p / 100) * (lat.length - 1)))] * 1000;
    return {
      seconds: addSeconds, p50_ms: pct(50), p99_ms: pct(99), max_ms: lat[lat.length - 1] * 1000,
      add_rate: this.n / addSeconds, concurrency: conc,
    };
  }

  async run() {
    const body = this[this.args.scenario];
    if (typeof body !== 'function') throw new NotAvailable(`unknown scenario ${this.args.scenario}`);
    try {
      const out = await body.call(this);
      out.n = this.n;
      out.rate = out.seconds > 0 ? this.n / out.seconds : 0;
      out.ok = true;
      return out;
    } finally {
      await this.stopWorkers();
      await this.queue.close();
      this.redis.disconnect();
    }
  }
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  if (args.command === 'versions') {
    console.log(JSON.stringify(versions()));
    return;
  }
  if (args.command === 'worker') {
    await workerMain(args);
    return;
  }
  let result;
  try {
    result = await new Run(args).run();
  } catch (err) {
    console.error(err);
    result = err instanceof NotAvailable ? { ok: false, na: err.message } : { ok: false, error: String(err.message || err) };
  }
  console.log(JSON.stringify(result));
  process.exit(0);
}

main();
