//! Empty: this package only holds the desktop app's end-to-end test (`e2e.rs`, helpers in `support/mod.rs`).
