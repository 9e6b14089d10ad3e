//! The `kustomize edit set image` argument grammar (kustomize v5.4+, `setimage.go`) and the image
//! reference splitter it shares with `kustomize build` (`image.Split`).
//!
//! Owns: turning `<image>=<newimage>:<newtag>@<digest>` and its variants into [`Image`] records,
//! with kustomize's exact error messages. Nothing here reads files.

use super::EditError;
use super::Image;

/// kustomize's message for an argument it cannot parse (byte-exact, no trailing newline).
pub(crate) const INVALID_FORMAT: &str = "invalid format of image, use one of the following options:
- <image>=<newimage>:<newtag>
- <image>=<newimage>@<digest>
- <image>=<newimage>:<newtag>@<digest>
- <image>=<newimage>
- <image>:<newtag>
- <image>:<newtag>@<digest>
- <image>@<digest>";

/// kustomize's message when no argument is given.
pub(crate) const NO_IMAGE: &str = "no image specified";

/// The value that means "keep the existing field" in `newName`, `newTag` or `digest`.
pub(crate) const PRESERVE: &str = "*";

/// Splits an image reference into `(name, tag, digest)` exactly like kustomize's `image.Split`.
///
/// Only the part before the first `/` is skipped when looking for `:` and `@`, so a registry
/// port is kept in the name (`foo.com:443/nginx:1.2.3` is `foo.com:443/nginx`, tag `1.2.3`).
/// A leading `/` (index 0) does not count. The tag is everything after the first `:`; the
/// digest keeps its algorithm (`sha256:...`).
pub fn split(image: &str) -> (&str, &str, &str) {
    let slash = match image.find('/') {
        Some(i) if i > 0 => i,
        _ => 0,
    };
    let search = &image[slash..];
    let at = search.find('@').map(|i| i + slash);
    let colon = search.find(':').map(|i| i + slash);
    match (colon, at) {
        // Digest only: '@' comes before any ':'; the digest keeps its "algo:" part.
        (c, Some(d)) if c.is_none_or(|c| d < c) => (&image[..d], "", &image[d + 1..]),
        // Tag and digest: ':' before '@'.
        (Some(c), Some(d)) => (&image[..c], &image[c + 1..d], &image[d + 1..]),
        // Tag only: the tag is everything after the first ':'.
        (Some(c), None) => (&image[..c], &image[c + 1..], ""),
        _ => (image, "", ""),
    }
}

/// Parses one `set image` argument (kustomize `parse` in `setimage.go`).
pub(crate) fn parse_arg(arg: &str) -> Result<Image, EditError> {
    let (key, value) = match arg.split_once('=') {
        Some((k, v)) => (k, v),
        None => ("", arg),
    };
    let (name, tag, digest) = split(value);
    if name == arg {
        return Err(EditError(INVALID_FORMAT.to_owned()));
    }
    let mut image = Image {
        new_tag: tag.to_owned(),
        digest: digest.to_owned(),
        ..Image::default()
    };
    if key.is_empty() {
        image.name = name.to_owned();
    } else {
        image.name = key.to_owned();
        image.new_name = name.to_owned();
    }
    Ok(image)
}

/// Parses every argument, in order; the first error wins, and no arguments is an error.
pub(crate) fn parse_args(args: &[String]) -> Result<Vec<Image>, EditError> {
    if args.is_empty() {
        return Err(EditError(NO_IMAGE.to_owned()));
    }
    args.iter().map(|a| parse_arg(a)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_follows_kustomize() {
        assert_eq!(split("nginx"), ("nginx", "", ""));
        assert_eq!(split("a:b:c"), ("a", "b:c", ""));
        assert_eq!(split("host:5000"), ("host", "5000", ""));
        assert_eq!(split("a/b:c/d"), ("a/b", "c/d", ""));
        assert_eq!(split("img:@x"), ("img", "", "x"));
        assert_eq!(split("/a:b"), ("/a", "b", ""));
        assert_eq!(split("a@b:c"), ("a", "", "b:c"));
        assert_eq!(
            split("foo.com:443/nginx:1.2.3@sha256:1"),
            ("foo.com:443/nginx", "1.2.3", "sha256:1")
        );
    }

    #[test]
    fn args_grammar() {
        assert_eq!(parse_arg("nginx").unwrap_err().0, INVALID_FORMAT);
        assert_eq!(
            parse_arg("localhost:5000/foo").unwrap_err().0,
            INVALID_FORMAT
        );
        let i = parse_arg("a=b=c").unwrap();
        assert_eq!((i.name.as_str(), i.new_name.as_str()), ("a", "b=c"));
        let i = parse_arg("=x:v1").unwrap();
        assert_eq!((i.name.as_str(), i.new_tag.as_str()), ("x", "v1"));
        let i = parse_arg("=").unwrap();
        assert_eq!(i, Image::default());
        assert_eq!(parse_args(&[]).unwrap_err().0, NO_IMAGE);
    }
}
