//! The collector's JSON scanner against serde_json: any value the scanner
//! reads, serde reads the same (integers included).
#![no_main]

use libfuzzer_sys::fuzz_target;
use moat_fuzz::text;

fuzz_target!(|data: &[u8]| {
    if let Some(frame) = text(data) {
        moat_collector::venues::check_against_serde(frame);
    }
});
