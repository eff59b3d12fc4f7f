//! Checks of single values: bucket names, prefixes, role ARNs, endpoints, durations.

use std::time::Duration;

use super::{Endpoint, IpNet, Scheme};

/// S3's bucket naming rules (also applied to integration names, which share the URL space).
pub fn check_bucket_name(name: &str) -> Result<(), String> {
    if !(3..=63).contains(&name.len()) {
        return Err("must be 3-63 characters long".to_string());
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        return Err("may contain only lowercase letters, digits, `.` and `-`".to_string());
    }
    let first_last_ok =
        |b: Option<u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !first_last_ok(name.bytes().next()) || !first_last_ok(name.bytes().last()) {
        return Err("must begin and end with a letter or digit".to_string());
    }
    if name.contains("..") {
        return Err("must not contain `..`".to_string());
    }
    Ok(())
}

/// A prefix is a directory: `tenant` becomes `tenant/`, so key `-x` can never reach a sibling
/// `tenant-x`.
pub(super) fn check_prefix(prefix: &str) -> Result<String, String> {
    if prefix.starts_with('/') {
        return Err("must not start with `/` (S3 keys have no leading slash)".to_string());
    }
    if prefix.chars().any(char::is_control) {
        return Err("must not contain control characters".to_string());
    }
    if prefix
        .split('/')
        .any(|segment| segment == "." || segment == "..")
    {
        return Err("must not contain `.` or `..` segments".to_string());
    }
    if prefix.contains("//") {
        return Err("must not contain empty segments (`//`)".to_string());
    }
    if prefix.is_empty() || prefix.ends_with('/') {
        Ok(prefix.to_string())
    } else {
        Ok(format!("{prefix}/"))
    }
}

/// AWS's partitions, as they appear in ARNs.
pub(super) const PARTITIONS: [&str; 5] = ["aws", "aws-cn", "aws-us-gov", "aws-iso", "aws-iso-b"];

/// `arn:{partition}:iam::{account}:role/{path/}{name}`, each part by AWS's rules.
pub(super) fn check_role_arn(arn: &str) -> Result<(), String> {
    let invalid =
        || format!("`{arn}` is not an IAM role ARN like arn:aws:iam::111122223333:role/Name");
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [prefix, partition, service, region, account, resource] = parts.as_slice() else {
        return Err(invalid());
    };
    if *prefix != "arn" || *service != "iam" || !region.is_empty() {
        return Err(invalid());
    }
    check_partition(partition).map_err(|reason| format!("{}: {reason}", invalid()))?;
    check_account_id(account).map_err(|reason| format!("{}: {reason}", invalid()))?;
    let path_and_name = resource.strip_prefix("role/").ok_or_else(invalid)?;
    let (path, name) = path_and_name
        .rsplit_once('/')
        .unwrap_or(("", path_and_name));
    check_role_name(name).map_err(|reason| format!("{}: {reason}", invalid()))?;
    let path_ok = path.len() <= 510
        && path.split('/').all(|segment| {
            segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b))
        });
    if path_ok { Ok(()) } else { Err(invalid()) }
}

/// One of AWS's partitions.
pub(super) fn check_partition(partition: &str) -> Result<(), String> {
    if PARTITIONS.contains(&partition) {
        Ok(())
    } else {
        Err(format!(
            "the partition `{partition}` is not one of {}",
            PARTITIONS.join(", ")
        ))
    }
}

/// A 12-digit AWS account id.
pub(super) fn check_account_id(account: &str) -> Result<(), String> {
    if account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(format!("the account id `{account}` is not 12 digits"))
    }
}

/// IAM's rule for role names: 1-64 letters, digits and `+=,.@_-`.
pub(super) fn check_role_name(name: &str) -> Result<(), String> {
    if (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b))
    {
        Ok(())
    } else {
        Err(format!(
            "the role name `{name}` must be 1-64 letters, digits and +=,.@_- (IAM's rule)"
        ))
    }
}

/// Parses `http://host:port` or `https://host[:port]`; no path, query or user info.
pub fn parse_endpoint(text: &str) -> Result<Endpoint, String> {
    let uri: http::Uri = text
        .parse()
        .map_err(|_| format!("`{text}` is not a URL like http://127.0.0.1:9000"))?;
    let scheme = match uri.scheme_str() {
        Some("http") => Scheme::Http,
        Some("https") => Scheme::Https,
        _ => return Err(format!("`{text}` must start with http:// or https://")),
    };
    let authority = uri
        .authority()
        .ok_or_else(|| format!("`{text}` has no host"))?;
    if authority.as_str().contains('@') {
        return Err(format!("`{text}` must not carry credentials"));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(format!("`{text}` must not have a path or query"));
    }
    Ok(Endpoint {
        scheme,
        host: authority.host().to_ascii_lowercase(),
        port: authority.port_u16(),
    })
}

/// Parses `250ms`, `90s`, `5m`, `1h` (or a plain number of seconds).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let (number, unit) = match text.bytes().position(|b| !b.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let number: u64 = number.parse().ok()?;
    if unit == "ms" {
        return Some(Duration::from_millis(number));
    }
    let seconds = match unit {
        "s" => number,
        "m" => number.checked_mul(60)?,
        "h" => number.checked_mul(3600)?,
        _ => return None,
    };
    Some(Duration::from_secs(seconds))
}

/// A size: `512MiB`, `64KiB`, `2GiB` or a number of bytes.
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let (number, unit) = match text.bytes().position(|b| !b.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, ""),
    };
    let number: u64 = number.parse().ok()?;
    let shift = match unit.trim() {
        "" | "B" => 0,
        "KiB" => 10,
        "MiB" => 20,
        "GiB" => 30,
        _ => return None,
    };
    number.checked_mul(1 << shift)
}

/// `10.0.0.0/8`, `2001:db8::/32` or a single address; host bits must be clear.
pub(super) fn parse_ip_net(text: &str) -> Result<IpNet, String> {
    let (address, prefix) = match text.split_once('/') {
        Some((address, prefix)) => (address, Some(prefix)),
        None => (text, None),
    };
    let address: std::net::IpAddr = address
        .parse()
        .map_err(|_| format!("`{text}` is not an address range like 10.0.0.0/8 or fd00::/8"))?;
    let width: u8 = if address.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => width,
        Some(prefix) => prefix
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= width)
            .ok_or_else(|| format!("`{text}`: the prefix length must be 0-{width}"))?,
    };
    let net = IpNet { address, prefix };
    let bits = match address {
        std::net::IpAddr::V4(v4) => u128::from(u32::from(v4)) << 96,
        std::net::IpAddr::V6(v6) => u128::from(v6),
    };
    let host_bits = bits.checked_shl(u32::from(prefix)).unwrap_or(0);
    if host_bits != 0 {
        return Err(format!(
            "`{text}` has host bits set: write the range's first address"
        ));
    }
    Ok(net)
}
