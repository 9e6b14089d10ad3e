//! The console's sessions, stateless so they work on Lambda: a cookie holding the role, the
//! expiry and an HMAC-SHA256 of both keyed with that role's token (never the token itself), the
//! CSRF token derived from the session, and the `Origin` check of every console POST.
//!
//! Changing a token ends every session signed with it. A session is as strong as the token:
//! nobody can sign one without it.

use axum::http::HeaderMap;
use axum::http::header::{COOKIE, HOST, ORIGIN};
use hmac::{Hmac, KeyInit, Mac};
use orchestrator_core::Secret;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::api::access::{AccessSettings, Power};

/// The session cookie's name.
pub const COOKIE_NAME: &str = "orch_console";
/// How long a session lasts.
pub const SESSION_SECS: i64 = 8 * 3600;

type Hmac256 = Hmac<Sha256>;

/// A signed-in browser: what it may do, until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub power: Power,
    /// Epoch seconds.
    pub expires: i64,
    /// The cookie's value, from which the CSRF token is derived.
    value: String,
}

fn role(power: Power) -> &'static str {
    match power {
        Power::Audit => "audit",
        Power::Admin => "admin",
    }
}

fn key(access: &AccessSettings, power: Power) -> Option<&Secret> {
    match power {
        Power::Audit => access.audit_token.as_ref(),
        Power::Admin => access.admin_token.as_ref(),
    }
}

fn mac(key: &Secret, purpose: &str, message: &str) -> String {
    let mut m = <Hmac256 as KeyInit>::new_from_slice(key.expose().as_bytes())
        .expect("HMAC takes a key of any length");
    m.update(purpose.as_bytes());
    m.update(b"\0");
    m.update(message.as_bytes());
    hex::encode(m.finalize().into_bytes())
}

fn eq(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Which power `token` grants, compared in constant time with both tokens (both comparisons
/// always run).
pub fn power_of(access: &AccessSettings, token: &str) -> Option<Power> {
    let check = |s: Option<&Secret>| s.is_some_and(|s| eq(token, s.expose()));
    let admin = check(access.admin_token.as_ref());
    let audit = check(access.audit_token.as_ref());
    if admin {
        Some(Power::Admin)
    } else if audit {
        Some(Power::Audit)
    } else {
        None
    }
}

impl Session {
    /// A new session for `power`, valid for [`SESSION_SECS`] from `now` (epoch seconds).
    pub fn issue(access: &AccessSettings, power: Power, now: i64) -> Option<Session> {
        let expires = now + SESSION_SECS;
        let message = format!("{}.{expires}", role(power));
        let sig = mac(key(access, power)?, "console-session-v1", &message);
        Some(Session {
            power,
            expires,
            value: format!("{message}.{sig}"),
        })
    }

    /// The session a cookie value holds, if its signature is right and it has not expired.
    pub fn verify(access: &AccessSettings, value: &str, now: i64) -> Option<Session> {
        let mut parts = value.splitn(3, '.');
        let (r, exp, sig) = (parts.next()?, parts.next()?, parts.next()?);
        let power = match r {
            "audit" => Power::Audit,
            "admin" => Power::Admin,
            _ => return None,
        };
        let expires: i64 = exp.parse().ok()?;
        let want = mac(
            key(access, power)?,
            "console-session-v1",
            &format!("{r}.{exp}"),
        );
        (eq(sig, &want) && now < expires).then(|| Session {
            power,
            expires,
            value: value.to_owned(),
        })
    }

    /// The session of a request's cookie.
    pub fn from_headers(access: &AccessSettings, headers: &HeaderMap, now: i64) -> Option<Self> {
        cookie(headers, COOKIE_NAME).and_then(|v| Self::verify(access, &v, now))
    }

    /// The cookie's value.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// The CSRF token of every form this session posts: derived from the session, so it needs no
    /// storage, and useless to anyone who cannot read the page.
    pub fn csrf(&self, access: &AccessSettings) -> String {
        key(access, self.power).map_or_else(String::new, |k| mac(k, "console-csrf-v1", &self.value))
    }

    /// Whether `given` is this session's CSRF token.
    pub fn csrf_ok(&self, access: &AccessSettings, given: &str) -> bool {
        let want = self.csrf(access);
        !want.is_empty() && eq(given, &want)
    }
}

/// The value of cookie `name`.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            let (k, v) = c.trim().split_once('=')?;
            (k == name).then(|| v.to_owned())
        })
}

/// A POST's `Origin` is this server's, or absent (then the CSRF token alone protects it; browsers
/// send `Origin` on every cross-site POST). `Origin: null` is refused.
pub fn origin_ok(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(ORIGIN) else {
        return true;
    };
    let (Ok(origin), Some(Ok(host))) = (origin.to_str(), headers.get(HOST).map(|h| h.to_str()))
    else {
        return false;
    };
    origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .is_some_and(|h| h.eq_ignore_ascii_case(host))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn access() -> AccessSettings {
        AccessSettings {
            audit_token: Some(Secret::new("aud-token")),
            admin_token: Some(Secret::new("adm-token")),
        }
    }

    #[test]
    fn a_session_verifies_until_it_expires_and_never_holds_the_token() {
        let a = access();
        let s = Session::issue(&a, Power::Admin, 1000).unwrap();
        assert!(!s.value().contains("adm-token") && !s.value().contains("aud-token"));
        assert_eq!(Session::verify(&a, s.value(), 1001), Some(s.clone()));
        assert_eq!(Session::verify(&a, s.value(), 1000 + SESSION_SECS), None);
    }

    #[test]
    fn forged_or_altered_sessions_are_refused() {
        let a = access();
        let audit = Session::issue(&a, Power::Audit, 1000).unwrap();
        // Promote the role, or extend the expiry, keeping the signature.
        let promoted = audit.value().replacen("audit", "admin", 1);
        let extended = audit
            .value()
            .replacen(&audit.expires.to_string(), "99999999999", 1);
        for bad in [
            promoted.as_str(),
            extended.as_str(),
            "admin.99999999999.00",
            "",
            "x",
        ] {
            assert_eq!(Session::verify(&a, bad, 1001), None, "{bad}");
        }
        // Another deployment's tokens sign other sessions.
        let other = AccessSettings {
            audit_token: Some(Secret::new("another")),
            admin_token: None,
        };
        assert_eq!(Session::verify(&other, audit.value(), 1001), None);
    }

    #[test]
    fn csrf_tokens_belong_to_their_session() {
        let a = access();
        let s1 = Session::issue(&a, Power::Admin, 1000).unwrap();
        let s2 = Session::issue(&a, Power::Admin, 2000).unwrap();
        assert!(s1.csrf_ok(&a, &s1.csrf(&a)));
        assert!(!s1.csrf_ok(&a, &s2.csrf(&a)));
        assert!(!s1.csrf_ok(&a, ""));
    }

    #[test]
    fn origins_must_be_this_server() {
        let h = |origin: Option<&str>| {
            let mut h = HeaderMap::new();
            h.insert(HOST, HeaderValue::from_static("127.0.0.1:3000"));
            if let Some(o) = origin {
                h.insert(ORIGIN, HeaderValue::from_str(o).unwrap());
            }
            h
        };
        assert!(origin_ok(&h(None)));
        assert!(origin_ok(&h(Some("http://127.0.0.1:3000"))));
        for bad in ["http://evil.example", "null", "http://127.0.0.1:3001"] {
            assert!(!origin_ok(&h(Some(bad))), "{bad}");
        }
    }

    #[test]
    fn tokens_map_to_their_power() {
        let a = access();
        assert_eq!(power_of(&a, "adm-token"), Some(Power::Admin));
        assert_eq!(power_of(&a, "aud-token"), Some(Power::Audit));
        for bad in ["", "adm-toke", "adm-tokenx", "ADM-TOKEN"] {
            assert_eq!(power_of(&a, bad), None, "{bad}");
        }
    }
}
