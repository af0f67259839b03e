#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| statusd::fuzzing::ietf_list(data));
