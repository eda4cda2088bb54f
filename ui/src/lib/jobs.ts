/** Small pure helpers about job cards. */
import type { JobCard } from "./api";

/** How far a job is (0–1) when its total is known (work units, or the rows the source announced), else `null`
 * (the bar shows indeterminate). */
export function jobFraction(j: JobCard): number | null {
  if (j.state === "completed") return 1;
  if (j.units && j.units > 0 && j.unitsDone != null) return j.unitsDone / j.units;
  if (j.totalRows && j.totalRows > 0) return Math.min(1, j.rows / j.totalRows);
  return null;
}
