//! Structure-aware variant: each byte picks a token of the fwc language
//! (keywords, punctuation, numbers at range boundaries, addresses, strings;
//! `fwc_fuzz::TOKENS`), so inputs are made of real words and reach past the
//! parser far more often than raw bytes do.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    fwc_fuzz::run_text_avoiding(&fwc_fuzz::tokens_to_text(data), fwc_fuzz::Avoid::KNOWN_BUGS);
});
