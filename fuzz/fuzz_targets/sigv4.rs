//! Fuzz target: see `s3_signing_proxy::lab::fuzzing::verify_signature`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    s3_signing_proxy::lab::fuzzing::verify_signature(data);
});
