//! The PROXY protocol (v1 text and v2 binary), as AWS NLB and HAProxy send it: a header at
//! the start of each connection that names the client's address. With `[server]
//! proxy_protocol = true`, every connection must start with one; a connection without a valid
//! header is closed before any HTTP is read. The header is read exactly, byte for byte, so
//! the HTTP that follows it is untouched.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::io::{AsyncRead, AsyncReadExt};

/// The v2 signature: `\r\n\r\n\0\r\nQUIT\n`.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// v1's longest header, `\r\n` included.
const V1_MAX: usize = 107;
/// The most address data a v2 header may carry that the proxy reads (TLVs included).
const V2_MAX_LENGTH: usize = 1024;

/// Why a connection's PROXY header was refused.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    /// The connection ended or failed before the header was complete.
    #[error("reading the PROXY header: {0}")]
    Io(#[from] std::io::Error),
    /// The bytes are not a PROXY header of either version.
    #[error("not a PROXY protocol header: {0}")]
    Invalid(&'static str),
}

/// Whether a connection starts with a PROXY header of either version, looked at without
/// reading it: the stream is left as it was. Waits for as many bytes as it takes to tell.
pub async fn starts_with_header(stream: &tokio::net::TcpStream) -> std::io::Result<bool> {
    const V1_START: &[u8] = b"PROXY ";
    let mut start = [0u8; 12];
    loop {
        let seen = stream.peek(&mut start).await?;
        if seen == 0 {
            return Ok(false);
        }
        let start = &start[..seen];
        let could_be = |signature: &[u8]| {
            let common = seen.min(signature.len());
            start[..common] == signature[..common]
        };
        if start.starts_with(V1_START) || start.starts_with(&V2_SIGNATURE) {
            return Ok(true);
        }
        if !could_be(V1_START) && !could_be(&V2_SIGNATURE) {
            return Ok(false);
        }
        // A prefix of a signature so far: peek again once more has arrived (peek returns at
        // once while anything is buffered, so wait a little rather than spin).
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// Reads the header; `Some(source)` for a proxied connection, `None` when the header says
/// the connection is the balancer's own (v2 `LOCAL`, v1 `UNKNOWN`: health checks).
pub async fn read_header<R: AsyncRead + Unpin>(
    stream: &mut R,
) -> Result<Option<SocketAddr>, HeaderError> {
    let mut start = [0u8; 12];
    stream.read_exact(&mut start[..6]).await?;
    if &start[..6] == b"PROXY " {
        return read_v1(stream).await;
    }
    stream.read_exact(&mut start[6..]).await?;
    if start != V2_SIGNATURE {
        return Err(HeaderError::Invalid("no PROXY v1 or v2 signature"));
    }
    read_v2(stream).await
}

/// The rest of `PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n`.
async fn read_v1<R: AsyncRead + Unpin>(stream: &mut R) -> Result<Option<SocketAddr>, HeaderError> {
    let mut line = Vec::with_capacity(V1_MAX);
    loop {
        let byte = stream.read_u8().await?;
        line.push(byte);
        if line.ends_with(b"\r\n") {
            break;
        }
        if line.len() + 6 >= V1_MAX {
            return Err(HeaderError::Invalid("a v1 header longer than 107 bytes"));
        }
    }
    let text = std::str::from_utf8(&line[..line.len() - 2])
        .map_err(|_| HeaderError::Invalid("a v1 header that is not text"))?;
    parse_v1(text)
}

/// `TCP4 src dst sport dport`, `TCP6 …` or `UNKNOWN …`.
fn parse_v1(text: &str) -> Result<Option<SocketAddr>, HeaderError> {
    let fields: Vec<&str> = text.split(' ').collect();
    let invalid = HeaderError::Invalid("a malformed v1 header");
    match fields.as_slice() {
        ["UNKNOWN", ..] => Ok(None),
        [
            family @ ("TCP4" | "TCP6"),
            source,
            _destination,
            port,
            _destination_port,
        ] => {
            let address: IpAddr = source.parse().map_err(|_| invalid)?;
            if address.is_ipv4() != (*family == "TCP4") {
                return Err(HeaderError::Invalid("a v1 address of the other family"));
            }
            let canonical = !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && (port.len() == 1 || !port.starts_with('0'));
            let port: u16 = port
                .parse()
                .ok()
                .filter(|_| canonical)
                .ok_or(HeaderError::Invalid("a malformed v1 port"))?;
            Ok(Some(SocketAddr::new(address, port)))
        }
        _ => Err(invalid),
    }
}

/// The rest of a v2 header: version and command, family, length, addresses, TLVs (skipped).
async fn read_v2<R: AsyncRead + Unpin>(stream: &mut R) -> Result<Option<SocketAddr>, HeaderError> {
    let mut fixed = [0u8; 4];
    stream.read_exact(&mut fixed).await?;
    let [version_command, family, high, low] = fixed;
    let length = usize::from(u16::from_be_bytes([high, low]));
    if version_command >> 4 != 2 {
        return Err(HeaderError::Invalid("a v2 header of another version"));
    }
    if length > V2_MAX_LENGTH {
        return Err(HeaderError::Invalid("a v2 header longer than 1 KiB"));
    }
    let mut data = vec![0u8; length];
    stream.read_exact(&mut data).await?;
    match version_command & 0x0F {
        // LOCAL: the balancer's own connection; the socket's peer stands.
        0x0 => Ok(None),
        0x1 => parse_v2_addresses(family, &data),
        _ => Err(HeaderError::Invalid(
            "a v2 command other than LOCAL or PROXY",
        )),
    }
}

fn parse_v2_addresses(family: u8, data: &[u8]) -> Result<Option<SocketAddr>, HeaderError> {
    let short = HeaderError::Invalid("a v2 address block shorter than its family needs");
    match family {
        // TCP over IPv4: source, destination (4 bytes each), source port, destination port.
        0x11 => {
            let block: &[u8; 12] = data
                .get(..12)
                .and_then(|b| b.try_into().ok())
                .ok_or(short)?;
            let source = Ipv4Addr::new(block[0], block[1], block[2], block[3]);
            let port = u16::from_be_bytes([block[8], block[9]]);
            Ok(Some(SocketAddr::new(IpAddr::V4(source), port)))
        }
        // TCP over IPv6: 16-byte addresses.
        0x21 => {
            let block: &[u8; 36] = data
                .get(..36)
                .and_then(|b| b.try_into().ok())
                .ok_or(short)?;
            let mut source = [0u8; 16];
            source.copy_from_slice(&block[..16]);
            let port = u16::from_be_bytes([block[32], block[33]]);
            Ok(Some(SocketAddr::new(
                IpAddr::V6(Ipv6Addr::from(source)),
                port,
            )))
        }
        // UNSPEC (and UDP or UNIX, which an HTTP listener never carries): no address to use.
        0x00 => Ok(None),
        _ => Err(HeaderError::Invalid(
            "a v2 family other than TCP over IPv4 or IPv6",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read(bytes: &[u8]) -> (Result<Option<SocketAddr>, HeaderError>, Vec<u8>) {
        let mut reader = bytes;
        let result = read_header(&mut reader).await;
        (result, reader.to_vec())
    }

    fn v2(command: u8, family: u8, data: &[u8]) -> Vec<u8> {
        let mut header = V2_SIGNATURE.to_vec();
        header.push(0x20 | command);
        header.push(family);
        header.extend_from_slice(&u16::try_from(data.len()).expect("len").to_be_bytes());
        header.extend_from_slice(data);
        header
    }

    #[tokio::test]
    async fn v1_headers_name_the_source_and_leave_the_request_unread() {
        let (source, rest) =
            read(b"PROXY TCP4 203.0.113.7 10.0.0.1 56324 443\r\nGET / HTTP/1.1\r\n").await;
        assert_eq!(
            source.expect("valid"),
            Some("203.0.113.7:56324".parse().expect("address"))
        );
        assert_eq!(rest, b"GET / HTTP/1.1\r\n");
        let (source, _) = read(b"PROXY TCP6 2001:db8::7 2001:db8::1 1 443\r\n").await;
        assert_eq!(
            source.expect("valid"),
            Some("[2001:db8::7]:1".parse().expect("address"))
        );
        let (source, _) = read(b"PROXY UNKNOWN\r\n").await;
        assert_eq!(source.expect("valid"), None);
        for bad in [
            &b"PROXY TCP4 2001:db8::7 10.0.0.1 1 443\r\n"[..],
            b"PROXY TCP4 203.0.113.7 10.0.0.1 056324 443\r\n",
            b"PROXY TCP4 203.0.113.7 10.0.0.1 70000 443\r\n",
            b"PROXY TCP4 203.0.113.7 10.0.0.1 1\r\n",
            b"PROXY TCP4 203.0.113.7 10.0.0.1 1 443",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        ] {
            assert!(
                read(bad).await.0.is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let mut long = b"PROXY ".to_vec();
        long.extend(std::iter::repeat_n(b'1', 200));
        assert!(read(&long).await.0.is_err());
    }

    #[tokio::test]
    async fn v2_headers_name_the_source_skip_tlvs_and_leave_the_request_unread() {
        let mut v4 = vec![203, 0, 113, 7, 10, 0, 0, 1, 0xDC, 0x04, 0x01, 0xBB];
        v4.extend_from_slice(&[0x03, 0x00, 0x04, 1, 2, 3, 4]); // a CRC32c TLV
        let mut bytes = v2(1, 0x11, &v4);
        bytes.extend_from_slice(b"GET / HTTP/1.1\r\n");
        let (source, rest) = read(&bytes).await;
        assert_eq!(
            source.expect("valid"),
            Some("203.0.113.7:56324".parse().expect("address"))
        );
        assert_eq!(rest, b"GET / HTTP/1.1\r\n");

        let mut v6 = "2001:db8::7"
            .parse::<Ipv6Addr>()
            .expect("v6")
            .octets()
            .to_vec();
        v6.extend_from_slice(&[0; 16]);
        v6.extend_from_slice(&[0x00, 0x50, 0x01, 0xBB]);
        let (source, _) = read(&v2(1, 0x21, &v6)).await;
        assert_eq!(
            source.expect("valid"),
            Some("[2001:db8::7]:80".parse().expect("address"))
        );
        // LOCAL: a health check from the balancer itself.
        assert_eq!(read(&v2(0, 0x00, &[])).await.0.expect("valid"), None);
        // Too short for its family, an unknown command, another version, a UDP family.
        assert!(read(&v2(1, 0x11, &[1, 2, 3])).await.0.is_err());
        assert!(read(&v2(2, 0x11, &v4)).await.0.is_err());
        let mut version3 = v2(1, 0x11, &v4);
        version3[12] = 0x31;
        assert!(read(&version3).await.0.is_err());
        assert!(read(&v2(1, 0x12, &v4)).await.0.is_err());
        // Cut off in the middle.
        let whole = v2(1, 0x11, &v4);
        assert!(read(&whole[..20]).await.0.is_err());
    }
}
