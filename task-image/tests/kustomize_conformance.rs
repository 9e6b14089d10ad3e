//! kustomize's own `edit set image` test cases (`kustomize-set-image.json`, from
//! `setimage_test.go`) and the derived edge cases (`kustomize-set-image-derived.json`), run
//! through `set_image_file` on a real file.
//!
//! For every case: the `images:` entries we write (fields, values, order) must equal kustomize's,
//! read back with a YAML parser; the `images:` block text must be kustomize's byte for byte; an
//! error must carry kustomize's message and leave the file untouched.

use std::collections::BTreeMap;
use std::path::PathBuf;

use gitops_task::kustomize::set_image_file;
use serde_json::Value as Json;

type Entry = BTreeMap<String, String>;

/// How many times each check ran over a file's cases, so a case that stops reaching a check (a
/// renamed fixture field, a missing block) shows up as a wrong count.
#[derive(Debug, Default, PartialEq, Eq)]
struct Ran {
    /// kustomize's error message compared, and the file checked untouched.
    errors: usize,
    /// The `images:` entries compared with kustomize's.
    entries: usize,
    /// `expect_file_contains` looked for.
    contains: usize,
    /// kustomize's `images:` block text found byte for byte in ours.
    blocks: usize,
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
                .map(|(k, v)| {
                    let k = k.as_str().ok_or("key is not a string")?;
                    let v = v.as_str().ok_or(format!("{k} is not a string: {v:?}"))?;
                    Ok((k.to_owned(), v.to_owned()))
                })
                .collect()
        })
        .collect()
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
fn run_case(case: &Json, ran: &mut Ran) -> Result<(), String> {
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

    let (expected, kustomize_text) = match (case.get("expect_images"), case.get("expect_file")) {
        (Some(images), _) => (
            json_entries(images),
            case.get("derived_full_file_output").and_then(Json::as_str),
        ),
        (None, Some(file)) => {
            let file = file.as_str().ok_or("expect_file is not a string")?;
            (yaml_entries(file)?, Some(file))
        }
        _ => return Err("case has no expectation".into()),
    };
    ran.entries += 1;
    if ours != expected {
        return Err(format!("images {ours:?}, expected {expected:?}"));
    }
    if let Some(contains) = case.get("expect_file_contains").and_then(Json::as_str) {
        ran.contains += 1;
        if !after.contains(contains) {
            return Err(format!("output does not contain {contains:?}:\n{after}"));
        }
    }
    // kustomize writes LF only (the CRLF case keeps CRLF in our block), and always ends the
    // file with a line break (we keep a missing final one).
    if let Some(block) = kustomize_text.and_then(images_block) {
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
    // Byte-for-byte idempotent: the same arguments again change nothing.
    ran.idempotent += 1;
    let again = set_image_file(&path, &args).map_err(|e| format!("second run: {}", e.0))?;
    if again.changed || std::fs::read_to_string(&path).map_err(|e| e.to_string())? != after {
        return Err("setting the same value twice changed the file".into());
    }
    Ok(())
}

/// Runs every case of `name`; `expected` is how often each check must have run, counted from the
/// fixture by hand.
fn run_file(name: &str, expected: &Ran) {
    let cases = fixture(name);
    let mut failures = Vec::new();
    let mut ran = Ran::default();
    for case in &cases {
        let label = case["name"].as_str().unwrap_or("<unnamed>");
        if let Err(why) = run_case(case, &mut ran) {
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
    assert_eq!(&ran, expected, "{name}: the checks that ran");
}

#[test]
fn kustomize_set_image_cases() {
    // 25 cases: 2 errors, 23 edits, each with its entries, a text to contain and a full file.
    run_file(
        "kustomize-set-image.json",
        &Ran {
            errors: 2,
            entries: 23,
            contains: 23,
            blocks: 23,
            idempotent: 23,
        },
    );
}

#[test]
fn kustomize_set_image_derived_cases() {
    // 33 cases: 6 errors, 27 edits with kustomize's whole output file.
    run_file(
        "kustomize-set-image-derived.json",
        &Ran {
            errors: 6,
            entries: 27,
            contains: 0,
            blocks: 27,
            idempotent: 27,
        },
    );
}
