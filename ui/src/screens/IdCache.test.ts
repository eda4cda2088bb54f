import { describe, expect, it } from "vitest";
import { render, screen, waitFor } from "@testing-library/svelte";
import userEvent from "@testing-library/user-event";
import IdCache from "./IdCache.svelte";
import { fail, mockBackend } from "../test/backend";

const entity = { entity: "participant", target: "127.0.0.1:55432/psystem/public", key_columns: ["study", "subject"], id_strategy: null, count: 450, last_seen_run: 3 };
const all = Array.from({ length: 450 }, (_, i) => ({ unique_key: `S1|P${i}`, target_id: `PT_${i}`, first_seen_run: 1, last_seen_run: 3 }));

describe("ID cache screen", () => {
  it("shows the empty state", async () => {
    mockBackend({ idcache_entities: () => [] });
    render(IdCache);
    expect(await screen.findByText("The ID cache is empty")).toBeInTheDocument();
  });

  it("shows the error and offers the database screen", async () => {
    mockBackend({ idcache_entities: () => fail("destination", "connection refused (127.0.0.1:5432)") });
    render(IdCache);
    expect(await screen.findByText("connection refused (127.0.0.1:5432)")).toBeInTheDocument();
    expect(screen.getByRole("button", { name: "Open Databases" })).toBeInTheDocument();
  });

  it("searches, sorts and pages on the server and exports CSV", async () => {
    const b = mockBackend({
      idcache_entities: () => [entity],
      idcache_list: (a) => {
        const q = String(a.search ?? "");
        const rows = all.filter((r) => r.unique_key.includes(q) || r.target_id.includes(q));
        const page = a.page as number;
        const size = a.pageSize as number;
        return { total: rows.length, entries: rows.slice(page * size, (page + 1) * size) };
      },
      idcache_export: () => ({ rows: 450 }),
    });
    render(IdCache);
    expect(await screen.findByTestId("idcache-entity-participant")).toHaveTextContent("450");
    await waitFor(() => expect(screen.getAllByTestId("idcache-row").length).toBeGreaterThan(5));
    expect(screen.getAllByTestId("idcache-row")[0]).toHaveTextContent("S1|P0");
    expect(screen.getAllByTestId("idcache-row")[0]).toHaveTextContent("PT_0");
    expect(screen.getByText(/of 450/)).toBeInTheDocument();
    expect(b.argsOf("idcache_list")[0]).toMatchObject({ entity: "participant", page: 0, pageSize: 200, sort: "unique_key", desc: false });

    await userEvent.click(screen.getByRole("button", { name: "Next page" }));
    await waitFor(() => expect(b.argsOf("idcache_list").at(-1)).toMatchObject({ page: 1 }));
    await waitFor(() => expect(screen.getAllByTestId("idcache-row")[0]).toHaveTextContent("S1|P200"));

    await userEvent.type(screen.getByTestId("idcache-search"), "P42");
    await waitFor(() => expect(b.argsOf("idcache_list").at(-1)).toMatchObject({ entity: "participant", search: "P42", page: 0 }));
    await waitFor(() => expect(screen.getAllByTestId("idcache-row").map((r) => r.textContent)).toHaveLength(11));
    expect(screen.getAllByTestId("idcache-row")[0]).toHaveTextContent("PT_42");

    await userEvent.click(screen.getByRole("button", { name: /target id/i }));
    await waitFor(() => expect(b.argsOf("idcache_list").at(-1)).toMatchObject({ sort: "target_id", desc: false, search: "P42" }));

    await userEvent.click(screen.getByTestId("idcache-export"));
    await waitFor(() => expect(b.argsOf("idcache_export")).toEqual([{ entity: "participant", path: "~/psystem-idcache-participant.csv" }]));
  });

  it("says when a search matches nothing", async () => {
    mockBackend({ idcache_entities: () => [entity], idcache_list: (a) => ({ total: 0, rows: [], ...(a.search ? {} : { total: 0 }) }) });
    render(IdCache);
    await userEvent.type(await screen.findByTestId("idcache-search"), "zzz");
    expect(await screen.findByText("No entry matches “zzz”.")).toBeInTheDocument();
  });
});
