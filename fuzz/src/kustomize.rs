//! The bodies of the kustomize fuzz targets: the `kustomize-set-image` crate's `kustomize edit set image` on any
//! text and any arguments, its argument grammar, and kustomize's image matching (a Go regexp
//! translated to Rust's). None may panic; an edit reports `changed` exactly when the text changed.

use kustomize_set_image::{self as kustomize, ImageEntry, args};

use crate::input;

/// `set_image`: the kustomization text, then the arguments (NUL-separated).
pub fn set_image(data: &[u8]) {
    let (yaml, args) = input::set_image_input(data);
    if let Ok(edited) = kustomize::set_image(&yaml, &args) {
        assert_eq!(
            edited.changed,
            edited.text != yaml,
            "`changed` must tell the truth"
        );
    }
}

/// The smallest kustomization file: what the argument parser is reached through.
pub const MINIMAL: &str = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n";

/// `kustomize_args`: `kustomize edit set image` arguments (NUL-separated) on a minimal file, so
/// nearly every input reaches the argument parser rather than the YAML reader.
/// Each argument also goes through the image reference splitter, which must cut it into pieces
/// that put back together give the reference again.
pub fn kustomize_args(data: &[u8]) {
    let args: Vec<String> = input::parts(data).into_iter().map(input::text).collect();
    for arg in &args {
        let value = arg.split_once('=').map_or(arg.as_str(), |(_, v)| v);
        let (name, tag, digest) = args::split(value);
        let mut joined = name.to_owned();
        if value.len() > name.len() {
            let sep = &value[name.len()..name.len() + 1];
            joined.push_str(sep);
            if sep == ":" {
                joined.push_str(tag);
                if !digest.is_empty() || value.ends_with('@') {
                    joined.push('@');
                }
            }
            joined.push_str(digest);
        }
        assert_eq!(
            joined,
            value,
            "split({value:?}) = {:?}",
            (name, tag, digest)
        );
    }
    if let Ok(edited) = kustomize::set_image(MINIMAL, &args) {
        assert_eq!(
            edited.changed,
            edited.text != MINIMAL,
            "`changed` must tell the truth"
        );
    }
}

/// `image_match`: an image string, an `images[].name` (a Go regexp, as kustomize treats it), then
/// a new tag (NUL-separated). `apply_entry` rewrites exactly the images `image_matches` matches.
pub fn image_match(data: &[u8]) {
    let parts = input::parts(data);
    let text = |i: usize| parts.get(i).map(|p| input::text(p)).unwrap_or_default();
    let (value, name, new_tag) = (text(0), text(1), text(2));
    let matched = kustomize::image_matches(&value, &name);
    let entry = ImageEntry {
        name,
        new_tag: Some(new_tag),
        ..ImageEntry::default()
    };
    assert_eq!(kustomize::apply_entry(&value, &entry).is_some(), matched);
}
