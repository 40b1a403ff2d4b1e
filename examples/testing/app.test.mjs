// The notes app's own tests (app.mjs), as a user writes them with vitest and supertest; under jest
// drop the 'vitest' import (jest's globals are the same). `npm test` runs this file on Express 5
// and 4: your app's tests need only the Express it uses, so drop express4 and the describe.each.

import express5 from 'express';
import express4 from 'express4';
import { MemoryStateStore } from 'namespace-read-only';
import {
  createTestGuard,
  expectNotRefusedByGuard,
  expectRefusedByGuard,
  isRefusedByGuard,
} from 'namespace-read-only/testing';
import request from 'supertest';
import { afterEach, describe, expect, it } from 'vitest';
import { createApp, guardOptions } from './app.mjs';

describe.each([
  ['express 5', express5],
  ['express 4', express4],
])('notes app (%s)', (_name, express) => {
  // One guard for the file, on its own memory store: what a test enables, the next must not see.
  const guard = createTestGuard(guardOptions);
  let searchUp = true;
  const app = createApp({ guard, express, searchUp: () => searchUp });

  afterEach(async () => {
    await guard.clear();
    searchUp = true;
  });

  const addNote = (tenant) =>
    request(app).post(`/t/${tenant}/notes`).set('Accept', 'application/json').send({ text: 'hi' });

  it('refuses writes to a tenant in maintenance, before the app stores anything', async () => {
    await guard.enable('acme');
    const res = await addNote('acme');
    expectRefusedByGuard(res, { namespace: 'acme', code: 'ERR_NSRO_MAINTENANCE' });
    expect(res.headers['retry-after']).toBe('900');
    expect((await request(app).get('/t/acme/notes')).body).toEqual([]);
  });

  it('keeps reads and the other tenants working', async () => {
    await addNote('acme').expect(201);
    await guard.enable('acme');
    const read = await request(app).get('/t/acme/notes').expect(200);
    expect(read.body).toHaveLength(1);
    expectNotRefusedByGuard(await addNote('beta').expect(201));
  });

  it('lets writes through again once the maintenance ends', async () => {
    await guard.enable('acme', { state: 'maintenance', message: 'Moving to a new region' });
    expect((await addNote('acme')).body.message).toBe('Moving to a new region');
    await guard.disable('acme');
    expectNotRefusedByGuard(await addNote('acme').expect(201));
  });

  it("tells the app's own 503 from the guard's", async () => {
    searchUp = false;
    const res = await request(app).post('/t/acme/search/reindex').expect(503);
    expect(isRefusedByGuard(res)).toBe(false);
    expect(res.body.error).toBe('the search index is down');

    await guard.enable('acme');
    expect(isRefusedByGuard(await request(app).post('/t/acme/search/reindex'))).toBe(true);
  });

  it('refuses every tenant while the whole instance is in maintenance, and the guard lists it', async () => {
    await guard.enable('*');
    expect(await guard.list()).toEqual([{ namespace: '*', state: { state: 'maintenance' } }]);
    expectRefusedByGuard(await addNote('beta'), { namespace: '*' });
    await request(app).get('/health').expect(200);
  });

  it('runs on a store of your own too: createApp({ store })', async () => {
    const store = new MemoryStateStore({ logger: false });
    const own = createApp({ store, express });
    await store.set('acme', 'maintenance');
    expectRefusedByGuard(await request(own).post('/t/acme/notes').send({}), { namespace: 'acme' });
    await store.clear();
    expectNotRefusedByGuard(await request(own).post('/t/acme/notes').send({}));
  });
});
