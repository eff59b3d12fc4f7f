//! The documents in both directions: jailed keys, refused shapes, independent re-reading.

use super::*;
use crate::s3::error::Error;

fn jail<'a>(
    encoding: KeyEncoding,
    client_prefix: &'a str,
    markers: &'a [(String, String)],
) -> Jail<'a> {
    Jail {
        prefix: "tenant/",
        logical_bucket: "acme",
        encoding,
        client_prefix,
        client_markers: markers,
        hidden: &["real-bucket", "tenant/"],
        request_id: "PROXY1",
    }
}

fn prefixed(key: &str) -> Result<String, Error> {
    crate::s3::route::check_key(key, false)?;
    Ok(format!("tenant/{key}"))
}

#[test]
fn the_bucket_list_says_what_a_second_parser_reads() {
    let names = ["acme", "a&b<c>\"'"];
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_764_000_000);
    let text = bucket_list("AKCLIENT", &names, at);
    let document = roxmltree::Document::parse(&text).expect("well-formed");
    let root = document.root_element();
    assert_eq!(root.tag_name().name(), "ListAllMyBucketsResult");
    assert_eq!(
        root.tag_name().namespace(),
        Some("http://s3.amazonaws.com/doc/2006-03-01/")
    );
    let read: Vec<&str> = root
        .descendants()
        .filter(|n| n.has_tag_name("Name"))
        .filter_map(|n| n.text())
        .collect();
    assert_eq!(read, names);
    let dates: Vec<&str> = root
        .descendants()
        .filter(|n| n.has_tag_name("CreationDate"))
        .filter_map(|n| n.text())
        .collect();
    assert_eq!(dates, ["2025-11-24T16:00:00Z"; 2]);
    let owner = root
        .descendants()
        .find(|n| n.has_tag_name("ID"))
        .and_then(|n| n.text());
    assert_eq!(owner, Some("AKCLIENT"));
}

#[test]
fn delete_requests_are_written_anew_with_every_key_under_the_prefix() {
    let body = "\u{FEFF}<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Delete xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\n <Object><Key >a&amp;b.txt</Key ></Object>\n <Object><Key><![CDATA[x/y]]></Key><VersionId>3</VersionId></Object>\n <Quiet>true</Quiet>\n</Delete>";
    let request = DeleteRequest::parse(body.as_bytes())
        .expect("parses")
        .jail(prefixed)
        .expect("jails");
    assert_eq!(
        request.to_xml(),
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Delete xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Object><Key>tenant/a&amp;b.txt</Key></Object><Object><Key>tenant/x/y</Key><VersionId>3</VersionId></Object><Quiet>true</Quiet></Delete>"
    );
}

#[test]
fn delete_requests_outside_s3s_schema_are_malformed() {
    for body in [
        "<Delete><Object><Key>a</Key><Key>b</Key></Object></Delete>",
        "<Delete><Object><VersionId>1</VersionId></Object></Delete>",
        "<Delete><Object><Key>a</Key><Other/></Object></Delete>",
        "<Delete><Object><Key><Key>a</Key></Key></Object></Delete>",
        "<Delete><Quiet>true</Quiet><Quiet>false</Quiet><Object><Key>a</Key></Object></Delete>",
        "<Delete><Quiet>yes</Quiet><Object><Key>a</Key></Object></Delete>",
        "<Delete></Delete>",
        "<Remove><Object><Key>a</Key></Object></Remove>",
        "<Delete><Object><Key>a<b</Key></Object></Delete>",
        "<Delete><Object><Key>a</Object></Delete>",
    ] {
        assert!(
            matches!(
                DeleteRequest::parse(body.as_bytes()),
                Err(Error::MalformedXML { .. })
            ),
            "{body}"
        );
    }
    let many = format!(
        "<Delete>{}</Delete>",
        "<Object><Key>a</Key></Object>".repeat(1001)
    );
    assert!(DeleteRequest::parse(many.as_bytes()).is_err());
}

#[test]
fn a_refused_key_refuses_the_whole_delete_request() {
    for key in ["../other-tenant/secret.txt", "/root.txt", "a//b", "a\u{1}"] {
        let body = format!(
            "<Delete><Object><Key>ok</Key></Object><Object><Key>{key}</Key></Object></Delete>"
        );
        let parsed = DeleteRequest::parse(body.as_bytes());
        assert!(parsed.and_then(|r| r.jail(prefixed)).is_err(), "{key}");
    }
}

#[test]
fn complete_requests_are_written_anew() {
    let body = "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Part><ETag>\"e1\"</ETag><PartNumber>1</PartNumber><ChecksumCRC32>AAAAAA==</ChecksumCRC32></Part><Part><PartNumber>2</PartNumber><ETag>&quot;e2&quot;</ETag></Part></CompleteMultipartUpload>";
    let request = CompleteRequest::parse(body.as_bytes()).expect("parses");
    assert_eq!(
        request.to_xml(),
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Part><PartNumber>1</PartNumber><ETag>&quot;e1&quot;</ETag><ChecksumCRC32>AAAAAA==</ChecksumCRC32></Part><Part><PartNumber>2</PartNumber><ETag>&quot;e2&quot;</ETag></Part></CompleteMultipartUpload>"
    );
    for bad in [
        "<CompleteMultipartUpload/>",
        "<CompleteMultipartUpload><Part><PartNumber>0</PartNumber><ETag>x</ETag></Part></CompleteMultipartUpload>",
        "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber></Part></CompleteMultipartUpload>",
        "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>x</ETag><Key>k</Key></Part></CompleteMultipartUpload>",
    ] {
        assert!(CompleteRequest::parse(bad.as_bytes()).is_err(), "{bad}");
    }
}

const LISTING: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Name>real-bucket</Name><Prefix>tenant/photos/</Prefix><KeyCount>2</KeyCount><Delimiter>/</Delimiter><Contents><Key>tenant/photos/a&amp;b.png</Key><Size>3</Size></Contents><Contents><Key>tenant/photos/ü.png</Key></Contents><CommonPrefixes><Prefix>tenant/photos/2024/</Prefix></CommonPrefixes><StartAfter>tenant/photos/0</StartAfter><NextContinuationToken>opaque+token=</NextContinuationToken></ListBucketResult>";

fn rewrite(document: &str, jail: &Jail<'_>) -> Result<Rewritten, Error> {
    UpstreamDocument::parse(document.as_bytes())?.rewrite(jail)
}

#[test]
fn listings_lose_the_prefix_and_the_real_bucket_name() {
    let markers = [
        ("delimiter".to_string(), "/".to_string()),
        ("prefix".to_string(), "photos/".to_string()),
        ("start-after".to_string(), "photos/0".to_string()),
    ];
    let rewritten = rewrite(LISTING, &jail(KeyEncoding::Plain, "photos/", &markers))
        .expect("rewrites")
        .document;
    for expected in [
        "<Name>acme</Name>",
        "<Prefix>photos/</Prefix>",
        "<Delimiter>/</Delimiter>",
        "<Key>photos/a&amp;b.png</Key>",
        "<Key>photos/ü.png</Key>",
        "<Prefix>photos/2024/</Prefix>",
        "<StartAfter>photos/0</StartAfter>",
        "<NextContinuationToken>opaque+token=</NextContinuationToken>",
    ] {
        assert!(rewritten.contains(expected), "{expected} in {rewritten}");
    }
    assert!(!rewritten.contains("tenant/") && !rewritten.contains("real-bucket"));
}

#[test]
fn url_encoded_listings_read_a_plus_as_a_space() {
    // S3 and SeaweedFS encode a space as `+` and a plus as `%2B`; moto a space as `%20`.
    let listing = "<ListBucketResult><EncodingType>url</EncodingType><Prefix>tenant%2F</Prefix><Contents><Key>tenant/a+b%2Bc.txt</Key></Contents><Contents><Key>tenant/d%20e.txt</Key></Contents></ListBucketResult>";
    let rewritten = rewrite(listing, &jail(KeyEncoding::Url, "", &[]))
        .expect("rewrites")
        .document;
    assert!(
        rewritten.contains("<Key>a%20b%2Bc.txt</Key>"),
        "{rewritten}"
    );
    assert!(rewritten.contains("<Key>d%20e.txt</Key>"), "{rewritten}");
    assert!(rewritten.contains("<Prefix></Prefix>"), "{rewritten}");
}

#[test]
fn the_listings_prefix_and_delimiter_are_the_clients_own_encoded_as_it_asked() {
    // What ceph's s3-tests send: a bare `%`, an escape the client meant literally, a space
    // and a plus. The store's echo (here garbage, as a store may normalise or encode it its
    // own way) is never read.
    for (prefix, encoded) in [("a%", "a%25"), ("a%41", "a%2541"), ("a b+c", "a%20b%2Bc")] {
        let markers = [
            ("delimiter".to_string(), "+".to_string()),
            ("encoding-type".to_string(), "url".to_string()),
            ("prefix".to_string(), prefix.to_string()),
        ];
        let listing = "<ListBucketResult><Prefix>tenant/a%</Prefix><Delimiter>%zz</Delimiter><CommonPrefixes><Prefix>tenant/a%25+</Prefix></CommonPrefixes></ListBucketResult>";
        let url = rewrite(listing, &jail(KeyEncoding::Url, prefix, &markers))
            .expect("rewrites")
            .document;
        assert!(
            url.contains(&format!(
                "<Prefix>{encoded}</Prefix><Delimiter>%2B</Delimiter>"
            )),
            "{prefix}: {url}"
        );
        let plain = "<ListBucketResult><Prefix>tenant/whatever</Prefix></ListBucketResult>";
        let plain = rewrite(plain, &jail(KeyEncoding::Plain, prefix, &markers))
            .expect("rewrites")
            .document;
        assert!(
            plain.contains(&format!("<Prefix>{prefix}</Prefix>")),
            "{plain}"
        );
    }
}

#[test]
fn a_key_outside_the_prefix_refuses_the_answer() {
    let listing = "<ListBucketResult><Contents><Key>tenant-other/secret.txt</Key></Contents></ListBucketResult>";
    assert!(matches!(
        rewrite(listing, &jail(KeyEncoding::Plain, "", &[])),
        Err(Error::Internal { .. })
    ));
    let nested = "<ListBucketResult><Contents><Key>tenant/<Name>x</Name></Key></Contents></ListBucketResult>";
    assert!(rewrite(nested, &jail(KeyEncoding::Plain, "", &[])).is_err());
}

#[test]
fn entries_beyond_the_clients_prefix_are_dropped() {
    // A store that reads `tenant//` as `tenant/` answers every key under the prefix.
    let listing = "<ListBucketResult><Prefix>tenant//</Prefix><Contents><Key>tenant/b/a/r</Key></Contents><Contents><Key>tenant/g</Key></Contents><CommonPrefixes><Prefix>tenant/b/</Prefix></CommonPrefixes></ListBucketResult>";
    let markers = [("prefix".to_string(), "/".to_string())];
    let rewritten = rewrite(listing, &jail(KeyEncoding::Plain, "/", &markers)).expect("rewrites");
    assert_eq!(rewritten.dropped, 3);
    assert!(
        !rewritten.document.contains("<Key>"),
        "{}",
        rewritten.document
    );
    assert!(
        rewritten.document.contains("<Prefix>/</Prefix>"),
        "{}",
        rewritten.document
    );
}

#[test]
fn markers_echo_the_client_and_empty_elements_stay_empty() {
    let listing = "<ListBucketResult><Marker></Marker><StartAfter>4888b79b</StartAfter><Prefix>tenant/</Prefix></ListBucketResult>";
    let rewritten = rewrite(listing, &jail(KeyEncoding::Plain, "", &[]))
        .expect("rewrites")
        .document;
    assert!(
        rewritten.ends_with("<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Marker></Marker><StartAfter></StartAfter><Prefix></Prefix></ListBucketResult>"),
        "{rewritten}"
    );
}

#[test]
fn an_error_sent_with_a_200_is_cleaned() {
    let document = "<Error><Code>InternalError</Code><Message>failed for real-bucket/tenant/x</Message><Key>tenant/x</Key><RequestId>R1</RequestId></Error>";
    let rewritten = rewrite(document, &jail(KeyEncoding::Plain, "", &[]))
        .expect("rewrites")
        .document;
    assert!(
        rewritten.contains("<Code>InternalError</Code>"),
        "{rewritten}"
    );
    assert!(
        rewritten.contains("<RequestId>PROXY1</RequestId>") && !rewritten.contains("R1<"),
        "{rewritten}"
    );
    assert!(
        !rewritten.contains("tenant") && !rewritten.contains("real-bucket"),
        "{rewritten}"
    );
}
