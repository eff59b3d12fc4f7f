//! Entry points for the fuzz targets in `fuzz/`, and for replaying their corpora as regression
//! tests (`tests/fuzz_corpus.rs`). Each takes arbitrary bytes, drives one parser of untrusted
//! input, and panics only when an invariant breaks — never on bad input, which must come back
//! as an `Err`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method};

use crate::auth::front_door::Clients;
use crate::config::{
    Access, ActiveContent, Addressing, Buckets, ClientConfig, CredentialSource, Delivery,
    Integration, Region, Secret,
};
use crate::request::integration::Integrations;
use crate::s3::documents::{CompleteRequest, DeleteRequest, Jail, KeyEncoding, UpstreamDocument};

/// The prefix every fuzzed integration jails keys under.
pub const PREFIX: &str = "tenant/";

fn integration() -> Arc<Integration> {
    Arc::new(Integration {
        name: "acme".to_string(),
        buckets: Buckets::Scoped("acme-bucket".to_string()),
        prefix: PREFIX.to_string(),
        region: Region::Named("us-east-1".to_string()),
        endpoint: None,
        ca_file: None,
        addressing: Addressing::VirtualHost,
        access: Access::ReadWrite,
        public: true,
        allow_unusual_keys: false,
        allow_acl_headers: false,
        active_content: ActiveContent::Sandbox,
        credentials: CredentialSource::DefaultChain,
        cors_origins: Vec::new(),
        delivery: Delivery::Stream,
        cache: None,
    })
}

/// Splits fuzz input into up to `n` fields at `\n`.
fn fields(data: &[u8], n: usize) -> Vec<String> {
    let text = String::from_utf8_lossy(data);
    let mut parts: Vec<String> = text.splitn(n, '\n').map(str::to_string).collect();
    parts.resize(n, String::new());
    parts
}

/// Routing and jailing: `method \n host \n path \n query`. Whatever is routed must resolve to
/// an upstream key that starts with the prefix (its `/` included), and the key on the wire must
/// decode to exactly the key that was checked. Returns whether the input reached those checks
/// (routed to a key the jail accepted).
pub fn route_and_jail(data: &[u8]) -> bool {
    let parts = fields(data, 4);
    let method = Method::from_bytes(parts[0].as_bytes()).unwrap_or(Method::GET);
    let host = (!parts[1].is_empty()).then_some(parts[1].as_str());
    let query = (!parts[3].is_empty()).then_some(parts[3].as_str());
    let Ok(route) =
        crate::s3::route::route(&method, host, &parts[2], query, Some("media.example.com"))
    else {
        return false;
    };
    let integrations = Integrations::new(&[integration()]);
    let integration = integration();
    if route.key.is_empty() {
        return false;
    }
    let Ok(upstream) = integrations.upstream_key(&integration, &route.key) else {
        return false;
    };
    assert!(
        upstream.starts_with(PREFIX),
        "upstream key {upstream:?} escapes the prefix"
    );
    assert_eq!(&upstream[PREFIX.len()..], route.key, "the key changed");
    assert!(
        !upstream.chars().any(char::is_control),
        "a control character reached the upstream key"
    );
    let wire = crate::s3::sigv4::encode_key(&upstream);
    assert!(
        wire.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.~/%".contains(&b)),
        "unencoded byte on the wire: {wire:?}"
    );
    let decoded = percent_encoding::percent_decode_str(&wire).collect::<Vec<u8>>();
    assert_eq!(
        decoded,
        upstream.as_bytes(),
        "the wire key decodes differently"
    );
    true
}

/// The one client the SigV4 target knows (bound to `acme`, read-only).
pub const CLIENT_KEY: &str = "AKFUZZCLIENT";
/// That client's secret.
pub const CLIENT_SECRET: &str = "fuzz-client-secret";
/// The moment the SigV4 target verifies at (seconds since the epoch).
pub const SIGV4_NOW: u64 = 1_700_000_000;

/// The SigV4 verifier: `path?query \n header: value \n …` (an `Authorization` header or
/// presigned `X-Amz-*` parameters). Garbage must be refused, never accepted as the client.
/// Returns whether the input was accepted as the client.
pub fn verify_signature(data: &[u8]) -> bool {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let target = lines.next().unwrap_or("/");
    let Ok(uri) = format!(
        "http://proxy.example{}",
        if target.starts_with('/') {
            target.to_string()
        } else {
            format!("/{target}")
        }
    )
    .parse::<http::Uri>() else {
        return false;
    };
    let mut headers = HeaderMap::new();
    for line in lines.take(32) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.trim().as_bytes()),
            HeaderValue::from_str(value.trim()),
        ) {
            headers.append(name, value);
        }
    }
    let clients = Clients::new(&[ClientConfig {
        access_key_id: CLIENT_KEY.to_string(),
        secret_access_key: Secret::new(CLIENT_SECRET),
        bindings: vec![("acme".to_string(), None)],
        access: Access::ReadOnly,
    }]);
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(SIGV4_NOW);
    if let Ok(verified) = clients.identify(&Method::GET, &uri, &headers, now, None)
        && let crate::auth::front_door::Caller::Client(client) = verified.caller
    {
        // Only a real signature with the real secret gets here: random input must not.
        let signed = headers.contains_key(http::header::AUTHORIZATION)
            || uri.query().is_some_and(|q| q.contains("Signature="));
        assert!(
            signed,
            "accepted {} without a signature",
            client.access_key_id
        );
        return true;
    }
    false
}

/// The aws-chunked decoder: the input is the body of an unsigned-trailer upload whose decoded
/// length is its first byte. It must never yield more bytes than declared, nor finish cleanly
/// with fewer. Returns whether the body was accepted (decoded to its end without an error).
pub fn decode_chunked(data: &[u8]) -> bool {
    let Some((&declared, body)) = data.split_first() else {
        return false;
    };
    let declared = u64::from(declared);
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread().build() else {
        return false;
    };
    runtime.block_on(async {
        use http_body_util::BodyExt;
        // Feed the body in uneven frames, as a network would.
        let mut frames = Vec::new();
        let mut rest = body;
        let mut size = 1;
        while !rest.is_empty() {
            let n = size.min(rest.len());
            frames.push(Ok::<_, crate::s3::body::BoxError>(http_body::Frame::data(
                Bytes::copy_from_slice(&rest[..n]),
            )));
            rest = &rest[n..];
            size = size * 3 % 17 + 1;
        }
        let stream = Frames(frames.into());
        let Ok(decoder) = crate::s3::chunked::AwsChunked::new(
            crate::s3::body::stream(stream),
            None,
            Some("x-amz-checksum-crc32"),
            declared,
        ) else {
            return false;
        };
        let mut body = crate::s3::body::stream(decoder);
        let mut decoded = 0u64;
        let mut clean = true;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(frame) => decoded += frame.data_ref().map_or(0, |d| d.len() as u64),
                Err(error) => {
                    assert!(
                        error.downcast_ref::<crate::s3::error::Error>().is_some(),
                        "a refused body ends with the proxy's own error: {error}"
                    );
                    clean = false;
                    break;
                }
            }
        }
        assert!(decoded <= declared, "decoded {decoded} of {declared} bytes");
        if clean {
            assert_eq!(decoded, declared, "a short body ended cleanly");
        }
        clean
    })
}

/// A body of ready frames, as a network would deliver them.
struct Frames(
    std::collections::VecDeque<Result<http_body::Frame<Bytes>, crate::s3::body::BoxError>>,
);

impl http_body::Body for Frames {
    type Data = Bytes;
    type Error = crate::s3::body::BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Ready(self.0.pop_front())
    }
}

/// The text of every element named `name` in a document read by roxmltree, a second XML
/// parser written independently of quick-xml: what a store's parser would see.
fn second_parser_texts(document: &roxmltree::Document<'_>, name: &str) -> Vec<String> {
    document
        .descendants()
        .filter(|node| node.is_element() && node.tag_name().name() == name)
        .map(|node| {
            node.descendants()
                .filter(|n| n.is_text())
                .filter_map(|n| n.text())
                .collect()
        })
        .collect()
}

/// Parses with the second parser, the way a store would: no DTD entities.
fn second_parser(text: &str) -> Result<roxmltree::Document<'_>, roxmltree::Error> {
    roxmltree::Document::parse_with_options(
        text,
        roxmltree::ParsingOptions {
            allow_dtd: false,
            ..roxmltree::ParsingOptions::default()
        },
    )
}

/// The listing rewriter: whatever document the upstream sends, an accepted answer is one the
/// second parser reads with exactly the upstream's keys, each with the prefix taken off, and
/// with the logical bucket name in place of the real one. Returns whether it was accepted.
pub fn rewrite_listing(data: &[u8]) -> bool {
    let jail = Jail {
        prefix: PREFIX,
        logical_bucket: "logical",
        encoding: KeyEncoding::Plain,
        client_prefix: "",
        client_markers: &[],
        hidden: &["acme-bucket", PREFIX],
        request_id: "FUZZ",
    };
    let Ok(rewritten) = UpstreamDocument::parse(data).and_then(|d| d.rewrite(&jail)) else {
        return false;
    };
    let Ok(input) = std::str::from_utf8(data.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(data)) else {
        panic!("a document that is not UTF-8 was accepted");
    };
    let upstream = match second_parser(input) {
        Ok(upstream) => upstream,
        Err(error) => panic!("accepted a document the second parser refuses: {error}"),
    };
    let answer = match second_parser(&rewritten.document) {
        Ok(answer) => answer,
        Err(error) => panic!("wrote a document the second parser refuses: {error}"),
    };
    if upstream.root_element().tag_name().name() == "Error" {
        // An error document is rebuilt from its code, a safe message and its request id.
        let names: Vec<&str> = answer
            .root_element()
            .children()
            .filter(|n| n.is_element())
            .map(|n| n.tag_name().name())
            .collect();
        assert_eq!(names, ["Code", "Message", "RequestId"]);
        return true;
    }
    let before = second_parser_texts(&upstream, "Key");
    let after = second_parser_texts(&answer, "Key");
    assert_eq!(before.len(), after.len(), "keys were added or lost");
    for (upstream, client) in before.iter().zip(&after) {
        if upstream.is_empty() {
            assert!(client.is_empty(), "an empty key became {client:?}");
            continue;
        }
        assert_eq!(
            *upstream,
            format!("{PREFIX}{client}"),
            "a key was not just unprefixed"
        );
    }
    for element in ["Name", "Bucket"] {
        for name in second_parser_texts(&answer, element) {
            assert_eq!(name, "logical", "the real bucket name survived");
        }
    }
    for message in second_parser_texts(&answer, "Message") {
        assert!(
            !message.contains("acme-bucket") && !message.contains(PREFIX),
            "a message names the real bucket or prefix: {message:?}"
        );
    }
    true
}

/// A client's DeleteObjects body: whatever it spells, a document the proxy accepts is one
/// whose keys the second parser reads exactly as the proxy did, and what the proxy sends has,
/// for the second parser, exactly those keys, each under the prefix with its `/`. Returns
/// whether it was accepted.
pub fn client_delete(data: &[u8]) -> bool {
    let integration = integration();
    let integrations = Integrations::new(std::slice::from_ref(&integration));
    let Ok(parsed) = DeleteRequest::parse(data) else {
        return false;
    };
    let checked: Vec<String> = parsed.objects.iter().map(|o| o.key.clone()).collect();
    let Ok(jailed) = parsed.jail(|key| integrations.upstream_key(&integration, key)) else {
        return false;
    };
    let Ok(input) = std::str::from_utf8(data.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(data)) else {
        panic!("a body that is not UTF-8 was accepted");
    };
    match second_parser(input) {
        Ok(client) => assert_eq!(
            second_parser_texts(&client, "Key"),
            checked,
            "the second parser reads other keys in the client's body"
        ),
        Err(error) => panic!("accepted a body the second parser refuses: {error}"),
    }
    let sent = jailed.to_xml();
    let upstream = match second_parser(&sent) {
        Ok(upstream) => upstream,
        Err(error) => panic!("wrote a document the second parser refuses: {error}"),
    };
    let root = upstream.root_element();
    assert_eq!(root.tag_name().name(), "Delete");
    assert_eq!(
        root.tag_name().namespace(),
        Some(crate::s3::xml::S3_NAMESPACE)
    );
    let keys = second_parser_texts(&upstream, "Key");
    assert_eq!(keys.len(), checked.len(), "keys were added or lost");
    for (key, checked) in keys.iter().zip(&checked) {
        assert!(
            key.starts_with(PREFIX),
            "the store would delete {key:?}, outside the prefix"
        );
        assert_eq!(*key, format!("{PREFIX}{checked}"), "the key changed");
        assert!(
            crate::s3::route::check_key(checked, false).is_ok(),
            "an unchecked key went through: {checked:?}"
        );
    }
    assert_eq!(
        upstream
            .descendants()
            .filter(|n| n.is_element() && n.tag_name().name() == "Object")
            .count(),
        checked.len()
    );
    true
}

/// A client's CompleteMultipartUpload body: what the proxy sends is read by the second parser
/// as exactly the parts the proxy read. Returns whether it was accepted.
pub fn client_complete(data: &[u8]) -> bool {
    let Ok(parsed) = CompleteRequest::parse(data) else {
        return false;
    };
    let sent = parsed.to_xml();
    let upstream = match second_parser(&sent) {
        Ok(upstream) => upstream,
        Err(error) => panic!("wrote a document the second parser refuses: {error}"),
    };
    let numbers: Vec<String> = parsed
        .parts
        .iter()
        .map(|p| p.part_number.to_string())
        .collect();
    assert_eq!(second_parser_texts(&upstream, "PartNumber"), numbers);
    let etags: Vec<String> = parsed.parts.iter().map(|p| p.etag.clone()).collect();
    assert_eq!(second_parser_texts(&upstream, "ETag"), etags);
    assert!(second_parser_texts(&upstream, "Key").is_empty());
    true
}

/// The moment the policy harness runs at (policies in its corpus expire after it).
const POLICY_NOW: u64 = 1_700_000_000;

/// Signed policies: `policy JSON \n method \n path?query \n signature tweak`. The JSON is
/// signed with the client's real secret and sent as cookies; the letters and digits of the
/// fourth field are appended to the signature, which must then be refused. Whatever a policy lets through must
/// be a read of an object it names, in its bucket, whose upstream key lies under the
/// integration's prefix and the policy's own, with no `.` or `..` segment. Returns whether the
/// request was let through.
pub fn policy_grant(data: &[u8]) -> bool {
    let parts = fields(data, 4);
    let method = Method::from_bytes(parts[1].as_bytes()).unwrap_or(Method::GET);
    let Ok(uri) = format!("http://proxy.example{}", parts[2]).parse::<http::Uri>() else {
        return false;
    };
    let Ok((text, mut signature)) = crate::auth::policy::sign(CLIENT_SECRET, &parts[0]) else {
        return false;
    };
    // Only letters and digits change a cookie's value: spaces around it and what follows a
    // `;` are not part of it.
    let tweak: String = parts[3]
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    signature.push_str(&tweak);
    let cookie = format!(
        "{}={text}; other=1; {}={signature}; {}={CLIENT_KEY}",
        crate::auth::policy::POLICY,
        crate::auth::policy::SIGNATURE,
        crate::auth::policy::KEY_ID
    );
    let mut headers = HeaderMap::new();
    let Ok(value) = HeaderValue::from_str(&cookie) else {
        return false;
    };
    headers.insert(http::header::COOKIE, value);
    let clients = Clients::new(&[ClientConfig {
        access_key_id: CLIENT_KEY.to_string(),
        secret_access_key: Secret::new(CLIENT_SECRET),
        bindings: vec![("acme".to_string(), None)],
        access: Access::ReadWrite,
    }]);
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(POLICY_NOW);
    let Ok(verified) = clients.identify(&method, &uri, &headers, now, None) else {
        return false;
    };
    // A Cookie header that is not visible ASCII is no cookie at all: the caller is anonymous.
    if verified.grant.is_none() {
        return false;
    }
    assert!(tweak.is_empty(), "a tampered signature was accepted");
    let Ok(route) = crate::s3::route::route(&method, None, uri.path(), uri.query(), None) else {
        return false;
    };
    if crate::request::admit::check_grant(&verified, &route, None).is_err() {
        return false;
    }
    let Some(grant) = &verified.grant else {
        panic!(
            "cookies let {} through without a policy",
            verified.caller.key_id()
        );
    };
    check_granted_read(&grant.policy, &route);
    true
}

/// What a let-through policy request must be: see [`policy_grant`].
fn check_granted_read(policy: &crate::auth::policy::Policy, route: &crate::s3::route::Route) {
    use crate::s3::route::Operation;
    assert_eq!(route.name, policy.name, "a policy reached another bucket");
    if route.operation == Operation::StartSession {
        return;
    }
    assert!(
        matches!(
            route.operation,
            Operation::GetObject | Operation::HeadObject
        ),
        "a policy let {:?} through",
        route.operation
    );
    let Ok(upstream) = Integrations::new(&[integration()]).upstream_key(&integration(), &route.key)
    else {
        return;
    };
    let allowed = match &policy.keys {
        crate::auth::policy::Keys::Exact(key) | crate::auth::policy::Keys::Prefix(key) => key,
    };
    assert!(
        upstream.starts_with(&format!("{PREFIX}{allowed}")),
        "upstream key {upstream:?} is outside the policy's {allowed:?}"
    );
    assert!(
        !upstream.split('/').any(|s| s == "." || s == ".."),
        "a dot segment reached the store: {upstream:?}"
    );
}

/// The form parser, against a second one: `step byte, boundary \n body`. The streaming parser
/// is fed the body `step` bytes at a time; [`whole_form`] reads it all at once by splitting at
/// every delimiter. They must agree on whether the form is well-formed, and on each part's
/// head and bytes. Returns whether the form was accepted.
pub fn form_parts(data: &[u8]) -> bool {
    let Some((&step, rest)) = data.split_first() else {
        return false;
    };
    let Some(newline) = rest.iter().position(|b| *b == b'\n') else {
        return false;
    };
    let Ok(boundary) = std::str::from_utf8(&rest[..newline]) else {
        return false;
    };
    let Ok(boundary) =
        crate::form::multipart::boundary(&format!("multipart/form-data; boundary=\"{boundary}\""))
    else {
        return false;
    };
    let body = &rest[newline + 1..];
    let streamed = streamed_form(body, &boundary, usize::from(step.max(1)));
    let whole = whole_form(body, &boundary);
    match (streamed, whole) {
        (Ok(streamed), Some(whole)) => {
            assert_eq!(streamed, whole, "the parsers read different parts");
            true
        }
        (Err(_), None) => false,
        (streamed, whole) => panic!("the parsers disagree: streamed {streamed:?}, whole {whole:?}"),
    }
}

type FormParts = Vec<(crate::form::multipart::PartHead, Vec<u8>)>;

fn streamed_form(
    body: &[u8],
    boundary: &str,
    step: usize,
) -> Result<FormParts, crate::s3::error::Error> {
    use crate::form::multipart::{Event, Parser};
    let mut parser = Parser::new(boundary);
    let mut parts: FormParts = Vec::new();
    for chunk in body.chunks(step) {
        parser.push(chunk);
        loop {
            match parser.next_event()? {
                Event::Part(head) => parts.push((head, Vec::new())),
                Event::Data(data) => match parts.last_mut() {
                    Some((_, bytes)) => bytes.extend_from_slice(&data),
                    None => panic!("data before any part"),
                },
                Event::End => return Ok(parts),
                Event::NeedMore => break,
            }
        }
    }
    parser.finish()?;
    Ok(parts)
}

/// The second parser: the whole body, split at each `CRLF--boundary`. Parts' heads are read
/// with the same header parser (the framing is what is checked here).
fn whole_form(body: &[u8], boundary: &str) -> Option<FormParts> {
    let delimiter = format!("\r\n--{boundary}").into_bytes();
    let mut text = b"\r\n".to_vec();
    text.extend_from_slice(body);
    let occurrence = |from: usize| {
        text.get(from..)?
            .windows(delimiter.len())
            .position(|window| window == delimiter.as_slice())
            .map(|at| at + from)
    };
    let mut at = occurrence(0)?;
    let mut parts = Vec::new();
    loop {
        let after = at + delimiter.len();
        if text.get(after..after + 2)? == b"--" {
            return Some(parts);
        }
        let padding = text[after..]
            .iter()
            .take_while(|b| **b == b' ' || **b == b'\t')
            .count();
        if padding > 64 || text.get(after + padding..after + padding + 2)? != b"\r\n" {
            return None;
        }
        let start = after + padding + 2;
        let next = occurrence(start)?;
        let part = &text[start..next];
        let (head, bytes) = if part.starts_with(b"\r\n") {
            (&part[..0], &part[2..])
        } else {
            let blank = part.windows(4).position(|w| w == b"\r\n\r\n")?;
            (&part[..blank + 2], &part[blank + 4..])
        };
        if head.len() > crate::form::multipart::MAX_HEAD_BYTES {
            return None;
        }
        let head = crate::form::multipart::parse_head(head).ok()?;
        parts.push((head, bytes.to_vec()));
        at = next;
    }
}
