//! The edit a reviewer sees: on a realistic overlay (comments, entries in their own order, a list
//! indented under its key, a quoted tag with a trailing comment), bumping one image changes one
//! line, measured with `git diff --no-index`, and `kubectl kustomize` builds the new image for
//! that container and the old one for the other.

use std::path::Path;
use std::process::Command;

use kustomize_set_image::{set_image, set_image_file};

#[path = "../../tests/support/tools.rs"]
mod tools;

const SHA: &str = "8f59df978e3fa133a2ee39ff66b3382342ce958c";

const OVERLAY: &str = "\
# Production overlay of shop-api.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: shop-prod

resources:
  - ../../base   # shared base

images:
  # the app image, bumped by CI
  - name: registry.acme.io/acme/shop-api
    newTag: \"1111111\"   # keep quoted

  # sidecar, bumped by hand
  - name: envoyproxy/envoy
    newTag: v1.31.0

replicas:
  - name: shop-api
    count: 3
";

const DEPLOYMENT: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: shop-api
spec:
  selector:
    matchLabels:
      app: shop-api
  template:
    metadata:
      labels:
        app: shop-api
    spec:
      containers:
      - name: app
        image: registry.acme.io/acme/shop-api:0.0.1
      - name: proxy
        image: envoyproxy/envoy:v1.30.0
";

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

/// `git diff --no-index` of two files: (`--numstat` line, the `-`/`+` lines of `-U0`).
fn diff(old: &Path, new: &Path) -> (String, Vec<String>) {
    let run = |extra: &str| {
        let out = Command::new("git")
            .args(["diff", "--no-index", "--no-color", extra, "--"])
            .arg(old)
            .arg(new)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .output()
            .expect("run git diff");
        // Exit code 1 means "differs".
        assert!(out.status.code() == Some(1) || out.status.success());
        String::from_utf8(out.stdout).expect("utf-8 diff")
    };
    let numstat = run("--numstat");
    let numstat = numstat.split('\t').take(2).collect::<Vec<_>>().join("\t");
    let changed = run("-U0")
        .lines()
        .filter(|l| {
            (l.starts_with('-') || l.starts_with('+'))
                && !l.starts_with("---")
                && !l.starts_with("+++")
        })
        .map(str::to_owned)
        .collect();
    (numstat, changed)
}

/// The images `kubectl kustomize` builds for the Deployment's containers.
fn rendered_images(overlay: &Path) -> Vec<String> {
    let text = tools::kustomize_build(overlay).unwrap_or_else(|e| panic!("{e}"));
    let doc: yaml_serde::Value = yaml_serde::from_str(&text).expect("yaml");
    doc["spec"]["template"]["spec"]["containers"]
        .as_sequence()
        .expect("containers")
        .iter()
        .map(|c| c["image"].as_str().expect("image").to_owned())
        .collect()
}

#[test]
fn bumping_one_image_of_a_realistic_overlay_changes_one_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(&dir.path().join("base/deployment.yaml"), DEPLOYMENT);
    write(
        &dir.path().join("base/kustomization.yaml"),
        "resources:\n- deployment.yaml\n",
    );
    let overlay = dir.path().join("overlays/prod");
    let file = overlay.join("kustomization.yaml");
    write(&file, OVERLAY);
    let before = dir.path().join("before.yaml");
    write(&before, OVERLAY);

    // What the gitops task passes: keep any newName, set the tag.
    let edited = set_image_file(&file, &[format!("registry.acme.io/acme/shop-api=*:{SHA}")])
        .expect("set image");
    assert!(edited.changed);
    assert!(edited.notes.is_empty(), "{:?}", edited.notes);

    let (numstat, changed) = diff(&before, &file);
    assert_eq!(numstat, "1\t1", "{changed:?}");
    assert_eq!(
        changed,
        vec![
            "-    newTag: \"1111111\"   # keep quoted".to_owned(),
            format!("+    newTag: \"{SHA}\"   # keep quoted"),
        ]
    );
    if tools::kubectl("bumping_one_image_of_a_realistic_overlay_changes_one_line") {
        assert_eq!(
            rendered_images(&overlay),
            vec![
                format!("registry.acme.io/acme/shop-api:{SHA}"),
                "envoyproxy/envoy:v1.31.0".to_owned(),
            ]
        );
    }
}

#[test]
fn a_plain_tag_that_would_read_as_a_number_is_quoted_with_a_reason() {
    let text = "images:\n- name: app\n  newTag: v1   # bumped by CI\n";
    let edited = set_image(text, &["app:1234".to_owned()]).expect("set image");
    assert_eq!(
        edited.text,
        "images:\n- name: app\n  newTag: \"1234\"   # bumped by CI\n"
    );
    assert_eq!(
        edited.notes,
        vec![
            "newTag \"1234\" is quoted: unquoted, YAML would read 1234 as a number, and \
             kustomize needs a string"
                .to_owned()
        ]
    );
    // Already quoted in the file: the style is kept, nothing had to be explained.
    let quoted = set_image(
        "images:\n- name: app\n  newTag: \"v1\"\n",
        &["app:1234".to_owned()],
    )
    .expect("set image");
    assert_eq!(quoted.text, "images:\n- name: app\n  newTag: \"1234\"\n");
    assert!(quoted.notes.is_empty(), "{:?}", quoted.notes);
    // Written in kustomize's form (a flow-style list cannot be edited in place): the same note.
    let flow = set_image(
        "images: [{name: app, newTag: v1}]\n",
        &["app:1234".to_owned()],
    )
    .expect("set image");
    assert_eq!(flow.text, "images:\n- name: app\n  newTag: \"1234\"\n");
    assert_eq!(flow.notes, edited.notes);
    // A tag that reads as a string stays plain.
    let plain = set_image(text, &["app:2024.06.1".to_owned()]).expect("set image");
    assert_eq!(
        plain.text,
        "images:\n- name: app\n  newTag: 2024.06.1   # bumped by CI\n"
    );
    assert!(plain.notes.is_empty());
}

/// A small deterministic PRNG (xorshift64), so every run tests the same files.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

/// Lines of `b` not in the longest common subsequence with `a`, and the lines of `a` not in it:
/// (removed, added).
fn line_diff<'t>(a: &[&'t str], b: &[&'t str]) -> (Vec<&'t str>, Vec<&'t str>) {
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let (mut removed, mut added) = (Vec::new(), Vec::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            i += 1;
            j += 1;
        } else if j < b.len() && (i == a.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            added.push(b[j]);
            j += 1;
        } else {
            removed.push(a[i]);
            i += 1;
        }
    }
    (removed, added)
}

/// Generated overlays in many layouts (list indented or not, keys after `- ` or further, `name`
/// first or last, plain, single- or double-quoted tags, own-line and trailing comments, blank
/// lines, CRLF, no final line break), each given one or two `<name>=*:<tag>` arguments: the
/// text diff is at most one line per entry whose tag changes (replaced, or added when it had
/// none) plus the lines of new entries, each a `name:` or `newTag:` line; every other line is
/// kept, in order.
#[test]
fn generated_layouts_change_only_the_lines_that_must_change() {
    const NAMES: [&str; 5] = ["acme/api", "acme/web", "envoyproxy/envoy", "redis", "zeta"];
    const TAGS: [&str; 6] = ["v1", "v2", "1234", "yes", "1.5", "2024.06.1"];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut edited_in_place = 0;
    for case in 0..1500 {
        let newline = if rng.below(4) == 0 { "\r\n" } else { "\n" };
        let seq = " ".repeat([0, 2, 4][rng.below(3)]);
        let gap = " ".repeat([1, 1, 3][rng.below(3)]);
        let key = format!("{seq} {gap}");
        let mut text =
            String::from("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n");
        text.push_str("images:");
        if rng.below(3) == 0 {
            text.push_str("   # bumped by CI");
        }
        text.push('\n');
        let count = 1 + rng.below(3);
        let mut names: Vec<&str> = Vec::new();
        while names.len() < count {
            let name = rng.pick(&NAMES);
            if !names.contains(&name) {
                names.push(name);
            }
        }
        let mut current: Vec<(&str, Option<&str>)> = Vec::new();
        for name in &names {
            if rng.below(3) == 0 {
                text.push('\n');
            }
            if rng.below(2) == 0 {
                text.push_str(&format!("{seq}# {name}, image of the {name} service\n"));
            }
            let tag =
                (rng.below(4) != 0).then(|| rng.pick(&["v1", "\"1111111\"", "'v0'", "latest"]));
            let comment = if rng.below(3) == 0 { "  # pinned" } else { "" };
            let name_line = format!("name: {name}");
            let tag_line = tag.map(|t| format!("newTag: {t}{comment}"));
            match (tag_line, rng.below(2)) {
                (Some(t), 0) => text.push_str(&format!("{seq}-{gap}{t}\n{key}{name_line}\n")),
                (Some(t), _) => text.push_str(&format!("{seq}-{gap}{name_line}\n{key}{t}\n")),
                (None, _) => text.push_str(&format!("{seq}-{gap}{name_line}{comment}\n")),
            }
            let value = tag.map(|t| t.trim_matches(['"', '\'']));
            current.push((name, value));
        }
        if rng.below(2) == 0 {
            text.push_str("# end of images\nresources:\n- ../../base\n");
        }
        if rng.below(5) == 0 {
            text.pop();
        }
        let text = text.replace('\n', newline);

        let targets: Vec<(&str, &str)> = (0..1 + rng.below(2))
            .map(|_| (rng.pick(&NAMES), rng.pick(&TAGS)))
            .collect();
        // Later arguments for the same name win, as in kustomize.
        let mut last: Vec<(&str, &str)> = Vec::new();
        for (name, tag) in &targets {
            last.retain(|(n, _)| n != name);
            last.push((name, tag));
        }
        let args: Vec<String> = targets.iter().map(|(n, t)| format!("{n}=*:{t}")).collect();
        let edited = set_image(&text, &args).unwrap_or_else(|e| panic!("case {case}: {e}\n{text}"));

        let mut expect_removed = 0;
        let mut expect_added = 0;
        for (name, tag) in &last {
            match current.iter().find(|(n, _)| n == name) {
                Some((_, Some(old))) if old == tag => {}
                Some((_, Some(_))) => {
                    expect_removed += 1;
                    expect_added += 1;
                }
                Some((_, None)) => expect_added += 1,
                None => expect_added += 2,
            }
        }
        let before: Vec<&str> = text
            .split_inclusive('\n')
            .map(|l| l.trim_end_matches(['\r', '\n']))
            .collect();
        let after: Vec<&str> = edited
            .text
            .split_inclusive('\n')
            .map(|l| l.trim_end_matches(['\r', '\n']))
            .collect();
        let (removed, added) = line_diff(&before, &after);
        // At most: a diff may pair lines more cleverly (a new entry above one whose tag changes
        // can reuse its old tag line).
        assert!(
            removed.len() <= expect_removed
                && added.len() <= expect_added
                && added.len() + removed.len() >= expect_added.min(1),
            "case {case}: {args:?}: removed {removed:?}, added {added:?}\n--- before\n{text}\n--- after\n{}",
            edited.text
        );
        for line in removed.iter().chain(&added) {
            assert!(
                line.contains("newTag: ") || line.contains("name: "),
                "case {case}: {line:?} changed\n{}",
                edited.text
            );
        }
        if newline == "\r\n" {
            assert!(
                !edited.text.replace("\r\n", "").contains('\n'),
                "case {case}: LF in a CRLF file"
            );
        }
        assert_eq!(
            text.ends_with('\n'),
            edited.text.ends_with('\n'),
            "case {case}: final line break"
        );
        // The values are set: the same arguments again change nothing.
        let again = set_image(&edited.text, &args).expect("second run");
        assert!(
            !again.changed,
            "case {case}: not idempotent\n{}",
            edited.text
        );
        if edited.changed {
            edited_in_place += 1;
        }
    }
    assert!(
        edited_in_place > 1000,
        "only {edited_in_place} files changed"
    );
}
