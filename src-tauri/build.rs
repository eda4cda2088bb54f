//! Tauri build step. The app's config is `tauri.conf.json` at the repository root; `src-tauri/tauri.conf.json` is a
//! symlink to it, so that the tauri CLI (which looks for the config beside this crate's Cargo.toml, e.g. for
//! `tauri build --bundles deb`) and this build step read the same file, with paths relative to `src-tauri/`.
fn main() {
    tauri_build::build();
}
