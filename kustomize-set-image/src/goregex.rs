//! A translator from Go RE2 syntax (`regexp/syntax`, Perl flags, as `regexp.Compile` uses) to the
//! syntax of the `regex` crate, so that a pattern means the same thing in both.
//!
//! Owns: the syntax differences between Go and Rust that matter for kustomize's image match,
//! where an `images[].name` is pasted unescaped into a regexp:
//! - Go's `\d \w \s \b \B` and POSIX classes are ASCII; Rust's are Unicode by default.
//! - A `{` that does not start a valid repetition is a literal in Go, an error in Rust.
//! - Inside a class, Go has no nesting and no set operations: `[`, `&&`, `--`, `~~` are literals.
//! - Go rejects what Rust accepts (`(?x)`, `\Z`, `\<`, ...), and the reverse (`(?P<1a>x)`,
//!   repeating `^`, octal `\12`, `a(?i)*`).
//! - Go's repeat limits: counts up to 1000, and nested counted repeats at most 1000 copies.
//!
//! Every atom is emitted with the flags Go's parser baked into it (`(?i:…)` for case folding, `.`
//! as `[^\n]` or `(?s:.)`, `^` as `\A` or `(?m:^)`), so no Rust flag group ever spans more than
//! one atom and the flag scoping rules of the two engines never have to agree. Capture groups
//! become non-capturing (only match/no-match is needed). The translation is iterative: no
//! recursion on the pattern's nesting.

/// Why a pattern is not valid Go RE2 syntax. The text is informative only: kustomize turns any
/// compile error into "no match".
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyntaxError(pub(crate) &'static str);

type Result<T> = std::result::Result<T, SyntaxError>;

/// Go's limit on repeat counts and on nested repeat copies.
const MAX_REPEAT: u64 = 1000;
/// Go's limit on nesting depth (`maxHeight`).
const MAX_DEPTH: usize = 1000;

#[derive(Debug, Clone, Copy, Default)]
struct Flags {
    fold: bool,
    multi_line: bool,
    dot_nl: bool,
}

#[derive(Debug)]
struct Item {
    text: String,
    /// The smallest `n` for which Go's `repeatIsValid(item, n)` holds.
    need: u64,
}

#[derive(Debug)]
struct Frame {
    alternatives: Vec<String>,
    current: Vec<Item>,
    need: u64,
    /// The flags in force when the group was opened, restored when it closes.
    saved: Flags,
}

impl Frame {
    fn new(saved: Flags) -> Self {
        Frame {
            alternatives: Vec::new(),
            current: Vec::new(),
            need: 0,
            saved,
        }
    }

    fn finish_alternative(&mut self) {
        let items = std::mem::take(&mut self.current);
        let mut text = String::new();
        for item in items {
            self.need = self.need.max(item.need);
            text.push_str(&item.text);
        }
        self.alternatives.push(text);
    }

    fn into_item(mut self) -> Item {
        self.finish_alternative();
        Item {
            text: format!("(?:{})", self.alternatives.join("|")),
            need: self.need,
        }
    }
}

/// Translates a Go RE2 pattern into an equivalent `regex` crate pattern.
pub(crate) fn translate(pattern: &str) -> Result<String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut p = Parser {
        chars: &chars,
        pos: 0,
        flags: Flags::default(),
        stack: vec![Frame::new(Flags::default())],
    };
    p.run()?;
    if p.stack.len() != 1 {
        return Err(SyntaxError("missing closing )"));
    }
    match p.stack.pop() {
        Some(root) => Ok(root.into_item().text),
        None => Err(SyntaxError("internal: empty parser stack")),
    }
}

struct Parser<'a> {
    chars: &'a [char],
    pos: usize,
    flags: Flags,
    stack: Vec<Frame>,
}

enum Repeat {
    Star,
    Plus,
    Quest,
    Counted(u64, Option<u64>),
}

impl Parser<'_> {
    fn peek(&self, offset: usize) -> Option<char> {
        self.chars.get(self.pos + offset).copied()
    }

    fn frame(&mut self) -> Result<&mut Frame> {
        self.stack
            .last_mut()
            .ok_or(SyntaxError("internal: empty parser stack"))
    }

    fn push(&mut self, text: String) -> Result<()> {
        self.frame()?.current.push(Item { text, need: 0 });
        Ok(())
    }

    fn push_literal(&mut self, c: u32) -> Result<()> {
        let fold = self.flags.fold;
        self.push(literal(c, fold))
    }

    fn run(&mut self) -> Result<()> {
        let mut last_was_repeat = false;
        while let Some(c) = self.peek(0) {
            let mut is_repeat = false;
            match c {
                '(' => {
                    if self.peek(1) == Some('?') {
                        self.group_with_flags()?;
                    } else {
                        self.pos += 1;
                        self.open_group()?;
                    }
                }
                '|' => {
                    self.pos += 1;
                    self.frame()?.finish_alternative();
                }
                ')' => {
                    self.pos += 1;
                    if self.stack.len() < 2 {
                        return Err(SyntaxError("unexpected )"));
                    }
                    let frame = self
                        .stack
                        .pop()
                        .ok_or(SyntaxError("internal: empty parser stack"))?;
                    self.flags = frame.saved;
                    let item = frame.into_item();
                    self.frame()?.current.push(item);
                }
                '^' => {
                    self.pos += 1;
                    let t = if self.flags.multi_line {
                        "(?m:^)"
                    } else {
                        r"\A"
                    };
                    self.push(t.to_owned())?;
                }
                '$' => {
                    self.pos += 1;
                    let t = if self.flags.multi_line {
                        "(?m:$)"
                    } else {
                        r"\z"
                    };
                    self.push(t.to_owned())?;
                }
                '.' => {
                    self.pos += 1;
                    let t = if self.flags.dot_nl {
                        "(?s:.)"
                    } else {
                        r"[^\n]"
                    };
                    self.push(t.to_owned())?;
                }
                '[' => {
                    let class = self.class()?;
                    self.push(class)?;
                }
                '*' | '+' | '?' => {
                    self.pos += 1;
                    let op = match c {
                        '*' => Repeat::Star,
                        '+' => Repeat::Plus,
                        _ => Repeat::Quest,
                    };
                    self.repeat(op, last_was_repeat)?;
                    is_repeat = true;
                }
                '{' => match self.counted_repeat() {
                    Some((min, max, len)) => {
                        if max.is_some_and(|m| m > MAX_REPEAT || min > m) || min > MAX_REPEAT {
                            return Err(SyntaxError("invalid repeat count"));
                        }
                        self.pos += len;
                        self.repeat(Repeat::Counted(min, max), last_was_repeat)?;
                        is_repeat = true;
                    }
                    None => {
                        self.pos += 1;
                        self.push_literal('{' as u32)?;
                    }
                },
                '\\' => self.escape_outside_class()?,
                other => {
                    self.pos += 1;
                    self.push_literal(other as u32)?;
                }
            }
            last_was_repeat = is_repeat;
        }
        Ok(())
    }

    fn open_group(&mut self) -> Result<()> {
        if self.stack.len() > MAX_DEPTH {
            return Err(SyntaxError("expression nests too deeply"));
        }
        let saved = self.flags;
        self.stack.push(Frame::new(saved));
        Ok(())
    }

    /// `(?` ...: named captures, flag groups `(?i)` and `(?i:`.
    fn group_with_flags(&mut self) -> Result<()> {
        let rest = &self.chars[self.pos..];
        let starts_with_p = rest.len() > 4 && rest[2] == 'P' && rest[3] == '<';
        let starts_with_name = rest.len() > 3 && rest[2] == '<';
        if starts_with_p || starts_with_name {
            let name_start = if starts_with_p { 4 } else { 3 };
            let end = rest
                .iter()
                .position(|&c| c == '>')
                .ok_or(SyntaxError("invalid named capture"))?;
            if end < name_start {
                return Err(SyntaxError("invalid named capture"));
            }
            let name = &rest[name_start..end];
            if name.is_empty() || !name.iter().all(|c| c.is_ascii_alphanumeric() || *c == '_') {
                return Err(SyntaxError("invalid named capture"));
            }
            self.pos += end + 1;
            return self.open_group();
        }

        // Flags: i m s U, one optional '-', then ':' (open a group) or ')' (set flags).
        let mut flags = self.flags;
        let mut negated = false;
        let mut saw_flag = false;
        let mut i = 2;
        loop {
            let Some(&c) = rest.get(i) else {
                return Err(SyntaxError("invalid or unsupported Perl syntax"));
            };
            i += 1;
            match c {
                'i' => {
                    flags.fold = !negated;
                    saw_flag = true;
                }
                'm' => {
                    flags.multi_line = !negated;
                    saw_flag = true;
                }
                's' => {
                    flags.dot_nl = !negated;
                    saw_flag = true;
                }
                // Ungreedy: irrelevant to whether a match exists.
                'U' => saw_flag = true,
                '-' => {
                    if negated {
                        return Err(SyntaxError("invalid or unsupported Perl syntax"));
                    }
                    negated = true;
                    saw_flag = false;
                }
                ':' | ')' => {
                    if negated && !saw_flag {
                        return Err(SyntaxError("invalid or unsupported Perl syntax"));
                    }
                    self.pos += i;
                    if c == ':' {
                        self.open_group()?;
                    }
                    self.flags = flags;
                    return Ok(());
                }
                _ => return Err(SyntaxError("invalid or unsupported Perl syntax")),
            }
        }
    }

    /// Parses `{n}`, `{n,}`, `{n,m}` at the cursor: `(min, max, length)`, or `None` when the
    /// text is not a repetition (then Go takes the `{` literally).
    fn counted_repeat(&self) -> Option<(u64, Option<u64>, usize)> {
        let mut i = 1;
        let (min, len) = self.int_at(self.pos + i)?;
        i += len;
        let max = match self.peek(i)? {
            ',' => {
                i += 1;
                if self.peek(i)? == '}' {
                    None
                } else {
                    let (max, len) = self.int_at(self.pos + i)?;
                    i += len;
                    Some(max)
                }
            }
            _ => Some(min),
        };
        if self.peek(i)? != '}' {
            return None;
        }
        Some((min, max, i + 1))
    }

    /// Go's `parseInt`: digits without a leading zero; values past 1e8 saturate (and then fail
    /// the count check).
    fn int_at(&self, at: usize) -> Option<(u64, usize)> {
        let digits: Vec<char> = self.chars[at.min(self.chars.len())..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .copied()
            .collect();
        if digits.is_empty() || (digits.len() >= 2 && digits[0] == '0') {
            return None;
        }
        let mut n: u64 = 0;
        for d in &digits {
            if n >= 100_000_000 {
                n = u64::MAX;
                break;
            }
            n = n * 10 + u64::from(d.to_digit(10).unwrap_or(0));
        }
        Some((n, digits.len()))
    }

    fn repeat(&mut self, op: Repeat, last_was_repeat: bool) -> Result<()> {
        // A trailing '?' makes it non-greedy; greediness does not change whether a match exists.
        let lazy = if self.peek(0) == Some('?') {
            self.pos += 1;
            "?"
        } else {
            ""
        };
        if last_was_repeat {
            return Err(SyntaxError("invalid nested repetition operator"));
        }
        let item = self
            .frame()?
            .current
            .pop()
            .ok_or(SyntaxError("missing argument to repetition operator"))?;
        let (suffix, need) = match op {
            Repeat::Star => ("*".to_owned(), item.need),
            Repeat::Plus => ("+".to_owned(), item.need),
            Repeat::Quest => ("?".to_owned(), item.need),
            Repeat::Counted(min, max) => {
                let m = max.unwrap_or(min);
                let need = if max == Some(0) {
                    0
                } else if m == 0 {
                    item.need
                } else {
                    m.max(m.saturating_mul(item.need))
                };
                if (min >= 2 || max.is_some_and(|m| m >= 2)) && need > MAX_REPEAT {
                    return Err(SyntaxError("invalid repeat count"));
                }
                let suffix = match max {
                    Some(max) if max == min => format!("{{{min}}}"),
                    Some(max) => format!("{{{min},{max}}}"),
                    None => format!("{{{min},}}"),
                };
                (suffix, need)
            }
        };
        let text = format!("(?:{}){suffix}{lazy}", item.text);
        self.frame()?.current.push(Item { text, need });
        Ok(())
    }

    fn escape_outside_class(&mut self) -> Result<()> {
        match self.peek(1) {
            Some('A') => {
                self.pos += 2;
                return self.push(r"\A".to_owned());
            }
            Some('z') => {
                self.pos += 2;
                return self.push(r"\z".to_owned());
            }
            Some('b') => {
                self.pos += 2;
                return self.push(r"(?-u:\b)".to_owned());
            }
            Some('B') => {
                self.pos += 2;
                return self.push(r"(?-u:\B)".to_owned());
            }
            Some('C') => return Err(SyntaxError("invalid escape sequence")),
            Some('Q') => {
                self.pos += 2;
                while let Some(c) = self.peek(0) {
                    if c == '\\' && self.peek(1) == Some('E') {
                        self.pos += 2;
                        break;
                    }
                    self.pos += 1;
                    self.push_literal(c as u32)?;
                }
                return Ok(());
            }
            _ => {}
        }
        let fold = self.flags.fold;
        if let Some(class) = self.unicode_class()? {
            return self.push(with_fold(format!("[{class}]"), fold));
        }
        if let Some(class) = self.perl_class() {
            return self.push(with_fold(format!("[{class}]"), fold));
        }
        let c = self.escape()?;
        self.push_literal(c)
    }

    /// `\pN`, `\p{Name}`, `\PN`, `\P{^Name}` at the cursor, as a class item.
    fn unicode_class(&mut self) -> Result<Option<String>> {
        let negated = match self.peek(1) {
            Some('p') => false,
            Some('P') => true,
            _ => return Ok(None),
        };
        let (mut name, len): (String, usize) = match self.peek(2) {
            Some('{') => {
                let rest = &self.chars[self.pos + 3..];
                let end = rest
                    .iter()
                    .position(|&c| c == '}')
                    .ok_or(SyntaxError("invalid character class range"))?;
                (rest[..end].iter().collect(), 3 + end + 1)
            }
            Some(c) => (c.to_string(), 3),
            None => return Err(SyntaxError("invalid character class range")),
        };
        let mut negated = negated;
        if let Some(stripped) = name.strip_prefix('^') {
            negated = !negated;
            name = stripped.to_owned();
        }
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(SyntaxError("invalid character class range"));
        }
        self.pos += len;
        let p = if negated { 'P' } else { 'p' };
        Ok(Some(format!(r"\{p}{{{name}}}")))
    }

    /// `\d \D \s \S \w \W` at the cursor, as a class item (ASCII, as in Go).
    fn perl_class(&mut self) -> Option<String> {
        let item = match self.peek(1)? {
            'd' => "0-9",
            'D' => "[^0-9]",
            's' => r"\t\n\x0C\r ",
            'S' => r"[^\t\n\x0C\r ]",
            'w' => "0-9A-Za-z_",
            'W' => "[^0-9A-Za-z_]",
            _ => return None,
        };
        self.pos += 2;
        Some(item.to_owned())
    }

    /// A single-character escape at the cursor (Go `parseEscape`); returns the code point, which
    /// may be a surrogate (Go accepts `\x{D800}`; it matches nothing).
    fn escape(&mut self) -> Result<u32> {
        let Some(c) = self.peek(1) else {
            return Err(SyntaxError("trailing backslash at end of expression"));
        };
        self.pos += 2;
        match c {
            '1'..='7' if !matches!(self.peek(0), Some('0'..='7')) => {
                Err(SyntaxError("invalid escape sequence"))
            }
            '0'..='7' => {
                let mut r = c as u32 - '0' as u32;
                for _ in 1..3 {
                    match self.peek(0) {
                        Some(d @ '0'..='7') => {
                            r = r * 8 + (d as u32 - '0' as u32);
                            self.pos += 1;
                        }
                        _ => break,
                    }
                }
                Ok(r)
            }
            'x' => {
                let Some(first) = self.peek(0) else {
                    return Err(SyntaxError("invalid escape sequence"));
                };
                self.pos += 1;
                if first == '{' {
                    let mut r: u32 = 0;
                    let mut digits = 0;
                    loop {
                        let Some(d) = self.peek(0) else {
                            return Err(SyntaxError("invalid escape sequence"));
                        };
                        self.pos += 1;
                        if d == '}' {
                            break;
                        }
                        let v = d
                            .to_digit(16)
                            .ok_or(SyntaxError("invalid escape sequence"))?;
                        r = r * 16 + v;
                        if r > 0x10FFFF {
                            return Err(SyntaxError("invalid escape sequence"));
                        }
                        digits += 1;
                    }
                    if digits == 0 {
                        return Err(SyntaxError("invalid escape sequence"));
                    }
                    return Ok(r);
                }
                let second = self.peek(0);
                self.pos += 1;
                match (first.to_digit(16), second.and_then(|s| s.to_digit(16))) {
                    (Some(x), Some(y)) => Ok(x * 16 + y),
                    _ => Err(SyntaxError("invalid escape sequence")),
                }
            }
            'a' => Ok(0x07),
            'f' => Ok(0x0C),
            'n' => Ok(0x0A),
            'r' => Ok(0x0D),
            't' => Ok(0x09),
            'v' => Ok(0x0B),
            c if c.is_ascii() && !c.is_ascii_alphanumeric() => Ok(c as u32),
            _ => Err(SyntaxError("invalid escape sequence")),
        }
    }

    /// A bracketed class at the cursor (Go `parseClass`, Perl mode).
    fn class(&mut self) -> Result<String> {
        let fold = self.flags.fold;
        self.pos += 1;
        let mut negated = false;
        if self.peek(0) == Some('^') {
            negated = true;
            self.pos += 1;
        }
        let mut items = String::new();
        let mut first = true;
        loop {
            match self.peek(0) {
                None => return Err(SyntaxError("missing closing ]")),
                Some(']') if !first => {
                    self.pos += 1;
                    break;
                }
                _ => {}
            }
            first = false;

            // POSIX [:alnum:]; Go looks for ":]" anywhere in the rest of the pattern.
            if self.peek(0) == Some('[') && self.peek(1) == Some(':') {
                let rest = &self.chars[self.pos + 2..];
                if let Some(i) = rest.windows(2).position(|w| w == [':', ']']) {
                    let name: String = rest[..i].iter().collect();
                    let bare = name.strip_prefix('^').unwrap_or(&name);
                    if !POSIX_CLASSES.contains(&bare) {
                        return Err(SyntaxError("invalid character class range"));
                    }
                    items.push_str(&format!("[[:{name}:]]"));
                    self.pos += 2 + i + 2;
                    continue;
                }
            }
            if self.peek(0) == Some('\\') {
                if let Some(class) = self.unicode_class()? {
                    items.push_str(&format!("[{class}]"));
                    continue;
                }
                if let Some(class) = self.perl_class() {
                    items.push_str(&format!("[{class}]"));
                    continue;
                }
            }

            let lo = self.class_char()?;
            let mut hi = lo;
            if self.peek(0) == Some('-') && self.peek(1).is_some_and(|c| c != ']') {
                self.pos += 1;
                hi = self.class_char()?;
                if hi < lo {
                    return Err(SyntaxError("invalid character class range"));
                }
            }
            items.push_str(&range(lo, hi));
        }
        let negation = if negated { "^" } else { "" };
        // A class with no items (only possible through surrogate-only ranges) matches nothing.
        let body = if items.is_empty() {
            NOTHING_ITEMS.to_owned()
        } else {
            items
        };
        let class = if negated && body == NOTHING_ITEMS {
            r"[\x{0}-\x{10FFFF}]".to_owned()
        } else {
            format!("[{negation}{body}]")
        };
        Ok(with_fold(class, fold))
    }

    fn class_char(&mut self) -> Result<u32> {
        match self.peek(0) {
            None => Err(SyntaxError("missing closing ]")),
            Some('\\') => self.escape(),
            Some(c) => {
                self.pos += 1;
                Ok(c as u32)
            }
        }
    }
}

const POSIX_CLASSES: [&str; 14] = [
    "alnum", "alpha", "ascii", "blank", "cntrl", "digit", "graph", "lower", "print", "punct",
    "space", "upper", "word", "xdigit",
];

/// Class items that match nothing (a negated full range).
const NOTHING_ITEMS: &str = r"[^\x{0}-\x{10FFFF}]";

fn is_surrogate(c: u32) -> bool {
    (0xD800..=0xDFFF).contains(&c)
}

/// A class range without surrogate end points (Rust rejects them; they match nothing anyway).
fn range(lo: u32, hi: u32) -> String {
    let lo = if is_surrogate(lo) { 0xE000 } else { lo };
    let hi = if is_surrogate(hi) { 0xD7FF } else { hi };
    if lo > hi {
        return String::new();
    }
    if lo == hi {
        format!(r"\x{{{lo:X}}}")
    } else {
        format!(r"\x{{{lo:X}}}-\x{{{hi:X}}}")
    }
}

fn literal(c: u32, fold: bool) -> String {
    if is_surrogate(c) {
        return NOTHING_ITEMS.to_owned();
    }
    let text = match char::from_u32(c) {
        Some(ch) if ch.is_ascii_alphanumeric() => ch.to_string(),
        _ => format!(r"\x{{{c:X}}}"),
    };
    with_fold(text, fold)
}

fn with_fold(text: String, fold: bool) -> String {
    if fold { format!("(?i:{text})") } else { text }
}

#[cfg(test)]
mod tests {
    use super::translate;

    fn go_match(pattern: &str, text: &str) -> Option<bool> {
        let rust = translate(pattern).ok()?;
        let re = regex::Regex::new(&rust).ok()?;
        Some(re.is_match(text))
    }

    #[test]
    fn go_only_syntax_is_accepted() {
        assert_eq!(go_match("^a{$", "a{"), Some(true));
        assert_eq!(go_match("^a{,5}$", "a{,5}"), Some(true));
        assert_eq!(go_match("^[a[b]$", "["), Some(true));
        assert_eq!(go_match("^[a&&b]$", "&"), Some(true));
        assert_eq!(go_match("^[a--]$", "-"), None);
        assert_eq!(go_match("^[--a]$", "-"), Some(true));
        assert_eq!(go_match(r"^\12$", "\n"), Some(true));
        assert_eq!(go_match("^*a$", "a"), Some(true));
        assert_eq!(go_match("a(?i)*", "aaa"), Some(true));
        assert_eq!(go_match("(?P<1a>x)", "x"), Some(true));
        assert_eq!(go_match(r"^\Qa.b\E$", "a.b"), Some(true));
        assert_eq!(go_match(r"^\Qa.b\E$", "aXb"), Some(false));
    }

    #[test]
    fn ascii_perl_classes() {
        assert_eq!(go_match(r"^\d$", "٣"), Some(false));
        assert_eq!(go_match(r"^\w$", "é"), Some(false));
        assert_eq!(go_match(r"^\W$", "é"), Some(true));
        assert_eq!(go_match(r"^[[:alpha:]]$", "é"), Some(false));
        assert_eq!(go_match(r"^(?i)k$", "\u{212A}"), Some(true));
        assert_eq!(go_match(r"a\b", "aé"), Some(true));
        assert_eq!(go_match(r"\B", "aéb"), Some(false));
    }

    #[test]
    fn go_rejections() {
        for p in [
            "[",
            "(",
            ")",
            "a**",
            "a*+",
            "x{1001}",
            "(x{2}){501}",
            "(?x)a",
            r"\Z",
            r"\C",
            r"\8",
            r"\1",
            "(?<=a)",
            "(?P=a)",
            "(?-)",
            "(?i-)",
            "[[:foo:]]",
            "[z-a]",
            "+a",
            "(|*)",
            r"\p{Not Valid}",
            r"x\",
        ] {
            assert!(translate(p).is_err(), "{p} should be rejected");
        }
    }

    #[test]
    fn flags_are_scoped_like_go() {
        assert_eq!(go_match("^(?i:a)b$", "AB"), Some(false));
        assert_eq!(go_match("^(?i:a)b$", "Ab"), Some(true));
        assert_eq!(go_match("^((?i)a)b$", "AB"), Some(false));
        assert_eq!(go_match("^a(?i)b|c$", "C"), Some(true));
        assert_eq!(go_match("(?m)^b$", "a\nb"), Some(true));
        assert_eq!(go_match("^a.b$", "a\nb"), Some(false));
        assert_eq!(go_match("(?s)^a.b$", "a\nb"), Some(true));
        assert_eq!(go_match("^a$", "a\n"), Some(false));
    }
}
