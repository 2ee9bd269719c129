//! The PromQL subset alert rules are written in, compiled from promql-parser's AST into a
//! small tree we can evaluate incrementally over recent samples:
//! selectors with label matchers, `rate`/`increase`, `avg|min|max|sum|count_over_time`, `abs`,
//! `avg|sum|min|max|count [by|without (...)]`, arithmetic (`+ - * / % ^`) with numbers and
//! between vectors (one-to-one, optionally `on`/`ignoring`), compared with a number.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::Duration;

use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::{self, Expr, LabelModifier, VectorMatchCardinality};
use secumon_core::{Labels, SeriesKey};

/// Why a rule expression cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ExprError {
    /// The PromQL parser rejected it.
    #[error("not PromQL: {0}")]
    Syntax(String),
    /// Longer than 4096 bytes, brackets nested deeper than 32, or more than 256 operators.
    #[error("too large: {0}")]
    TooLarge(String),
    /// Valid PromQL, but not a comparison with a number over the functions and operators
    /// alert rules support.
    #[error("outside the supported subset: {0}")]
    Unsupported(String),
}

/// A metric name and label matchers.
#[derive(Debug, Clone)]
pub struct Selector {
    pub name: String,
    matchers: Vec<Matcher>,
}

impl Selector {
    pub fn matches(&self, series: &SeriesKey) -> bool {
        series.name == self.name
            && self.matchers.iter().filter(|m| m.name != "__name__").all(|m| {
                let value = series.labels.get(&m.name).map(String::as_str).unwrap_or("");
                crate::promql::label_holds(m, value)
            })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeFunction {
    Rate,
    Increase,
    AvgOverTime,
    MinOverTime,
    MaxOverTime,
    SumOverTime,
    CountOverTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregation {
    Avg,
    Sum,
    Min,
    Max,
    Count,
}

/// Which labels an aggregation keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grouping {
    By(Vec<String>),
    Without(Vec<String>),
}

#[derive(Debug, Clone)]
pub enum VectorExpr {
    /// The latest value of each matching series.
    Instant(Selector),
    /// A function over each matching series' samples in the last `range`.
    Range {
        function: RangeFunction,
        selector: Selector,
        range: Duration,
    },
    Aggregate {
        op: Aggregation,
        grouping: Grouping,
        inner: Box<VectorExpr>,
    },
    /// `abs(vector)`: each element's absolute value (a clock offset either way).
    Abs(Box<VectorExpr>),
    /// `vector OP number` or `number OP vector`, element by element.
    Scalar {
        op: Arithmetic,
        inner: Box<VectorExpr>,
        number: f64,
        number_first: bool,
    },
    /// `vector OP vector`, pairing elements whose labels agree (all of them, or those of
    /// `on (...)` / all but those of `ignoring (...)`); the left side's labels are kept.
    Vectors {
        op: Arithmetic,
        lhs: Box<VectorExpr>,
        rhs: Box<VectorExpr>,
        matching: Option<Grouping>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arithmetic {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
}

impl Arithmetic {
    pub(crate) fn from_symbol(symbol: &str) -> Option<Self> {
        Some(match symbol {
            "+" => Self::Add,
            "-" => Self::Sub,
            "*" => Self::Mul,
            "/" => Self::Div,
            "%" => Self::Mod,
            "^" => Self::Pow,
            _ => return None,
        })
    }

    pub(crate) fn apply(self, left: f64, right: f64) -> f64 {
        match self {
            Self::Add => left + right,
            Self::Sub => left - right,
            Self::Mul => left * right,
            Self::Div => left / right,
            Self::Mod => left % right,
            Self::Pow => left.powf(right),
        }
    }
}

/// How a value is compared with a threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    /// `>`
    Greater,
    /// `>=`
    GreaterOrEqual,
    /// `<`
    Less,
    /// `<=`
    LessOrEqual,
    /// `==`
    Equal,
    /// `!=`
    NotEqual,
}

impl Comparison {
    /// `>`, `>=`, `<`, `<=`, `==` or `!=`.
    pub fn from_symbol(symbol: &str) -> Option<Self> {
        Some(match symbol {
            ">" => Self::Greater,
            ">=" => Self::GreaterOrEqual,
            "<" => Self::Less,
            "<=" => Self::LessOrEqual,
            "==" => Self::Equal,
            "!=" => Self::NotEqual,
            _ => return None,
        })
    }

    /// The operator as written: `>`, `>=`, `<`, `<=`, `==` or `!=`.
    pub fn symbol(self) -> &'static str {
        match self {
            Self::Greater => ">",
            Self::GreaterOrEqual => ">=",
            Self::Less => "<",
            Self::LessOrEqual => "<=",
            Self::Equal => "==",
            Self::NotEqual => "!=",
        }
    }

    /// The same comparison with its sides swapped: `1 < x` is `x > 1`.
    fn flipped(self) -> Self {
        match self {
            Self::Greater => Self::Less,
            Self::GreaterOrEqual => Self::LessOrEqual,
            Self::Less => Self::Greater,
            Self::LessOrEqual => Self::GreaterOrEqual,
            other => other,
        }
    }

    /// Whether `left OP right` is true (false whenever either side is NaN, except for `!=`).
    pub fn holds(self, left: f64, right: f64) -> bool {
        match self {
            Self::Greater => left > right,
            Self::GreaterOrEqual => left >= right,
            Self::Less => left < right,
            Self::LessOrEqual => left <= right,
            Self::Equal => left == right,
            Self::NotEqual => left != right,
        }
    }
}

/// `vector OP threshold`: true for each element where the comparison holds.
#[derive(Debug, Clone)]
pub struct Condition {
    /// The expression on the left.
    pub vector: VectorExpr,
    /// How it is compared (a rule written `number OP vector` is stored flipped).
    pub comparison: Comparison,
    /// The number on the right.
    pub threshold: f64,
}

/// Longest expression a rule may have, in bytes.
pub const MAX_EXPR_BYTES: usize = 4_096;
/// Deepest nesting of brackets an expression may have.
pub const MAX_EXPR_NESTING: usize = 32;
/// Most operators an expression may have.
pub const MAX_EXPR_OPERATORS: usize = 256;

/// Bounds what reaches the parser: it, the syntax tree's drop and our own walks recurse per
/// level, and a tenant's rule must not be able to overflow the server's stack.
pub(crate) fn check_size(text: &str) -> Result<(), ExprError> {
    if text.len() > MAX_EXPR_BYTES {
        return Err(ExprError::TooLarge(format!("{} bytes, at most {MAX_EXPR_BYTES}", text.len())));
    }
    let (mut depth, mut deepest, mut operators) = (0usize, 0usize, 0usize);
    let (mut quote, mut escaped) = (None, false);
    for c in text.chars() {
        if let Some(open) = quote {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                _ if c == open => quote = None,
                _ => {}
            }
            continue;
        }
        match c {
            '"' | '\'' | '`' => quote = Some(c),
            '(' | '[' | '{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            '+' | '-' | '*' | '/' | '%' | '^' | '<' | '>' | '=' | '!' => operators += 1,
            _ => {}
        }
    }
    if deepest > MAX_EXPR_NESTING {
        return Err(ExprError::TooLarge(format!("brackets nested {deepest} deep, at most {MAX_EXPR_NESTING}")));
    }
    if operators > MAX_EXPR_OPERATORS {
        return Err(ExprError::TooLarge(format!("{operators} operators, at most {MAX_EXPR_OPERATORS}")));
    }
    Ok(())
}

impl Condition {
    /// Parses `expr OP number` (or `number OP expr`); errors when it is too large, not
    /// PromQL, or outside the supported subset.
    pub fn parse(text: &str) -> Result<Self, ExprError> {
        check_size(text)?;
        let expr = parser::parse(text).map_err(ExprError::Syntax)?;
        let Expr::Binary(binary) = unparen(&expr) else {
            return Err(ExprError::Unsupported(
                "a rule must compare an expression with a number, e.g. `x > 0.9`".into(),
            ));
        };
        let op = binary.op.to_string();
        let (vector_side, number_side, flipped) = match (unparen(&binary.lhs), unparen(&binary.rhs)) {
            (vector, Expr::NumberLiteral(n)) => (vector, n.val, false),
            (Expr::NumberLiteral(n), vector) => (vector, n.val, true),
            _ => return Err(ExprError::Unsupported("one side of the comparison must be a number".into())),
        };
        let comparison = Comparison::from_symbol(&op)
            .map(|c| if flipped { c.flipped() } else { c })
            .ok_or_else(|| ExprError::Unsupported(format!("operator {op} is not a comparison")))?;
        Ok(Self { vector: compile_vector(vector_side)?, comparison, threshold: number_side })
    }

    /// Every selector in the expression, to route samples.
    pub fn selectors(&self) -> Vec<&Selector> {
        fn walk<'a>(expr: &'a VectorExpr, out: &mut Vec<&'a Selector>) {
            match expr {
                VectorExpr::Instant(selector) | VectorExpr::Range { selector, .. } => out.push(selector),
                VectorExpr::Aggregate { inner, .. } | VectorExpr::Scalar { inner, .. } | VectorExpr::Abs(inner) => {
                    walk(inner, out)
                }
                VectorExpr::Vectors { lhs, rhs, .. } => {
                    walk(lhs, out);
                    walk(rhs, out);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.vector, &mut out);
        out
    }

    /// How much history the expression needs.
    pub fn lookback(&self) -> Duration {
        fn walk(expr: &VectorExpr) -> Duration {
            match expr {
                VectorExpr::Instant(_) => STALENESS,
                VectorExpr::Range { range, .. } => *range,
                VectorExpr::Aggregate { inner, .. } | VectorExpr::Scalar { inner, .. } | VectorExpr::Abs(inner) => {
                    walk(inner)
                }
                VectorExpr::Vectors { lhs, rhs, .. } => walk(lhs).max(walk(rhs)),
            }
        }
        walk(&self.vector)
    }

    /// The labels of every element the expression has at `now_ms`, whether the comparison
    /// holds or not: an alert whose labels are missing here has no data, which is not the
    /// same as data saying all is well.
    pub fn present(&self, window: &SampleWindow, now_ms: i64) -> Vec<Labels> {
        evaluate(&self.vector, window, now_ms).into_iter().map(|(labels, _)| labels).collect()
    }

    /// Whether a series this expression reads, with all of `labels`, has had a sample since
    /// the engine started (not only preloaded history).
    pub fn has_live_data(&self, window: &SampleWindow, labels: &Labels) -> bool {
        let selectors = self.selectors();
        window.live.iter().any(|key| {
            selectors.iter().any(|s| s.matches(key)) && labels.iter().all(|(k, v)| key.labels.get(k) == Some(v))
        })
    }

    /// The elements (labels, value) for which the condition holds at `now_ms`, by labels.
    pub fn firing(&self, window: &SampleWindow, now_ms: i64) -> Vec<(Labels, f64)> {
        let mut holding: Vec<(Labels, f64)> = evaluate(&self.vector, window, now_ms)
            .into_iter()
            .filter(|(_, value)| self.comparison.holds(*value, self.threshold))
            .collect();
        holding.sort_by(|a, b| a.0.cmp(&b.0));
        holding
    }
}

/// A series whose latest sample is older than this is no longer in an instant vector.
pub const STALENESS: Duration = Duration::from_secs(300);

fn unparen(expr: &Expr) -> &Expr {
    match expr {
        Expr::Paren(p) => unparen(&p.expr),
        other => other,
    }
}

fn selector(vs: &parser::VectorSelector) -> Result<Selector, ExprError> {
    if vs.offset.is_some() || vs.at.is_some() {
        return Err(ExprError::Unsupported("offset and @ are not supported in rules".into()));
    }
    if !vs.matchers.or_matchers.is_empty() {
        return Err(ExprError::Unsupported("`or` matchers are not supported".into()));
    }
    let name = vs
        .name
        .clone()
        .or_else(|| {
            vs.matchers
                .matchers
                .iter()
                .find(|m| m.name == "__name__" && m.op == MatchOp::Equal)
                .map(|m| m.value.clone())
        })
        .ok_or_else(|| ExprError::Unsupported("a selector needs a metric name".into()))?;
    Ok(Selector { name, matchers: vs.matchers.matchers.clone() })
}

fn compile_vector(expr: &Expr) -> Result<VectorExpr, ExprError> {
    match unparen(expr) {
        Expr::VectorSelector(vs) => Ok(VectorExpr::Instant(selector(vs)?)),
        Expr::Call(call) if call.func.name == "abs" => match call.args.args.as_slice() {
            [inner] => Ok(VectorExpr::Abs(Box::new(compile_vector(inner)?))),
            _ => Err(ExprError::Unsupported("abs takes one argument".into())),
        },
        Expr::Call(call) => {
            let function = match call.func.name {
                "rate" => RangeFunction::Rate,
                "increase" => RangeFunction::Increase,
                "avg_over_time" => RangeFunction::AvgOverTime,
                "min_over_time" => RangeFunction::MinOverTime,
                "max_over_time" => RangeFunction::MaxOverTime,
                "sum_over_time" => RangeFunction::SumOverTime,
                "count_over_time" => RangeFunction::CountOverTime,
                other => return Err(ExprError::Unsupported(format!("function {other}"))),
            };
            match call.args.args.first().map(|a| unparen(a)) {
                Some(Expr::MatrixSelector(ms)) => {
                    Ok(VectorExpr::Range { function, selector: selector(&ms.vs)?, range: ms.range })
                }
                _ => Err(ExprError::Unsupported(format!("{} needs a range selector like x[5m]", call.func.name))),
            }
        }
        Expr::Aggregate(aggregate) => {
            let op = match aggregate.op.to_string().as_str() {
                "avg" => Aggregation::Avg,
                "sum" => Aggregation::Sum,
                "min" => Aggregation::Min,
                "max" => Aggregation::Max,
                "count" => Aggregation::Count,
                other => return Err(ExprError::Unsupported(format!("aggregation {other}"))),
            };
            let grouping = match &aggregate.modifier {
                None => Grouping::By(Vec::new()),
                Some(LabelModifier::Include(labels)) => Grouping::By(labels.labels.clone()),
                Some(LabelModifier::Exclude(labels)) => Grouping::Without(labels.labels.clone()),
            };
            Ok(VectorExpr::Aggregate { op, grouping, inner: Box::new(compile_vector(&aggregate.expr)?) })
        }
        Expr::Binary(binary) => {
            let symbol = binary.op.to_string();
            let op = Arithmetic::from_symbol(&symbol).ok_or_else(|| {
                ExprError::Unsupported(format!("{symbol} inside an expression: only the outermost operator compares"))
            })?;
            match (unparen(&binary.lhs), unparen(&binary.rhs)) {
                (Expr::NumberLiteral(_), Expr::NumberLiteral(_)) => {
                    Err(ExprError::Unsupported("arithmetic between two numbers: write the result".into()))
                }
                (Expr::NumberLiteral(n), vector) => Ok(VectorExpr::Scalar {
                    op,
                    inner: Box::new(compile_vector(vector)?),
                    number: n.val,
                    number_first: true,
                }),
                (vector, Expr::NumberLiteral(n)) => Ok(VectorExpr::Scalar {
                    op,
                    inner: Box::new(compile_vector(vector)?),
                    number: n.val,
                    number_first: false,
                }),
                (lhs, rhs) => {
                    let modifier = binary.modifier.as_ref();
                    if modifier.is_some_and(|m| !matches!(m.card, VectorMatchCardinality::OneToOne)) {
                        return Err(ExprError::Unsupported("group_left/group_right matching".into()));
                    }
                    let matching = match modifier.and_then(|m| m.matching.as_ref()) {
                        None => None,
                        Some(LabelModifier::Include(labels)) => Some(Grouping::By(labels.labels.clone())),
                        Some(LabelModifier::Exclude(labels)) => Some(Grouping::Without(labels.labels.clone())),
                    };
                    Ok(VectorExpr::Vectors {
                        op,
                        lhs: Box::new(compile_vector(lhs)?),
                        rhs: Box::new(compile_vector(rhs)?),
                        matching,
                    })
                }
            }
        }
        other => Err(ExprError::Unsupported(format!("expression {other}"))),
    }
}

/// The labels two elements are paired on.
fn match_key(labels: &Labels, matching: &Option<Grouping>) -> Labels {
    match matching {
        None => labels.clone(),
        Some(Grouping::By(keep)) => {
            labels.iter().filter(|(k, _)| keep.contains(k)).map(|(k, v)| (k.clone(), v.clone())).collect()
        }
        Some(Grouping::Without(drop)) => {
            labels.iter().filter(|(k, _)| !drop.contains(k)).map(|(k, v)| (k.clone(), v.clone())).collect()
        }
    }
}

/// Recent samples of the series rules look at, oldest first, trimmed to what rules need.
#[derive(Debug, Default)]
pub struct SampleWindow {
    series: HashMap<SeriesKey, VecDeque<(i64, f64)>>,
    /// Series that received a sample since the engine started: history preloaded after a
    /// restart restores alerts but does not raise new ones (it may come from a check that is
    /// no longer configured).
    live: HashSet<SeriesKey>,
}

impl SampleWindow {
    pub fn push(&mut self, series: &SeriesKey, timestamp_ms: i64, value: f64) {
        let samples = self.series.entry(series.clone()).or_default();
        // Out-of-order samples are placed where they belong; equal timestamps: last write wins.
        let at = samples.partition_point(|(ts, _)| *ts < timestamp_ms);
        match samples.get_mut(at) {
            Some(existing) if existing.0 == timestamp_ms => existing.1 = value,
            _ => samples.insert(at, (timestamp_ms, value)),
        }
    }

    /// Notes that `series` received a sample now, not from preloaded history.
    pub fn mark_live(&mut self, series: &SeriesKey) {
        if !self.live.contains(series) {
            self.live.insert(series.clone());
        }
    }

    /// Forgets samples older than `keep` before `now_ms`.
    pub fn trim(&mut self, now_ms: i64, keep: Duration) {
        let oldest = now_ms - keep.as_millis() as i64;
        self.series.retain(|_, samples| {
            while samples.front().is_some_and(|(ts, _)| *ts < oldest) {
                samples.pop_front();
            }
            !samples.is_empty()
        });
        let series = &self.series;
        self.live.retain(|key| series.contains_key(key));
    }

    fn matching<'a>(
        &'a self,
        selector: &'a Selector,
    ) -> impl Iterator<Item = (&'a SeriesKey, &'a VecDeque<(i64, f64)>)> {
        self.series.iter().filter(move |(key, _)| selector.matches(key))
    }
}

fn evaluate(expr: &VectorExpr, window: &SampleWindow, now_ms: i64) -> Vec<(Labels, f64)> {
    match expr {
        VectorExpr::Instant(selector) => {
            let fresh_after = now_ms - STALENESS.as_millis() as i64;
            window
                .matching(selector)
                .filter_map(|(key, samples)| {
                    let &(ts, value) = samples.iter().rev().find(|(ts, _)| *ts <= now_ms)?;
                    (ts >= fresh_after).then(|| (key.labels.clone(), value))
                })
                .collect()
        }
        VectorExpr::Range { function, selector, range } => {
            let start = now_ms - range.as_millis() as i64;
            window
                .matching(selector)
                .filter_map(|(key, samples)| {
                    let points: Vec<(i64, f64)> =
                        samples.iter().copied().filter(|(ts, _)| *ts > start && *ts <= now_ms).collect();
                    range_value(*function, &points, *range).map(|v| (key.labels.clone(), v))
                })
                .collect()
        }
        VectorExpr::Aggregate { op, grouping, inner } => {
            let mut groups: BTreeMap<Labels, Vec<f64>> = BTreeMap::new();
            for (labels, value) in evaluate(inner, window, now_ms) {
                let key: Labels = match grouping {
                    Grouping::By(keep) => labels.into_iter().filter(|(k, _)| keep.contains(k)).collect(),
                    Grouping::Without(drop) => labels.into_iter().filter(|(k, _)| !drop.contains(k)).collect(),
                };
                groups.entry(key).or_default().push(value);
            }
            groups
                .into_iter()
                .map(|(labels, values)| {
                    let value = match op {
                        Aggregation::Sum => values.iter().sum(),
                        Aggregation::Avg => values.iter().sum::<f64>() / values.len() as f64,
                        Aggregation::Min => values.iter().copied().fold(f64::INFINITY, f64::min),
                        Aggregation::Max => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                        Aggregation::Count => values.len() as f64,
                    };
                    (labels, value)
                })
                .collect()
        }
        VectorExpr::Abs(inner) => {
            evaluate(inner, window, now_ms).into_iter().map(|(labels, value)| (labels, value.abs())).collect()
        }
        VectorExpr::Scalar { op, inner, number, number_first } => evaluate(inner, window, now_ms)
            .into_iter()
            .map(|(labels, value)| {
                (labels, if *number_first { op.apply(*number, value) } else { op.apply(value, *number) })
            })
            .collect(),
        VectorExpr::Vectors { op, lhs, rhs, matching } => {
            let mut right: HashMap<Labels, Option<f64>> = HashMap::new();
            for (labels, value) in evaluate(rhs, window, now_ms) {
                // Two right elements on one key are ambiguous: Prometheus refuses, we skip.
                right.entry(match_key(&labels, matching)).and_modify(|v| *v = None).or_insert(Some(value));
            }
            evaluate(lhs, window, now_ms)
                .into_iter()
                .filter_map(|(labels, value)| {
                    let other = (*right.get(&match_key(&labels, matching))?)?;
                    Some((labels, op.apply(value, other)))
                })
                .collect()
        }
    }
}

/// A range function over a series' points in its window; `None` when there are too few.
pub(crate) fn range_value(function: RangeFunction, points: &[(i64, f64)], range: Duration) -> Option<f64> {
    let values = points.iter().map(|(_, v)| *v);
    match function {
        RangeFunction::Rate | RangeFunction::Increase => {
            if points.len() < 2 {
                return None;
            }
            // Counter resets: a drop means the counter restarted from zero.
            let mut increase = 0.0;
            for pair in points.windows(2) {
                let (before, after) = (pair[0].1, pair[1].1);
                increase += if after >= before { after - before } else { after };
            }
            let covered = (points[points.len() - 1].0 - points[0].0) as f64 / 1000.0;
            if covered <= 0.0 {
                return None;
            }
            // Like Prometheus, extrapolate the observed increase to the whole range.
            let extrapolated = increase * range.as_secs_f64() / covered;
            Some(if function == RangeFunction::Rate { extrapolated / range.as_secs_f64() } else { extrapolated })
        }
        RangeFunction::AvgOverTime => (!points.is_empty()).then(|| values.sum::<f64>() / points.len() as f64),
        RangeFunction::MinOverTime => values.reduce(f64::min),
        RangeFunction::MaxOverTime => values.reduce(f64::max),
        RangeFunction::SumOverTime => (!points.is_empty()).then(|| values.sum()),
        RangeFunction::CountOverTime => (!points.is_empty()).then_some(points.len() as f64),
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn deep_or_long_expressions_are_refused_before_parsing() {
        let nested = format!("{}x{} > 1", "(".repeat(100_000), ")".repeat(100_000));
        let error = Condition::parse(&nested).unwrap_err();
        assert!(matches!(error, ExprError::TooLarge(_)), "{error}");
        let deep = format!("{}x{} > 1", "(".repeat(MAX_EXPR_NESTING + 1), ")".repeat(MAX_EXPR_NESTING + 1));
        assert!(matches!(Condition::parse(&deep), Err(ExprError::TooLarge(_))));
        let chain = format!("x{} > 1", " + x".repeat(MAX_EXPR_OPERATORS));
        assert!(matches!(Condition::parse(&chain), Err(ExprError::TooLarge(_))));
        let unary = format!("{}x > 1", "-".repeat(3_000));
        assert!(matches!(Condition::parse(&unary), Err(ExprError::TooLarge(_))));
        let long = format!("x{{a=\"{}\"}} > 1", "y".repeat(MAX_EXPR_BYTES));
        assert!(matches!(Condition::parse(&long), Err(ExprError::TooLarge(_))));
    }

    #[test]
    fn expressions_at_the_limits_parse() {
        let deep = format!("{}x{} > 1", "(".repeat(MAX_EXPR_NESTING), ")".repeat(MAX_EXPR_NESTING));
        Condition::parse(&deep).unwrap();
        let chain = format!("x{} > 1", " + x".repeat(MAX_EXPR_OPERATORS - 2));
        Condition::parse(&chain).unwrap();
        // Brackets and operators inside label values are text, not nesting.
        let quoted = format!("x{{path=\"{}\"}} > 1", "(+)".repeat(200));
        Condition::parse(&quoted).unwrap();
    }
    use super::*;

    fn key(name: &str, labels: &[(&str, &str)]) -> SeriesKey {
        SeriesKey::new(name, labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn instant_selector_with_matchers() {
        let condition = Condition::parse(r#"cpu_usage_ratio{host=~"web-.*", env!="dev"} > 0.9"#).unwrap();
        let mut window = SampleWindow::default();
        window.push(&key("cpu_usage_ratio", &[("host", "web-1"), ("env", "prod")]), 1_000, 0.95);
        window.push(&key("cpu_usage_ratio", &[("host", "web-2"), ("env", "prod")]), 1_000, 0.5);
        window.push(&key("cpu_usage_ratio", &[("host", "web-3"), ("env", "dev")]), 1_000, 0.99);
        window.push(&key("cpu_usage_ratio", &[("host", "db-1"), ("env", "prod")]), 1_000, 0.99);
        let firing = condition.firing(&window, 2_000);
        assert_eq!(firing, vec![(labels(&[("env", "prod"), ("host", "web-1")]), 0.95)]);
        assert!(condition.firing(&window, 1_000 + 301_000).is_empty(), "stale after five minutes");
    }

    #[test]
    fn reversed_comparison_and_parentheses() {
        let condition = Condition::parse("(0.1 > memory_free_ratio)").unwrap();
        assert_eq!(condition.comparison, Comparison::Less);
        assert_eq!(condition.threshold, 0.1);
    }

    #[test]
    fn rate_handles_counter_resets_and_extrapolates() {
        let condition = Condition::parse("rate(network_receive_bytes_total[1m]) > 50").unwrap();
        let mut window = SampleWindow::default();
        let series = key("network_receive_bytes_total", &[("interface", "eth0")]);
        // 0 → 3000 over 30 s, a reset to 500, then 1500: increase 3000 + 500 + 1000 over 45 s.
        for (ts, v) in [(10_000, 0.0), (40_000, 3_000.0), (50_000, 500.0), (55_000, 1_500.0)] {
            window.push(&series, ts, v);
        }
        let firing = condition.firing(&window, 60_000);
        assert_eq!(firing.len(), 1);
        let expected = 4_500.0 * 60.0 / 45.0 / 60.0;
        assert!((firing[0].1 - expected).abs() < 1e-9, "{} vs {expected}", firing[0].1);
    }

    #[test]
    fn aggregations_group_by_and_without() {
        let mut window = SampleWindow::default();
        for (host, core, v) in [("a", "0", 0.9), ("a", "1", 0.7), ("b", "0", 0.2), ("b", "1", 0.1)] {
            window.push(&key("cpu_core_usage_ratio", &[("host", host), ("core", core)]), 1_000, v);
        }
        let by_host = Condition::parse("avg by (host) (cpu_core_usage_ratio) > 0.5").unwrap();
        let firing = by_host.firing(&window, 1_000);
        assert_eq!(firing.len(), 1);
        assert_eq!(firing[0].0, labels(&[("host", "a")]));
        assert!((firing[0].1 - 0.8).abs() < 1e-12);
        let without_core = Condition::parse("max without (core) (cpu_core_usage_ratio) >= 0.2").unwrap();
        let hosts: Vec<Labels> = without_core.firing(&window, 1_000).into_iter().map(|(l, _)| l).collect();
        assert_eq!(hosts, vec![labels(&[("host", "a")]), labels(&[("host", "b")])]);
        let count = Condition::parse("count(cpu_core_usage_ratio) == 4").unwrap();
        assert_eq!(count.firing(&window, 1_000), vec![(Labels::new(), 4.0)]);
    }

    #[test]
    fn abs_takes_offsets_either_way() {
        let mut window = SampleWindow::default();
        for (agent, offset) in [("ahead", 7_200.0), ("behind", -7_200.0), ("close", 3.0), ("late", -61.0)] {
            window.push(&key("secumon_agent_clock_offset_seconds", &[("agent_id", agent)]), 1_000, offset);
        }
        let condition = Condition::parse("abs(secumon_agent_clock_offset_seconds) > 60").unwrap();
        let firing: Vec<(String, f64)> =
            condition.firing(&window, 1_000).into_iter().map(|(l, v)| (l["agent_id"].clone(), v)).collect();
        assert_eq!(firing, vec![("ahead".into(), 7_200.0), ("behind".into(), 7_200.0), ("late".into(), 61.0)]);
        assert_eq!(condition.selectors()[0].name, "secumon_agent_clock_offset_seconds");
        assert!(Condition::parse("abs(max_over_time(load1[5m])) > 1").is_ok());
        assert!(Condition::parse("abs(load1, load5) > 1").is_err());
    }

    #[test]
    fn over_time_functions() {
        let mut window = SampleWindow::default();
        let series = key("load1", &[]);
        for (ts, v) in [(1_000, 1.0), (2_000, 3.0), (3_000, 5.0)] {
            window.push(&series, ts, v);
        }
        let value = |text: &str| Condition::parse(text).unwrap().firing(&window, 3_000).first().map(|f| f.1);
        assert_eq!(value("avg_over_time(load1[10s]) > 0"), Some(3.0));
        assert_eq!(value("max_over_time(load1[10s]) > 0"), Some(5.0));
        assert_eq!(value("min_over_time(load1[1500ms]) > 0"), Some(3.0));
        assert_eq!(value("count_over_time(load1[10s]) > 0"), Some(3.0));
        assert_eq!(value("sum_over_time(load1[10s]) > 100"), None);
    }

    #[test]
    fn out_of_order_and_duplicate_samples() {
        let mut window = SampleWindow::default();
        let series = key("load1", &[]);
        window.push(&series, 3_000, 3.0);
        window.push(&series, 1_000, 1.0);
        window.push(&series, 3_000, 4.0);
        let condition = Condition::parse("count_over_time(load1[10s]) > 0").unwrap();
        assert_eq!(condition.firing(&window, 3_000)[0].1, 2.0);
        let latest = Condition::parse("load1 > 0").unwrap();
        assert_eq!(latest.firing(&window, 3_000)[0].1, 4.0, "last write wins");
        window.trim(3_000, Duration::from_secs(1));
        assert_eq!(condition.firing(&window, 3_000)[0].1, 1.0);
    }

    #[test]
    fn unsupported_and_invalid_expressions_say_why() {
        assert!(matches!(Condition::parse("cpu_usage_ratio >"), Err(ExprError::Syntax(_))));
        let err = Condition::parse("cpu_usage_ratio").unwrap_err().to_string();
        assert!(err.contains("compare"), "{err}");
        let err = Condition::parse("histogram_quantile(0.9, x) > 1").unwrap_err().to_string();
        assert!(err.contains("histogram_quantile"), "{err}");
        let err = Condition::parse("rate(x) > 1").unwrap_err().to_string();
        assert!(err.contains("range") || err.contains("not PromQL"), "{err}");
        let err = Condition::parse("x > y").unwrap_err().to_string();
        assert!(err.contains("number"), "{err}");
        let err = Condition::parse("(x > 1) > 0").unwrap_err().to_string();
        assert!(err.contains("outermost"), "{err}");
        let err = Condition::parse("x / on(host) group_left y > 1").unwrap_err().to_string();
        assert!(err.contains("group_left"), "{err}");
    }

    #[test]
    fn arithmetic_with_numbers_and_between_vectors() {
        let mut window = SampleWindow::default();
        for (mount, avail) in [("/", 5.0), ("/data", 50.0)] {
            window.push(&key("fs_avail_bytes", &[("host", "a"), ("mount", mount)]), 1_000, avail);
            window.push(&key("fs_size_bytes", &[("host", "a"), ("mount", mount)]), 1_000, 100.0);
        }
        window.push(&key("fs_avail_bytes", &[("host", "b"), ("mount", "/")]), 1_000, 1.0);
        let condition = Condition::parse("(fs_avail_bytes / fs_size_bytes) * 100 < 10").unwrap();
        assert_eq!(condition.firing(&window, 2_000), vec![(labels(&[("host", "a"), ("mount", "/")]), 5.0)]);
        assert_eq!(condition.selectors().len(), 2);

        window.push(&key("cpu_idle_ratio", &[("host", "a")]), 1_000, 0.05);
        let condition = Condition::parse("100 - cpu_idle_ratio * 100 > 90").unwrap();
        assert_eq!(condition.firing(&window, 2_000), vec![(labels(&[("host", "a")]), 95.0)]);

        window.push(&key("requests", &[("host", "a"), ("code", "500")]), 1_000, 30.0);
        window.push(&key("capacity", &[("host", "a"), ("dc", "x")]), 1_000, 60.0);
        let on = Condition::parse("requests / on(host) capacity >= 0.5").unwrap();
        assert_eq!(on.firing(&window, 2_000), vec![(labels(&[("code", "500"), ("host", "a")]), 0.5)]);
        let ignoring = Condition::parse("requests / ignoring(code, dc) capacity >= 0.5").unwrap();
        assert_eq!(ignoring.firing(&window, 2_000).len(), 1);
        let unmatched = Condition::parse("requests / capacity >= 0.5").unwrap();
        assert!(unmatched.firing(&window, 2_000).is_empty(), "labels differ: no pair");
    }
}
