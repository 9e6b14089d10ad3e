//! kustomize's build-time image match and rewrite (`api/internal/image` and the image tag
//! transformer's `imageTagUpdater.SetImageValue`).
//!
//! Owns: deciding whether an `images[].name` matches a container image string, and what the entry
//! turns that image into. The name is a Go regexp pasted unescaped into a larger regexp; the
//! pattern is translated from Go RE2 syntax by [`super::goregex`].

use regex::RegexBuilder;

use super::args::split;
use super::goregex;

/// What follows the entry name in kustomize's match regexp (master, after v5.8.1): an optional
/// `:tag` (Bazel `{}` allowed, may be empty) and an optional `@algorithm:hex` digest.
const SUFFIX: &str =
    "(:[a-zA-Z0-9_.{}-]*)?(@[a-zA-Z0-9]+([.+_-][a-zA-Z0-9]+)*:[a-zA-Z0-9_.{}-]*)?$";

/// One `images:` entry of a kustomization, as the image transformer reads it.
///
/// `None` and `Some("")` mean the same: the field is not set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageEntry {
    /// The image name to match: a Go regexp, anchored at both ends.
    pub name: String,
    /// Replaces the matched image's name.
    pub new_name: Option<String>,
    /// Replaces the tag (and drops the digest).
    pub new_tag: Option<String>,
    /// Replaces the digest (and drops the tag unless `new_tag` is set too).
    pub digest: Option<String>,
    /// Appended to the existing tag, unless `new_tag` or `digest` is set.
    pub tag_suffix: Option<String>,
}

/// kustomize's build-time match of an `images[].name` against a container image string (Go RE2
/// semantics, master/post-v5.8.1 regexp; a name that fails to compile matches nothing).
///
/// The match is anchored and case-sensitive, with no registry normalization: `nginx` does not
/// match `docker.io/library/nginx`. Because the name is a regexp, `.` matches any character.
pub fn image_matches(value: &str, name: &str) -> bool {
    let pattern = format!("^{name}{SUFFIX}");
    let Ok(rust) = goregex::translate(&pattern) else {
        return false;
    };
    match RegexBuilder::new(&rust).build() {
        Ok(re) => re.is_match(value),
        Err(_) => false,
    }
}

/// What an images entry turns a container image into (kustomize
/// `imageTagUpdater.SetImageValue`), `None` if not matched.
///
/// `new_name` keeps the tag and digest; `new_tag` drops the digest; `digest` drops the tag;
/// `tag_suffix` (only when neither is set) appends to the tag and drops the digest.
pub fn apply_entry(value: &str, entry: &ImageEntry) -> Option<String> {
    if !image_matches(value, &entry.name) {
        return None;
    }
    fn set(f: &Option<String>) -> Option<&str> {
        f.as_deref().filter(|s| !s.is_empty())
    }
    let (name, tag, digest) = split(value);
    let name = set(&entry.new_name).unwrap_or(name);
    let (tag, digest): (String, &str) = match (set(&entry.new_tag), set(&entry.digest)) {
        (Some(t), Some(d)) => (t.to_owned(), d),
        (Some(t), None) => (t.to_owned(), ""),
        (None, Some(d)) => (String::new(), d),
        (None, None) => match set(&entry.tag_suffix) {
            Some(suffix) => (format!("{tag}{suffix}"), ""),
            None => (tag.to_owned(), digest),
        },
    };
    let mut out = name.to_owned();
    if !tag.is_empty() {
        out.push(':');
        out.push_str(&tag);
    }
    if !digest.is_empty() {
        out.push('@');
        out.push_str(digest);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_is_a_regexp() {
        assert!(image_matches("someXregistry/x:1", "some.registry/x"));
        assert!(image_matches("nginx-foo:1.0", "nginx.*"));
        assert!(!image_matches("nginx", "["));
        assert!(!image_matches("docker.io/library/nginx", "nginx"));
        assert!(image_matches("nginx@sha512:abc", "nginx"));
        assert!(!image_matches("nginx:1.0+build", "nginx"));
    }

    #[test]
    fn rewrite_rules() {
        let e = |new_name: &str, new_tag: &str, digest: &str, suffix: &str| ImageEntry {
            name: "nginx".into(),
            new_name: Some(new_name.into()),
            new_tag: Some(new_tag.into()),
            digest: Some(digest.into()),
            tag_suffix: Some(suffix.into()),
        };
        let v = "nginx:1.2@sha256:abc";
        assert_eq!(
            apply_entry(v, &e("apache", "", "", "")).unwrap(),
            "apache:1.2@sha256:abc"
        );
        assert_eq!(apply_entry(v, &e("", "2", "", "-x")).unwrap(), "nginx:2");
        assert_eq!(apply_entry(v, &e("", "", "d", "")).unwrap(), "nginx@d");
        assert_eq!(apply_entry(v, &e("", "", "", "-x")).unwrap(), "nginx:1.2-x");
        assert_eq!(
            apply_entry("nginx", &e("", "", "", "-x")).unwrap(),
            "nginx:-x"
        );
        assert_eq!(apply_entry("apache", &e("", "2", "", "")), None);
    }
}
