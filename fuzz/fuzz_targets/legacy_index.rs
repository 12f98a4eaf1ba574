#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| gc_kit::fuzzing::fuzz_legacy_index(data));
