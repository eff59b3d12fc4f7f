//! S3's XML, read with a real parser into a small element tree and written anew.
//!
//! Every XML document that crosses the proxy — a client's DeleteObjects or
//! CompleteMultipartUpload body, an upstream listing or result — is parsed here by quick-xml
//! under S3's rules, turned into typed values by the `documents` module, and written again by
//! [`Writer`]. No byte of a document is forwarded or edited as text, so no spelling a parser
//! accepts (`<Key >`, `<Key\t>`, CDATA, character references, a byte-order mark) can mean one
//! thing to the proxy and another to the store.
//!
//! The rules, for every document:
//! - UTF-8 only (a declared encoding must say so), at most [`MAX_DOCUMENT`] bytes, at most
//!   [`MAX_DEPTH`] levels;
//! - no DTD, no processing instruction, no entity but XML's five and character references;
//! - element names are plain (no namespace prefix); attributes only as namespace
//!   declarations, the S3 namespace or none;
//! - an element holds text or elements, never both, and only characters XML allows.

use quick_xml::events::{BytesStart, Event};

/// The largest XML document (request or response) the proxy reads into memory.
pub const MAX_DOCUMENT: usize = 8 << 20;
/// The deepest nesting S3's documents need is four levels; anything deeper is refused.
pub const MAX_DEPTH: usize = 16;
/// The one namespace S3 documents carry.
pub const S3_NAMESPACE: &str = "http://s3.amazonaws.com/doc/2006-03-01/";

/// Why a document was refused. The caller decides whose fault it is: a client's document is
/// its `MalformedXML`, an upstream's an internal error.
#[derive(Debug, thiserror::Error)]
pub enum XmlError {
    #[error("the document is larger than {MAX_DOCUMENT} bytes")]
    TooLarge,
    #[error("the document is not UTF-8")]
    NotUtf8,
    #[error("the document declares the encoding `{0}`; only UTF-8 is read")]
    Encoding(String),
    #[error("the document is not well-formed XML")]
    Syntax(#[source] quick_xml::Error),
    #[error("the document has a bad attribute")]
    Attribute(#[source] quick_xml::events::attributes::AttrError),
    #[error("the document has {0}, which S3 documents never have")]
    Unsupported(&'static str),
    #[error("the element name `{0}` is not a plain S3 element name")]
    Name(String),
    #[error("`{0}` is not a namespace S3 documents use")]
    Namespace(String),
    #[error("the document nests elements deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("<{0}> holds both text and elements")]
    MixedContent(String),
    #[error("the document has text outside its root element")]
    TextOutsideRoot,
    #[error("the document has no root element, or more than one")]
    Root,
    #[error("the reference `&{0};` is not one XML defines")]
    Entity(String),
    #[error("the document holds a character XML does not allow")]
    Character,
}

/// An element: its name, and either its text or its child elements.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Element {
    pub name: String,
    pub text: String,
    pub children: Vec<Element>,
}

impl Element {
    /// An element holding `text`.
    pub fn text(name: &str, text: impl Into<String>) -> Element {
        Element {
            name: name.to_string(),
            text: text.into(),
            children: Vec::new(),
        }
    }

    /// An element holding `children`.
    pub fn parent(name: &str, children: Vec<Element>) -> Element {
        Element {
            name: name.to_string(),
            text: String::new(),
            children,
        }
    }
}

/// Parses a whole document into its root element.
pub fn parse(document: &[u8]) -> Result<Element, XmlError> {
    if document.len() > MAX_DOCUMENT {
        return Err(XmlError::TooLarge);
    }
    let document = document.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(document);
    let text = std::str::from_utf8(document).map_err(|_| XmlError::NotUtf8)?;
    // Comments and attribute values too: quick-xml checks characters nowhere.
    if !text.chars().all(is_xml_char) {
        return Err(XmlError::Character);
    }
    let mut reader = quick_xml::Reader::from_str(text);
    reader.config_mut().check_comments = true;
    reader.config_mut().expand_empty_elements = true;
    let mut open: Vec<Element> = Vec::new();
    let mut root = None;
    let mut first = true;
    let mut carriage_returns = CarriageReturns::default();
    loop {
        let event = reader.read_event().map_err(XmlError::Syntax)?;
        let at_start = std::mem::replace(&mut first, false);
        match event {
            Event::Decl(_) if !at_start => {
                return Err(XmlError::Unsupported("an XML declaration after the start"));
            }
            Event::Decl(decl) => check_declaration(&decl)?,
            Event::DocType(_) => return Err(XmlError::Unsupported("a DTD")),
            Event::PI(_) => return Err(XmlError::Unsupported("a processing instruction")),
            Event::Comment(_) => {}
            Event::Start(start) => {
                if root.is_some() {
                    return Err(XmlError::Root);
                }
                if open.len() >= MAX_DEPTH {
                    return Err(XmlError::TooDeep);
                }
                open.push(start_element(&start)?);
            }
            Event::Empty(_) => unreachable_empty()?,
            Event::End(_) => {
                // quick-xml has checked that the name matches the open element.
                if let Some(done) = close_element(&mut open, &mut carriage_returns)? {
                    root = Some(done);
                }
            }
            Event::Text(text) => append_character_data(&text, &mut open, &mut carriage_returns)?,
            // Only text, and only whitespace, may stand outside the root element.
            Event::CData(_) | Event::GeneralRef(_) if open.is_empty() => {
                return Err(XmlError::TextOutsideRoot);
            }
            Event::CData(data) => {
                if data.contains(&b'\r') {
                    carriage_returns.mark(open.len());
                }
                let content = data
                    .xml10_content()
                    .map_err(|e| XmlError::Syntax(e.into()))?;
                append_text(&mut open, &content)?;
            }
            Event::GeneralRef(reference) => {
                let resolved = resolve_reference(&reference)?;
                append_text(&mut open, resolved.encode_utf8(&mut [0; 4]))?;
            }
            Event::Eof => break,
        }
    }
    if !open.is_empty() {
        return Err(XmlError::Root);
    }
    root.ok_or(XmlError::Root)
}

/// Closes the innermost open element into its parent; the root, once it closes.
fn close_element(
    open: &mut Vec<Element>,
    carriage_returns: &mut CarriageReturns,
) -> Result<Option<Element>, XmlError> {
    let depth = open.len();
    let done = open.pop().ok_or(XmlError::Root)?;
    carriage_returns.close(depth, done.children.is_empty())?;
    if !done.children.is_empty() && !is_xml_space(&done.text) {
        return Err(XmlError::MixedContent(done.name));
    }
    let done = if done.children.is_empty() {
        done
    } else {
        // Whitespace between child elements is layout, not content.
        Element {
            text: String::new(),
            ..done
        }
    };
    match open.last_mut() {
        Some(parent) => {
            parent.children.push(done);
            Ok(None)
        }
        None => Ok(Some(done)),
    }
}

/// Character data between tags, appended to the open element.
fn append_character_data(
    text: &quick_xml::events::BytesText<'_>,
    open: &mut [Element],
    carriage_returns: &mut CarriageReturns,
) -> Result<(), XmlError> {
    // XML reserves `]]>` in character data; a parser that let it pass would disagree with
    // one that does not.
    if text.windows(3).any(|w| w == b"]]>") {
        return Err(XmlError::Unsupported("`]]>` outside a CDATA section"));
    }
    if text.contains(&b'\r') {
        carriage_returns.mark(open.len());
    }
    let content = text
        .xml10_content()
        .map_err(|e| XmlError::Syntax(e.into()))?;
    append_text(open, &content)
}

/// `expand_empty_elements` turns `<a/>` into a start and an end.
fn unreachable_empty() -> Result<(), XmlError> {
    Err(XmlError::Unsupported("an unexpanded empty element"))
}

/// The XML declaration, read by XML's own grammar (quick-xml leaves it unchecked):
/// `version="1.0"`, then optionally `encoding` (UTF-8 only) and `standalone` (`yes`/`no`),
/// in that order.
fn check_declaration(decl: &quick_xml::events::BytesDecl<'_>) -> Result<(), XmlError> {
    let malformed = || XmlError::Unsupported("a malformed XML declaration");
    let content = std::str::from_utf8(decl).map_err(|_| XmlError::NotUtf8)?;
    let mut rest = content.strip_prefix("xml").ok_or_else(malformed)?;
    let mut names = ["version", "encoding", "standalone"].into_iter();
    let mut seen_version = false;
    loop {
        let trimmed = rest.trim_start_matches([' ', '\t', '\r', '\n']);
        if trimmed.is_empty() {
            break;
        }
        if trimmed.len() == rest.len() {
            return Err(malformed());
        }
        let (name, after) = trimmed.split_once('=').ok_or_else(malformed)?;
        let name = name.trim_end_matches([' ', '\t', '\r', '\n']);
        // Each pseudo-attribute at most once, in XML's order.
        if !names.by_ref().any(|expected| expected == name) {
            return Err(malformed());
        }
        let after = after.trim_start_matches([' ', '\t', '\r', '\n']);
        let quote = after
            .chars()
            .next()
            .filter(|q| *q == '"' || *q == '\'')
            .ok_or_else(malformed)?;
        let (value, tail) = after[1..].split_once(quote).ok_or_else(malformed)?;
        match name {
            "version" if value == "1.0" => seen_version = true,
            "encoding" if value.eq_ignore_ascii_case("utf-8") => {}
            "encoding" => return Err(XmlError::Encoding(value.to_string())),
            "standalone" if value == "yes" || value == "no" => {}
            _ => return Err(malformed()),
        }
        rest = tail;
    }
    if seen_version {
        Ok(())
    } else {
        Err(malformed())
    }
}

fn start_element(start: &BytesStart<'_>) -> Result<Element, XmlError> {
    let name = std::str::from_utf8(start.name().as_ref())
        .map_err(|_| XmlError::NotUtf8)?
        .to_string();
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        || !name.as_bytes()[0].is_ascii_alphabetic()
    {
        return Err(XmlError::Name(name));
    }
    for attribute in start.attributes() {
        let attribute = attribute.map_err(XmlError::Attribute)?;
        let key = attribute.key.as_ref();
        if key != b"xmlns" {
            return Err(XmlError::Unsupported("attributes"));
        }
        let value = attribute
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(XmlError::Syntax)?
            .into_owned();
        if !value.is_empty() && value != S3_NAMESPACE {
            return Err(XmlError::Namespace(value));
        }
    }
    Ok(Element {
        name,
        ..Element::default()
    })
}

fn append_text(open: &mut [Element], text: &str) -> Result<(), XmlError> {
    if !text.chars().all(is_xml_char) {
        return Err(XmlError::Character);
    }
    match open.last_mut() {
        Some(element) => element.text.push_str(text),
        None if is_xml_space(text) => {}
        None => return Err(XmlError::TextOutsideRoot),
    }
    Ok(())
}

fn resolve_reference(reference: &quick_xml::events::BytesRef<'_>) -> Result<char, XmlError> {
    let name = reference.decode().map_err(|e| XmlError::Syntax(e.into()))?;
    let unknown = || XmlError::Entity(name.to_string());
    let resolved = match name.as_ref() {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        _ => reference
            .resolve_char_ref()
            .map_err(|_| unknown())?
            .ok_or_else(unknown)?,
    };
    if !is_xml_char(resolved) {
        return Err(XmlError::Character);
    }
    Ok(resolved)
}

/// The open elements whose text holds a literal carriage return. XML folds one into a line
/// feed, but not every parser does so in every position (roxmltree keeps one before a
/// reference), so a value (a key) may not hold one; text between elements may. A value that
/// needs one writes `&#13;`.
#[derive(Default)]
struct CarriageReturns(Vec<usize>);

impl CarriageReturns {
    /// Text at `depth` (the number of open elements) holds a carriage return.
    fn mark(&mut self, depth: usize) {
        if depth > 0 && self.0.last() != Some(&depth) {
            self.0.push(depth);
        }
    }

    /// The element at `depth` closes, holding text only (`value`) or elements.
    fn close(&mut self, depth: usize, value: bool) -> Result<(), XmlError> {
        if self.0.last() == Some(&depth) {
            self.0.pop();
            if value {
                return Err(XmlError::Unsupported(
                    "a literal carriage return in a value",
                ));
            }
        }
        Ok(())
    }
}

/// Whether `text` is only XML's white space (space, tab, CR, LF; not every Unicode space).
fn is_xml_space(text: &str) -> bool {
    text.bytes()
        .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
}

/// XML 1.0's `Char` production.
fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// Writes documents the proxy made: a declaration, the root in S3's namespace (but for
/// `<Error>`, which S3 writes without one), every text escaped.
pub struct Writer {
    out: String,
}

impl Writer {
    /// Writes `root` and everything under it.
    pub fn document(root: &Element) -> String {
        let mut writer = Writer {
            out: String::with_capacity(256),
        };
        writer
            .out
            .push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        writer.element(root, true);
        writer.out
    }

    fn element(&mut self, element: &Element, root: bool) {
        self.out.push('<');
        self.out.push_str(&element.name);
        // S3's error documents carry no namespace, and SDKs recognise them by the bare name.
        if root && element.name != "Error" {
            self.out.push_str(" xmlns=\"");
            self.out.push_str(S3_NAMESPACE);
            self.out.push('"');
        }
        self.out.push('>');
        if element.children.is_empty() {
            escape_into(&mut self.out, &element.text);
        } else {
            for child in &element.children {
                self.element(child, false);
            }
        }
        self.out.push_str("</");
        self.out.push_str(&element.name);
        self.out.push('>');
    }
}

/// Escapes text for an element: the markup characters, and `\r`, which a parser would
/// otherwise fold into `\n`.
pub fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(root: &Element) -> Vec<String> {
        root.children
            .iter()
            .flat_map(|object| object.children.iter())
            .filter(|e| e.name == "Key")
            .map(|e| e.text.clone())
            .collect()
    }

    #[test]
    fn every_spelling_of_an_element_reads_as_that_element() {
        for document in [
            "<Delete><Object><Key >a</Key ></Object></Delete>",
            "<Delete><Object><Key\t>a</Key\t></Object></Delete>",
            "<Delete><Object><Key\n>a</Key\n></Object></Delete>",
            "\u{FEFF}<Delete><Object><Key>a</Key></Object></Delete>",
            "<Delete><Object><Key><![CDATA[a]]></Key></Object></Delete>",
            "<Delete><Object><Key>&#97;</Key></Object></Delete>",
            "<Delete><Object><Key>&#x61;</Key></Object></Delete>",
            "<Delete>\r\n <Object>\r\n<Key>a</Key></Object>\r\n</Delete>\r\n",
            "<?xml version=\"1.0\" encoding=\"utf-8\"?><Delete xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Object><!-- c --><Key>a</Key></Object></Delete>",
        ] {
            let root = parse(document.as_bytes()).unwrap_or_else(|e| panic!("{document}: {e}"));
            assert_eq!(keys(&root), ["a"], "{document}");
        }
    }

    #[test]
    fn what_s3_documents_never_hold_is_refused() {
        for document in [
            "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><Delete/>",
            "<?xml versinn=\"1.0\"?><Delete/>",
            "<?xml encoding=\"UTF-8\" version=\"1.0\"?><Delete/>",
            "<?xml version=\"1.1\"?><Delete/>",
            "<?xml version=\"1.0\" foo=\"x\"?><Delete/>",
            "<?xml version=\"1.0\"encoding=\"UTF-8\"?><Delete/>",
            " <?xml version=\"1.0\"?><Delete/>",
            "<Delete/><?xml version=\"1.0\"?>",
            "<!DOCTYPE d [<!ENTITY k \"x\">]><Delete><Object><Key>&k;</Key></Object></Delete>",
            "<Delete><Object><Key>&k;</Key></Object></Delete>",
            "<?pi x?><Delete/>",
            "<s3:Delete xmlns:s3=\"http://s3.amazonaws.com/doc/2006-03-01/\"/>",
            "<Delete xmlns=\"urn:other\"/>",
            "<Delete><Object><Key id=\"1\">a</Key></Object></Delete>",
            "<Delete><Object>text<Key>a</Key></Object></Delete>",
            "<Delete/><Delete/>",
            "<Delete>",
            "<Delete></Other>",
            "x<Delete/>",
            "<Delete><Object><Key>&#0;</Key></Object></Delete>",
            "<Delete><Object><Key>\u{1}</Key></Object></Delete>",
            "<Delete><Object><Key>a&b</Key></Object></Delete>",
            "<Delete><!-- \u{0} --><Object><Key>a</Key></Object></Delete>",
            "&#9;<Delete><Object><Key>a</Key></Object></Delete>",
            "\u{85}<Delete><Object><Key>a</Key></Object></Delete>",
            "<Delete><Object><Key>a\r&lt;</Key></Object></Delete>",
            "<Delete><Object><Key><![CDATA[a\rb]]></Key></Object></Delete>",
            "<Delete><Object><Key>\r&#65;</Key></Object></Delete>",
            "<Delete>\u{A0}<Object><Key>a</Key></Object></Delete>",
            "<Delete><Object><Key>a</Key></Object></Delete><![CDATA[x]]>",
            "",
        ] {
            assert!(parse(document.as_bytes()).is_err(), "{document:?}");
        }
        assert!(parse(b"<Delete>\xFF</Delete>").is_err());
        let deep = "<a>".repeat(MAX_DEPTH + 1) + &"</a>".repeat(MAX_DEPTH + 1);
        assert!(matches!(parse(deep.as_bytes()), Err(XmlError::TooDeep)));
    }

    #[test]
    fn written_documents_parse_back_to_the_same_tree() {
        let root = Element::parent(
            "Delete",
            vec![
                Element::parent("Object", vec![Element::text("Key", "a&b<c>\"d'\r\n\te ü")]),
                Element::text("Quiet", "true"),
            ],
        );
        let written = Writer::document(&root);
        assert_eq!(parse(written.as_bytes()).expect("parses"), root);
    }
}
