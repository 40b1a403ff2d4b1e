// Small helpers shared by the benchmark processes: statistics, time, ports, child processes.

import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const HOST = '127.0.0.1';
export const BENCH_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const ROOT = resolve(BENCH_DIR, '..');

export const sleep = (ms) => new Promise((done) => setTimeout(done, ms));

/** Wall-clock milliseconds with sub-millisecond resolution (comparable across processes). */
export function wallNow() {
  return performance.timeOrigin + performance.now();
}

export function median(values) {
  return quantile(values, 0.5);
}

/** Linear-interpolated quantile of `values` (q in [0, 1]); NaN for an empty list. */
export function quantile(values, q) {
  const sorted = [...values].filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  const position = (sorted.length - 1) * q;
  const low = Math.floor(position);
  const high = Math.ceil(position);
  const lowValue = sorted[low] ?? Number.NaN;
  const highValue = sorted[high] ?? Number.NaN;
  return lowValue + (highValue - lowValue) * (position - low);
}

export function round(value, digits = 0) {
  if (!Number.isFinite(value)) return value;
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

/**
 * A port nobody listens on, chosen below the kernel's ephemeral range so that outgoing
 * connections (the load generator opens many) cannot take it between the probe and the bind.
 */
export async function freePort() {
  let low = null;
  try {
    low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').split(/\s+/)[0]);
  } catch {
    low = null;
  }
  if (Number.isInteger(low) && low > 11_000) {
    for (let attempt = 0; attempt < 50; attempt++) {
      const candidate = 10_000 + Math.floor(Math.random() * (low - 10_000));
      if (await canListen(candidate)) return candidate;
    }
  }
  return listenOn(0);
}

async function canListen(port) {
  try {
    return (await listenOn(port)) === port;
  } catch {
    return false;
  }
}

function listenOn(port) {
  return new Promise((done, fail) => {
    const server = net.createServer();
    server.unref();
    server.once('error', fail);
    server.listen(port, HOST, () => {
      const address = server.address();
      const bound = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => done(bound));
    });
  });
}

const children = new Set();
process.once('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});

/**
 * Starts `node <script> ...args` and resolves once it prints a line `READY <json>` on stdout,
 * with `{ child, info, stop() }`. Other stdout lines are passed to `onLine`. Rejects when the
 * process exits first or does not get ready within `timeout` ms.
 */
export function startNode(script, args = [], options = {}) {
  const { nodeArgs = [], env = {}, timeout = 20_000, onLine, ipc = false } = options;
  const child = spawn(process.execPath, [...nodeArgs, script, ...args], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe', ...(ipc ? ['ipc'] : [])],
  });
  children.add(child);
  let stderr = '';
  child.stderr.on('data', (chunk) => {
    stderr = (stderr + chunk.toString('utf8')).slice(-8000);
  });
  const exited = new Promise((done) => {
    child.once('exit', (code, signal) => {
      children.delete(child);
      done({ code, signal });
    });
  });
  const stop = async (signal = 'SIGTERM') => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    }
  };
  return new Promise((done, fail) => {
    let buffer = '';
    let ready = false;
    const timer = setTimeout(() => {
      if (ready) return;
      child.kill('SIGKILL');
      fail(new Error(`${script} did not get ready within ${timeout} ms:\n${stderr}`));
    }, timeout);
    child.stdout.on('data', (chunk) => {
      buffer += chunk.toString('utf8');
      for (;;) {
        const newline = buffer.indexOf('\n');
        if (newline === -1) break;
        const line = buffer.slice(0, newline);
        buffer = buffer.slice(newline + 1);
        if (!ready && line.startsWith('READY ')) {
          ready = true;
          clearTimeout(timer);
          done({ child, info: JSON.parse(line.slice(6)), stop, exited, stderr: () => stderr });
        } else {
          onLine?.(line);
        }
      }
    });
    void exited.then(({ code, signal }) => {
      if (ready) return;
      clearTimeout(timer);
      fail(new Error(`${script} exited (${code ?? signal}) before it was ready:\n${stderr}`));
    });
  });
}

/** Runs `node <script> ...args` to completion and parses the last stdout line as JSON. */
export async function runNodeJson(script, args = [], options = {}) {
  const { nodeArgs = [], timeout = 300_000 } = options;
  const child = spawn(process.execPath, [...nodeArgs, script, ...args], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.add(child);
  let stdout = '';
  child.stdout.on('data', (chunk) => {
    stdout += chunk.toString('utf8');
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), timeout);
  const { code, signal } = await new Promise((done) => {
    child.once('exit', (c, s) => done({ code: c, signal: s }));
  });
  clearTimeout(timer);
  children.delete(child);
  if (code !== 0) throw new Error(`${script} failed (${code ?? signal})`);
  const lines = stdout.trim().split('\n');
  return JSON.parse(lines[lines.length - 1] ?? 'null');
}
