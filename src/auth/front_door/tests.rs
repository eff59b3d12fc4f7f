use super::*;
use http::HeaderValue;

const VECTOR_SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

#[test]
fn cached_signing_keys_are_the_derived_ones_for_every_scope() {
    let client = Client {
        access_key_id: "AKCLIENT".to_string(),
        secret_access_key: Secret::new(VECTOR_SECRET),
        bindings: Vec::new(),
        access: Access::ReadOnly,
        policy_key: Vec::new(),
        keys: std::sync::Mutex::default(),
    };
    let scopes: Vec<String> = ["20150830", "20150831", "20240229"]
        .iter()
        .flat_map(|day| {
            ["us-east-1", "eu-west-1", "ap-southeast-2"]
                .iter()
                .map(move |region| format!("{day}/{region}/s3/aws4_request"))
        })
        .collect();
    let mut checked = 0;
    // Twice round, so every scope is asked for both cold and (for the last few) warm,
    // and evictions happen in between.
    for scope in scopes
        .iter()
        .chain(scopes.iter())
        .chain(scopes.iter().rev())
    {
        assert_eq!(
            client.signing_key(scope),
            signing_key(VECTOR_SECRET, scope),
            "{scope}"
        );
        checked += 1;
    }
    assert_eq!(checked, 27);
    assert!(client.keys.lock().expect("lock").len() <= CACHED_SCOPES);
}

/// AWS's published SigV4 test suite (generic service, no path normalisation): the header
/// form signs `host;x-amz-date` with the empty body's hash.
fn vector_header_signature(request_target: &str) -> String {
    let uri: Uri = format!("http://example.amazonaws.com{request_target}")
        .parse()
        .unwrap();
    let mut headers = HeaderMap::new();
    headers.insert(
        header::HOST,
        HeaderValue::from_static("example.amazonaws.com"),
    );
    headers.insert("x-amz-date", HeaderValue::from_static("20150830T123600Z"));
    let signed = SignedHeaders::parse("host;x-amz-date").unwrap();
    let canonical = canonical_request(
        "GET",
        uri.path(),
        &parse_query(uri.query().unwrap_or("")).unwrap(),
        signed,
        &headers,
        &uri,
        EMPTY_SHA256,
    )
    .unwrap();
    signature(
        &signing_key(VECTOR_SECRET, "20150830/us-east-1/service/aws4_request"),
        "20150830T123600Z",
        "20150830/us-east-1/service/aws4_request",
        &canonical,
    )
}

#[test]
fn canonicalisation_matches_aws_published_vectors() {
    for (target, expected) in [
        (
            "/",
            "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        ),
        // get-space-unnormalized: a space is %20, and nothing is normalised.
        (
            "/example%20space/",
            "652487583200325589f1fba4c7e578f72c47cb61beeca81406b39ddec1366741",
        ),
        // get-utf8
        (
            "/%E1%88%B4",
            "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85",
        ),
        // get-slashes-unnormalized: `//` stays.
        (
            "//example//",
            "87cca117541a147f6df867677d98a7d80dff226d2bfca9e4ffa899665623c7e5",
        ),
        // get-unreserved: unreserved characters stay literal.
        (
            "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
            "07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f",
        ),
        // get-vanilla-query-order-key-case: the query is sorted.
        (
            "/?Param2=value2&Param1=value1",
            "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
        ),
    ] {
        assert_eq!(vector_header_signature(target), expected, "{target}");
    }
}

#[test]
fn presigned_canonicalisation_matches_the_published_query_vector() {
    // get-space-unnormalized, query form (the generic service signs the empty body's hash).
    let uri: Uri = "http://example.amazonaws.com/example%20space/?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20150830%2Fus-east-1%2Fservice%2Faws4_request&X-Amz-Date=20150830T123600Z&X-Amz-SignedHeaders=host&X-Amz-Expires=3600&X-Amz-Signature=x"
        .parse()
        .unwrap();
    let mut headers = HeaderMap::new();
    headers.insert(
        header::HOST,
        HeaderValue::from_static("example.amazonaws.com"),
    );
    let canonical = canonical_request(
        "GET",
        uri.path(),
        &parse_query(uri.query().unwrap_or("")).unwrap(),
        SignedHeaders::parse("host").unwrap(),
        &headers,
        &uri,
        EMPTY_SHA256,
    )
    .unwrap();
    assert_eq!(
        signature(
            &signing_key(VECTOR_SECRET, "20150830/us-east-1/service/aws4_request"),
            "20150830T123600Z",
            "20150830/us-east-1/service/aws4_request",
            &canonical
        ),
        "7a1f416954786484c9824d93c1f26ef64acb9b1b6c9154d08c9f07d0e394abf6"
    );
}
