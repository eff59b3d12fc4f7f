//! Fuzz target: see `s3_signing_proxy::lab::fuzzing::client_delete`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    s3_signing_proxy::lab::fuzzing::client_delete(data);
});
