//! The form's body read as it arrives: its fields (bounded), then its file piece by piece.

use bytes::Bytes;
use http_body_util::BodyExt;

use crate::form::conditions::Fields;
use crate::form::multipart::{Event, Parser, PartHead};
use crate::s3::body::ProxyBody;
use crate::s3::error::Error;

/// The most bytes of fields (names and values) accepted before the file.
pub const MAX_FIELD_BYTES: usize = 64 * 1024;
/// The most fields accepted before the file.
pub const MAX_FIELDS: usize = 64;

/// How long the rest of a refused form's body is read and dropped, so that a browser still
/// sending it gets the answer instead of a reset connection (nginx's lingering close).
const LINGER: std::time::Duration = std::time::Duration::from_secs(5);

/// A form body being read.
pub struct FormReader {
    body: ProxyBody,
    parser: Parser,
}

impl FormReader {
    pub fn new(body: ProxyBody, boundary: &str) -> FormReader {
        FormReader {
            body,
            parser: Parser::new(boundary),
        }
    }

    /// After a refusal part-way through the body: the rest is read and dropped in the
    /// background for at most [`LINGER`], nothing of it kept or sent anywhere. Closing at once
    /// would leave the client's unread bytes in the socket, and the kernel would answer them
    /// with a reset that can destroy the refusal before the client reads it.
    pub fn linger(self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut body = self.body;
        runtime.spawn(async move {
            let drain = async { while let Some(Ok(_)) = body.frame().await {} };
            let _ = tokio::time::timeout(LINGER, drain).await;
        });
    }

    /// Pushes the next frame of the body into the parser; the body's end before the form's is
    /// an error, and so is a client that went away.
    async fn pull(&mut self) -> Result<(), Error> {
        loop {
            match self.body.frame().await {
                None => {
                    self.parser.finish()?;
                    return Err(Error::IncompleteBody);
                }
                Some(Err(_)) => return Err(Error::IncompleteBody),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.parser.push(&data);
                        return Ok(());
                    }
                }
            }
        }
    }

    async fn event(&mut self) -> Result<Event, Error> {
        loop {
            match self.parser.next_event()? {
                Event::NeedMore => self.pull().await?,
                event => return Ok(event),
            }
        }
    }

    /// Reads the fields up to the file part: the fields, and the file's head. A form with no
    /// file is refused, as S3 refuses it.
    pub async fn fields(&mut self) -> Result<(Fields, PartHead), Error> {
        let mut fields = Fields::default();
        let mut current: Option<(String, Vec<u8>)> = None;
        let mut size = 0;
        loop {
            match self.event().await? {
                Event::Data(data) => {
                    let (_, value) = current.as_mut().ok_or_else(|| Error::Internal {
                        detail: "form data outside a part".to_string(),
                    })?;
                    size += data.len();
                    if size > MAX_FIELD_BYTES {
                        return Err(too_much());
                    }
                    value.extend_from_slice(&data);
                }
                Event::Part(head) => {
                    if let Some((name, value)) = current.take() {
                        fields.add(&name, field_text(&name, value)?)?;
                    }
                    size += head.name.len();
                    if fields.0.len() >= MAX_FIELDS || size > MAX_FIELD_BYTES {
                        return Err(too_much());
                    }
                    if head.name.eq_ignore_ascii_case("file") {
                        return Ok((fields, head));
                    }
                    current = Some((head.name, Vec::new()));
                }
                Event::End | Event::NeedMore => {
                    return Err(Error::InvalidArgument {
                        reason: "POST requires exactly one file upload per request".to_string(),
                    });
                }
            }
        }
    }

    /// The next piece of the file, or `None` once its part has ended (what follows it in the
    /// form is ignored, as S3 ignores it).
    pub async fn file_piece(&mut self) -> Result<Option<Bytes>, Error> {
        loop {
            if self.parser.part_ended() {
                return Ok(None);
            }
            match self.parser.next_event()? {
                Event::Data(data) if data.is_empty() => {}
                Event::Data(data) => return Ok(Some(data)),
                Event::Part(_) | Event::End => return Ok(None),
                Event::NeedMore if self.parser.part_ended() => return Ok(None),
                Event::NeedMore => self.pull().await?,
            }
        }
    }
}

fn too_much() -> Error {
    Error::InvalidArgument {
        reason: format!(
            "The form's fields before the file exceed {MAX_FIELDS} fields or {MAX_FIELD_BYTES} bytes"
        ),
    }
}

fn field_text(name: &str, value: Vec<u8>) -> Result<String, Error> {
    String::from_utf8(value).map_err(|_| Error::InvalidArgument {
        reason: format!("The form field `{name}` is not UTF-8"),
    })
}
