#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| gc_partition::fuzzing::fuzz_list_page(data));
