#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| statusd_fuzz::inspect_any(data));
