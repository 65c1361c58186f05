//! The `code` property of `checks.rs`, coverage-guided.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::code(data));
