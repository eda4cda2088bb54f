import type { JobCard, PluginSummary } from "../lib/api";

export function plugin(over: Partial<PluginSummary> = {}): PluginSummary {
  return {
    name: "gho",
    creator: "psystem",
    description: "WHO Global Health Observatory",
    enabled: true,
    origin: "bundled",
    source: "gho_odata",
    run: "life_expectancy",
    entries: ["life_expectancy", "mortality"],
    path: "assets/plugins/gho.yaml",
    ...over,
  };
}

export function job(over: Partial<JobCard> = {}): JobCard {
  return {
    key: "gho/life_expectancy",
    plugin: "gho",
    entry: "life_expectancy",
    source: "gho_odata",
    state: "running",
    destination: "postgres://postgres@127.0.0.1:55432/psystem",
    rows: 1200,
    bytes: 2048,
    pages: 2,
    rowsPerSecond: 3412,
    secondsLeft: 240,
    updatedAt: new Date().toISOString(),
    ...over,
  };
}
