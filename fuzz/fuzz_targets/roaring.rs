#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| statusd::fuzzing::roaring(data));
