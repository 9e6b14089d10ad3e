//! CEL expressions and `{{ CEL }}` templates over JSON data: rule conditions (evaluated by the
//! intake) and action parameters (rendered by the task) share this one language and these
//! semantics.
//!
//! - JSON numbers become CEL `double`s, as CEL itself maps JSON (`google.protobuf.Value`): so
//!   `after.properties.free_storage < 0.1 * after.properties.storage_size` works whether Port
//!   sent `10` or `10.0` (CEL has no mixed `int`/`double` arithmetic; `0.1 * 10` would fail).
//!   Integer literals still compare with doubles (`after.properties.cpu_cores > 1`).
//! - A template is text with `{{ expression }}` parts. Rendered as a string, each part is
//!   formatted (integral doubles without `.0`); rendered as a value, a template that is exactly
//!   one part yields the expression's JSON value (a number stays a number).
//! - Evaluation has no side effects and cannot panic the caller: the interpreter runs under
//!   `catch_unwind`, and every failure is an [`ExprError`] naming the expression.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, OnceLock};

use cel::common::ast::{EntryExpr, Expr, IdedExpr};
use cel::objects::{Key, Map};
use cel::{Context, Env, Program, Value};

/// Longest expression or template source accepted.
pub const MAX_SOURCE: usize = 4096;

/// An expression or template that does not compile, or failed to evaluate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExprError {
    #[error("`{expr}` does not compile: {reason}")]
    Compile { expr: String, reason: String },
    #[error("`{expr}` failed: {reason}")]
    Eval { expr: String, reason: String },
}

fn env() -> Arc<Env> {
    static ENV: OnceLock<Arc<Env>> = OnceLock::new();
    ENV.get_or_init(|| Arc::new(Env::stdlib())).clone()
}

fn compile_error(source: &str, reason: impl Into<String>) -> ExprError {
    ExprError::Compile {
        expr: source.to_owned(),
        reason: reason.into(),
    }
}

/// A compiled CEL expression.
#[derive(Debug)]
pub struct Expression {
    source: String,
    program: Program,
}

impl Expression {
    pub fn compile(source: &str) -> Result<Self, ExprError> {
        if source.trim().is_empty() {
            return Err(compile_error(source, "the expression is empty"));
        }
        if source.len() > MAX_SOURCE {
            return Err(compile_error(
                source,
                format!("longer than {MAX_SOURCE} bytes"),
            ));
        }
        let env = env();
        match catch_unwind(AssertUnwindSafe(|| env.compile(source))) {
            Ok(Ok(program)) => Ok(Self {
                source: source.to_owned(),
                program,
            }),
            Ok(Err(e)) => Err(compile_error(source, one_line(&e.to_string()))),
            Err(_) => Err(compile_error(source, "the CEL parser failed")),
        }
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// The variables the expression reads that are not in `known` (comprehension variables,
    /// such as `k` in `m.exists(k, k == 'x')`, are not reads).
    pub fn unknown_variables(&self, known: &[&str]) -> Vec<String> {
        let mut bound = BTreeSet::new();
        bound_variables(self.program.expression(), &mut bound);
        let mut unknown: Vec<String> = self
            .program
            .references()
            .variables()
            .into_iter()
            .filter(|v| !known.contains(v) && !bound.contains(*v))
            .map(str::to_owned)
            .collect();
        unknown.sort();
        unknown
    }

    /// The fields selected directly on variable `name` (`x` for `steps.x.outputs.a`), read from the
    /// parsed expression, not its text.
    pub fn fields_of(&self, name: &str) -> BTreeSet<String> {
        let mut fields = BTreeSet::new();
        walk(self.program.expression(), &mut |e| {
            if let Expr::Select(s) = &e.expr
                && matches!(&s.operand.expr, Expr::Ident(v) if v == name)
            {
                fields.insert(s.field.clone());
            }
        });
        fields
    }

    fn eval(&self, scope: &Scope) -> Result<Value, ExprError> {
        let mut ctx = Context::with_env(env());
        for (name, value) in &scope.vars {
            ctx.add_variable_from_value(name.clone(), value.clone());
        }
        let fail = |reason: String| ExprError::Eval {
            expr: self.source.clone(),
            reason,
        };
        match catch_unwind(AssertUnwindSafe(|| self.program.execute(&ctx))) {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(fail(one_line(&e.to_string()))),
            Err(_) => Err(fail("the CEL interpreter failed".into())),
        }
    }

    /// Evaluates to a boolean; anything else is an error.
    pub fn eval_bool(&self, scope: &Scope) -> Result<bool, ExprError> {
        match self.eval(scope)? {
            Value::Bool(b) => Ok(b),
            other => Err(ExprError::Eval {
                expr: self.source.clone(),
                reason: format!("evaluated to a {}, not a bool", other.type_of()),
            }),
        }
    }

    /// Evaluates to a JSON value.
    pub fn eval_json(&self, scope: &Scope) -> Result<serde_json::Value, ExprError> {
        let v = self.eval(scope)?;
        to_json(&v).map_err(|reason| ExprError::Eval {
            expr: self.source.clone(),
            reason,
        })
    }

    /// Evaluates and formats for text.
    pub fn eval_string(&self, scope: &Scope) -> Result<String, ExprError> {
        Ok(display(&self.eval(scope)?))
    }
}

fn one_line(s: &str) -> String {
    let flat = s.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out: String = flat.chars().take(300).collect();
    if out.len() < flat.len() {
        out.push('…');
    }
    out
}

/// Names bound by comprehensions anywhere in `e`.
/// Calls `f` on `e` and on every expression inside it, parents first.
fn walk(e: &IdedExpr, f: &mut impl FnMut(&IdedExpr)) {
    f(e);
    match &e.expr {
        Expr::Call(c) => {
            if let Some(t) = &c.target {
                walk(t, f);
            }
            c.args.iter().for_each(|a| walk(a, f));
        }
        Expr::Comprehension(c) => {
            for sub in [
                &c.iter_range,
                &c.accu_init,
                &c.loop_cond,
                &c.loop_step,
                &c.result,
            ] {
                walk(sub, f);
            }
        }
        Expr::List(l) => l.elements.iter().for_each(|x| walk(x, f)),
        Expr::Select(s) => walk(&s.operand, f),
        Expr::Map(m) => m.entries.iter().for_each(|x| match &x.expr {
            EntryExpr::StructField(sf) => walk(&sf.value, f),
            EntryExpr::MapEntry(me) => {
                walk(&me.key, f);
                walk(&me.value, f);
            }
        }),
        Expr::Struct(st) => st.entries.iter().for_each(|x| match &x.expr {
            EntryExpr::StructField(sf) => walk(&sf.value, f),
            EntryExpr::MapEntry(me) => {
                walk(&me.key, f);
                walk(&me.value, f);
            }
        }),
        _ => {}
    }
}

/// The variables comprehensions bind (`k` in `m.exists(k, k == 'x')`).
fn bound_variables(e: &IdedExpr, out: &mut BTreeSet<String>) {
    walk(e, &mut |x| {
        if let Expr::Comprehension(c) = &x.expr {
            out.insert(c.iter_var.clone());
            if let Some(v) = &c.iter_var2 {
                out.insert(v.clone());
            }
            out.insert(c.accu_var.clone());
        }
    });
}

/// The variables an expression or template sees.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    vars: BTreeMap<String, Value>,
}

impl Scope {
    pub fn new() -> Self {
        Self::default()
    }

    /// Binds `name` to `value` (JSON numbers become doubles).
    pub fn set(&mut self, name: &str, value: &serde_json::Value) {
        self.vars.insert(name.to_owned(), to_cel(value));
    }

    pub fn with(mut self, name: &str, value: &serde_json::Value) -> Self {
        self.set(name, value);
        self
    }
}

/// Variables a rule condition reads: the event's fields.
pub const EVENT_VARIABLES: [&str; 7] = [
    "event",
    "action",
    "resourceType",
    "blueprint",
    "entity",
    "before",
    "after",
];

/// Variables an action's templates read: the event's, plus the record (`record.id`,
/// `record.url`) and what earlier steps reported (`steps.<id>`).
pub const ACTION_VARIABLES: [&str; 9] = [
    "event",
    "action",
    "resourceType",
    "blueprint",
    "entity",
    "before",
    "after",
    "record",
    "steps",
];

/// The [`EVENT_VARIABLES`] of a Port changelog event: `event` is the whole payload, `before` and
/// `after` its `diff` snapshots (null when absent), `action` and `resourceType` its fields.
pub fn event_scope(
    payload: &serde_json::Value,
    blueprint: Option<&str>,
    entity: Option<&str>,
) -> Scope {
    let null = serde_json::Value::Null;
    let text = |s: Option<&str>| s.map_or(serde_json::Value::Null, serde_json::Value::from);
    Scope::new()
        .with("event", payload)
        .with("action", payload.get("action").unwrap_or(&null))
        .with("resourceType", payload.get("resourceType").unwrap_or(&null))
        .with("blueprint", &text(blueprint))
        .with("entity", &text(entity))
        .with("before", payload.pointer("/diff/before").unwrap_or(&null))
        .with("after", payload.pointer("/diff/after").unwrap_or(&null))
}

/// Variables a rule condition over an EventBridge event reads: the envelope's fields (`detailType`
/// is `detail-type`, which is no CEL identifier) and `event`, the whole envelope.
pub const AWS_EVENT_VARIABLES: [&str; 9] = [
    "event",
    "id",
    "source",
    "detailType",
    "time",
    "region",
    "account",
    "resources",
    "detail",
];

/// Variables an action's templates read for an EventBridge event: the condition's, plus
/// `record` and `steps`.
pub const AWS_ACTION_VARIABLES: [&str; 11] = [
    "event",
    "id",
    "source",
    "detailType",
    "time",
    "region",
    "account",
    "resources",
    "detail",
    "record",
    "steps",
];

/// The [`AWS_EVENT_VARIABLES`] of an EventBridge envelope (absent fields are null).
pub fn aws_event_scope(envelope: &serde_json::Value) -> Scope {
    let null = serde_json::Value::Null;
    let field = |k: &str| envelope.get(k).unwrap_or(&null);
    Scope::new()
        .with("event", envelope)
        .with("id", field("id"))
        .with("source", field("source"))
        .with("detailType", field("detail-type"))
        .with("time", field("time"))
        .with("region", field("region"))
        .with("account", field("account"))
        .with("resources", field("resources"))
        .with("detail", field("detail"))
}

/// JSON to CEL, numbers as doubles.
pub fn to_cel(v: &serde_json::Value) -> Value {
    use serde_json::Value as J;
    match v {
        J::Null => Value::Null,
        J::Bool(b) => Value::Bool(*b),
        J::Number(n) => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        J::String(s) => Value::String(Arc::new(s.clone())),
        J::Array(a) => Value::List(Arc::new(a.iter().map(to_cel).collect())),
        J::Object(o) => {
            let m: HashMap<Key, Value> = o
                .iter()
                .map(|(k, v)| (Key::from(k.as_str()), to_cel(v)))
                .collect();
            Value::Map(Map::from(m))
        }
    }
}

fn json_number(f: f64) -> Result<serde_json::Value, String> {
    serde_json::Number::from_f64(f)
        .map(serde_json::Value::Number)
        .ok_or_else(|| format!("{f} is not a JSON number"))
}

/// CEL to JSON. Bytes, durations, timestamps and functions have no JSON form here.
pub fn to_json(v: &Value) -> Result<serde_json::Value, String> {
    use serde_json::Value as J;
    Ok(match v {
        Value::Null => J::Null,
        Value::Bool(b) => J::Bool(*b),
        Value::Int(i) => J::from(*i),
        Value::UInt(u) => J::from(*u),
        Value::Float(f) => json_number(*f)?,
        Value::String(s) => J::String(s.as_str().to_owned()),
        Value::List(l) => J::Array(l.iter().map(to_json).collect::<Result<_, _>>()?),
        Value::Map(m) => {
            let mut out = serde_json::Map::new();
            for (k, v) in m.map.iter() {
                let key = match k {
                    Key::String(s) => s.as_str().to_owned(),
                    Key::Int(i) => i.to_string(),
                    Key::Uint(u) => u.to_string(),
                    Key::Bool(b) => b.to_string(),
                };
                out.insert(key, to_json(v)?);
            }
            J::Object(out)
        }
        other => return Err(format!("a {} has no JSON form", other.type_of())),
    })
}

/// Formats a value for text: strings as they are, integral doubles without `.0`, lists and
/// maps as JSON.
pub fn display(v: &Value) -> String {
    match v {
        Value::String(s) => s.as_str().to_owned(),
        Value::Float(f) if f.is_finite() && f.fract() == 0.0 && f.abs() < 9.0e15 => {
            format!("{}", *f as i64)
        }
        Value::Float(f) => format!("{f}"),
        Value::Int(i) => i.to_string(),
        Value::UInt(u) => u.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "null".into(),
        other => match to_json(other) {
            Ok(j) => j.to_string(),
            Err(_) => format!("{other:?}"),
        },
    }
}

#[derive(Debug)]
enum Part {
    Text(String),
    Expr(Expression),
}

/// Text with `{{ expression }}` parts.
#[derive(Debug)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

impl Template {
    pub fn parse(source: &str) -> Result<Self, ExprError> {
        if source.len() > MAX_SOURCE {
            return Err(compile_error(
                source,
                format!("longer than {MAX_SOURCE} bytes"),
            ));
        }
        let mut parts = Vec::new();
        let mut rest = source;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Text(rest[..start].to_owned()));
            }
            let after = &rest[start + 2..];
            let Some(end) = after.find("}}") else {
                return Err(compile_error(source, "`{{` without a closing `}}`"));
            };
            let expr = Expression::compile(after[..end].trim())
                .map_err(|e| compile_error(source, e.to_string()))?;
            parts.push(Part::Expr(expr));
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Self {
            source: source.to_owned(),
            parts,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// The expressions in the template.
    pub fn expressions(&self) -> impl Iterator<Item = &Expression> {
        self.parts.iter().filter_map(|p| match p {
            Part::Expr(e) => Some(e),
            Part::Text(_) => None,
        })
    }

    pub fn render_string(&self, scope: &Scope) -> Result<String, ExprError> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Expr(e) => out.push_str(&e.eval_string(scope)?),
            }
        }
        Ok(out)
    }

    /// Exactly one `{{ expression }}`: its JSON value; otherwise the rendered string.
    pub fn render_value(&self, scope: &Scope) -> Result<serde_json::Value, ExprError> {
        match self.parts.as_slice() {
            [Part::Expr(e)] => e.eval_json(scope),
            _ => self.render_string(scope).map(serde_json::Value::String),
        }
    }
}

/// Every string in `value` parsed as a template (keys are not templates), with its JSON path.
pub fn templates_in(value: &serde_json::Value) -> Result<Vec<(String, Template)>, ExprError> {
    fn walk(
        v: &serde_json::Value,
        path: String,
        out: &mut Vec<(String, Template)>,
    ) -> Result<(), ExprError> {
        match v {
            serde_json::Value::String(s) => out.push((path, Template::parse(s)?)),
            serde_json::Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    walk(x, format!("{path}[{i}]"), out)?;
                }
            }
            serde_json::Value::Object(o) => {
                for (k, x) in o {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    walk(x, p, out)?;
                }
            }
            _ => {}
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(value, String::new(), &mut out)?;
    Ok(out)
}

/// `value` with every string rendered by [`Template::render_value`].
pub fn render_json(
    value: &serde_json::Value,
    scope: &Scope,
) -> Result<serde_json::Value, ExprError> {
    use serde_json::Value as J;
    Ok(match value {
        J::String(s) => Template::parse(s)?.render_value(scope)?,
        J::Array(a) => J::Array(
            a.iter()
                .map(|x| render_json(x, scope))
                .collect::<Result<_, _>>()?,
        ),
        J::Object(o) => {
            let mut out = serde_json::Map::new();
            for (k, x) in o {
                out.insert(k.clone(), render_json(x, scope)?);
            }
            J::Object(out)
        }
        other => other.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vm(free: serde_json::Value, size: serde_json::Value) -> Scope {
        Scope::new().with(
            "after",
            &json!({"properties": {"free_storage": free, "storage_size": size}}),
        )
    }

    #[test]
    fn the_seed_conditions_work_as_written() {
        let low = Expression::compile(
            "after.properties.free_storage < 0.1 * after.properties.storage_size",
        )
        .unwrap();
        assert!(low.eval_bool(&vm(json!(0.5), json!(10))).unwrap());
        assert!(!low.eval_bool(&vm(json!(6), json!(10))).unwrap());
        assert!(!low.eval_bool(&vm(json!(1), json!(10.0))).unwrap());
        let changed =
            Expression::compile("before.properties.healthStatus != after.properties.healthStatus")
                .unwrap();
        let s = Scope::new()
            .with(
                "before",
                &json!({"properties": {"healthStatus": "Healthy"}}),
            )
            .with(
                "after",
                &json!({"properties": {"healthStatus": "Degraded"}}),
            );
        assert!(changed.eval_bool(&s).unwrap());
        let same = Scope::new()
            .with(
                "before",
                &json!({"properties": {"healthStatus": "Healthy"}}),
            )
            .with("after", &json!({"properties": {"healthStatus": "Healthy"}}));
        assert!(!changed.eval_bool(&same).unwrap());
    }

    #[test]
    fn int_literals_compare_with_json_numbers() {
        let e = Expression::compile("after.properties.storage_size > 5").unwrap();
        assert!(e.eval_bool(&vm(json!(1), json!(10))).unwrap());
    }

    #[test]
    fn errors_name_the_expression_and_never_panic() {
        assert!(matches!(
            Expression::compile("after.properties.("),
            Err(ExprError::Compile { .. })
        ));
        assert!(Expression::compile("  ").is_err());
        let missing = Expression::compile("before.properties.x == 1").unwrap();
        let err = missing
            .eval_bool(&Scope::new().with("before", &json!(null)))
            .unwrap_err();
        assert!(
            err.to_string().contains("before.properties.x == 1"),
            "{err}"
        );
        let not_bool = Expression::compile("1 + 1").unwrap();
        assert!(not_bool.eval_bool(&Scope::new()).is_err());
        for weird in ["{{", "}}", "'\\", "1/0", "[1][5]", "{'a':1}.b", "size(1)"] {
            if let Ok(e) = Expression::compile(weird) {
                let _ = e.eval_json(&Scope::new());
            }
        }
    }

    #[test]
    fn fields_of_reads_the_syntax_tree_not_the_text() {
        let e = Expression::compile(
            "steps.a.outputs.x + size(steps.b) > 0 && 'steps.c' != '' && other.steps.d == 1",
        )
        .unwrap();
        assert_eq!(
            e.fields_of("steps").into_iter().collect::<Vec<_>>(),
            vec!["a", "b"]
        );
        let e = Expression::compile("[1].exists(i, steps.e.ok)").unwrap();
        assert_eq!(
            e.fields_of("steps").into_iter().collect::<Vec<_>>(),
            vec!["e"]
        );
        assert!(
            Expression::compile("event")
                .unwrap()
                .fields_of("steps")
                .is_empty()
        );
    }

    #[test]
    fn unknown_variables_ignore_comprehension_variables() {
        let e = Expression::compile(
            "after.properties.exists(k, k == 'x') && aftr.properties.y == 1 && [1].all(i, i > 0)",
        )
        .unwrap();
        assert_eq!(e.unknown_variables(&["after", "before"]), vec!["aftr"]);
    }

    #[test]
    fn templates_render_text_and_typed_values() {
        let s = Scope::new()
            .with("entity", &json!("storage-example"))
            .with(
                "steps",
                &json!({"extend": {"outputs": {"free_storage": "7.5"}}}),
            )
            .with("after", &json!({"properties": {"storage_size": 10}}));
        let t =
            Template::parse("VM {{ entity }} has {{ after.properties.storage_size }} GB").unwrap();
        assert_eq!(t.render_string(&s).unwrap(), "VM storage-example has 10 GB");
        let typed = Template::parse("{{ double(steps.extend.outputs.free_storage) }}").unwrap();
        assert_eq!(typed.render_value(&s).unwrap(), json!(7.5));
        let plain = Template::parse("no templates").unwrap();
        assert_eq!(plain.render_value(&s).unwrap(), json!("no templates"));
        assert!(Template::parse("{{ entity").is_err());
        assert!(Template::parse("{{ }}").is_err());
        let rendered = render_json(
            &json!({"a": ["{{ entity }}", 3], "b": {"c": "{{ after.properties.storage_size * 2.0 }}"}}),
            &s,
        )
        .unwrap();
        assert_eq!(
            rendered,
            json!({"a": ["storage-example", 3], "b": {"c": 20.0}})
        );
        let found = templates_in(&json!({"x": {"y": ["{{ a }}"]}})).unwrap();
        assert_eq!(found[0].0, "x.y[0]");
    }
}
