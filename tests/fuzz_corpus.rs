//! Replays the fuzz corpora kept in `fuzz/corpus/` (seeds, and every input a fuzzing run found
//! interesting) through the same entry points the fuzz targets drive: a regression suite for
//! the router, the SigV4 verifier, the aws-chunked decoder and the listing rewriter.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod support;

use support::repo_root;

fn replay(target: &str, check: fn(&[u8])) {
    let dir = repo_root().join("fuzz/corpus").join(target);
    let mut replayed = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(outcome.is_ok(), "{} breaks an invariant", path.display());
        replayed += 1;
    }
    assert!(replayed >= 3, "{target}: only {replayed} corpus entries");
}

#[test]
fn route_corpus() {
    replay("route", s3_signing_proxy::fuzzing::route_and_jail);
}

#[test]
fn sigv4_corpus() {
    replay("sigv4", s3_signing_proxy::fuzzing::verify_signature);
}

#[test]
fn chunked_corpus() {
    replay("chunked", s3_signing_proxy::fuzzing::decode_chunked);
}

#[test]
fn listing_corpus() {
    replay("listing", s3_signing_proxy::fuzzing::rewrite_listing);
}

/// The property behind the route target, over many generated keys: the key checked against
/// the prefix, the key signed and the key on the wire are the same bytes.
#[test]
fn generated_keys_stay_the_same_bytes_from_check_to_wire() {
    const ALPHABET: &[&str] = &[
        "a", "Z", "0", "/", " ", "+", "%", "%2F", "%25", "=", "&", "?", "#", "~", ".", "..", "é",
        "✓", "😀", "%00", "%0A", "\\", "'", "\"", "<", ">", ";", ":", "@", "*", "(", "[",
    ];
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..20_000 {
        let length = (next() % 12) as usize;
        let key: String = (0..length)
            .map(|_| ALPHABET[(next() % ALPHABET.len() as u64) as usize])
            .collect();
        let input = format!("GET\n\n/acme/{key}\n");
        s3_signing_proxy::fuzzing::route_and_jail(input.as_bytes());
    }
}
