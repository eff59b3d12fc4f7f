//! A streaming `multipart/form-data` parser (RFC 7578): bytes are pushed in as they arrive and
//! come out as events — a part's head, pieces of its body, the end — holding at most one
//! part head and one delimiter's length of a body in memory.
//!
//! The body is read as if it began with CRLF, so that every delimiter, the first included, is
//! `CRLF--boundary`. After a delimiter come optional spaces and tabs and CRLF, or `--` for the
//! last one; anything after the last is ignored, as RFC 2046 says.

use bytes::{Buf, Bytes, BytesMut};

use crate::s3::error::Error;

/// The longest part head (its header lines) accepted.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;

/// A part's head: the form field it is, and for a file, the file's name and type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartHead {
    /// The field name, from `Content-Disposition: form-data; name="…"`.
    pub name: String,
    /// `filename="…"`, for a file.
    pub filename: Option<String>,
    /// The part's `Content-Type`.
    pub content_type: Option<String>,
}

/// What the parser found next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A part begins.
    Part(PartHead),
    /// A piece of the current part's body.
    Data(Bytes),
    /// The last delimiter: the form is complete.
    End,
    /// More bytes are needed.
    NeedMore,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// Before the first delimiter (the preamble).
    Preamble,
    /// Just after a delimiter: `--`, or padding and CRLF.
    AfterDelimiter,
    /// In a part's header lines.
    Head,
    /// At the second line end of the blank line after a part's headers.
    BodyStart,
    /// In a part's body.
    Body,
    /// After the last delimiter.
    Done,
}

/// The parser's state. [`Parser::push`] bytes in, take [`Parser::next_event`]s out until
/// [`Event::NeedMore`]; [`Parser::finish`] says whether the form ended properly.
pub struct Parser {
    /// `CRLF--boundary`.
    delimiter: Vec<u8>,
    buffer: BytesMut,
    place: Place,
}

/// The boundary of a `multipart/form-data` content type.
pub fn boundary(content_type: &str) -> Result<String, Error> {
    let refused = |why: &str| Error::InvalidArgument {
        reason: format!("POST requires a multipart/form-data body: {why}"),
    };
    let mut parts = content_type.split(';');
    let media_type = parts.next().unwrap_or("").trim();
    if !media_type.eq_ignore_ascii_case("multipart/form-data") {
        return Err(refused("the Content-Type is not multipart/form-data"));
    }
    let boundary = parts
        .filter_map(|parameter| parameter.split_once('='))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("boundary"))
        .map(|(_, value)| value.trim().trim_matches('"').to_string())
        .ok_or_else(|| refused("the Content-Type has no boundary"))?;
    // RFC 2046: 1 to 70 characters, none of them a control character.
    if boundary.is_empty()
        || boundary.len() > 70
        || !boundary.bytes().all(|b| (b' '..=b'~').contains(&b))
    {
        return Err(refused("the boundary is not 1-70 printable characters"));
    }
    Ok(boundary)
}

impl Parser {
    /// A parser for a body with this boundary.
    pub fn new(boundary: &str) -> Parser {
        let mut buffer = BytesMut::new();
        buffer.extend_from_slice(b"\r\n");
        Parser {
            delimiter: format!("\r\n--{boundary}").into_bytes(),
            buffer,
            place: Place::Preamble,
        }
    }

    /// Adds bytes that arrived.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.place != Place::Done {
            self.buffer.extend_from_slice(bytes);
        }
    }

    /// The next event from the bytes pushed so far.
    pub fn next_event(&mut self) -> Result<Event, Error> {
        match self.place {
            Place::Preamble => self.skip_preamble(),
            Place::AfterDelimiter => self.after_delimiter(),
            Place::Head => self.head(),
            Place::BodyStart => self.body_start(),
            Place::Body => self.body(),
            Place::Done => Ok(Event::End),
        }
    }

    /// Whether the form ended with its last delimiter (call once the body has ended).
    pub fn finish(&self) -> Result<(), Error> {
        match self.place {
            Place::Done => Ok(()),
            _ => Err(malformed("the body ended before the form's last boundary")),
        }
    }

    fn skip_preamble(&mut self) -> Result<Event, Error> {
        match find(&self.buffer, &self.delimiter) {
            Some(at) => {
                self.buffer.advance(at + self.delimiter.len());
                self.place = Place::AfterDelimiter;
                self.next_event()
            }
            None => {
                // Keep what could be the start of a delimiter; a preamble is never kept whole.
                let keep = self.delimiter.len() - 1;
                if self.buffer.len() > keep {
                    let drop = self.buffer.len() - keep;
                    self.buffer.advance(drop);
                }
                Ok(Event::NeedMore)
            }
        }
    }

    fn after_delimiter(&mut self) -> Result<Event, Error> {
        if self.buffer.len() < 2 {
            return Ok(Event::NeedMore);
        }
        if self.buffer.starts_with(b"--") {
            self.place = Place::Done;
            self.buffer.clear();
            return Ok(Event::End);
        }
        let padding = self
            .buffer
            .iter()
            .take_while(|b| **b == b' ' || **b == b'\t')
            .count();
        if padding > 64 {
            return Err(malformed("too much padding after a boundary"));
        }
        match self.buffer.get(padding..padding + 2) {
            None => Ok(Event::NeedMore),
            Some(b"\r\n") => {
                self.buffer.advance(padding + 2);
                self.place = Place::Head;
                self.next_event()
            }
            Some(_) => Err(malformed("a boundary is not followed by a line end")),
        }
    }

    fn head(&mut self) -> Result<Event, Error> {
        // A part with no header lines starts with the blank line itself.
        let end = if self.buffer.starts_with(b"\r\n") {
            Some(0)
        } else {
            find(&self.buffer, b"\r\n\r\n").map(|at| at + 2)
        };
        let Some(end) = end else {
            if self.buffer.len() > MAX_HEAD_BYTES {
                return Err(malformed("a part's headers are too long"));
            }
            return Ok(Event::NeedMore);
        };
        if end > MAX_HEAD_BYTES {
            return Err(malformed("a part's headers are too long"));
        }
        if find(&self.buffer[..end], &self.delimiter).is_some() {
            return Err(malformed("a part ends inside its headers"));
        }
        let head = self.buffer.split_to(end);
        self.place = Place::BodyStart;
        parse_head(&head).map(Event::Part)
    }

    /// The blank line's last CRLF may begin a delimiter (`…\r\n\r\n--boundary`): then the part
    /// ended before its headers did, and the form is refused.
    fn body_start(&mut self) -> Result<Event, Error> {
        if self.buffer.len() < self.delimiter.len() {
            if self.delimiter.starts_with(&self.buffer) {
                return Ok(Event::NeedMore);
            }
        } else if self.buffer.starts_with(&self.delimiter) {
            return Err(malformed("a part ends inside its headers"));
        }
        self.buffer.advance(2);
        self.place = Place::Body;
        self.next_event()
    }

    fn body(&mut self) -> Result<Event, Error> {
        if let Some(at) = find(&self.buffer, &self.delimiter) {
            if at > 0 {
                return Ok(Event::Data(self.buffer.split_to(at).freeze()));
            }
            // The part ends here: its successor (or the end) is next.
            self.buffer.advance(self.delimiter.len());
            self.place = Place::AfterDelimiter;
            return self.next_event();
        }
        // Everything but a possible partial delimiter at the end is body.
        let keep = self.delimiter.len() - 1;
        if self.buffer.len() > keep {
            let take = self.buffer.len() - keep;
            return Ok(Event::Data(self.buffer.split_to(take).freeze()));
        }
        Ok(Event::NeedMore)
    }

    /// Whether the current part's body has ended (the parser is past its delimiter).
    pub fn part_ended(&self) -> bool {
        !matches!(self.place, Place::Body | Place::BodyStart)
    }
}

fn malformed(why: &str) -> Error {
    Error::MalformedPostRequest {
        reason: why.to_string(),
    }
}

/// Where `needle` (never empty) first occurs: a scan for its first byte, then a comparison.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let first = *needle.first()?;
    let last_start = haystack.len().checked_sub(needle.len())?;
    let mut from = 0;
    while from <= last_start {
        let at = from
            + haystack[from..=last_start]
                .iter()
                .position(|b| *b == first)?;
        if haystack[at..at + needle.len()] == *needle {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// A part's header lines: `Content-Disposition: form-data; name="…"[; filename="…"]` and an
/// optional `Content-Type`. Other headers are ignored, as browsers send none.
pub(crate) fn parse_head(head: &[u8]) -> Result<PartHead, Error> {
    let text =
        std::str::from_utf8(head).map_err(|_| malformed("a part's headers are not UTF-8"))?;
    let mut disposition = None;
    let mut content_type = None;
    for line in text.split("\r\n").filter(|line| !line.is_empty()) {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| malformed("a part's header line has no `:`"))?;
        if name.trim().eq_ignore_ascii_case("content-disposition") {
            if disposition.is_some() {
                return Err(malformed("a part has two Content-Disposition headers"));
            }
            disposition = Some(value.trim());
        } else if name.trim().eq_ignore_ascii_case("content-type") {
            content_type = Some(value.trim().to_string());
        }
    }
    let disposition = disposition.ok_or_else(|| malformed("a part has no Content-Disposition"))?;
    let (name, filename) = parse_disposition(disposition)?;
    Ok(PartHead {
        name,
        filename,
        content_type,
    })
}

/// `form-data; name="field"; filename="a.png"`: the name, and the filename if any.
fn parse_disposition(value: &str) -> Result<(String, Option<String>), Error> {
    let rest = value
        .strip_prefix("form-data")
        .or_else(|| value.strip_prefix("FORM-DATA"))
        .ok_or_else(|| malformed("a part is not form-data"))?;
    let mut name = None;
    let mut filename = None;
    let mut rest = rest.trim_start();
    while let Some(after) = rest.strip_prefix(';') {
        let after = after.trim_start();
        let (parameter, after) = after
            .split_once('=')
            .ok_or_else(|| malformed("a Content-Disposition parameter has no value"))?;
        let (parameter_value, after) = parameter_value(after)?;
        let slot = match parameter.trim().to_ascii_lowercase().as_str() {
            "name" => &mut name,
            "filename" => &mut filename,
            _ => {
                return Err(malformed(
                    "a Content-Disposition parameter is not name or filename",
                ));
            }
        };
        if slot.replace(parameter_value).is_some() {
            return Err(malformed("a Content-Disposition parameter is given twice"));
        }
        rest = after.trim_start();
    }
    if !rest.is_empty() {
        return Err(malformed("a Content-Disposition header has trailing text"));
    }
    let name = name.ok_or_else(|| malformed("a part has no name"))?;
    Ok((name, filename))
}

/// A quoted (browsers quote, escaping `"` as `%22`) or bare parameter value, and the rest.
fn parameter_value(text: &str) -> Result<(String, &str), Error> {
    if let Some(quoted) = text.strip_prefix('"') {
        let mut value = String::new();
        let mut chars = quoted.char_indices();
        while let Some((at, c)) = chars.next() {
            match c {
                '"' => return Ok((value, &quoted[at + 1..])),
                '\\' => match chars.next() {
                    Some((_, escaped)) => value.push(escaped),
                    None => break,
                },
                _ => value.push(c),
            }
        }
        return Err(malformed(
            "a quoted Content-Disposition value is not closed",
        ));
    }
    let value = text.split(';').next().unwrap_or("");
    Ok((value.trim().to_string(), &text[value.len()..]))
}

#[cfg(test)]
mod tests;
