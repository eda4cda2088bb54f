import { describe, expect, it } from "vitest";
import { camelize, idcache, IpcError, plugins, runs, toIpcError } from "./api";
import { mockBackend } from "../test/backend";

describe("camelize", () => {
  it("renames snake_case fields but keeps data-keyed maps", () => {
    const v = camelize<Record<string, any>>({
      job_key: "a/b",
      metrics: { rows_read: 1, phase_ms: { load_ms: 2 }, columns: { target_id: { nulls: 0 } } },
      list: [{ unique_key: "k" }],
    });
    expect(v.jobKey).toBe("a/b");
    expect(v.metrics.rowsRead).toBe(1);
    expect(v.metrics.phaseMs).toEqual({ load_ms: 2 });
    expect(v.metrics.columns).toEqual({ target_id: { nulls: 0 } });
    expect(v.list[0].uniqueKey).toBe("k");
  });
});

describe("errors", () => {
  it("turns the shell's { code, message } into an IpcError", async () => {
    mockBackend({ plugins_list: () => { throw { code: "invalid_config", message: "bad settings.yaml" }; } });
    const e = await plugins.list().catch((x) => x);
    expect(e).toBeInstanceOf(IpcError);
    expect(e.code).toBe("invalid_config");
    expect(e.message).toBe("bad settings.yaml");
  });
  it("keeps a plain string as an unknown error", () => {
    expect(toIpcError("boom")).toMatchObject({ code: "unknown", message: "boom" });
  });
});

describe("results in either casing", () => {
  it("reads idcache pages as { rows } or as the API's { entries }", async () => {
    const b = mockBackend({
      idcache_list: (a) =>
        a.entity === "x"
          ? { total: 1, rows: [{ uniqueKey: "K1", targetId: "T1", firstSeen: 1, lastSeen: 2 }] }
          : { total: 1, entries: [{ unique_key: "K2", target_id: "T2", first_seen_run: 3, last_seen_run: 4 }] },
    });
    expect(await idcache.list({ entity: "x", page: 0, pageSize: 10 })).toEqual({
      total: 1,
      rows: [{ uniqueKey: "K1", targetId: "T1", firstSeen: 1, lastSeen: 2 }],
    });
    expect(await idcache.list({ entity: "y", page: 2, pageSize: 10, search: "K" })).toEqual({
      total: 1,
      rows: [{ uniqueKey: "K2", targetId: "T2", firstSeen: 3, lastSeen: 4 }],
    });
    expect(b.argsOf("idcache_list")[1]).toEqual({ entity: "y", page: 2, pageSize: 10, search: "K" });
  });
  it("reads run summaries as camelCase", async () => {
    mockBackend({ runs_list: () => [{ id: 1, job_key: "a/b", started_at: "2025-01-01T00:00:00Z", duration_ms: 5 }] });
    const [r] = await runs.list();
    expect(r.jobKey).toBe("a/b");
    expect(r.durationMs).toBe(5);
  });
});
