//! Fuzz target: see `s3_signing_proxy::lab::fuzzing::route_and_jail`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    s3_signing_proxy::lab::fuzzing::route_and_jail(data);
});
