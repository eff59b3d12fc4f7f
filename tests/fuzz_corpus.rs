//! Replays the fuzz corpora kept in `fuzz/corpus/` (seeds, and every input a fuzzing run found
//! interesting) through the same entry points the fuzz targets drive: a regression suite for
//! the router, the SigV4 verifier, the aws-chunked decoder, the upstream document rewriter and
//! the client document parsers. The document checks read what the proxy writes with a second,
//! independent XML parser (roxmltree).
// This file mutates signed requests as text on purpose. .clippy.toml's ban on editing text is
// for the proxy's own code.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use crate::support::repo_root;

#[test]
fn route_corpus() {
    // 160 of 577 entries reach the jail's checks (2026-12-06).
    replay_accepting("route", s3_signing_proxy::lab::fuzzing::route_and_jail, 100);
}

#[test]
fn sigv4_corpus() {
    // Random bytes cannot carry a valid signature: the corpus is kept for what it refuses,
    // and every entry must be refused. What is accepted is proved below, with requests an
    // independent signer (aws-sigv4) signed.
    let (replayed, accepted) =
        replay_counting("sigv4", s3_signing_proxy::lab::fuzzing::verify_signature);
    assert_eq!(accepted, 0, "a corpus entry was accepted as the client");
    assert!(replayed > 500, "only {replayed} corpus entries");
}

#[test]
fn chunked_corpus() {
    // 2 of 384 entries decode cleanly to their declared length (2026-12-06).
    replay_accepting("chunked", s3_signing_proxy::lab::fuzzing::decode_chunked, 2);
}

/// Replays a corpus through a check that says whether it accepted each input, and insists
/// that some inputs were accepted: a check that refused everything would prove nothing.
fn replay_accepting(target: &str, check: fn(&[u8]) -> bool, at_least: usize) -> (usize, usize) {
    let (replayed, accepted) = replay_counting(target, check);
    assert!(
        accepted >= at_least,
        "{target}: only {accepted} of {replayed} corpus entries accepted"
    );
    assert!(accepted < replayed, "{target}: nothing was refused");
    (replayed, accepted)
}

/// Replays a corpus; returns how many entries it replayed and how many `check` accepted.
fn replay_counting(target: &str, check: fn(&[u8]) -> bool) -> (usize, usize) {
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
    (replayed, accepted)
}

#[test]
fn listing_corpus() {
    replay_accepting(
        "listing",
        s3_signing_proxy::lab::fuzzing::rewrite_listing,
        8,
    );
}

#[test]
fn delete_corpus() {
    replay_accepting("delete", s3_signing_proxy::lab::fuzzing::client_delete, 3);
}

#[test]
fn complete_corpus() {
    replay_accepting(
        "complete",
        s3_signing_proxy::lab::fuzzing::client_complete,
        2,
    );
}

/// Signed policies: of the named seeds, exactly those named `allowed-*` are let through (reads
/// of keys the policy names); every trick, write, listing, expired or tampered one is refused.
#[test]
fn policy_corpus() {
    replay_accepting("policy", s3_signing_proxy::lab::fuzzing::policy_grant, 5);
    let dir = repo_root().join("fuzz/corpus/policy");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        // Inputs a fuzzing run kept are named by their hash: only the seeds say what they are.
        if name.len() == 40 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        let accepted = s3_signing_proxy::lab::fuzzing::policy_grant(&std::fs::read(&path).unwrap());
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
    replay_accepting("form", s3_signing_proxy::lab::fuzzing::form_parts, 3);
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
        if s3_signing_proxy::lab::fuzzing::form_parts(&input) {
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
        if s3_signing_proxy::lab::fuzzing::policy_grant(input.as_bytes()) {
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
        if s3_signing_proxy::lab::fuzzing::client_delete(document.as_bytes()) {
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
    let mut checked = 0;
    for _ in 0..20_000 {
        let length = (next() % 12) as usize;
        let key: String = (0..length)
            .map(|_| ALPHABET[(next() % ALPHABET.len() as u64) as usize])
            .collect();
        let input = format!("GET\n\n/acme/{key}\n");
        checked += usize::from(s3_signing_proxy::lab::fuzzing::route_and_jail(
            input.as_bytes(),
        ));
    }
    // 9,577 of the 20,000 keys route and reach the jail's checks (2026-12-06); the rest are
    // refused first (an empty key, `..`, a control character).
    assert!(
        checked > 8_000,
        "only {checked} of 20,000 keys reached the checks"
    );
}

/// The SigV4 target over requests signed by an independent signer (aws-sigv4, not the proxy's
/// code), in the header and the query form, for generated keys: each is accepted as the
/// client, and the same request with one character of its signature, its path or its date
/// changed is refused.
#[test]
fn independently_signed_requests_are_accepted_and_altered_ones_refused() {
    use aws_sigv4::http_request::{
        PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SignatureLocation,
        SigningSettings, UriPathNormalizationMode, sign,
    };
    use s3_signing_proxy::lab::fuzzing::{CLIENT_KEY, CLIENT_SECRET, SIGV4_NOW, verify_signature};
    const ALPHABET: &[&str] = &[
        "a", "Z", "0", "/", "-", "_", ".", "~", "%20", "%2B", "%C3%A9",
    ];
    let identity =
        aws_credential_types::Credentials::new(CLIENT_KEY, CLIENT_SECRET, None, None, "t").into();
    let mut next = below(0x2545_F491_4F6C_DD1D);
    let (mut accepted, mut refused) = (0, 0);
    for i in 0..600 {
        let key: String = (0..next(10) + 1)
            .map(|_| ALPHABET[next(ALPHABET.len())])
            .collect();
        let url = format!("http://proxy.example/acme/{key}");
        let mut settings = SigningSettings::default();
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        if i % 2 == 0 {
            settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        } else {
            settings.payload_checksum_kind = PayloadChecksumKind::NoHeader;
            settings.signature_location = SignatureLocation::QueryParams;
            settings.expires_in = Some(std::time::Duration::from_secs(300));
        }
        let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(SIGV4_NOW - 5);
        let params = crate::support::s3_signing_params(&identity, time, settings).into();
        let signable = SignableRequest::new(
            "GET",
            &url,
            [("host", "proxy.example")].into_iter(),
            SignableBody::UnsignedPayload,
        )
        .unwrap();
        let (instructions, _) = sign(signable, &params).unwrap().into_parts();
        let mut request = http::Request::get(&url).body(()).unwrap();
        request
            .headers_mut()
            .insert("host", http::HeaderValue::from_static("proxy.example"));
        instructions.apply_to_request_http1x(&mut request);
        let mut input = request.uri().path_and_query().unwrap().to_string();
        for (name, value) in request.headers() {
            input.push_str(&format!("\n{name}: {}", value.to_str().unwrap()));
        }
        if verify_signature(input.as_bytes()) {
            accepted += 1;
        } else {
            panic!("an independently signed request was refused: {input}");
        }
        // The same request, altered: the signature's last character, the key, the date.
        let at = input.find("Signature=").unwrap() + "Signature=".len() + 63;
        let flipped = if &input[at..=at] == "0" { "1" } else { "0" };
        let alterations = [
            format!("{}{flipped}{}", &input[..at], &input[at + 1..]),
            input.replacen("/acme/", "/acme/x", 1),
            input.replacen("20231114T221", "20231114T222", 1),
        ];
        for altered in alterations {
            assert!(!verify_signature(altered.as_bytes()), "accepted: {altered}");
            refused += 1;
        }
    }
    assert_eq!((accepted, refused), (600, 1_800));
}
