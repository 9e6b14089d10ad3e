//! Who may read the audit trail and who may operate it. The intake credentials (the orb's URL
//! token, the signing secrets, see [`super::auth`] and the sources) only create records; the
//! audit routes need a credential of their own:
//!
//! - [`Power::Audit`] (list, show): `AUDIT_TOKEN`, or `ADMIN_TOKEN`;
//! - [`Power::Admin`] (re-dispatch, redact): `ADMIN_TOKEN` only;
//! - on AWS, API Gateway IAM authorization: a request that API Gateway passed with a verified
//!   SigV4 identity (the operator's IAM user or role, in the request context `lambda_http`
//!   attaches) is authorized; which routes an identity may call is its IAM policy's business.
//!
//! Tokens ride in `Authorization: Bearer <token>` or as the password of HTTP Basic (the form a
//! browser can carry), never in the query string, and are compared in constant time. A route
//! whose credential is not configured is closed: 403 naming the setting.

use axum::http::Extensions;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use clap::Args;
use orchestrator_core::Secret;
use subtle::ConstantTimeEq;

use super::error::ApiError;

/// What a route lets its caller do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Power {
    /// Read records.
    Audit,
    /// Re-dispatch and redact records (and read them).
    Admin,
}

/// The audit and admin credentials of a deployment; both absent: the audit routes are closed
/// (except to callers API Gateway authorized with IAM).
#[derive(Debug, Clone, Default)]
pub struct AccessSettings {
    pub audit_token: Option<Secret>,
    pub admin_token: Option<Secret>,
}

/// The audit and admin credentials, from the environment.
#[derive(Debug, Clone, Args)]
pub struct AccessArgs {
    /// Reads the audit trail (`GET /pullrequests`, `GET /pullrequests/{id}`), sent as
    /// `Authorization: Bearer` or the HTTP Basic password. Unset: those routes answer 403
    /// (on AWS, IAM-authorized callers still pass).
    #[arg(long, env = "AUDIT_TOKEN", hide_env_values = true)]
    pub audit_token: Option<Secret>,
    /// Operates the audit trail: re-dispatch and redact (and read). Unset: those routes answer 403.
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<Secret>,
}

impl AccessArgs {
    /// The checked settings: each credential set is non-empty and differs from the others
    /// (an audit token equal to the intake token would give every CircleCI project the audit
    /// trail).
    pub fn settings(&self, intake: Option<&Secret>) -> Result<AccessSettings, String> {
        let named = [
            ("INTAKE_TOKEN", intake),
            ("AUDIT_TOKEN", self.audit_token.as_ref()),
            ("ADMIN_TOKEN", self.admin_token.as_ref()),
        ];
        for (i, (name, value)) in named.iter().enumerate() {
            let Some(value) = value else { continue };
            if value.expose().is_empty() {
                return Err(format!("{name} is set but empty"));
            }
            for (other, v) in &named[i + 1..] {
                if v.is_some_and(|v| v.expose() == value.expose()) {
                    return Err(format!(
                        "{name} and {other} are the same: each credential must be its own"
                    ));
                }
            }
        }
        Ok(AccessSettings {
            audit_token: self.audit_token.clone(),
            admin_token: self.admin_token.clone(),
        })
    }
}

/// Who a request was authorized as: written into what it changes (`redacted_by`) and the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// An identity API Gateway verified (SigV4): its ARN.
    Iam(String),
    AuditToken,
    AdminToken,
}

impl Caller {
    /// How records name the caller.
    pub fn label(&self) -> String {
        match self {
            Caller::Iam(arn) => format!("iam:{arn}"),
            Caller::AuditToken => "audit-token".into(),
            Caller::AdminToken => "admin-token".into(),
        }
    }
}

/// The IAM identity API Gateway verified for this request, if it did. Only API Gateway writes the
/// request context (a caller cannot send one), and only an IAM-authorized route carries a user
/// ARN in it; locally there is no context at all.
pub fn iam_caller(extensions: &Extensions) -> Option<String> {
    use lambda_http::request::RequestContext;
    let arn = match extensions.get::<RequestContext>()? {
        RequestContext::ApiGatewayV1(c) => c
            .identity
            .access_key
            .as_ref()
            .and(c.identity.user_arn.clone()),
        RequestContext::ApiGatewayV2(c) => c
            .authorizer
            .as_ref()
            .and_then(|a| a.iam.as_ref())
            .and_then(|iam| iam.access_key.as_ref().and(iam.user_arn.clone())),
        _ => None,
    };
    arn.filter(|a| !a.is_empty())
}

/// The token of `Authorization: Bearer <token>`, or the password of `Authorization: Basic`.
fn presented(parts: &Parts) -> Option<String> {
    let v = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        Some(rest.to_owned())
    } else if scheme.eq_ignore_ascii_case("basic") {
        let decoded = String::from_utf8(STANDARD.decode(rest).ok()?).ok()?;
        decoded.split_once(':').map(|(_, pass)| pass.to_owned())
    } else {
        None
    }
}

fn matches(given: Option<&str>, expected: Option<&Secret>) -> bool {
    match (given, expected) {
        (Some(g), Some(e)) => bool::from(g.as_bytes().ct_eq(e.expose().as_bytes())),
        _ => false,
    }
}

/// Authorizes a request for `need`, or says why not: 401 without a valid credential, 403 when
/// the credential cannot do this or the deployment configured none.
pub fn authorize(parts: &Parts, access: &AccessSettings, need: Power) -> Result<Caller, ApiError> {
    if let Some(arn) = iam_caller(&parts.extensions) {
        return Ok(Caller::Iam(arn));
    }
    let given = presented(parts);
    // Both comparisons always run, so timing says nothing about which token was close.
    let admin = matches(given.as_deref(), access.admin_token.as_ref());
    let audit = matches(given.as_deref(), access.audit_token.as_ref());
    match need {
        Power::Audit => {
            if access.audit_token.is_none() && access.admin_token.is_none() {
                return Err(ApiError::CredentialNotConfigured("AUDIT_TOKEN"));
            }
            if admin {
                Ok(Caller::AdminToken)
            } else if audit {
                Ok(Caller::AuditToken)
            } else {
                Err(ApiError::CredentialRequired("AUDIT_TOKEN"))
            }
        }
        Power::Admin => {
            if access.admin_token.is_none() {
                return Err(ApiError::CredentialNotConfigured("ADMIN_TOKEN"));
            }
            if admin {
                Ok(Caller::AdminToken)
            } else if audit {
                Err(ApiError::Forbidden("ADMIN_TOKEN"))
            } else {
                Err(ApiError::CredentialRequired("ADMIN_TOKEN"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;

    fn parts(auth: Option<&str>) -> Parts {
        let mut b = Request::builder().uri("/pullrequests?token=intake");
        if let Some(a) = auth {
            b = b.header("authorization", a);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn both() -> AccessSettings {
        AccessSettings {
            audit_token: Some(Secret::new("aud")),
            admin_token: Some(Secret::new("adm")),
        }
    }

    #[test]
    fn tokens_grant_their_power_and_no_more() {
        let a = both();
        let basic =
            |user: &str, pass: &str| format!("Basic {}", STANDARD.encode(format!("{user}:{pass}")));
        assert_eq!(
            authorize(&parts(Some("Bearer aud")), &a, Power::Audit).unwrap(),
            Caller::AuditToken
        );
        assert_eq!(
            authorize(&parts(Some(&basic("x", "aud"))), &a, Power::Audit).unwrap(),
            Caller::AuditToken
        );
        assert_eq!(
            authorize(&parts(Some("Bearer adm")), &a, Power::Audit).unwrap(),
            Caller::AdminToken
        );
        assert_eq!(
            authorize(&parts(Some(&basic("", "adm"))), &a, Power::Admin).unwrap(),
            Caller::AdminToken
        );
        assert!(matches!(
            authorize(&parts(Some("Bearer aud")), &a, Power::Admin),
            Err(ApiError::Forbidden(_))
        ));
        for bad in [
            None,
            Some("Bearer intake"),
            Some("Bearer "),
            Some("Basic !!"),
            Some("Token adm"),
        ] {
            assert!(
                matches!(
                    authorize(&parts(bad), &a, Power::Audit),
                    Err(ApiError::CredentialRequired(_))
                ),
                "{bad:?}"
            );
            assert!(
                matches!(
                    authorize(&parts(bad), &a, Power::Admin),
                    Err(ApiError::CredentialRequired(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn unconfigured_credentials_close_their_routes() {
        let none = AccessSettings::default();
        for need in [Power::Audit, Power::Admin] {
            assert!(matches!(
                authorize(&parts(Some("Bearer aud")), &none, need),
                Err(ApiError::CredentialNotConfigured(_))
            ));
        }
        let audit_only = AccessSettings {
            admin_token: None,
            ..both()
        };
        assert!(matches!(
            authorize(&parts(Some("Bearer aud")), &audit_only, Power::Admin),
            Err(ApiError::CredentialNotConfigured("ADMIN_TOKEN"))
        ));
    }

    #[test]
    fn credentials_must_differ() {
        let args = |audit: &str, admin: &str| AccessArgs {
            audit_token: Some(Secret::new(audit)),
            admin_token: Some(Secret::new(admin)),
        };
        assert!(args("a", "b").settings(Some(&Secret::new("c"))).is_ok());
        assert!(args("a", "a").settings(None).is_err());
        assert!(args("a", "b").settings(Some(&Secret::new("b"))).is_err());
        assert!(args("", "b").settings(None).is_err());
    }
}
