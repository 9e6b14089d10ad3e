//! Token authentication for what the CircleCI orb can send: it adds no header, so the token rides
//! in the URL as the `token` query parameter. Clients that can send headers may use
//! `Authorization: Bearer <token>` instead. Compared in constant time. The query string is never
//! logged (see the trace layer in `lib.rs`).

use axum::http::request::Parts;
use orchestrator_core::Secret;
use subtle::ConstantTimeEq;

use super::error::ApiError;

fn query_token(query: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == "token").then(|| percent_decode(v))
    })
}

/// Minimal `application/x-www-form-urlencoded` value decoding.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn bearer(parts: &Parts) -> Option<String> {
    let v = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

/// Checks the request against `expected`; with no token configured every request passes.
pub fn check(parts: &Parts, expected: Option<&Secret>) -> Result<(), ApiError> {
    let Some(expected) = expected else {
        return Ok(());
    };
    let given = bearer(parts).or_else(|| parts.uri.query().and_then(query_token));
    match given {
        Some(g) if bool::from(g.as_bytes().ct_eq(expected.expose().as_bytes())) => Ok(()),
        _ => Err(ApiError::Unauthorized),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;

    fn parts(uri: &str, auth: Option<&str>) -> Parts {
        let mut b = Request::builder().uri(uri);
        if let Some(a) = auth {
            b = b.header("authorization", a);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn accepts_query_or_bearer_and_rejects_the_rest() {
        let s = Secret::new("s3cr3t/+=");
        assert!(check(&parts("/p?token=s3cr3t%2F%2B%3D", None), Some(&s)).is_ok());
        assert!(check(&parts("/p?a=1&token=s3cr3t%2F%2B%3D", None), Some(&s)).is_ok());
        assert!(check(&parts("/p", Some("Bearer s3cr3t/+=")), Some(&s)).is_ok());
        assert!(check(&parts("/p?token=s3cr3t", None), Some(&s)).is_err());
        assert!(check(&parts("/p?tokens=s3cr3t%2F%2B%3D", None), Some(&s)).is_err());
        assert!(check(&parts("/p", None), Some(&s)).is_err());
        assert!(check(&parts("/p", Some("Basic s3cr3t/+=")), Some(&s)).is_err());
        assert!(check(&parts("/p", None), None).is_ok());
    }

    #[test]
    fn decodes_odd_percent_sequences_without_panicking() {
        assert_eq!(percent_decode("a%zz%"), "a%zz%");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("%41+b"), "A b");
        assert_eq!(percent_decode("%e2%82%ac"), "€");
        assert_eq!(percent_decode("%é%"), "%é%");
    }
}
