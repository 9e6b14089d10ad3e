//! The `images:` merge of `kustomize edit set image` (`RunSetImage` in `setimage.go`).
//!
//! Owns: combining the parsed arguments with the entries already in the file: add or replace by
//! name, `*` keeps a field of the existing entry, duplicates collapse (first file occurrence
//! wins), rewritten entries lose `tagSuffix`, and the result is sorted by name, byte-wise.

use std::collections::BTreeMap;

use super::Image;
use super::args::PRESERVE;

/// The new `images:` list: `args` (already parsed, in order) merged into `existing` (file order,
/// `imageTags` already appended).
pub(crate) fn merge(existing: &[Image], args: Vec<Image>) -> Vec<Image> {
    // A BTreeMap keyed by name gives Go's final `sort.Slice` by name (byte-wise) for free; names
    // are unique keys, so the order is fully determined.
    let mut by_name: BTreeMap<String, Image> = BTreeMap::new();
    for arg in args {
        // A later argument with the same name replaces the earlier one wholesale.
        by_name.insert(arg.name.clone(), arg);
    }
    for old in existing {
        match by_name.get_mut(&old.name) {
            Some(entry) => {
                if entry.new_name == PRESERVE {
                    entry.new_name.clone_from(&old.new_name);
                }
                if entry.new_tag == PRESERVE {
                    entry.new_tag.clone_from(&old.new_tag);
                }
                if entry.digest == PRESERVE {
                    entry.digest.clone_from(&old.digest);
                }
                // kustomize rebuilds the entry from name, newName, newTag and digest.
                entry.tag_suffix.clear();
            }
            None => {
                by_name.insert(old.name.clone(), old.clone());
            }
        }
    }
    by_name
        .into_values()
        .map(|mut image| {
            let fields = [&mut image.new_name, &mut image.new_tag, &mut image.digest];
            let mut rebuilt = false;
            for field in fields {
                if *field == PRESERVE {
                    field.clear();
                    rebuilt = true;
                }
            }
            if rebuilt {
                image.tag_suffix.clear();
            }
            image
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(name: &str, new_name: &str, new_tag: &str, suffix: &str) -> Image {
        Image {
            name: name.into(),
            new_name: new_name.into(),
            new_tag: new_tag.into(),
            tag_suffix: suffix.into(),
            ..Image::default()
        }
    }

    #[test]
    fn preserve_and_tag_suffix() {
        let existing = [
            img("b", "", "t2", ""),
            img("a", "n1", "t1", "-s"),
            img("c", "", "", "-keep"),
            img("a", "x", "y", ""),
        ];
        let out = merge(&existing, vec![img("a", "", "*", "")]);
        assert_eq!(
            out,
            vec![
                img("a", "", "t1", ""),
                img("b", "", "t2", ""),
                img("c", "", "", "-keep")
            ]
        );
        let out = merge(&[img("z", "*", "", "-s")], vec![img("y", "*", "*", "")]);
        assert_eq!(out, vec![img("y", "", "", ""), img("z", "", "", "")]);
    }
}
