//! Replays the fuzz corpora kept in `fuzz/corpus/` (seeds, and every input a fuzzing run found
//! interesting) through the same entry points the fuzz targets drive: a regression suite for
//! the router, the SigV4 verifier, the aws-chunked decoder, the upstream document rewriter and
//! the client document parsers. The document checks read what the proxy writes with a second,
//! independent XML parser (roxmltree).
// Tests may search and edit text freely; .clippy.toml's ban is for the proxy's own code.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use crate::support::repo_root;

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

/// Replays a corpus through a check that says whether it accepted each input, and insists
/// that some inputs were accepted: a check that refused everything would prove nothing.
fn replay_accepting(target: &str, check: fn(&[u8]) -> bool, at_least: usize) -> (usize, usize) {
    let dir = repo_root().join("fuzz/corpus").join(target);
    let (mut replayed, mut accepted) = (0, 0);
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        match std::panic::catch_unwind(|| check(&data)) {
            Ok(true) => accepted += 1,
            Ok(false) => {}
            Err(_) => panic!("{} breaks an invariant", path.display()),
        }
        replayed += 1;
    }
    assert!(
        accepted >= at_least,
        "{target}: only {accepted} of {replayed} corpus entries accepted"
    );
    assert!(accepted < replayed, "{target}: nothing was refused");
    (replayed, accepted)
}

#[test]
fn listing_corpus() {
    replay_accepting("listing", s3_signing_proxy::fuzzing::rewrite_listing, 8);
}

#[test]
fn delete_corpus() {
    replay_accepting("delete", s3_signing_proxy::fuzzing::client_delete, 3);
}

#[test]
fn complete_corpus() {
    replay_accepting("complete", s3_signing_proxy::fuzzing::client_complete, 2);
}

/// Signed policies: of the named seeds, exactly those named `allowed-*` are let through (reads
/// of keys the policy names); every trick, write, listing, expired or tampered one is refused.
#[test]
fn policy_corpus() {
    replay_accepting("policy", s3_signing_proxy::fuzzing::policy_grant, 5);
    let dir = repo_root().join("fuzz/corpus/policy");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        // Inputs a fuzzing run kept are named by their hash: only the seeds say what they are.
        if name.len() == 40 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        let accepted = s3_signing_proxy::fuzzing::policy_grant(&std::fs::read(&path).unwrap());
        assert_eq!(accepted, name.starts_with("allowed-"), "{name}");
    }
}

/// A xorshift generator from `seed`: each call gives a number below its argument.
fn below(mut state: u64) -> impl FnMut(usize) -> usize {
    move |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    }
}

#[test]
fn form_corpus() {
    replay_accepting("form", s3_signing_proxy::fuzzing::form_parts, 3);
}

/// The form parsers over many generated bodies: a browser's form with delimiters, line ends,
/// dashes and padding inserted at random, fed in random steps. The streaming parser and the
/// whole-body one agree on every body (`form_parts` panics where they do not).
#[test]
fn generated_forms_are_read_alike_by_both_parsers() {
    const BASE: &[u8] = b"--XyZ\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\nuploads/a\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n\r\nPNG-bytes\r\n--XyZ--\r\n";
    const INSERTS: &[&[u8]] = &[
        b"\r\n",
        b"--",
        b"\r\n--XyZ",
        b"--XyZ",
        b" ",
        b"\t",
        b"\r",
        b"\n",
        b"X",
        b"\r\n\r\n",
        b"\r\n--XyZ--",
        b"\"",
        b";",
        b"name=\"b\"",
    ];
    let mut next = below(0xD1B5_4A32_D192_ED03);
    let (mut accepted, mut refused) = (0, 0);
    for _ in 0..20_000 {
        let mut body = BASE.to_vec();
        for _ in 0..next(3) {
            let at = next(body.len() + 1);
            let insert = INSERTS[next(INSERTS.len())];
            body.splice(at..at, insert.iter().copied());
        }
        let mut input = vec![(next(16) + 1) as u8];
        input.extend_from_slice(b"XyZ\n");
        input.extend_from_slice(&body);
        if s3_signing_proxy::fuzzing::form_parts(&input) {
            accepted += 1;
        } else {
            refused += 1;
        }
    }
    assert!(
        accepted > 1_000 && refused > 1_000,
        "accepted {accepted}, refused {refused}"
    );
}

/// The policy matcher over many generated request paths: encoded slashes, dot segments, case
/// and near-miss prefixes. What is let through stays under the policy's prefix on the store.
#[test]
fn generated_paths_never_read_outside_a_policy() {
    const PARTS: &[&str] = &[
        "photos",
        "photos/",
        "Photos/",
        "photo",
        "photos%2F",
        "%2e%2e/",
        "../",
        "./",
        "/",
        "a",
        "b.png",
        "%70hotos/",
        "photos%2f",
        "%2F",
        "é",
        "_session",
        "private/",
    ];
    const METHODS: &[&str] = &["GET", "HEAD", "GET", "PUT", "DELETE", "POST"];
    let mut next = below(0x9E37_79B9_7F4A_7C15);
    let (mut accepted, mut refused) = (0, 0);
    for _ in 0..20_000 {
        let path: String = (0..=next(4)).map(|_| PARTS[next(PARTS.len())]).collect();
        let input = format!(
            "{{\"resource\":\"/acme/photos/*\",\"expires\":1700003600}}\n{}\n/acme/{path}\n",
            METHODS[next(METHODS.len())]
        );
        if s3_signing_proxy::fuzzing::policy_grant(input.as_bytes()) {
            accepted += 1;
        } else {
            refused += 1;
        }
    }
    assert!(
        accepted > 1_000 && refused > 1_000,
        "accepted {accepted}, refused {refused}"
    );
}

/// The property behind the delete target, over many generated documents: every spelling of
/// elements an XML parser accepts, and keys that try to climb out. Whatever the proxy accepts,
/// the second parser reads with the same keys, and what it sends keeps each under the prefix.
#[test]
fn generated_delete_documents_never_name_a_key_outside_the_prefix() {
    // Each part is drawn from what a client normally writes, or one time in four from what an
    // attacker would try, so that both accepted and refused documents are common.
    const KEYS: &[&str] = &[
        "a.txt",
        "dir/b",
        "é",
        "&amp;",
        "&lt;b",
        "&#47;r",
        "<![CDATA[ok]]>",
        " ",
        "x",
    ];
    const ATTACK_KEYS: &[&str] = &[
        "../x",
        "/root",
        "a//b",
        "x/../../y",
        "&#x2e;&#x2e;/up",
        "<![CDATA[../c]]>",
        "%2e%2e",
        "k&#0;",
        "k\u{1}",
        "]]>",
        "<Key>x</Key>",
        "&k;",
    ];
    const TAGS: &[(&str, &str)] = &[
        ("<Key>", "</Key>"),
        ("<Key >", "</Key >"),
        ("<Key\t>", "</Key\n>"),
    ];
    const ATTACK_TAGS: &[(&str, &str)] = &[
        ("<Key a=\"1\">", "</Key>"),
        ("<s3:Key>", "</s3:Key>"),
        ("<KEY>", "</KEY>"),
        ("<Key>", "</Key2>"),
        ("<Key/>", ""),
    ];
    const HEADS: &[&str] = &[
        "",
        "\u{FEFF}",
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>",
        "<!-- c -->",
    ];
    const ATTACK_HEADS: &[&str] = &[
        "<?xml version=\"1.0\" encoding=\"UTF-16\"?>",
        "<!DOCTYPE Delete>",
        "<!DOCTYPE Delete [<!ENTITY k \"../x\">]>",
        "<?pi x?>",
    ];
    const ROOTS: &[&str] = &[
        "<Delete>",
        "<Delete xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">",
    ];
    const ATTACK_ROOTS: &[&str] = &[
        "<Delete xmlns=\"urn:other\">",
        "<Delete xmlns:s3=\"http://s3.amazonaws.com/doc/2006-03-01/\">",
    ];
    let mut next = below(0x2545_F491_4F6C_DD1D);
    fn pick<'a, T: Copy>(
        next: &mut impl FnMut(usize) -> usize,
        usual: &'a [T],
        attack: &'a [T],
    ) -> T {
        if next(4) == 0 {
            attack[next(attack.len())]
        } else {
            usual[next(usual.len())]
        }
    }
    let (mut accepted, mut refused) = (0, 0);
    for _ in 0..20_000 {
        let mut document = format!(
            "{}{}",
            pick(&mut next, HEADS, ATTACK_HEADS),
            pick(&mut next, ROOTS, ATTACK_ROOTS)
        );
        for _ in 0..=next(2) {
            let key: String = (0..=next(2))
                .map(|_| pick(&mut next, KEYS, ATTACK_KEYS))
                .collect();
            let (open, close) = pick(&mut next, TAGS, ATTACK_TAGS);
            document.push_str(&format!("<Object>{open}{key}{close}</Object>"));
        }
        if next(4) == 0 {
            document.push_str("<Quiet>true</Quiet>");
        }
        document.push_str("</Delete>");
        if s3_signing_proxy::fuzzing::client_delete(document.as_bytes()) {
            accepted += 1;
        } else {
            refused += 1;
        }
    }
    // Both outcomes are common: the generator reaches the interesting boundary.
    assert!(
        accepted > 1_000 && refused > 1_000,
        "accepted {accepted}, refused {refused}"
    );
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
