/**
 * The ONE module that talks to the Tauri shell (`src-tauri/`): every `invoke` and `listen` of the UI is here, with
 * the payload types of the IPC contract (`docs/DESKTOP.md`, section "IPC"; first draft `briefs/ipc_contract.md`).
 *
 * - Arguments are sent camelCase (Tauri turns them into the Rust commands' snake_case parameters).
 * - Results and event payloads are read through {@link camelize}: the shell may pass `psystem-api` structs through
 *   as serde writes them (snake_case, e.g. `first_seen_run`) or rename them to camelCase — both arrive here as the
 *   camelCase types below. Keys of maps whose keys are data (column names, phase names, checkpoint positions) are
 *   left as they are.
 * - Every failure is thrown as an {@link IpcError} `{ code, message }`; screens branch on `code`.
 */
import { invoke } from "@tauri-apps/api/core";
import { listen, type UnlistenFn } from "@tauri-apps/api/event";

// ---------------------------------------------------------------------------------------------------------------
// Errors

/** Error codes the UI branches on: `psystem_api::ApiError::code()` plus the shell's own. Others may appear. */
export type ErrorCode =
  | "plugin_not_found"
  | "plugin_disabled"
  | "entry_not_found"
  | "invalid_manifest"
  | "invalid_config"
  | "job_not_found"
  | "job_busy"
  | "job_running"
  | "source"
  | "destination"
  | "job"
  | "local_database"
  | "status_file"
  | "manifest"
  | "release_not_found"
  | "transport"
  | "release"
  | "keychain"
  | "io"
  | "not_in_app"
  | "unknown"
  | (string & {});

/** A failed command: `code` is stable (branch on it), `message` is for people. */
export class IpcError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string) {
    super(message);
    this.name = "IpcError";
    this.code = code;
  }
}

/** Turns whatever `invoke` rejected with (normally `{ code, message }`) into an {@link IpcError}. */
export function toIpcError(e: unknown): IpcError {
  if (e instanceof IpcError) return e;
  if (e && typeof e === "object" && "code" in e) {
    const o = e as { code: unknown; message?: unknown };
    return new IpcError(String(o.code), String(o.message ?? o.code));
  }
  if (typeof e === "string") return new IpcError("unknown", e);
  if (e instanceof Error) {
    // `invoke` outside the Tauri webview fails with a TypeError on `__TAURI_INTERNALS__`.
    if (/__TAURI_INTERNALS__|transformCallback/.test(e.message)) {
      return new IpcError("not_in_app", "Not running inside the psystem app: there is no backend to ask.");
    }
    return new IpcError("unknown", e.message);
  }
  return new IpcError("unknown", String(e));
}

// ---------------------------------------------------------------------------------------------------------------
// Shapes

/** Map-valued fields whose keys are data, not field names: {@link camelize} leaves their keys alone. */
const DATA_KEYED = new Set(["columns", "phase_ms", "phaseMs", "position", "nulls"]);

/** `first_seen_run` → `firstSeenRun`. */
export function camelKey(k: string): string {
  return k.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

/** Deeply converts object keys to camelCase, except inside the data-keyed maps named in `DATA_KEYED`. */
export function camelize<T>(v: unknown): T {
  if (Array.isArray(v)) return v.map((x) => camelize(x)) as T;
  if (v && typeof v === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, val] of Object.entries(v as Record<string, unknown>)) {
      const key = camelKey(k);
      if (DATA_KEYED.has(k) && val && typeof val === "object" && !Array.isArray(val)) {
        const inner: Record<string, unknown> = {};
        for (const [ik, iv] of Object.entries(val as Record<string, unknown>)) inner[ik] = camelize(iv);
        out[key] = inner;
      } else {
        out[key] = camelize(val);
      }
    }
    return out as T;
  }
  return v as T;
}

/** `psystem_api::plugins::PluginSummary`. */
export interface PluginSummary {
  name: string;
  creator: string | null;
  description: string | null;
  enabled: boolean;
  /** `bundled` (kept in settings.yaml) or `user` (its own file). */
  origin: "bundled" | "user";
  /** Source kind: `gho_odata`, `files` or `release`. */
  source: string;
  /** The default entry (`run:`), if any. */
  run: string | null;
  /** ETL entry keys, in file order. */
  entries: string[];
  /** The manifest file. */
  path: string;
}

/** `psystem_api::plugins::PluginList`. */
export interface PluginList {
  plugins: PluginSummary[];
  /** Manifests that failed to load (with file, line and column). */
  errors: string[];
}

/** `psystem_api::plugins::EntryDetail`. */
export interface EntryDetail {
  key: string;
  indicator: string | null;
  api: string | null;
  columns: [string, string][];
  destinationUrl: string | null;
  /** `schema.table`. */
  table: string;
  mode: string | null;
  primaryKey: string[];
  default: boolean;
  file: string | null;
  entity: string | null;
  uniqueKey: string[];
  references: [string, string][];
}

/** `psystem_api::plugins::PluginDetail` (the summary flattened in). */
export interface PluginDetail extends PluginSummary {
  etl: EntryDetail[];
}

/** `psystem_releases::model::ReleaseName`. */
export interface ReleaseName {
  /** e.g. `25.03`. */
  name: string;
  latest: boolean;
}

/** `psystem_api::releases::DatasetDetail`. */
export interface DatasetDetail {
  name: string;
  /** The plugin entry that loads it. */
  entry: string | null;
  /** Number of data files. */
  files: number;
  /** Bytes of the data files. */
  bytes: number;
  partitionKeys: string[];
  /** `[path, size in bytes]`, when `files: true` was asked. */
  fileList: [string, number][];
  /** `[name, Arrow type, PostgreSQL type]`, when `schema: true` was asked (read from the Parquet footers). */
  columns: [string, string, string][];
  /** Rows per the footers, with the schema. */
  rows: number | null;
}

/** `psystem_api::releases::ReleaseDetail`. */
export interface ReleaseDetail {
  source: string;
  url: string;
  release: string;
  layout: string;
  manifest: string | null;
  datasets: DatasetDetail[];
}

/** A file's verdict: the verify report says verified/mismatch/unverified; `psystem.files` may also say missing. */
export type FileStatus = "verified" | "mismatch" | "unverified" | "missing";

/** One file of a verify report (`psystem_releases::verify::FileCheck`) or of `psystem.files`. */
export interface FileCheck {
  /** Relative to the release root, e.g. `output/target/part-00000.parquet`. */
  path: string;
  size: number | null;
  algorithm?: string | null;
  expected: string | null;
  computed: string | null;
  status: FileStatus;
  detail?: string | null;
  verifiedAt?: string | null;
}

/** `psystem_api::releases::VerifyReport`. */
export interface VerifyReport {
  release: string;
  manifest: string | null;
  files: FileCheck[];
  /** Whether the verdicts were recorded in the database's `psystem.files`. */
  recorded: boolean;
}

/** `psystem_postgres::cluster::ClusterStatus`: the local managed database. */
export interface ClusterStatus {
  initialized: boolean;
  running: boolean;
  dataDir: string;
  port: number | null;
  url: string | null;
  serverVersion: string | null;
  logFile: string;
  runAs: string | null;
}

/** A saved connection (its password is in the OS keychain or an environment variable, never in a file). */
export interface DatabaseEntry {
  name: string;
  host: string;
  port: number | null;
  database: string;
  user: string | null;
  passwordSource: "keychain" | "env" | "none";
  envVar?: string | null;
  isLocal: boolean;
}

/** `databases_list()`. */
export interface DatabaseList {
  active: string | null;
  databases: DatabaseEntry[];
  local: ClusterStatus | null;
}

/** `database_test()`. */
export interface DatabaseTest {
  ok: boolean;
  serverVersion?: string | null;
  message?: string | null;
}

/** The states of a job, as in status.yaml and the ledger. */
export type JobState = "queued" | "running" | "paused" | "completed" | "failed" | "cancelled";

/** One job, from `jobs_list()` and each `job-progress` event. */
export interface JobCard {
  /** `plugin/entry` or `plugin/entry/…`; unique. */
  key: string;
  plugin: string;
  entry: string;
  source: string;
  state: JobState;
  release?: string | null;
  /** The destination URL without its password. */
  destination: string;
  rows: number;
  bytes: number;
  pages: number;
  /** Rows in all, when the source announced them (GHO's `@odata.count`). */
  totalRows?: number | null;
  unitsDone?: number | null;
  units?: number | null;
  rowsPerSecond?: number | null;
  secondsLeft?: number | null;
  lastError?: string | null;
  /** RFC 3339. */
  updatedAt: string;
}

/** `job-finished`. */
export interface JobFinished {
  key: string;
  state: JobState;
  message?: string | null;
}

/** `verify-progress`: `done` of `total` files checked; `path` is the file just checked (or being checked). */
export interface VerifyProgress {
  plugin: string;
  release: string;
  path: string;
  done: number;
  total: number;
  status?: FileStatus | null;
}

/** `quit-requested`. */
export interface QuitRequested {
  running: number;
}

/** `psystem_postgres::idcache::EntitySummary`. */
export interface EntitySummary {
  entity: string;
  /** `host:port/database/schema`. */
  target: string;
  keyColumns: string[];
  idStrategy: unknown;
  count: number;
  lastSeenRun: number | null;
}

/** One cache entry; `firstSeen`/`lastSeen` are load ids (0 = unknown). */
export interface CacheRow {
  uniqueKey: string;
  targetId: string;
  firstSeen: number;
  lastSeen: number;
}

/** One page of `idcache_list()`. */
export interface CachePage {
  /** Entries matching the search (all pages). */
  total: number;
  rows: CacheRow[];
}

/** Sort columns of `idcache_list` (`psystem_postgres::idcache::CacheSort`). */
export type CacheSort = "unique_key" | "target_id" | "first_seen" | "last_seen";

/** `psystem_postgres::metrics::RunSummary`. */
export interface RunSummary {
  id: number;
  jobKey: string;
  plugin: string;
  entry: string;
  state: JobState;
  mode: string;
  table: { schema: string; name: string };
  startedAt: string;
  finishedAt: string | null;
  pages: number;
  rows: number;
  bytes: number;
  totalRows: number | null;
  durationMs: number;
  lastError: string | null;
}

/** `psystem_postgres::metrics::RunMetrics`. */
export interface RunMetrics {
  rowsRead: number;
  rowsWritten: number;
  rowsRejected: number;
  bytes: number;
  /** Milliseconds per phase (`download`, `verify`, `transform`, `load`, …). */
  phaseMs: Record<string, number>;
  /** Per column: nulls and distinct values. */
  columns: Record<string, { nulls: number; distinct: number | null }>;
  updatedAt: string;
}

/** `psystem_postgres::metrics::RunDetail`. */
export interface RunDetail extends RunSummary {
  metrics: RunMetrics | null;
  position: unknown;
}

// ---------------------------------------------------------------------------------------------------------------
// Transport

/** Calls a command; results are camelized, failures become {@link IpcError}. */
async function call<T>(cmd: string, args?: Record<string, unknown>): Promise<T> {
  try {
    const clean = args ? Object.fromEntries(Object.entries(args).filter(([, v]) => v !== undefined)) : undefined;
    return camelize<T>(await invoke(cmd, clean));
  } catch (e) {
    throw toIpcError(e);
  }
}

/** Subscribes to an event; the payload is camelized. Returns the unsubscribe function. */
async function on<T>(event: string, handler: (payload: T) => void): Promise<UnlistenFn> {
  try {
    const off = await listen(event, (e) => handler(camelize<T>(e.payload)));
    // Unsubscribing after the backend went away (window closing, tests) is harmless: swallow its failure.
    return () => {
      void Promise.resolve()
        .then(() => off())
        .catch(() => {});
    };
  } catch {
    // Outside the app (plain browser without the fake backend) there are no events.
    return () => {};
  }
}

function normalizeDatabases(v: DatabaseList | DatabaseEntry[]): DatabaseList {
  if (Array.isArray(v)) return { active: null, databases: v, local: null };
  return { active: v.active ?? null, databases: v.databases ?? [], local: v.local ?? null };
}

function normalizePage(v: unknown): CachePage {
  const o = (v ?? {}) as { total?: number; rows?: unknown[]; entries?: unknown[] };
  const raw = (o.rows ?? o.entries ?? []) as Record<string, unknown>[];
  return {
    total: Number(o.total ?? raw.length),
    rows: raw.map((r) => ({
      uniqueKey: String(r.uniqueKey ?? ""),
      targetId: String(r.targetId ?? ""),
      firstSeen: Number(r.firstSeen ?? r.firstSeenRun ?? 0),
      lastSeen: Number(r.lastSeen ?? r.lastSeenRun ?? 0),
    })),
  };
}

function normalizeJob(j: JobCard): JobCard {
  return { ...j, rows: j.rows ?? 0, bytes: j.bytes ?? 0, pages: j.pages ?? 0 };
}

// ---------------------------------------------------------------------------------------------------------------
// Commands

/** Plugins: list, show, enable/disable (persisted as the CLI does). */
export const plugins = {
  list: () => call<PluginList>("plugins_list"),
  show: (name: string) => call<PluginDetail>("plugin_show", { name }),
  setEnabled: (name: string, enabled: boolean) => call<PluginSummary>("plugin_set_enabled", { name, enabled }),
};

/** Options of `release_show`. */
export interface ReleaseShowOptions {
  release?: string;
  datasets?: string[];
  files?: boolean;
  schema?: boolean;
  sourceUrl?: string;
}

/** Releases of release plugins (e.g. `opentargets`). */
export const releases = {
  /** Newest first. */
  list: (plugin: string, sourceUrl?: string) => call<ReleaseName[]>("releases_list", { plugin, sourceUrl }),
  show: (plugin: string, o: ReleaseShowOptions = {}) => call<ReleaseDetail>("release_show", { plugin, ...o }),
  /** Emits `verify-progress` while it runs. */
  verify: (plugin: string, o: { release?: string; datasets?: string[]; db?: string; sourceUrl?: string } = {}) =>
    call<VerifyReport>("release_verify", { plugin, ...o }),
  /** The `psystem.files` verdicts; `[]` without a database. */
  fileChecks: (plugin: string, release: string, db?: string) =>
    call<FileCheck[]>("file_checks", { plugin, release, db }),
};

/** Saved connections, the active one, and the local managed database. */
export const databases = {
  list: async () => normalizeDatabases(await call<DatabaseList | DatabaseEntry[]>("databases_list")),
  save: (a: { name: string; url: string; password?: string; passwordEnv?: string }) =>
    call<DatabaseEntry>("database_save", a),
  remove: (name: string) => call<void>("database_remove", { name }),
  activate: (name: string) => call<void>("database_activate", { name }),
  test: (name: string) => call<DatabaseTest>("database_test", { name }),
  localStatus: () => call<ClusterStatus>("local_db_status"),
  localUp: () => call<ClusterStatus>("local_db_up"),
  localDown: () => call<ClusterStatus>("local_db_down"),
};

/** Jobs: cards, start, pause (at the next page or unit boundary), resume, cancel, log. */
export const jobs = {
  list: async () => (await call<JobCard[]>("jobs_list")).map(normalizeJob),
  start: (a: { plugin: string; entry: string; db?: string; release?: string; mode?: string; sourceUrl?: string }) =>
    call<{ key: string }>("job_start", a),
  pause: (key: string) => call<void>("job_pause", { key }),
  resume: (key: string) => call<void>("job_resume", { key }),
  cancel: (key: string) => call<void>("job_cancel", { key }),
  /** The last `lines` log lines. Accepts `string[]` or one string from the shell. */
  log: async (key: string, lines = 30) => {
    const v = await call<string[] | string>("job_log", { key, lines });
    return Array.isArray(v) ? v : String(v ?? "").split("\n").filter((l) => l.length > 0);
  },
};

/** Arguments of `idcache_list`; `page` is 0-based (offset = page × pageSize). */
export interface CacheListArgs {
  db?: string;
  entity: string;
  search?: string;
  sort?: CacheSort;
  desc?: boolean;
  page: number;
  pageSize: number;
}

/** The ID cache: entities, pages of unique key → target ID, CSV export. */
export const idcache = {
  entities: (db?: string) => call<EntitySummary[]>("idcache_entities", { db }),
  list: async (a: CacheListArgs) => normalizePage(await call<unknown>("idcache_list", { ...a })),
  /** Writes CSV to `path` on this computer; returns the number of rows written. */
  export: (a: { db?: string; entity: string; path: string }) => call<{ rows: number }>("idcache_export", a),
};

/** Past loads from the ledger. */
export const runs = {
  list: (limit = 200, db?: string) => call<RunSummary[]>("runs_list", { db, limit }),
  detail: (id: number, db?: string) => call<RunDetail | null>("run_detail", { db, id }),
};

/** Answers `quit-requested`: pause running jobs at a safe point, then quit. */
export const app = {
  quit: (pauseJobs: boolean) => call<void>("app_quit", { pauseJobs }),
};

// ---------------------------------------------------------------------------------------------------------------
// Events

/** Pushed events; each returns its unsubscribe function. */
export const events = {
  jobProgress: (h: (j: JobCard) => void) => on<JobCard>("job-progress", (j) => h(normalizeJob(j))),
  jobFinished: (h: (f: JobFinished) => void) => on<JobFinished>("job-finished", h),
  verifyProgress: (h: (p: VerifyProgress) => void) => on<VerifyProgress>("verify-progress", h),
  quitRequested: (h: (q: QuitRequested) => void) => on<QuitRequested>("quit-requested", h),
};
