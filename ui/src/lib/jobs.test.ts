import { describe, expect, it } from "vitest";
import type { JobCard } from "./api";
import { jobFraction } from "./jobs";

const card = (over: Partial<JobCard>): JobCard => ({
  key: "p/e",
  plugin: "p",
  entry: "e",
  source: "gho_odata",
  state: "running",
  destination: "postgres://x@h/db",
  rows: 0,
  bytes: 0,
  pages: 0,
  updatedAt: "2026-11-26T00:00:00Z",
  ...over,
});

describe("jobFraction", () => {
  it("uses work units first", () => {
    expect(jobFraction(card({ units: 8, unitsDone: 2, totalRows: 100, rows: 90 }))).toBe(0.25);
  });
  it("uses the rows the source announced", () => {
    expect(jobFraction(card({ totalRows: 165, rows: 33 }))).toBeCloseTo(0.2);
    expect(jobFraction(card({ totalRows: 10, rows: 12 }))).toBe(1);
  });
  it("is unknown without a total, and whole when completed", () => {
    expect(jobFraction(card({ rows: 50 }))).toBeNull();
    expect(jobFraction(card({ totalRows: 0, rows: 5 }))).toBeNull();
    expect(jobFraction(card({ state: "completed", rows: 5 }))).toBe(1);
  });
});
