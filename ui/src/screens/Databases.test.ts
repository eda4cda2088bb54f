import { beforeEach, describe, expect, it } from "vitest";
import { render, screen, waitFor, within } from "@testing-library/svelte";
import userEvent from "@testing-library/user-event";
import Databases from "./Databases.svelte";
import { fail, mockBackend } from "../test/backend";
import { dbState } from "../lib/state.svelte";

beforeEach(() => {
  dbState.data = null;
  dbState.error = null;
  dbState.health = null;
});

const local = { initialized: true, running: false, data_dir: "/root/.psystem/pgdata", port: 55432, url: null, server_version: "15", log_file: "/tmp/log", run_as: null };
const list = (active: string | null) => ({
  active,
  databases: [
    { name: "local", host: "127.0.0.1", port: 55432, database: "psystem", user: "postgres", passwordSource: "none", isLocal: true },
    { name: "warehouse", host: "db.example.org", port: 5432, database: "research", user: "analyst", passwordSource: "env", envVar: "WH_PW", isLocal: false },
  ],
  local,
});

describe("Databases screen", () => {
  it("shows the add form when nothing is saved, and saves a password to the keychain", async () => {
    const b = mockBackend({
      databases_list: () => ({ active: null, databases: [], local }),
      local_db_status: () => local,
      database_save: (a) => ({ name: a.name, host: "h", port: 5432, database: "d", user: null, passwordSource: "keychain", isLocal: false }),
    });
    render(Databases);
    expect(await screen.findByText("No saved databases")).toBeInTheDocument();
    const form = screen.getByTestId("db-add");
    await userEvent.type(within(form).getByLabelText("Name"), "wh");
    await userEvent.type(within(form).getByLabelText(/connection url/i), "postgres://a@h/d");
    await userEvent.type(within(form).getByLabelText(/password \(kept/i), "s3cret");
    await userEvent.click(within(form).getByRole("button", { name: "Save" }));
    await waitFor(() => expect(b.argsOf("database_save")).toEqual([{ name: "wh", url: "postgres://a@h/d", password: "s3cret" }]));
  });

  it("shows an error with a retry", async () => {
    let n = 0;
    mockBackend({
      databases_list: () => (n++ === 0 ? fail("io", "databases.yaml: permission denied") : list("local")),
      local_db_status: () => local,
    });
    render(Databases);
    expect(await screen.findByText("databases.yaml: permission denied")).toBeInTheDocument();
    await userEvent.click(screen.getByRole("button", { name: "Retry" }));
    expect(await screen.findByTestId("db-warehouse")).toBeInTheDocument();
  });

  it("lists connections, tests one, activates another and starts the local database", async () => {
    let active = "local";
    const b = mockBackend({
      databases_list: () => list(active),
      local_db_status: () => local,
      local_db_up: () => ({ ...local, running: true }),
      database_test: (a) => (a.name === "warehouse" ? { ok: false, message: "connection refused" } : { ok: true, serverVersion: "15.8" }),
      database_activate: (a) => void (active = a.name as string),
    });
    render(Databases);
    const wh = await screen.findByTestId("db-warehouse");
    expect(wh).toHaveTextContent("analyst@db.example.org:5432/research");
    expect(wh).toHaveTextContent("$WH_PW");
    expect(screen.getByTestId("db-local")).toHaveTextContent("active");

    await userEvent.click(screen.getByTestId("db-test-warehouse"));
    expect(await within(wh).findByText("Failed: connection refused")).toBeInTheDocument();
    await userEvent.click(screen.getByTestId("db-test-local"));
    expect(await screen.findByText("Connected · PostgreSQL 15.8")).toBeInTheDocument();

    await userEvent.click(screen.getByTestId("db-activate-warehouse"));
    await waitFor(() => expect(within(screen.getByTestId("db-warehouse")).getByText("active")).toBeInTheDocument());
    expect(b.argsOf("database_activate")).toEqual([{ name: "warehouse" }]);

    const panel = screen.getByTestId("local-db");
    expect(panel).toHaveTextContent("stopped");
    await userEvent.click(within(panel).getByRole("button", { name: /start/i }));
    await waitFor(() => expect(panel).toHaveTextContent("running"));
  });
});
