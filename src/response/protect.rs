//! Response headers that keep a tenant's objects from acting as the origin's pages:
//! `nosniff` on every answer, active content (HTML, SVG) sandboxed or sent as an attachment
//! as the integration says, and `Cache-Control: private` for answers meant for one browser.

use std::borrow::Cow;

use http::{HeaderMap, HeaderValue, header};

use crate::config::{ActiveContent, Integration};
use crate::request::shape::is_active_type;

/// The whole `Content-Type` field as a browser sees it: every value, joined by `, `. `None`
/// when there is none.
fn content_type_field(headers: &HeaderMap) -> Option<Cow<'_, str>> {
    let mut values = headers
        .get_all(header::CONTENT_TYPE)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()));
    // One value, the usual case, stays borrowed; a second one makes the field owned.
    let mut field = values.next()?;
    for value in values {
        let joined = field.to_mut();
        joined.push_str(", ");
        joined.push_str(&value);
    }
    Some(field)
}

/// Marks an answer for one browser only: `Cache-Control` rewritten from the store's directives
/// without `public` and `s-maxage` (which would let a shared cache serve it to anyone), with
/// `private` added. The browser's own cache still keeps it as the store's `max-age` says.
pub fn keep_private(headers: &mut HeaderMap) {
    let kept: Vec<String> = headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|directive| !directive.is_empty())
        .filter(|directive| {
            let name = directive
                .split('=')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            !matches!(name.as_str(), "public" | "private" | "s-maxage")
        })
        .map(str::to_string)
        .collect();
    let directives = std::iter::once("private".to_string())
        .chain(kept)
        .collect::<Vec<_>>()
        .join(", ");
    let value = HeaderValue::from_str(&directives).unwrap_or(HeaderValue::from_static("private"));
    headers.insert(header::CACHE_CONTROL, value);
}

/// Headers every answer carries, and the integration's treatment of active content.
pub fn protect(headers: &mut HeaderMap, integration: Option<&Integration>) {
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    let Some(integration) = integration else {
        return;
    };
    // No Content-Type at all (a 204, a 304) is nothing a browser renders.
    let active = content_type_field(headers).is_some_and(|field| is_active_type(&field));
    if !active {
        return;
    }
    match integration.active_content {
        ActiveContent::Sandbox => {
            headers.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("sandbox"),
            );
        }
        ActiveContent::Attachment => {
            headers.insert(
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static("attachment"),
            );
        }
        ActiveContent::Allow => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_content_type_value_counts() {
        let mut headers = HeaderMap::new();
        assert_eq!(content_type_field(&headers), None);
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        let one = content_type_field(&headers).expect("one value");
        assert!(matches!(one, Cow::Borrowed("text/plain")), "{one:?}");
        assert!(!is_active_type(&one));
        // Later header lines are part of the field a browser reads: here they make it HTML.
        headers.append(header::CONTENT_TYPE, HeaderValue::from_static("x/y"));
        headers.append(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
        let field = content_type_field(&headers).expect("three values");
        assert_eq!(field, "text/plain, x/y, text/html");
        assert!(is_active_type(&field));
    }

    #[test]
    fn private_answers_keep_the_browsers_directives_and_lose_the_shared_ones() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=3600, s-maxage=86400, immutable"),
        );
        keep_private(&mut headers);
        assert_eq!(
            headers[header::CACHE_CONTROL],
            "private, max-age=3600, immutable"
        );
        let mut none = HeaderMap::new();
        keep_private(&mut none);
        assert_eq!(none[header::CACHE_CONTROL], "private");
    }
}
