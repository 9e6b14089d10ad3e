//! Any input, no panic: `set_image` and `image_matches` on thousands of mutated kustomization
//! files and regexp names (a deterministic generator, so failures reproduce). Where an edit
//! succeeds, it must be idempotent and keep the text outside the images block.

use kustomize_set_image::{image_matches, set_image};
use outside_images::without_images_blocks;

mod outside_images;

/// A small deterministic PRNG (xorshift64*), so every run tests the same inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &'a [&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const SEEDS: [&str; 6] = [
    "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n- base\nimages:\n- name: app\n  newTag: v1\n",
    "# c\nimages: [{name: a, newTag: \"1\"}]\nnamespace: x\n",
    "kind: Kustomization\r\nimages:\r\n  - name: a\r\n    digest: sha256:1\r\n",
    "imageTags:\n- name: b\n  tagSuffix: -s\nimages:\n- name: a\n---\nfoo: 1\n",
    "  images:\n  - name: a\n  resources:\n  - x\n",
    "",
];

const PIECES: [&str; 24] = [
    "\n", " ", "  ", "- ", ":", ": ", "#", "'", "\"", "[", "]", "{", "}", ",", "&a ", "*a",
    "!!str ", "---\n", "images:", "newTag: ", "yes", "1234", "é", "\r\n",
];

fn mutate(rng: &mut Rng, seed: &str) -> String {
    let mut text = seed.to_owned();
    for _ in 0..=rng.below(4) {
        let boundaries: Vec<usize> = (0..=text.len())
            .filter(|&i| text.is_char_boundary(i))
            .collect();
        let at = boundaries[rng.below(boundaries.len())];
        match rng.below(3) {
            0 => text.insert_str(at, rng.pick(&PIECES)),
            1 => {
                let end = boundaries
                    .iter()
                    .copied()
                    .filter(|&b| b >= at)
                    .nth(rng.below(4))
                    .unwrap_or(at);
                text.replace_range(at..end, "");
            }
            _ => text.truncate(at),
        }
    }
    text
}

#[test]
fn set_image_never_panics_and_keeps_its_invariants() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let args_pool = [
        "app:v2",
        "b=c:1.0",
        "a@sha256:ff",
        "*:1",
        "x=*:*",
        "=",
        ":v",
    ];
    let (mut ok, mut refused) = (0, 0);
    // Inputs whose layout the line-based splice cannot place (libyaml ending a document at a
    // dedent, for instance) are refused by the read-back check: safe, but they should be rare.
    let mut unplaceable = Vec::new();
    let mut kept_outside = 0;
    let mut outside_changed = Vec::new();
    for i in 0..4000 {
        let seed = SEEDS[i % SEEDS.len()];
        let text = mutate(&mut rng, seed);
        let args = vec![rng.pick(&args_pool).to_owned()];
        match set_image(&text, &args) {
            Ok(edited) => {
                ok += 1;
                let again = set_image(&edited.text, &args)
                    .unwrap_or_else(|e| panic!("second run failed on {:?}: {e}", edited.text));
                assert!(!again.changed, "not idempotent on input {text:?}");
                if !edited.changed {
                    assert_eq!(edited.text, text);
                }
                // Every byte outside the images blocks is the input's (appending a block to a
                // file without a final newline adds exactly that line break).
                let (before, after) = (
                    without_images_blocks(&text),
                    without_images_blocks(&edited.text),
                );
                let appended = |line_break: &str| after == format!("{before}{line_break}");
                if after == before
                    || (!text.ends_with('\n') && (appended("\n") || appended("\r\n")))
                {
                    kept_outside += 1;
                } else {
                    outside_changed.push((text.clone(), edited.text.clone()));
                }
            }
            Err(e) => {
                refused += 1;
                assert!(!e.0.is_empty());
                if e.0.starts_with("internal error") {
                    unplaceable.push(text);
                }
            }
        }
    }
    println!(
        "edited {ok}, refused {refused}, of which unplaceable {}: {:?}",
        unplaceable.len(),
        &unplaceable[..unplaceable.len().min(8)]
    );
    assert!(
        unplaceable.len() * 100 < ok,
        "{} inputs refused by the read-back check, e.g. {:?}",
        unplaceable.len(),
        &unplaceable[..unplaceable.len().min(5)]
    );
    println!(
        "outside the images blocks: kept in {kept_outside} edits, changed in {}: {:?}",
        outside_changed.len(),
        &outside_changed[..outside_changed.len().min(5)]
    );
    assert!(
        outside_changed.is_empty(),
        "{} edits changed bytes outside the images blocks, e.g. {:#?}",
        outside_changed.len(),
        &outside_changed[..outside_changed.len().min(5)]
    );
    // The generator must exercise both paths to mean anything.
    assert!(ok > 500 && refused > 100, "ok {ok}, refused {refused}");
}

#[test]
fn image_matches_never_panics() {
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    let atoms = [
        "a",
        ".",
        "*",
        "+",
        "?",
        "{",
        "}",
        "{2}",
        "{1,",
        "{1000}",
        "(",
        ")",
        "(?i)",
        "(?P<n>",
        "(?:",
        "|",
        "[",
        "]",
        "[^",
        "-",
        "^",
        "$",
        "\\",
        "\\d",
        "\\pL",
        "\\p{Greek}",
        "\\x{D800}",
        "\\Q",
        "\\E",
        "[[:alpha:]]",
        "é",
        "\\b",
        "\\z",
    ];
    for _ in 0..5000 {
        let name: String = (0..rng.below(8)).map(|_| rng.pick(&atoms)).collect();
        let value: String = (0..rng.below(6)).map(|_| rng.pick(&atoms)).collect();
        let _ = image_matches(&value, &name);
    }
}
