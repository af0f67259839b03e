#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| statusd::fuzzing::redis_load(data));
