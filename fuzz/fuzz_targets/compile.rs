//! Arbitrary bytes, read as lossy UTF-8, as a policy (plus optional query,
//! test file and included files after NUL separators; see src/harness.rs):
//! parse, compile, render diagnostics, emit, run tests, query. No input may
//! panic or hang.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    fwc_fuzz::run_bytes(data);
});
