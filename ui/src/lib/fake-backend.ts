/**
 * A tiny stand-in for the Tauri shell so that `npm run dev` shows every screen in a plain browser. Loaded only in
 * development outside the app (see main.ts); never part of a build's behaviour. Data is made up but shaped as the
 * contract says; one job advances and pushes `job-progress` events like the shell does.
 */
import { mockIPC } from "@tauri-apps/api/mocks";
import { emit } from "@tauri-apps/api/event";
import type { DatabaseList, JobCard, PluginSummary } from "./api";

export function installFakeBackend(): void {
  const now = () => new Date().toISOString();
  const pluginList: PluginSummary[] = [
    { name: "gho", creator: "psystem", description: "WHO Global Health Observatory indicators", enabled: true, origin: "bundled", source: "gho_odata", run: "life_expectancy", entries: ["life_expectancy", "mortality"], path: "assets/plugins/gho.yaml" },
    { name: "opentargets", creator: "psystem", description: "Open Targets Platform releases (Parquet)", enabled: true, origin: "bundled", source: "release", run: "target", entries: ["target", "disease"], path: "assets/plugins/opentargets.yaml" },
    { name: "trial", creator: "me", description: "A local CSV of participants", enabled: false, origin: "user", source: "files", run: null, entries: ["participants"], path: "~/.psystem/plugins/trial.yaml" },
  ];
  const dbs: DatabaseList = {
    active: "local",
    databases: [
      { name: "local", host: "127.0.0.1", port: 55432, database: "psystem", user: "postgres", passwordSource: "none", isLocal: true },
      { name: "warehouse", host: "db.example.org", port: 5432, database: "research", user: "analyst", passwordSource: "keychain", isLocal: false },
    ],
    local: { initialized: true, running: true, dataDir: "~/.psystem/pgdata", port: 55432, url: "postgres://postgres@127.0.0.1:55432/psystem", serverVersion: "15.8", logFile: "~/.psystem/pgdata/server.log", runAs: null },
  };
  const jobList: JobCard[] = [
    { key: "opentargets/target/25.03", plugin: "opentargets", entry: "target", source: "release", state: "running", release: "25.03", destination: "postgres://postgres@127.0.0.1:55432/psystem", rows: 12000, bytes: 48_000_000, pages: 3, unitsDone: 3, units: 20, rowsPerSecond: 3412, secondsLeft: 260, lastError: null, updatedAt: now() },
    { key: "gho/mortality", plugin: "gho", entry: "mortality", source: "gho_odata", state: "paused", destination: "postgres://analyst@db.example.org:5432/research", rows: 4200, bytes: 1_300_000, pages: 42, updatedAt: now() },
  ];
  const keys = Array.from({ length: 1234 }, (_, i) => ({ unique_key: `P${String(i).padStart(5, "0")}`, target_id: `PT_${(i * 7919).toString(36).toUpperCase()}`, first_seen_run: 1 + (i % 3), last_seen_run: 4 }));

  setInterval(() => {
    for (const j of jobList) {
      if (j.state !== "running") continue;
      j.rows += 3412;
      j.bytes += 9_000_000;
      j.pages += 1;
      j.unitsDone = Math.min(j.units ?? 0, (j.unitsDone ?? 0) + 1);
      j.secondsLeft = Math.max(0, (j.secondsLeft ?? 0) - 13);
      j.updatedAt = now();
      if (j.unitsDone === j.units) {
        j.state = "completed";
        void emit("job-finished", { key: j.key, state: "completed" });
      }
      void emit("job-progress", { ...j });
    }
  }, 1000);

  mockIPC(
    async (cmd, a) => {
      const args = (a ?? {}) as Record<string, any>;
      switch (cmd) {
        case "plugins_list": return { plugins: pluginList, errors: [] };
        case "plugin_show": {
          const p = pluginList.find((x) => x.name === args.name)!;
          return { ...p, etl: p.entries.map((k) => ({ key: k, table: `public.${k}`, mode: "upsert", default: k === p.run, indicator: null, api: null, file: null, entity: k === "participants" ? "participant" : null, columns: [], destination_url: null, primary_key: [], unique_key: [], references: [] })) };
        }
        case "plugin_set_enabled": {
          const p = pluginList.find((x) => x.name === args.name)!;
          p.enabled = args.enabled;
          return p;
        }
        case "releases_list": return [{ name: "25.03", latest: true }, { name: "24.12", latest: false }, { name: "24.09", latest: false }];
        case "release_show": {
          const ds = ["target", "disease", "evidence_chembl"].filter((d) => !args.datasets || args.datasets.includes(d));
          return { source: "opentargets", url: "https://ftp.ebi.ac.uk/pub/databases/opentargets/platform", release: args.release, layout: "output", manifest: "release_data_integrity", datasets: ds.map((d, i) => ({ name: d, entry: i < 2 ? d : null, files: 2, bytes: 2 * 1024 ** 2 * (i + 3), partition_keys: [], file_list: [0, 1].map((n) => [`output/${d}/part-0000${n}.parquet`, 1024 ** 2 * (i + 3)]), columns: args.schema ? [["id", "Utf8", "text"], ["approvedSymbol", "Utf8", "text"], ["tss", "Int64", "bigint"]] : [], rows: args.schema ? 62000 : null, keys: null })) };
        }
        case "file_checks": return [];
        case "release_verify": {
          const files = ["target", "disease", "evidence_chembl"].flatMap((d) => [0, 1].map((n) => `output/${d}/part-0000${n}.parquet`));
          for (let i = 0; i < files.length; i++) {
            await new Promise((r) => setTimeout(r, 300));
            void emit("verify-progress", { plugin: args.plugin, release: args.release, path: files[i], done: i + 1, total: files.length, status: "verified" });
          }
          return { release: args.release, manifest: "release_data_integrity", recorded: true, files: files.map((p) => ({ path: p, size: 1, status: "verified", expected: "ab", computed: "ab" })) };
        }
        case "databases_list": return dbs;
        case "database_test": return args.name === "warehouse" ? { ok: false, message: "connection refused (db.example.org:5432)" } : { ok: true, serverVersion: "15.8" };
        case "database_activate": dbs.active = args.name; return null;
        case "database_save": { const e = { name: args.name, host: "example", port: 5432, database: "db", user: null, passwordSource: args.password ? "keychain" : args.passwordEnv ? "env" : "none", envVar: args.passwordEnv, isLocal: false } as const; dbs.databases.push(e); return e; }
        case "database_remove": dbs.databases = dbs.databases.filter((d) => d.name !== args.name); return null;
        case "local_db_status": case "local_db_up": dbs.local!.running = true; return dbs.local;
        case "local_db_down": dbs.local!.running = false; return dbs.local;
        case "jobs_list": return jobList;
        case "job_start": { const j: JobCard = { key: `${args.plugin}/${args.entry}`, plugin: args.plugin, entry: args.entry, source: "files", state: "running", destination: "postgres://postgres@127.0.0.1:55432/psystem", rows: 0, bytes: 0, pages: 0, unitsDone: 0, units: 10, rowsPerSecond: 1200, secondsLeft: 90, updatedAt: now() }; jobList.push(j); return { key: j.key }; }
        case "job_pause": case "job_resume": case "job_cancel": {
          const j = jobList.find((x) => x.key === args.key)!;
          j.state = cmd === "job_pause" ? "paused" : cmd === "job_resume" ? "running" : "cancelled";
          setTimeout(() => void emit("job-progress", { ...j, updatedAt: now() }), 400);
          return null;
        }
        case "job_log": return ["10:02:11 INFO page 1 committed (1,000 rows)", "10:02:12 INFO page 2 committed (1,000 rows)"];
        case "idcache_entities": return [{ entity: "participant", target: "127.0.0.1:55432/psystem/public", key_columns: ["study", "subject"], id_strategy: null, count: keys.length, last_seen_run: 4 }];
        case "idcache_list": {
          const q = String(args.search ?? "").toLowerCase();
          let rows = keys.filter((k) => !q || k.unique_key.toLowerCase().includes(q) || k.target_id.toLowerCase().includes(q));
          const col = args.sort === "target_id" ? "target_id" : "unique_key";
          rows = [...rows].sort((x, y) => (x[col] < y[col] ? -1 : 1) * (args.desc ? -1 : 1));
          return { total: rows.length, entries: rows.slice(args.page * args.pageSize, (args.page + 1) * args.pageSize) };
        }
        case "idcache_export": return { rows: keys.length };
        case "runs_list": return [
          { id: 4, job_key: "gho/life_expectancy", plugin: "gho", entry: "life_expectancy", state: "completed", mode: "upsert", table: { schema: "public", name: "life_expectancy" }, started_at: new Date(Date.now() - 3 * 60000).toISOString(), finished_at: now(), pages: 12, rows: 11_832, bytes: 3_400_000, total_rows: 11_832, duration_ms: 41_000, last_error: null },
          { id: 3, job_key: "trial/participants", plugin: "trial", entry: "participants", state: "failed", mode: "append", table: { schema: "public", name: "participants" }, started_at: new Date(Date.now() - 26 * 3600000).toISOString(), finished_at: null, pages: 1, rows: 500, bytes: 80_000, total_rows: null, duration_ms: 2_300, last_error: "participants.csv line 502, column age: \"n/a\" is not an integer" },
        ];
        case "run_detail": return { id: args.id, job_key: "gho/life_expectancy", plugin: "gho", entry: "life_expectancy", state: "completed", mode: "upsert", table: { schema: "public", name: "life_expectancy" }, started_at: now(), finished_at: now(), pages: 12, rows: 11832, bytes: 3400000, total_rows: 11832, duration_ms: 41000, last_error: null, position: null, metrics: { rows_read: 11900, rows_written: 11832, rows_rejected: 68, bytes: 3400000, phase_ms: { download: 20000, transform: 6000, load: 15000 }, columns: { country_code: { nulls: 0, distinct: 194 }, value: { nulls: 12, distinct: 9000 } }, updated_at: now() } };
        case "app_quit": return null;
        default: throw { code: "unknown", message: `the fake backend has no ${cmd}` };
      }
    },
    { shouldMockEvents: true },
  );
}
