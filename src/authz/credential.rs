//! Where a request's credential is: the `authorization` header (`Bearer <token>`) or a named
//! cookie. One reader for the ext_authz path and the HTTP module, so both refuse the same
//! ambiguities: more than one `authorization` header (or Envoy's comma-joined value), and a cookie
//! named twice (two parsers could pick different ones).

use crate::authz::error::{BadRequest, Denied};
use crate::verify::token;

/// The bearer token of the `authorization` header values, `None` without any. Values that are not
/// UTF-8 arrive as `None` items and are refused as malformed.
pub fn bearer<'a>(mut values: impl Iterator<Item = Option<&'a str>>) -> Result<Option<&'a str>, Denied> {
    let Some(first) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(BadRequest::MultipleCredentials.into());
    }
    // Non-UTF-8 bytes cannot be a bearer token: an unprintable value is refused as malformed.
    let value = first.unwrap_or("\u{0}");
    // Envoy joins repeated headers with ','; no bearer token can hold one.
    if value.contains(',') {
        return Err(BadRequest::MultipleCredentials.into());
    }
    Ok(Some(token::bearer(value)?))
}

/// The value of cookie `name` across the `cookie` header values (quotes stripped); `None` when it
/// is absent or empty, an error when it is named twice.
pub fn cookie<'a>(headers: impl IntoIterator<Item = &'a str>, name: &str) -> Result<Option<&'a str>, BadRequest> {
    let mut values = headers
        .into_iter()
        .flat_map(|header| header.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(key, _)| *key == name)
        .map(|(_, value)| value.trim().trim_matches('"'));
    match (values.next(), values.next()) {
        (_, Some(_)) => Err(BadRequest::MultipleCredentials),
        (Some(value), None) if !value.is_empty() => Ok(Some(value)),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::error::Invalid;

    #[test]
    fn one_bearer_header_is_read_and_more_are_refused() {
        assert_eq!(bearer(std::iter::empty()), Ok(None));
        assert_eq!(bearer([Some("Bearer a.b.c")].into_iter()), Ok(Some("a.b.c")));
        let two = [Some("Bearer a.b.c"), Some("Bearer d.e.f")];
        assert_eq!(bearer(two.into_iter()), Err(BadRequest::MultipleCredentials.into()));
        assert_eq!(
            bearer([Some("Bearer a.b.c,Bearer d.e.f")].into_iter()),
            Err(BadRequest::MultipleCredentials.into())
        );
        assert_eq!(bearer([None].into_iter()), Err(Invalid::NotBearer.into()));
    }

    #[test]
    fn a_cookie_named_twice_is_refused_and_quotes_are_stripped() {
        assert_eq!(cookie(["theme=dark; t=\"a.b.c\""], "t"), Ok(Some("a.b.c")));
        assert_eq!(cookie(["t=a.b.c", "t=d.e.f"], "t"), Err(BadRequest::MultipleCredentials));
        assert_eq!(cookie(["t=a; t=b"], "t"), Err(BadRequest::MultipleCredentials));
        assert_eq!(cookie(["t="], "t"), Ok(None));
        assert_eq!(cookie(["other=1"], "t"), Ok(None));
    }
}
