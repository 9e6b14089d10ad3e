//! kustomize's own `edit set image` test cases (`kustomize-set-image.json`, from
//! `setimage_test.go`), the derived edge cases (`kustomize-set-image-derived.json`) and the
//! minimal-diff cases (`minimal-diff.json`), run through `set_image_file` on a real file.
//!
//! For every case: the `images:` entries we write (fields and values, by name) must equal
//! kustomize's, read back with a YAML parser; `kubectl kustomize` must render exactly the same
//! objects from our `images:` block as from kustomize's (we keep the file's entry order and form
//! where kustomize re-sorts and re-writes, so meaning is proved by rendering); where we write the
//! block ourselves (no `images:` key before) it must be kustomize's text byte for byte; a
//! minimal-diff case must produce its expected text exactly; an error must carry kustomize's
//! message and leave the file untouched. Each file asserts how often each check ran; the renders
//! need kubectl (see `tools::kubectl`: skipped loudly, or required under `REQUIRE_KUBECTL=1`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kustomize_set_image::set_image_file;
use serde_json::Value as Json;

#[path = "../../tests/support/tools.rs"]
mod tools;

type Entry = BTreeMap<String, String>;

/// How many times each check ran over a file's cases, so a case that stops reaching a check (a
/// renamed fixture field, a missing block) shows up as a wrong count.
#[derive(Debug, Default, PartialEq, Eq)]
struct Ran {
    /// kustomize's error message compared, and the file checked untouched.
    errors: usize,
    /// The `images:` entries compared with kustomize's.
    entries: usize,
    /// `expect_file_contains` looked for (where the file had no `images:` before, so the block
    /// is ours to write in kustomize's form).
    contains: usize,
    /// kustomize's `images:` block text found byte for byte in ours (same condition).
    blocks: usize,
    /// Our `images:` block and kustomize's rendered with `kubectl kustomize`, equal.
    renders: usize,
    /// The whole file compared with the hand-written minimal edit.
    minimal: usize,
    /// A second run with the same arguments checked to change nothing.
    idempotent: usize,
}

fn fixture(name: &str) -> Vec<Json> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/kustomize")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    match serde_json::from_str(&text) {
        Ok(Json::Array(cases)) => cases,
        other => panic!("{} is not a JSON array: {other:?}", path.display()),
    }
}

fn json_entries(v: &Json) -> Vec<Entry> {
    v.as_array()
        .expect("expect_images is an array")
        .iter()
        .map(|e| {
            e.as_object()
                .expect("an images entry is an object")
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().expect("string field").to_owned()))
                .collect()
        })
        .collect()
}

/// The `images:` entries of a kustomization text, read with a YAML parser.
fn yaml_entries(text: &str) -> Result<Vec<Entry>, String> {
    let root: yaml_serde::Value = yaml_serde::from_str(text).map_err(|e| e.to_string())?;
    let Some(images) = root.get("images") else {
        return Err("no images key".into());
    };
    let seq = images.as_sequence().ok_or("images is not a sequence")?;
    seq.iter()
        .map(|entry| {
            let map = entry.as_mapping().ok_or("entry is not a mapping")?;
            map.iter()
                // A null field is an unset one, as kustomize reads it.
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| {
                    let k = k.as_str().ok_or("key is not a string")?;
                    let v = v.as_str().ok_or(format!("{k} is not a string: {v:?}"))?;
                    Ok((k.to_owned(), v.to_owned()))
                })
                .collect()
        })
        .collect()
}

/// Entries in name order: kustomize sorts, we keep the file's order, the set must be equal.
fn by_name(mut entries: Vec<Entry>) -> Vec<Entry> {
    entries.sort_by(|a, b| a.get("name").cmp(&b.get("name")));
    entries
}

/// The top-level `images:` block of a kustomization text, as written (independent of the
/// library's block finder): the key line and every following line that is blank, a comment,
/// indented or a `- ` item, up to the next top-level key or document marker.
fn images_text(text: &str) -> Option<String> {
    let mut out = String::new();
    let mut inside = false;
    for line in text.split_inclusive('\n') {
        let bare = line.trim_end_matches(['\r', '\n']);
        if !inside {
            inside = bare.starts_with("images:");
            if inside {
                out.push_str(line);
            }
            continue;
        }
        let continues = bare.trim().is_empty()
            || bare.starts_with([' ', '#'])
            || bare == "-"
            || bare.starts_with("- ");
        if !continues || bare.starts_with("---") {
            break;
        }
        out.push_str(line);
    }
    if !out.ends_with('\n') && !out.is_empty() {
        out.push('\n');
    }
    (!out.is_empty()).then_some(out)
}

/// `kubectl kustomize` of a kustomization made of `images_block` and one Deployment whose
/// containers use every image in `names` bare, tagged, digested and both, so that any difference
/// in what the entries do shows in the output.
fn render(dir: &Path, images_block: &str, names: &[String]) -> Result<String, String> {
    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let mut containers = Vec::new();
    for name in names.iter().filter(|n| !n.is_empty()) {
        for image in [
            name.clone(),
            format!("{name}:0.1"),
            format!("{name}@{DIGEST}"),
            format!("{name}:0.1@{DIGEST}"),
        ] {
            let index = containers.len();
            containers.push(serde_json::json!({"name": format!("c{index}"), "image": image}));
        }
    }
    let deployment = serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "app"},
        "spec": {"template": {"spec": {"containers": containers}}},
    });
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("deployment.json"), deployment.to_string())
        .map_err(|e| e.to_string())?;
    std::fs::write(
        dir.join("kustomization.yaml"),
        format!("resources:\n- deployment.json\n{images_block}"),
    )
    .map_err(|e| e.to_string())?;
    tools::kustomize_build(dir).map_err(|e| format!("{e}\n{images_block}"))
}

/// Every name and new name of the entries: the images the rendering Deployment uses.
fn names_of(entries: &[&[Entry]]) -> Vec<String> {
    let mut names: Vec<String> = entries
        .iter()
        .flat_map(|list| list.iter())
        .flat_map(|e| [e.get("name"), e.get("newName")])
        .flatten()
        .cloned()
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Renders our file's and kustomize's `images:` blocks; the outputs must be equal.
fn same_render(ours: &str, kustomize: &str, names: &[String]) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let block = |text: &str| images_text(&text.replace("\r\n", "\n")).unwrap_or_default();
    let a = render(&dir.path().join("ours"), &block(ours), names)?;
    let b = render(&dir.path().join("kustomize"), &block(kustomize), names)?;
    if a != b {
        return Err(format!(
            "renders differ:\n--- ours\n{a}\n--- kustomize\n{b}\n--- our file\n{ours}"
        ));
    }
    Ok(())
}

/// The `images:` block of a kustomize-written file: the key line and its entry lines.
fn images_block(text: &str) -> Option<String> {
    let start = text
        .find("\nimages:\n")
        .map(|i| i + 1)
        .or_else(|| text.starts_with("images:\n").then_some(0))?;
    let mut end = start + "images:\n".len();
    for line in text[end..].split_inclusive('\n') {
        if line.starts_with("- ") || line.starts_with("  ") {
            end += line.len();
        } else {
            break;
        }
    }
    Some(text[start..end].to_owned())
}

/// Runs one case on a temp file; `Err` describes the mismatch.
fn run_case(case: &Json, kubectl: bool, ran: &mut Ran) -> Result<(), String> {
    let given = case["given_file"].as_str().ok_or("no given_file")?;
    let args: Vec<String> = case["args"]
        .as_array()
        .ok_or("no args")?
        .iter()
        .map(|a| a.as_str().unwrap_or_default().to_owned())
        .collect();
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let path = dir.path().join("kustomization.yaml");
    std::fs::write(&path, given).map_err(|e| e.to_string())?;
    let result = set_image_file(&path, &args);
    let after = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;

    if let Some(expected) = case.get("expect_error").and_then(Json::as_str) {
        ran.errors += 1;
        return match result {
            Err(e) if e.0 == expected && after == given => Ok(()),
            Err(e) if e.0 == expected => Err("the file was changed on error".into()),
            Err(e) => Err(format!("error {:?}, expected {expected:?}", e.0)),
            Ok(_) => Err(format!("no error, expected {expected:?}")),
        };
    }
    let edited = result.map_err(|e| format!("unexpected error: {}", e.0))?;
    if edited.text != after {
        return Err("returned text differs from the written file".into());
    }
    let ours = yaml_entries(&after).map_err(|e| format!("our output: {e}\n{after}"))?;

    let (expected, kustomize_text) = match (
        case.get("expect_images"),
        case.get("expect_file")
            .or_else(|| case.get("kustomize_file")),
    ) {
        (Some(images), _) => (
            json_entries(images),
            case.get("derived_full_file_output").and_then(Json::as_str),
        ),
        (None, Some(file)) => {
            let file = file.as_str().ok_or("expected file is not a string")?;
            (yaml_entries(file)?, Some(file))
        }
        _ => return Err("case has no expectation".into()),
    };
    ran.entries += 1;
    if by_name(ours.clone()) != by_name(expected.clone()) {
        return Err(format!("images {ours:?}, expected {expected:?}"));
    }
    if let Some(minimal) = case.get("expect_minimal_file").and_then(Json::as_str) {
        ran.minimal += 1;
        if after != minimal {
            return Err(format!(
                "not the minimal edit:\n--- ours\n{after}\n--- expected\n{minimal}"
            ));
        }
    }
    // Where the file had no `images:` key, the block is ours to write: kustomize's text.
    let had_images = given
        .lines()
        .any(|l| l.to_ascii_lowercase().starts_with("images:"));
    if let Some(contains) = case.get("expect_file_contains").and_then(Json::as_str)
        && !had_images
    {
        ran.contains += 1;
        if !after.contains(contains) {
            return Err(format!("output does not contain {contains:?}:\n{after}"));
        }
    }
    if let Some(kustomize) = kustomize_text {
        if kubectl {
            ran.renders += 1;
            same_render(&after, kustomize, &names_of(&[&ours, &expected]))?;
        }
        // kustomize writes LF only (the CRLF case keeps CRLF in our block), and always ends the
        // file with a line break (we keep a missing final one).
        if !had_images && let Some(block) = images_block(kustomize) {
            ran.blocks += 1;
            let mut ours = after.replace("\r\n", "\n");
            if !ours.ends_with('\n') {
                ours.push('\n');
            }
            if !ours.contains(&block) {
                return Err(format!(
                    "kustomize's block\n{block}\nis not in our output\n{after}"
                ));
            }
        }
    }
    // Byte-for-byte idempotent: the same arguments again change nothing.
    ran.idempotent += 1;
    let again = set_image_file(&path, &args).map_err(|e| format!("second run: {}", e.0))?;
    if again.changed || std::fs::read_to_string(&path).map_err(|e| e.to_string())? != after {
        return Err("setting the same value twice changed the file".into());
    }
    Ok(())
}

/// Runs every case of `name`; `expected` is how often each check must have run, counted from the
/// fixture by hand (renders only where kubectl runs: see `tools::kubectl`).
fn run_file(test: &str, name: &str, expected: Ran) {
    let kubectl = tools::kubectl(test);
    let expected = Ran {
        renders: if kubectl { expected.renders } else { 0 },
        ..expected
    };
    let cases = fixture(name);
    let mut failures = Vec::new();
    let mut ran = Ran::default();
    for case in &cases {
        let label = case["name"].as_str().unwrap_or("<unnamed>");
        if let Err(why) = run_case(case, kubectl, &mut ran) {
            failures.push(format!("- {label}: {why}"));
        }
    }
    println!("{name}: {} cases, checks run: {ran:?}", cases.len());
    assert!(
        failures.is_empty(),
        "{} of {} cases of {name} failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    assert_eq!(ran, expected, "{name}: the checks that ran");
}

#[test]
fn kustomize_set_image_cases() {
    // 25 cases: 2 errors, 23 edits, each with its entries and kustomize's full file; 12 start
    // without `images:` (their block is kustomize's text, and contains kustomize's expected text).
    run_file(
        "kustomize_set_image_cases",
        "kustomize-set-image.json",
        Ran {
            errors: 2,
            entries: 23,
            contains: 12,
            blocks: 12,
            renders: 23,
            minimal: 0,
            idempotent: 23,
        },
    );
}

#[test]
fn kustomize_set_image_derived_cases() {
    // 33 cases: 6 errors, 27 edits with kustomize's whole output file, 17 of them starting
    // without `images:`.
    run_file(
        "kustomize_set_image_derived_cases",
        "kustomize-set-image-derived.json",
        Ran {
            errors: 6,
            entries: 27,
            contains: 0,
            blocks: 17,
            renders: 27,
            minimal: 0,
            idempotent: 27,
        },
    );
}

#[test]
fn minimal_diff_cases() {
    // 15 edits of files with an `images:` block, each with its exact minimal text and
    // kustomize's block.
    run_file(
        "minimal_diff_cases",
        "minimal-diff.json",
        Ran {
            errors: 0,
            entries: 15,
            contains: 0,
            blocks: 0,
            renders: 15,
            minimal: 15,
            idempotent: 15,
        },
    );
}
