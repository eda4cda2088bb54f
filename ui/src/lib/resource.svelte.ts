/** A value loaded through the API with its loading and error state, for screens. */
import { toIpcError, type IpcError } from "./api";

/** `loading` until the first answer; `error` holds the last failure (cleared by a new load). */
export class Resource<T> {
  data = $state<T | undefined>(undefined);
  error = $state<IpcError | null>(null);
  loading = $state(false);
  #fetch: () => Promise<T>;
  #seq = 0;

  constructor(fetch: () => Promise<T>) {
    this.#fetch = fetch;
  }

  /** (Re)loads; a later call wins over an earlier one still in flight. */
  async load(): Promise<void> {
    const seq = ++this.#seq;
    this.loading = true;
    this.error = null;
    try {
      const v = await this.#fetch();
      if (seq === this.#seq) this.data = v;
    } catch (e) {
      if (seq === this.#seq) this.error = toIpcError(e);
    } finally {
      if (seq === this.#seq) this.loading = false;
    }
  }
}
