/** Light/dark: follows `prefers-color-scheme` unless the user picks one (kept in localStorage). */
export type ThemeChoice = "system" | "light" | "dark";

const KEY = "psystem.theme";

function read(): ThemeChoice {
  try {
    const v = localStorage.getItem(KEY);
    return v === "light" || v === "dark" ? v : "system";
  } catch {
    return "system";
  }
}

export const theme = $state<{ choice: ThemeChoice }>({ choice: "system" });

/** Applies a choice to `<html data-theme>` and remembers it. */
export function setTheme(choice: ThemeChoice): void {
  theme.choice = choice;
  const root = document.documentElement;
  if (choice === "system") root.removeAttribute("data-theme");
  else root.setAttribute("data-theme", choice);
  try {
    if (choice === "system") localStorage.removeItem(KEY);
    else localStorage.setItem(KEY, choice);
  } catch {
    /* storage may be unavailable */
  }
}

/** Applies the saved choice at start. */
export function initTheme(): void {
  setTheme(read());
}
