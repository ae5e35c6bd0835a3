//! Conditional routing queries (`strategy.mode: conditional`), as Portkey evaluates them: keys
//! are dotted paths into `metadata.*`, `params.*` or `url.pathname`; a
//! scalar means equality; an object applies `$eq $ne $gt $gte $lt $lte $in $nin $regex
//! $length`, all of which must pass (`$regex` alone decides when present); `$and` / `$or`
//! take lists of sub-queries and, when present, decide the whole query object.
//!
//! Operands that Portkey evaluates to "no match" rather than refusing (a comparison with
//! something that is not a number, `$in` with something that is not a list) match nothing
//! here too; an operator Portkey does not know is its router error
//! (`Unsupported operator used in the query router: $op`), found when the config is parsed.
//!
//! Queries are compiled once when the config is parsed: regexes are built there with a size
//! bound, so a bad or huge pattern is a 400 for that config, never a crash or a slow request.

use regex::{Regex, RegexBuilder};
use serde_json::{Map, Value};

const MAX_DEPTH: usize = 16;

/// What a query is evaluated against.
pub struct QueryContext<'a> {
    pub metadata: &'a Map<String, Value>,
    pub params: &'a Map<String, Value>,
    pub pathname: &'a str,
}

#[derive(Debug, Clone)]
pub enum Query {
    And(Vec<Query>),
    Or(Vec<Query>),
    /// Every field test must pass (an empty list matches).
    Fields(Vec<(FieldPath, Test)>),
}

#[derive(Debug, Clone)]
pub enum FieldPath {
    Metadata(Vec<String>),
    Params(Vec<String>),
    Pathname,
}

#[derive(Debug, Clone)]
pub enum Test {
    /// `$regex`: decides alone, other operators in the same object are ignored (as Portkey).
    /// With the memory its compiled form holds.
    Regex(Regex, usize),
    /// All must pass.
    Ops(Vec<Op>),
}

#[derive(Debug, Clone)]
pub enum Op {
    Eq(Value),
    Ne(Value),
    /// A comparison with what JavaScript's `parseFloat` makes of the operand (NaN, which no
    /// value passes, when it is not a number).
    Gt(f64),
    Gte(f64),
    Lt(f64),
    Lte(f64),
    /// `None`: the operand is not a list, and neither `$in` nor `$nin` passes.
    In(Option<Vec<Value>>),
    Nin(Option<Vec<Value>>),
    /// `$length`: the value is a list whose length passes the test (a number: equal to it;
    /// an object: its operators; anything else: no test).
    Length(Option<Box<Test>>),
}

/// The message of a query with an operator Portkey's router does not know.
pub(crate) fn unsupported(op: &str) -> String {
    format!("Unsupported operator used in the query router: {op}")
}

/// What compiling a query found wrong: a problem of the config's schema (its path and why),
/// or an error of Portkey's router (answered with the router's own message).
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    Schema(String, String),
    Router(String),
}

impl Query {
    /// The query's `$regex` patterns: how many, and the memory their compiled forms hold.
    pub(crate) fn patterns(&self) -> (usize, usize) {
        match self {
            Query::And(qs) | Query::Or(qs) => qs
                .iter()
                .map(Query::patterns)
                .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1)),
            Query::Fields(fields) => fields
                .iter()
                .map(|(_, t)| t.patterns())
                .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1)),
        }
    }
}

impl Test {
    fn patterns(&self) -> (usize, usize) {
        match self {
            Test::Regex(_, bytes) => (1, *bytes),
            Test::Ops(ops) => ops
                .iter()
                .filter_map(|op| match op {
                    Op::Length(Some(t)) => Some(t.patterns()),
                    _ => None,
                })
                .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1)),
        }
    }
}

/// Compiles a query object.
pub fn compile(value: &Value, path: &str) -> Result<Query, Vec<Fault>> {
    let mut errors = Vec::new();
    let q = compile_at(value, path, 0, &mut errors);
    match q {
        Some(q) if errors.is_empty() => Ok(q),
        _ => Err(errors),
    }
}

fn compile_at(value: &Value, path: &str, depth: usize, errors: &mut Vec<Fault>) -> Option<Query> {
    if depth > MAX_DEPTH {
        errors.push(Fault::Schema(
            path.into(),
            format!("queries nest at most {MAX_DEPTH} levels"),
        ));
        return None;
    }
    let Some(obj) = value.as_object() else {
        errors.push(Fault::Schema(path.into(), "a query is an object".into()));
        return None;
    };
    for (key, ctor) in [
        ("$and", Query::And as fn(Vec<Query>) -> Query),
        ("$or", Query::Or),
    ] {
        if let Some(list) = obj.get(key) {
            let p = format!("{path}.{key}");
            let Some(items) = list.as_array() else {
                errors.push(Fault::Schema(p, "must be an array of queries".into()));
                return None;
            };
            let subs: Vec<Query> = items
                .iter()
                .enumerate()
                .filter_map(|(i, q)| compile_at(q, &format!("{p}[{i}]"), depth + 1, errors))
                .collect();
            return Some(ctor(subs));
        }
    }
    let mut fields = Vec::with_capacity(obj.len());
    for (key, cond) in obj {
        let p = format!("{path}.{key}");
        let Some(field) = field_path(key) else {
            errors.push(Fault::Schema(
                p,
                "keys are metadata.<key>, params.<key> or url.pathname".into(),
            ));
            continue;
        };
        if let Some(test) = compile_test(cond, &p, errors) {
            fields.push((field, test));
        }
    }
    Some(Query::Fields(fields))
}

fn field_path(key: &str) -> Option<FieldPath> {
    if key == "url.pathname" {
        return Some(FieldPath::Pathname);
    }
    let (root, rest) = key.split_once('.')?;
    let parts: Vec<String> = rest.split('.').map(str::to_string).collect();
    if parts.iter().any(String::is_empty) {
        return None;
    }
    match root {
        "metadata" => Some(FieldPath::Metadata(parts)),
        "params" => Some(FieldPath::Params(parts)),
        _ => None,
    }
}

/// A comparison's operand as Portkey reads it: `parseFloat`, NaN when it is not a number.
fn number(v: &Value) -> f64 {
    to_number(v).unwrap_or(f64::NAN)
}

fn compile_test(cond: &Value, path: &str, errors: &mut Vec<Fault>) -> Option<Test> {
    let Some(obj) = cond.as_object() else {
        return Some(Test::Ops(vec![Op::Eq(cond.clone())]));
    };
    if let Some(pattern) = obj.get("$regex") {
        let p = format!("{path}.$regex");
        let Some(pattern) = pattern.as_str() else {
            errors.push(Fault::Schema(p, "must be a string".into()));
            return None;
        };
        use crate::types::patterns;
        if let Err(e) = patterns::check_length(pattern) {
            errors.push(Fault::Schema(p, e));
            return None;
        }
        return match RegexBuilder::new(pattern)
            .size_limit(patterns::SIZE_LIMIT)
            .dfa_size_limit(patterns::DFA_SIZE_LIMIT)
            .build()
        {
            Ok(re) => Some(Test::Regex(re, patterns::compiled_bytes(pattern))),
            Err(e) => {
                errors.push(Fault::Schema(p, format!("invalid regular expression: {e}")));
                None
            }
        };
    }
    let mut ops = Vec::with_capacity(obj.len());
    for (op, arg) in obj {
        let p = format!("{path}.{op}");
        let compiled = match op.as_str() {
            "$eq" => Some(Op::Eq(arg.clone())),
            "$ne" => Some(Op::Ne(arg.clone())),
            "$gt" => Some(Op::Gt(number(arg))),
            "$gte" => Some(Op::Gte(number(arg))),
            "$lt" => Some(Op::Lt(number(arg))),
            "$lte" => Some(Op::Lte(number(arg))),
            "$in" => Some(Op::In(arg.as_array().cloned())),
            "$nin" => Some(Op::Nin(arg.as_array().cloned())),
            "$length" => match arg {
                Value::Number(_) => Some(Op::Length(Some(Box::new(Test::Ops(vec![Op::Eq(
                    arg.clone(),
                )]))))),
                Value::Object(_) => {
                    compile_test(arg, &p, errors).map(|t| Op::Length(Some(Box::new(t))))
                }
                _ => Some(Op::Length(None)),
            },
            _ => {
                errors.push(Fault::Router(unsupported(op)));
                None
            }
        };
        ops.extend(compiled);
    }
    Some(Test::Ops(ops))
}

/// JavaScript's `parseFloat` for the values a query meets: numbers, and strings that start
/// with a number.
fn to_number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => {
            let s = s.trim_start();
            s.get(..decimal_prefix_len(s.as_bytes())?)?
                .parse::<f64>()
                .ok()
        }
        _ => None,
    }
}

/// The length of the longest prefix of `b` that is a decimal literal (`[+-]digits[.digits]`
/// with at least one digit, then an exponent only when it has digits), or `None` when there
/// is none. One pass, so the single parse that follows is linear too: metadata is client
/// input, and trying every shorter prefix in turn was quadratic on a long numeric-looking
/// string.
fn decimal_prefix_len(b: &[u8]) -> Option<usize> {
    let digits = |from: usize| {
        b.iter()
            .skip(from)
            .take_while(|c| c.is_ascii_digit())
            .count()
    };
    let mut i = usize::from(matches!(b.first(), Some(b'+' | b'-')));
    let int = digits(i);
    i += int;
    let mut frac = 0;
    if b.get(i) == Some(&b'.') {
        frac = digits(i + 1);
        if int + frac > 0 {
            i += 1 + frac;
        }
    }
    if int + frac == 0 {
        return None;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        let sign = usize::from(matches!(b.get(i + 1), Some(b'+' | b'-')));
        let exp = digits(i + 1 + sign);
        if exp > 0 {
            i += 1 + sign + exp;
        }
    }
    Some(i)
}

impl Query {
    pub fn matches(&self, ctx: &QueryContext<'_>) -> bool {
        match self {
            Query::And(qs) => qs.iter().all(|q| q.matches(ctx)),
            Query::Or(qs) => qs.iter().any(|q| q.matches(ctx)),
            Query::Fields(fields) => fields.iter().all(|(f, t)| t.passes(f.lookup(ctx).as_ref())),
        }
    }
}

impl FieldPath {
    fn lookup(&self, ctx: &QueryContext<'_>) -> Option<Value> {
        let walk = |root: &Map<String, Value>, parts: &[String]| -> Option<Value> {
            let (first, rest) = parts.split_first()?;
            let mut v = root.get(first)?;
            for p in rest {
                v = match v {
                    Value::Object(m) => m.get(p)?,
                    Value::Array(a) => a.get(p.parse::<usize>().ok()?)?,
                    _ => return None,
                };
            }
            Some(v.clone())
        };
        match self {
            FieldPath::Metadata(parts) => walk(ctx.metadata, parts),
            FieldPath::Params(parts) => walk(ctx.params, parts),
            FieldPath::Pathname => Some(Value::String(ctx.pathname.to_string())),
        }
    }
}

fn as_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl Test {
    fn passes(&self, value: Option<&Value>) -> bool {
        match self {
            Test::Regex(re, _) => value.is_some_and(|v| re.is_match(&as_text(v))),
            Test::Ops(ops) => ops.iter().all(|op| op.passes(value)),
        }
    }
}

/// Strict equality as JavaScript's `===` sees JSON: scalars by value, objects and arrays never.
fn strict_eq(a: Option<&Value>, b: &Value) -> bool {
    match (a, b) {
        (Some(Value::Number(x)), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Some(Value::Object(_)), _) | (Some(Value::Array(_)), _) => false,
        (Some(x), y) => x == y,
        (None, _) => false,
    }
}

impl Op {
    fn passes(&self, value: Option<&Value>) -> bool {
        let num = || value.and_then(to_number);
        match self {
            Op::Eq(v) => strict_eq(value, v),
            Op::Ne(v) => !strict_eq(value, v),
            Op::Gt(n) => num().is_some_and(|x| x > *n),
            Op::Gte(n) => num().is_some_and(|x| x >= *n),
            Op::Lt(n) => num().is_some_and(|x| x < *n),
            Op::Lte(n) => num().is_some_and(|x| x <= *n),
            Op::In(list) => list
                .as_ref()
                .is_some_and(|l| l.iter().any(|v| strict_eq(value, v))),
            Op::Nin(list) => list
                .as_ref()
                .is_some_and(|l| !l.iter().any(|v| strict_eq(value, v))),
            Op::Length(test) => match value {
                Some(Value::Array(items)) => test
                    .as_ref()
                    .map_or(true, |t| t.passes(Some(&Value::from(items.len())))),
                _ => false,
            },
        }
    }
}

#[cfg(test)]
mod tests;
