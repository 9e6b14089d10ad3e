//! The identifiers a job is made of ([`Service`], [`Environment`], [`ImageName`], [`Tag`]), each a
//! newtype with one `parse`. The intake builds them from a delivery, the launch contract reads them
//! back from the environment, and the task uses them to name paths, branches and the
//! `kustomize edit set image` argument: one validator per identifier, so the intake can never
//! accept what the task refuses.
//!
//! - [`Service`] and [`Environment`] become path segments of the gitops repository
//!   (`kustomize/<service>/overlays/<environment>`) and parts of a git branch name
//!   (`update-image/<environment>/<service>`), so they follow both rules: one path segment
//!   starting with a letter or digit, only letters, digits, `-`, `_` and `.`, no `..`, and not
//!   ending in `.lock` (git refuses such ref components).
//! - [`ImageName`] is an image repository as kustomize matches it (`org/app`,
//!   `registry:5000/org/app`): it must not start an argument (`-`), a path (`/`) or a dot.
//! - [`Tag`] follows the OCI tag grammar `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
//!
//! Every type serialises as its string and deserialises through its `parse`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An identifier that failed its `parse`, naming what it was meant to be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} `{value}` {rule}")]
pub struct InvalidIdent {
    /// `service`, `environment`, `image` or `tag`.
    pub what: &'static str,
    pub value: String,
    /// The rule it breaks, for humans.
    pub rule: &'static str,
}

/// A path segment that is also safe in a git ref component.
fn is_segment(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && !s.ends_with(".lock")
        && !s.contains("..")
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

const SEGMENT_RULE: &str = "must start with a letter or digit and contain only letters, digits, \
     `-`, `_` and `.` (at most 100, no `..`, not ending in `.lock`)";

fn is_image(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && !s.starts_with(['-', '/', '.'])
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/' | b':'))
}

const IMAGE_RULE: &str = "is not a valid image name (letters, digits, `-`, `_`, `.`, `/`, `:`; \
     at most 255; not starting with `-`, `/` or `.`)";

fn is_tag(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && !s.starts_with(['.', '-'])
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

const TAG_RULE: &str = "is not a valid image tag ([A-Za-z0-9_][A-Za-z0-9_.-]{0,127})";

macro_rules! ident {
    ($(#[$doc:meta])* $name:ident, $what:literal, $check:ident, $rule:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The one validator of this identifier.
            pub fn parse(s: impl Into<String>) -> Result<Self, InvalidIdent> {
                let s = s.into();
                if $check(&s) {
                    Ok(Self(s))
                } else {
                    Err(InvalidIdent {
                        what: $what,
                        value: s,
                        rule: $rule,
                    })
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = InvalidIdent;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidIdent;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                Self::parse(s)
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        #[cfg(feature = "sqlite")]
        impl rusqlite::ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                self.0.to_sql()
            }
        }
    };
}

ident!(
    /// A service: the first path segment of its overlay, and part of the gitops branch name.
    Service,
    "service",
    is_segment,
    SEGMENT_RULE
);
ident!(
    /// An environment: the overlay directory of a service, and part of the gitops branch name.
    Environment,
    "environment",
    is_segment,
    SEGMENT_RULE
);
ident!(
    /// An image repository, as kustomize's `images[].name` matches it.
    ImageName,
    "image",
    is_image,
    IMAGE_RULE
);
ident!(
    /// An image tag (usually the commit SHA).
    Tag,
    "tag",
    is_tag,
    TAG_RULE
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_refuse_what_git_and_paths_refuse() {
        for ok in ["svc", "a.b", "a-b_c", "9lives", &"x".repeat(100)] {
            assert!(Service::parse(ok).is_ok(), "{ok}");
            assert!(Environment::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "a/b",
            "a b",
            "-x",
            "_x",
            ".x",
            "foo.lock",
            "a..b",
            &"x".repeat(101),
        ] {
            let e = Service::parse(bad).unwrap_err();
            assert_eq!((e.what, e.value.as_str()), ("service", bad));
            assert!(Environment::parse(bad).is_err(), "{bad}");
        }
        assert!(
            Service::parse("foo.lock")
                .unwrap_err()
                .to_string()
                .starts_with("service `foo.lock` must start with a letter or digit")
        );
    }

    #[test]
    fn images_and_tags_follow_their_grammars() {
        for ok in ["org/svc", "registry.example.com:5000/org/app", "nginx"] {
            assert!(ImageName::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-x",
            "/x",
            ".x",
            "org/svc=evil",
            "a b",
            &"a".repeat(256),
        ] {
            assert!(
                ImageName::parse(bad)
                    .unwrap_err()
                    .to_string()
                    .contains("is not a valid image name"),
                "{bad}"
            );
        }
        for ok in [
            "8f59df978e3fa133a2ee39ff66b3382342ce958c",
            "v1.2.3",
            "_x",
            "A-1",
        ] {
            assert!(Tag::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".x", "-x", "v1 --force", "a:b", &"a".repeat(129)] {
            assert!(
                Tag::parse(bad)
                    .unwrap_err()
                    .to_string()
                    .contains("is not a valid image tag"),
                "{bad}"
            );
        }
    }

    #[test]
    fn serde_goes_through_parse() {
        let s = Service::parse("svc").unwrap();
        assert_eq!(serde_json::to_value(&s).unwrap(), serde_json::json!("svc"));
        assert_eq!(serde_json::from_str::<Service>(r#""svc""#).unwrap(), s);
        assert!(serde_json::from_str::<Service>(r#""a..b""#).is_err());
        assert!(serde_json::from_str::<Tag>(r#""-x""#).is_err());
    }
}
