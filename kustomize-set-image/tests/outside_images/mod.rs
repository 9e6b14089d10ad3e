//! The text of a kustomization outside its top-level `images:` and `imageTags:` blocks, found
//! line by line, independently of the library's own block finder: what an image edit must keep.

/// Removes the top-level `images:` and `imageTags:` blocks, keeping every other byte.
///
/// Top-level keys sit at the indentation of the first line that is not blank, a comment or `---`
/// (a whole document may be indented). A block is its key line and what YAML reads as its value:
/// more indented lines, `- ` items at the key's indentation, lines less indented than the keys
/// (continuations of a plain scalar), the lines of a flow collection until its brackets close,
/// and blank or comment lines followed by more of the block.
pub fn without_images_blocks(text: &str) -> String {
    let indent_of = |line: &str| line.len() - line.trim_start_matches(' ').len();
    let base = text
        .lines()
        .find(|l| {
            let t = l.trim();
            !t.is_empty() && !t.starts_with('#') && !t.starts_with("---")
        })
        .map_or(0, indent_of);
    let mut out = String::new();
    let mut in_block = false;
    // The indentation of the block's key line.
    let mut key = 0;
    // Open brackets of a flow collection started on the key line.
    let mut depth = 0i32;
    // Blank and comment lines seen in a block: its own if the block goes on, else kept.
    let mut pending = String::new();
    for line in text.split_inclusive('\n') {
        let indent = indent_of(line);
        let rest = &line[indent..];
        if in_block && depth > 0 {
            depth += brackets(rest);
            continue;
        }
        if let Some(value) = block_key_value(rest).filter(|_| indent <= base) {
            out.push_str(&std::mem::take(&mut pending));
            in_block = true;
            key = indent;
            depth = brackets(value).max(0);
            continue;
        }
        let content = rest.trim();
        if in_block && (content.is_empty() || content.starts_with('#')) {
            pending.push_str(line);
            continue;
        }
        let item = indent == key && (rest.starts_with("- ") || content == "-");
        let continuation = indent < key && !content.starts_with("---");
        if in_block && (indent > key || item || continuation) {
            pending.clear();
            continue;
        }
        in_block = false;
        out.push_str(&std::mem::take(&mut pending));
        out.push_str(line);
    }
    out.push_str(&pending);
    out
}

/// The value after `images:` or `imageTags:` (spaces allowed before the colon), if `line` is
/// one of those keys.
fn block_key_value(line: &str) -> Option<&str> {
    let after = line
        .strip_prefix("imageTags")
        .or_else(|| line.strip_prefix("images"))?;
    after.trim_start_matches(' ').strip_prefix(':')
}

/// Opening minus closing flow brackets on a line, outside quotes and comments (roughly).
fn brackets(text: &str) -> i32 {
    let mut depth = 0;
    let mut quote = None;
    let mut after_space = true;
    for c in text.chars() {
        let space = c == ' ' || c == '\t';
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '#') if after_space => break,
            (None, '[' | '{') => depth += 1,
            (None, ']' | '}') => depth -= 1,
            _ => {}
        }
        after_space = space;
    }
    depth
}
