//! Token authentication for what the CircleCI orb can send: it adds no header, so the token rides
//! in the URL as the `token` query parameter (read with axum's [`Query`]). Clients that can send
//! headers may use `Authorization: Bearer <token>` instead. Compared in constant time. The query
//! string is never logged (see the trace layer in `lib.rs`).

use axum::extract::Query;
use axum::http::Uri;
use axum::http::request::Parts;
use orchestrator_core::Secret;
use subtle::ConstantTimeEq;

use super::error::ApiError;

/// The query string's `name=value` pairs, decoded (`application/x-www-form-urlencoded`), in
/// order. A query that cannot be read has none.
pub fn query_pairs(uri: &Uri) -> Vec<(String, String)> {
    Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map(|Query(pairs)| pairs)
        .unwrap_or_default()
}

/// The first value of query parameter `name`.
pub fn query_param(uri: &Uri, name: &str) -> Option<String> {
    query_pairs(uri)
        .into_iter()
        .find_map(|(k, v)| (k == name).then_some(v))
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

/// Whether the request carries `expected`; with no token configured every request does.
pub fn authorized(parts: &Parts, expected: Option<&Secret>) -> bool {
    let Some(expected) = expected else {
        return true;
    };
    let given = bearer(parts).or_else(|| query_param(&parts.uri, "token"));
    given.is_some_and(|g| bool::from(g.as_bytes().ct_eq(expected.expose().as_bytes())))
}

/// [`authorized`], as the endpoints answer it.
pub fn check(parts: &Parts, expected: Option<&Secret>) -> Result<(), ApiError> {
    if authorized(parts, expected) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
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
        let token = |q: &str| query_param(&format!("/p?token={q}").parse().unwrap(), "token");
        assert_eq!(token("a%zz%").as_deref(), Some("a%zz%"));
        assert_eq!(token("%4").as_deref(), Some("%4"));
        assert_eq!(token("%41+b").as_deref(), Some("A b"));
        assert_eq!(token("%e2%82%ac").as_deref(), Some("€"));
        // Not UTF-8 once decoded: replaced, never a panic.
        assert_eq!(token("%ff").as_deref(), Some("\u{fffd}"));
    }
}
