use super::*;

/// Parses `body` fed in pieces of `step` bytes: each part's head and its whole body.
fn parse_in_steps(
    body: &[u8],
    boundary: &str,
    step: usize,
) -> Result<Vec<(PartHead, Vec<u8>)>, Error> {
    let mut parser = Parser::new(boundary);
    let mut parts: Vec<(PartHead, Vec<u8>)> = Vec::new();
    let mut ended = false;
    for chunk in body.chunks(step.max(1)) {
        parser.push(chunk);
        loop {
            match parser.next_event()? {
                Event::Part(head) => parts.push((head, Vec::new())),
                Event::Data(data) => parts
                    .last_mut()
                    .expect("data belongs to a part")
                    .1
                    .extend_from_slice(&data),
                Event::End => {
                    ended = true;
                    break;
                }
                Event::NeedMore => break,
            }
        }
        if ended {
            break;
        }
    }
    parser.finish()?;
    Ok(parts)
}

const FORM: &[u8] = b"preamble\r\n--XyZ\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\nuploads/${filename}\r\n--XyZ  \r\ncontent-disposition: form-data; name=\"x-amz-meta-note\"\r\n\r\na\r\n--b\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"cat \\\"1\\\".png\"\r\nContent-Type: image/png\r\n\r\n\x89PNG\r\n--XyY\r\n\r\n--XyZ--\r\nepilogue";

#[test]
fn parts_come_out_the_same_whatever_the_pieces() {
    let whole = parse_in_steps(FORM, "XyZ", FORM.len()).expect("parses");
    assert_eq!(whole.len(), 3);
    assert_eq!(whole[0].0.name, "key");
    assert_eq!(whole[0].1, b"uploads/${filename}");
    assert_eq!(whole[1].1, b"a\r\n--b");
    assert_eq!(whole[2].0.filename.as_deref(), Some("cat \"1\".png"));
    assert_eq!(whole[2].0.content_type.as_deref(), Some("image/png"));
    assert_eq!(whole[2].1, b"\x89PNG\r\n--XyY\r\n");
    for step in 1..FORM.len() {
        assert_eq!(
            parse_in_steps(FORM, "XyZ", step).expect("parses"),
            whole,
            "step {step}"
        );
    }
}

#[test]
fn a_body_that_starts_with_its_boundary_has_no_preamble() {
    let body = b"--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--b--";
    let parts = parse_in_steps(body, "b", 3).expect("parses");
    assert_eq!(parts.len(), 1);
    assert_eq!(parts[0].1, b"1");
}

#[test]
fn malformed_forms_are_refused() {
    for (body, why) in [
        (
            &b"--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1"[..],
            "last boundary",
        ),
        (
            b"--b\r\nContent-Type: text/plain\r\n\r\n1\r\n--b--",
            "no Content-Disposition",
        ),
        (
            b"--b\r\nContent-Disposition: attachment; name=\"a\"\r\n\r\n1\r\n--b--",
            "not form-data",
        ),
        (
            b"--b\r\nContent-Disposition: form-data; name=\"a\r\n\r\n1\r\n--b--",
            "not closed",
        ),
        (
            b"--b\r\nContent-Disposition: form-data; name=a; name=b\r\n\r\n1\r\n--b--",
            "twice",
        ),
        (b"--bX\r\n", "line end"),
        // The boundary inside a part (RFC 2046: a sender never lets it occur there).
        (
            b"--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--bX\r\n--b--",
            "line end",
        ),
        (b"--b junk\r\n", "line end"),
    ] {
        let error = parse_in_steps(body, "b", 5).expect_err(&String::from_utf8_lossy(body));
        assert!(error.to_string().contains(why), "{error}");
    }
    let long_head = format!("--b\r\nX: {}\r\n\r\n", "y".repeat(MAX_HEAD_BYTES));
    assert!(parse_in_steps(long_head.as_bytes(), "b", 100).is_err());
}

#[test]
fn boundaries_come_from_the_content_type() {
    assert_eq!(
        boundary("multipart/form-data; boundary=----WebKitFormBoundaryA1").expect("ok"),
        "----WebKitFormBoundaryA1"
    );
    assert_eq!(
        boundary("Multipart/Form-Data; charset=utf-8; boundary=\"a b\"").expect("ok"),
        "a b"
    );
    for bad in [
        "text/plain",
        "multipart/form-data",
        "multipart/form-data; boundary=",
        "multipart/mixed; boundary=a",
    ] {
        assert!(boundary(bad).is_err(), "{bad}");
    }
}
