import { beforeEach, describe, expect, it } from "vitest";
import { render, screen, waitFor } from "@testing-library/svelte";
import userEvent from "@testing-library/user-event";
import App from "./App.svelte";
import { mockBackend } from "./test/backend";
import { job, plugin } from "./test/fixtures";
import { dbState, jobState, nav } from "./lib/state.svelte";

beforeEach(() => {
  nav.screen = "plugins";
  jobState.list = [];
  dbState.data = null;
  dbState.health = null;
});

function backend() {
  return mockBackend({
    plugins_list: () => ({ plugins: [plugin()], errors: [] }),
    jobs_list: () => [job(), job({ key: "gho/mortality", state: "paused" }), job({ key: "x/y", state: "completed" })],
    databases_list: () => ({
      active: "local",
      databases: [{ name: "local", host: "127.0.0.1", port: 55432, database: "psystem", user: "postgres", passwordSource: "none", isLocal: true }],
      local: null,
    }),
    database_test: () => ({ ok: true, serverVersion: "15.8" }),
    runs_list: () => [],
    app_quit: () => null,
  });
}

describe("the frame", () => {
  it("has the six places, the jobs badge, the active database and the running jobs strip", async () => {
    backend();
    render(App);
    for (const id of ["plugins", "releases", "jobs", "idcache", "history", "databases"]) {
      expect(screen.getByTestId(`nav-${id}`)).toBeInTheDocument();
    }
    expect(await screen.findByTestId("nav-jobs-badge")).toHaveTextContent("2");
    await waitFor(() => expect(screen.getByTestId("active-db")).toHaveTextContent("local"));
    expect(screen.getByTestId("active-db")).toHaveTextContent("127.0.0.1:55432");
    await waitFor(() => expect(screen.getByTestId("active-db")).toHaveAccessibleName(/connected/));
    expect(screen.getByTestId("job-strip")).toHaveTextContent("gho/mortality");
    expect(screen.getByTestId("job-strip")).not.toHaveTextContent("x/y");

    await userEvent.click(screen.getByTestId("nav-history"));
    expect(screen.getByTestId("nav-history")).toHaveAttribute("aria-current", "page");
    expect(await screen.findByText("No loads yet")).toBeInTheDocument();
  });

  it("asks before quitting with running jobs and answers app_quit({ pauseJobs: true })", async () => {
    const b = backend();
    render(App);
    await screen.findByTestId("nav-jobs-badge");
    await b.emit("quit-requested", { running: 2 });
    expect(await screen.findByText("2 jobs are running")).toBeInTheDocument();
    await userEvent.click(screen.getByRole("button", { name: "Pause jobs and quit" }));
    await waitFor(() => expect(b.argsOf("app_quit")).toEqual([{ pauseJobs: true }]));
  });

  it("switches theme with the toggle", async () => {
    backend();
    render(App);
    await userEvent.click(screen.getByTestId("theme-toggle"));
    expect(document.documentElement.dataset.theme).toBe("light");
    await userEvent.click(screen.getByTestId("theme-toggle"));
    expect(document.documentElement.dataset.theme).toBe("dark");
  });
});
