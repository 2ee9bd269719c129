//! PromQL over stored history, for the Prometheus-compatible query API: instant and range
//! evaluation with Prometheus' semantics (5-minute lookback, evaluation at each step, rate
//! extrapolation, label handling of functions, aggregations and vector matching).
//!
//! It shares the alert rules' building blocks (the crate's `expr` module: size limits, label matching,
//! arithmetic, comparisons and the `*_over_time` functions). Evaluation is split so it needs
//! no store: [`Query::fetches`] says which series and time spans to read, the caller reads
//! them (a server from its `Store`), and [`Query::instant`] / [`Query::range`] evaluate over
//! what was read.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::{self, Expr, LabelModifier, Offset, VectorMatchCardinality};
use secumon_core::{Labels, SeriesKey};

use crate::expr::{Arithmetic, Comparison, RangeFunction, STALENESS, check_size, range_value};

/// The label that holds a series' metric name in answers and matchers.
pub const NAME_LABEL: &str = "__name__";
/// Most points a range query may give each series (Prometheus' limit).
pub const MAX_POINTS_PER_SERIES: i64 = 11_000;

/// Why a query cannot be answered: the Prometheus API's `bad_data` or `execution` errors.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QueryError {
    /// The query is not PromQL, or uses what this evaluator does not support.
    #[error("{0}")]
    BadData(String),
    /// The query is fine but its evaluation failed (e.g. duplicate series in a result).
    #[error("{0}")]
    Execution(String),
}

/// Series a selector chooses: an optional exact metric name and label matchers (which may
/// match `__name__` too).
#[derive(Debug, Clone)]
pub struct SeriesMatcher {
    /// The exact metric name, when the selector gives one: the store reads only those series.
    pub name: Option<String>,
    matchers: Vec<Matcher>,
}

impl SeriesMatcher {
    /// Parses a series selector as the `match[]` parameter gives it, e.g. `up{job="x"}`.
    pub fn parse(text: &str) -> Result<Self, QueryError> {
        check_size(text).map_err(|e| QueryError::BadData(e.to_string()))?;
        match parser::parse(text).map_err(QueryError::BadData)? {
            Expr::VectorSelector(vs) => matcher_of(&vs),
            _ => Err(QueryError::BadData(format!("{text:?} is not a series selector"))),
        }
    }

    /// Whether `series` has the name (if any) and satisfies every matcher; a missing label
    /// counts as empty.
    pub fn matches(&self, series: &SeriesKey) -> bool {
        self.name.as_ref().is_none_or(|name| *name == series.name)
            && self.matchers.iter().all(|m| {
                let value = if m.name == NAME_LABEL {
                    series.name.as_str()
                } else {
                    series.labels.get(&m.name).map(String::as_str).unwrap_or("")
                };
                label_holds(m, value)
            })
    }
}

/// Whether `value` (empty when the label is missing) satisfies the matcher.
pub(crate) fn label_holds(matcher: &Matcher, value: &str) -> bool {
    match &matcher.op {
        MatchOp::Equal => value == matcher.value,
        MatchOp::NotEqual => value != matcher.value,
        MatchOp::Re(_) | MatchOp::NotRe(_) => matcher.is_match(value),
    }
}

fn matcher_of(vs: &parser::VectorSelector) -> Result<SeriesMatcher, QueryError> {
    if vs.at.is_some() {
        return Err(QueryError::BadData("the @ modifier is not supported".into()));
    }
    if !vs.matchers.or_matchers.is_empty() {
        return Err(QueryError::BadData("`or` inside a selector is not supported".into()));
    }
    let name = vs.name.clone().or_else(|| {
        vs.matchers.matchers.iter().find(|m| m.name == NAME_LABEL && m.op == MatchOp::Equal).map(|m| m.value.clone())
    });
    Ok(SeriesMatcher { name, matchers: vs.matchers.matchers.clone() })
}

/// A read a query needs: the series `matcher` selects, samples from `from_ms` to `to_ms`
/// inclusive.
#[derive(Debug, Clone)]
pub struct Fetch<'a> {
    /// Which series to read.
    pub matcher: &'a SeriesMatcher,
    /// First instant to read, milliseconds since 1970 (inclusive).
    pub from_ms: i64,
    /// Last instant to read, milliseconds since 1970 (inclusive).
    pub to_ms: i64,
}

/// The series read for one [`Fetch`], each with its samples oldest first.
pub type Fetched = Vec<(SeriesKey, Vec<(i64, f64)>)>;

/// Prometheus' staleness marker: a NaN with this bit pattern, as a series' sample, says the
/// series ended there. An instant selector whose latest sample in its lookback is the marker
/// has no value; range functions skip markers. Prometheus remote-writes them when a target's
/// series ends, and the series the server makes from other records (`ALERTS`) end with one.
pub const STALE_MARKER: f64 = f64::from_bits(0x7ff0_0000_0000_0002);

/// Whether `value` is [`STALE_MARKER`] (not any NaN: a stored NaN is a value).
pub fn is_stale_marker(value: f64) -> bool {
    value.to_bits() == STALE_MARKER.to_bits()
}

/// What a query's answer is, as the API names it.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// One number at one time (ms).
    Scalar(i64, f64),
    /// Elements (labels with `__name__` where kept, value) at one time.
    Vector(i64, Vec<(Labels, f64)>),
    /// Series with their points (time in ms, value), sorted by labels.
    Matrix(Vec<(Labels, Vec<(i64, f64)>)>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Func {
    Abs,
    Ceil,
    Floor,
    Round,
    ClampMin,
    ClampMax,
    Clamp,
    Exp,
    Ln,
    Sqrt,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RangeFn {
    Rate,
    Irate,
    Increase,
    Delta,
    Changes,
    Resets,
    LastOverTime,
    PresentOverTime,
    StddevOverTime,
    StdvarOverTime,
    /// avg, min, max, sum and count over time: the alert rules' own.
    Shared(RangeFunction),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AggOp {
    Sum,
    Avg,
    Min,
    Max,
    Count,
    Group,
    Stddev,
    Stdvar,
    Topk,
    Bottomk,
    Quantile,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BinOp {
    Arith(Arithmetic),
    Compare(Comparison),
    Set(SetOp),
}

/// `group_left(…)` / `group_right(…)`: which side has many elements per match, and the
/// labels copied from the one side's element.
#[derive(Debug, Clone)]
struct Group {
    many_on_left: bool,
    include: Vec<String>,
}

/// Prometheus' set operators between two vectors, matched by label sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SetOp {
    /// The left's elements with a match on the right.
    And,
    /// The left's elements, then the right's without a match on the left.
    Or,
    /// The left's elements without a match on the right.
    Unless,
}

#[derive(Debug, Clone)]
enum Node {
    Number(f64),
    Time,
    /// An instant selector: index into the query's selectors.
    Select(usize),
    /// A range selector, only as the whole of an instant query.
    Matrix(usize),
    Range(RangeFn, usize),
    Call(Func, Box<Node>, Vec<Node>),
    VectorOf(Box<Node>),
    /// `histogram_quantile(φ, buckets)`.
    HistogramQuantile(Box<Node>, Box<Node>),
    ScalarOf(Box<Node>),
    Negate(Box<Node>),
    Aggregate {
        op: AggOp,
        param: Option<Box<Node>>,
        by: bool,
        labels: Vec<String>,
        inner: Box<Node>,
    },
    Binary {
        op: BinOp,
        lhs: Box<Node>,
        rhs: Box<Node>,
        bool_result: bool,
        on: Option<(bool, Vec<String>)>,
        group: Option<Group>,
    },
}

/// A selector of the query with how far back of each evaluation time it reads.
#[derive(Debug, Clone)]
struct Reading {
    matcher: SeriesMatcher,
    /// The range of a range selector, or the lookback of an instant one.
    window_ms: i64,
    offset_ms: i64,
}

/// One evaluation's value.
enum Value {
    Scalar(f64),
    Vector(Vec<(Labels, f64)>),
}

/// A compiled PromQL query.
#[derive(Debug, Clone)]
pub struct Query {
    root: Node,
    readings: Vec<Reading>,
}

impl Query {
    /// Compiles a query; [`QueryError::BadData`] when it is too large, not PromQL, or uses
    /// what this evaluator does not support.
    pub fn parse(text: &str) -> Result<Self, QueryError> {
        check_size(text).map_err(|e| QueryError::BadData(e.to_string()))?;
        let expr = parser::parse(text).map_err(QueryError::BadData)?;
        let mut readings = Vec::new();
        let root = match unparen(&expr) {
            Expr::MatrixSelector(ms) => {
                readings.push(Reading {
                    matcher: matcher_of(&ms.vs)?,
                    window_ms: ms.range.as_millis() as i64,
                    offset_ms: offset_ms(&ms.vs.offset),
                });
                Node::Matrix(0)
            }
            other => compile(other, &mut readings)?,
        };
        Ok(Self { root, readings })
    }

    /// The reads evaluating from `start_ms` to `end_ms` needs, in the order the evaluation
    /// takes their answers.
    pub fn fetches(&self, start_ms: i64, end_ms: i64) -> Vec<Fetch<'_>> {
        self.readings
            .iter()
            .map(|r| Fetch {
                matcher: &r.matcher,
                from_ms: start_ms - r.offset_ms - r.window_ms,
                to_ms: end_ms - r.offset_ms,
            })
            .collect()
    }

    /// The query's value at `at_ms`, over the answers to [`Query::fetches`]`(at_ms, at_ms)`.
    pub fn instant(&self, data: &[Fetched], at_ms: i64) -> Result<Answer, QueryError> {
        self.check(data)?;
        if let Node::Matrix(index) = self.root {
            let reading = &self.readings[index];
            let end = at_ms - reading.offset_ms;
            let mut series: Vec<(Labels, Vec<(i64, f64)>)> = data[index]
                .iter()
                .map(|(key, samples)| {
                    (with_name(key), without_markers(window(samples, end - reading.window_ms, end)).into_owned())
                })
                .filter(|(_, points)| !points.is_empty())
                .collect();
            series.sort_by(|a, b| a.0.cmp(&b.0));
            return Ok(Answer::Matrix(series));
        }
        Ok(match self.eval(&self.root, data, at_ms)? {
            Value::Scalar(v) => Answer::Scalar(at_ms, v),
            Value::Vector(mut elements) => {
                if !self.root_orders() {
                    elements.sort_by(|a, b| a.0.cmp(&b.0));
                    if elements.windows(2).any(|pair| pair[0].0 == pair[1].0) {
                        return Err(QueryError::Execution(
                            "vector cannot contain metrics with the same labelset".into(),
                        ));
                    }
                }
                Answer::Vector(at_ms, elements)
            }
        })
    }

    /// The query evaluated at each step from `start_ms` to `end_ms`, over the answers to
    /// [`Query::fetches`]`(start_ms, end_ms)`.
    pub fn range(&self, data: &[Fetched], start_ms: i64, end_ms: i64, step_ms: i64) -> Result<Answer, QueryError> {
        self.check(data)?;
        if step_ms <= 0 {
            return Err(QueryError::BadData(
                "zero or negative query resolution step widths are not accepted. Try a positive integer".into(),
            ));
        }
        if end_ms < start_ms {
            return Err(QueryError::BadData("end timestamp must not be before start time".into()));
        }
        if (end_ms - start_ms) / step_ms > MAX_POINTS_PER_SERIES {
            return Err(QueryError::BadData(
                "exceeded maximum resolution of 11,000 points per timeseries. \
                 Try decreasing the query resolution (?step=XX)"
                    .into(),
            ));
        }
        if matches!(self.root, Node::Matrix(_)) {
            return Err(QueryError::BadData(
                "invalid expression type \"range vector\" for range query, must be Scalar or instant Vector".into(),
            ));
        }
        let mut series: BTreeMap<Labels, Vec<(i64, f64)>> = BTreeMap::new();
        let mut t = start_ms;
        while t <= end_ms {
            match self.eval(&self.root, data, t)? {
                Value::Scalar(v) => series.entry(Labels::new()).or_default().push((t, v)),
                Value::Vector(elements) => {
                    for (labels, v) in elements {
                        let points = series.entry(labels).or_default();
                        if points.last().is_some_and(|(last, _)| *last == t) {
                            return Err(QueryError::Execution(
                                "vector cannot contain metrics with the same labelset".into(),
                            ));
                        }
                        points.push((t, v));
                    }
                }
            }
            t += step_ms;
        }
        Ok(Answer::Matrix(series.into_iter().collect()))
    }

    fn check(&self, data: &[Fetched]) -> Result<(), QueryError> {
        if data.len() != self.readings.len() {
            return Err(QueryError::Execution(format!(
                "{} series reads answered for {} selectors",
                data.len(),
                self.readings.len()
            )));
        }
        Ok(())
    }

    /// Whether the outermost operation orders its answer (topk, bottomk) itself.
    fn root_orders(&self) -> bool {
        matches!(self.root, Node::Aggregate { op: AggOp::Topk | AggOp::Bottomk, .. })
    }

    fn eval(&self, node: &Node, data: &[Fetched], t: i64) -> Result<Value, QueryError> {
        Ok(match node {
            Node::Number(n) => Value::Scalar(*n),
            Node::Time => Value::Scalar(t as f64 / 1000.0),
            Node::Matrix(_) => {
                return Err(QueryError::BadData("a range vector is only allowed inside a function".into()));
            }
            Node::Select(index) => {
                let reading = &self.readings[*index];
                let end = t - reading.offset_ms;
                let start = end - reading.window_ms;
                Value::Vector(
                    data[*index]
                        .iter()
                        .filter_map(|(key, samples)| {
                            let &(_, v) = window(samples, start, end).last()?;
                            (!is_stale_marker(v)).then(|| (with_name(key), v))
                        })
                        .collect(),
                )
            }
            Node::Range(function, index) => {
                let reading = &self.readings[*index];
                let end = t - reading.offset_ms;
                let start = end - reading.window_ms;
                Value::Vector(
                    data[*index]
                        .iter()
                        .filter_map(|(key, samples)| {
                            let points = without_markers(window(samples, start, end));
                            let v = range_fn(*function, &points, start, end)?;
                            let labels =
                                if *function == RangeFn::LastOverTime { with_name(key) } else { key.labels.clone() };
                            Some((labels, v))
                        })
                        .collect(),
                )
            }
            Node::Call(func, arg, params) => {
                let mut numbers = Vec::with_capacity(params.len());
                for param in params {
                    numbers.push(self.scalar(param, data, t)?);
                }
                let vector = self.vector(arg, data, t)?;
                Value::Vector(
                    vector.into_iter().map(|(labels, v)| (without_name(labels), apply(*func, v, &numbers))).collect(),
                )
            }
            Node::VectorOf(inner) => Value::Vector(vec![(Labels::new(), self.scalar(inner, data, t)?)]),
            Node::HistogramQuantile(phi, buckets) => {
                let phi = self.scalar(phi, data, t)?;
                Value::Vector(histogram_quantile(phi, self.vector(buckets, data, t)?))
            }
            Node::ScalarOf(inner) => {
                let vector = self.vector(inner, data, t)?;
                Value::Scalar(if vector.len() == 1 { vector[0].1 } else { f64::NAN })
            }
            Node::Negate(inner) => match self.eval(inner, data, t)? {
                Value::Scalar(v) => Value::Scalar(-v),
                Value::Vector(v) => Value::Vector(v.into_iter().map(|(l, v)| (without_name(l), -v)).collect()),
            },
            Node::Aggregate { op, param, by, labels, inner } => {
                let param = match param {
                    Some(p) => Some(self.scalar(p, data, t)?),
                    None => None,
                };
                Value::Vector(aggregate(*op, param, *by, labels, self.vector(inner, data, t)?))
            }
            Node::Binary { op, lhs, rhs, bool_result, on, group } => {
                let (left, right) = (self.eval(lhs, data, t)?, self.eval(rhs, data, t)?);
                binary(*op, *bool_result, on.as_ref(), group.as_ref(), left, right)?
            }
        })
    }

    fn scalar(&self, node: &Node, data: &[Fetched], t: i64) -> Result<f64, QueryError> {
        match self.eval(node, data, t)? {
            Value::Scalar(v) => Ok(v),
            Value::Vector(_) => Err(QueryError::BadData("expected a scalar, got an instant vector".into())),
        }
    }

    fn vector(&self, node: &Node, data: &[Fetched], t: i64) -> Result<Vec<(Labels, f64)>, QueryError> {
        match self.eval(node, data, t)? {
            Value::Vector(v) => Ok(v),
            Value::Scalar(_) => Err(QueryError::BadData("expected an instant vector, got a scalar".into())),
        }
    }
}

fn unparen(expr: &Expr) -> &Expr {
    match expr {
        Expr::Paren(p) => unparen(&p.expr),
        other => other,
    }
}

fn offset_ms(offset: &Option<Offset>) -> i64 {
    match offset {
        None => 0,
        Some(Offset::Pos(d)) => d.as_millis() as i64,
        Some(Offset::Neg(d)) => -(d.as_millis() as i64),
    }
}

fn unsupported(what: impl std::fmt::Display) -> QueryError {
    QueryError::BadData(format!("{what} is not supported by SecuMon's PromQL evaluator"))
}

fn compile(expr: &Expr, readings: &mut Vec<Reading>) -> Result<Node, QueryError> {
    Ok(match unparen(expr) {
        Expr::NumberLiteral(n) => Node::Number(n.val),
        Expr::StringLiteral(_) => return Err(unsupported("a string result")),
        Expr::VectorSelector(vs) => {
            readings.push(Reading {
                matcher: matcher_of(vs)?,
                window_ms: STALENESS.as_millis() as i64,
                offset_ms: offset_ms(&vs.offset),
            });
            Node::Select(readings.len() - 1)
        }
        Expr::MatrixSelector(_) => {
            return Err(QueryError::BadData("a range vector is only allowed inside a function".into()));
        }
        Expr::Subquery(_) => return Err(unsupported("subquery")),
        Expr::Extension(_) => return Err(unsupported("this expression")),
        Expr::Unary(u) => Node::Negate(Box::new(compile(&u.expr, readings)?)),
        Expr::Call(call) => {
            let name = call.func.name;
            let args: Vec<&Expr> = call.args.args.iter().map(|a| unparen(a)).collect();
            let range = match name {
                "rate" => Some(RangeFn::Rate),
                "irate" => Some(RangeFn::Irate),
                "increase" => Some(RangeFn::Increase),
                "delta" => Some(RangeFn::Delta),
                "changes" => Some(RangeFn::Changes),
                "resets" => Some(RangeFn::Resets),
                "avg_over_time" => Some(RangeFn::Shared(RangeFunction::AvgOverTime)),
                "min_over_time" => Some(RangeFn::Shared(RangeFunction::MinOverTime)),
                "max_over_time" => Some(RangeFn::Shared(RangeFunction::MaxOverTime)),
                "sum_over_time" => Some(RangeFn::Shared(RangeFunction::SumOverTime)),
                "count_over_time" => Some(RangeFn::Shared(RangeFunction::CountOverTime)),
                "last_over_time" => Some(RangeFn::LastOverTime),
                "present_over_time" => Some(RangeFn::PresentOverTime),
                "stddev_over_time" => Some(RangeFn::StddevOverTime),
                "stdvar_over_time" => Some(RangeFn::StdvarOverTime),
                _ => None,
            };
            if let Some(function) = range {
                let ms = match args.first() {
                    Some(Expr::MatrixSelector(ms)) => ms,
                    Some(Expr::Subquery(_)) => return Err(unsupported("subquery")),
                    _ => return Err(QueryError::BadData(format!("{name} needs a range vector like x[5m]"))),
                };
                readings.push(Reading {
                    matcher: matcher_of(&ms.vs)?,
                    window_ms: ms.range.as_millis() as i64,
                    offset_ms: offset_ms(&ms.vs.offset),
                });
                return Ok(Node::Range(function, readings.len() - 1));
            }
            let func = match name {
                "abs" => Func::Abs,
                "ceil" => Func::Ceil,
                "floor" => Func::Floor,
                "round" => Func::Round,
                "clamp_min" => Func::ClampMin,
                "clamp_max" => Func::ClampMax,
                "clamp" => Func::Clamp,
                "exp" => Func::Exp,
                "ln" => Func::Ln,
                "sqrt" => Func::Sqrt,
                "time" => return Ok(Node::Time),
                "vector" => return Ok(Node::VectorOf(Box::new(one_arg(name, &args, readings)?))),
                "scalar" => return Ok(Node::ScalarOf(Box::new(one_arg(name, &args, readings)?))),
                "histogram_quantile" => {
                    let [phi, buckets] = args[..] else {
                        return Err(QueryError::BadData("histogram_quantile takes a quantile and a vector".into()));
                    };
                    return Ok(Node::HistogramQuantile(
                        Box::new(compile(phi, readings)?),
                        Box::new(compile(buckets, readings)?),
                    ));
                }
                other => return Err(unsupported(format!("function {other}"))),
            };
            let Some((first, rest)) = args.split_first() else {
                return Err(QueryError::BadData(format!("{name} needs an argument")));
            };
            let params = rest.iter().map(|a| compile(a, readings)).collect::<Result<Vec<_>, _>>()?;
            Node::Call(func, Box::new(compile(first, readings)?), params)
        }
        Expr::Aggregate(aggregate) => {
            let op = match aggregate.op.to_string().as_str() {
                "sum" => AggOp::Sum,
                "avg" => AggOp::Avg,
                "min" => AggOp::Min,
                "max" => AggOp::Max,
                "count" => AggOp::Count,
                "group" => AggOp::Group,
                "stddev" => AggOp::Stddev,
                "stdvar" => AggOp::Stdvar,
                "topk" => AggOp::Topk,
                "bottomk" => AggOp::Bottomk,
                "quantile" => AggOp::Quantile,
                other => return Err(unsupported(format!("aggregation {other}"))),
            };
            let (by, labels) = match &aggregate.modifier {
                None => (true, Vec::new()),
                Some(LabelModifier::Include(l)) => (true, l.labels.clone()),
                Some(LabelModifier::Exclude(l)) => (false, l.labels.clone()),
            };
            let param = match &aggregate.param {
                Some(p) => Some(Box::new(compile(p, readings)?)),
                None => None,
            };
            Node::Aggregate { op, param, by, labels, inner: Box::new(compile(&aggregate.expr, readings)?) }
        }
        Expr::Binary(binary) => {
            let symbol = binary.op.to_string();
            let op = match (Arithmetic::from_symbol(&symbol), Comparison::from_symbol(&symbol), symbol.as_str()) {
                (Some(a), _, _) => BinOp::Arith(a),
                (None, Some(c), _) => BinOp::Compare(c),
                (None, None, "and") => BinOp::Set(SetOp::And),
                (None, None, "or") => BinOp::Set(SetOp::Or),
                (None, None, "unless") => BinOp::Set(SetOp::Unless),
                _ => return Err(unsupported(format!("operator {symbol}"))),
            };
            let modifier = binary.modifier.as_ref();
            let set = matches!(op, BinOp::Set(_));
            let group = match modifier.map(|m| &m.card) {
                None | Some(VectorMatchCardinality::OneToOne) => None,
                Some(VectorMatchCardinality::ManyToMany) if set => None,
                Some(VectorMatchCardinality::ManyToOne(include)) if !set => {
                    Some(Group { many_on_left: true, include: include.labels.clone() })
                }
                Some(VectorMatchCardinality::OneToMany(include)) if !set => {
                    Some(Group { many_on_left: false, include: include.labels.clone() })
                }
                Some(_) => return Err(QueryError::BadData(format!("no grouping allowed for \"{symbol}\" operation"))),
            };
            let on = match modifier.and_then(|m| m.matching.as_ref()) {
                None => None,
                Some(LabelModifier::Include(l)) => Some((true, l.labels.clone())),
                Some(LabelModifier::Exclude(l)) => Some((false, l.labels.clone())),
            };
            Node::Binary {
                op,
                lhs: Box::new(compile(&binary.lhs, readings)?),
                rhs: Box::new(compile(&binary.rhs, readings)?),
                bool_result: modifier.is_some_and(|m| m.return_bool),
                on,
                group,
            }
        }
        Expr::Paren(_) => unreachable!("unparen removed it"),
    })
}

fn one_arg(name: &str, args: &[&Expr], readings: &mut Vec<Reading>) -> Result<Node, QueryError> {
    match args {
        [only] => compile(only, readings),
        _ => Err(QueryError::BadData(format!("{name} takes one argument"))),
    }
}

/// Samples with `start < ts <= end` (Prometheus' left-open windows).
fn window(samples: &[(i64, f64)], start: i64, end: i64) -> &[(i64, f64)] {
    let from = samples.partition_point(|(ts, _)| *ts <= start);
    let to = samples.partition_point(|(ts, _)| *ts <= end);
    &samples[from..to.max(from)]
}

/// `points` without staleness markers, copied only when it holds one.
fn without_markers(points: &[(i64, f64)]) -> std::borrow::Cow<'_, [(i64, f64)]> {
    if points.iter().any(|&(_, v)| is_stale_marker(v)) {
        points.iter().copied().filter(|&(_, v)| !is_stale_marker(v)).collect::<Vec<_>>().into()
    } else {
        points.into()
    }
}

fn with_name(key: &SeriesKey) -> Labels {
    let mut labels = key.labels.clone();
    labels.insert(NAME_LABEL.to_string(), key.name.clone());
    labels
}

fn without_name(mut labels: Labels) -> Labels {
    labels.remove(NAME_LABEL);
    labels
}

fn apply(func: Func, v: f64, params: &[f64]) -> f64 {
    let param = |i: usize| params.get(i).copied().unwrap_or(f64::NAN);
    match func {
        Func::Abs => v.abs(),
        Func::Ceil => v.ceil(),
        Func::Floor => v.floor(),
        // Prometheus rounds half up, to a multiple of the optional argument.
        Func::Round => {
            let to = params.first().copied().unwrap_or(1.0);
            (v / to + 0.5).floor() * to
        }
        Func::ClampMin => v.max(param(0)),
        Func::ClampMax => v.min(param(0)),
        Func::Clamp => {
            let (min, max) = (param(0), param(1));
            if max < min { f64::NAN } else { v.max(min).min(max) }
        }
        Func::Exp => v.exp(),
        Func::Ln => v.ln(),
        Func::Sqrt => v.sqrt(),
    }
}

/// A range function over a series' samples in `(start, end]`; `None` leaves the series out.
fn range_fn(function: RangeFn, points: &[(i64, f64)], start: i64, end: i64) -> Option<f64> {
    match function {
        RangeFn::Rate | RangeFn::Increase | RangeFn::Delta => {
            extrapolated(points, start, end, function != RangeFn::Delta, function == RangeFn::Rate)
        }
        RangeFn::Irate => {
            let [.., (t0, v0), (t1, v1)] = points else { return None };
            let change = if v1 < v0 { *v1 } else { v1 - v0 };
            (t1 > t0).then(|| change / ((t1 - t0) as f64 / 1000.0))
        }
        RangeFn::Changes | RangeFn::Resets => {
            let first = points.first()?;
            let mut count = 0;
            let mut previous = first.1;
            for &(_, v) in &points[1..] {
                let counted = if function == RangeFn::Changes {
                    v != previous && !(v.is_nan() && previous.is_nan())
                } else {
                    v < previous
                };
                count += usize::from(counted);
                previous = v;
            }
            Some(count as f64)
        }
        RangeFn::LastOverTime => points.last().map(|(_, v)| *v),
        RangeFn::PresentOverTime => (!points.is_empty()).then_some(1.0),
        RangeFn::StddevOverTime | RangeFn::StdvarOverTime => {
            let variance = variance(points.iter().map(|(_, v)| *v))?;
            Some(if function == RangeFn::StddevOverTime { variance.sqrt() } else { variance })
        }
        RangeFn::Shared(shared) => range_value(shared, points, Duration::from_millis((end - start).max(0) as u64)),
    }
}

fn variance(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (mut count, mut mean, mut m2) = (0.0, 0.0, 0.0);
    for v in values {
        count += 1.0;
        let delta = v - mean;
        mean += delta / count;
        m2 += delta * (v - mean);
    }
    (count > 0.0).then(|| m2 / count)
}

/// Prometheus' `extrapolatedRate`: the change over the samples, corrected for counter resets,
/// extrapolated to the window's edges unless a sample is missing there (then by half an
/// interval), and for counters never below zero.
fn extrapolated(points: &[(i64, f64)], start: i64, end: i64, counter: bool, per_second: bool) -> Option<f64> {
    let (&(first_t, first_v), &(last_t, last_v)) = (points.first()?, points.last()?);
    if points.len() < 2 || last_t == first_t {
        return None;
    }
    let mut result = last_v - first_v;
    if counter {
        for pair in points.windows(2) {
            if pair[1].1 < pair[0].1 {
                result += pair[0].1;
            }
        }
    }
    let seconds = |ms: i64| ms as f64 / 1000.0;
    let sampled = seconds(last_t - first_t);
    let average = sampled / (points.len() - 1) as f64;
    let threshold = average * 1.1;
    let mut to_start = seconds(first_t - start);
    let mut to_end = seconds(end - last_t);
    if to_start >= threshold {
        to_start = average / 2.0;
    }
    if counter && result > 0.0 && first_v >= 0.0 {
        // A counter does not go below zero: extrapolate no further back than where it was 0.
        to_start = to_start.min(sampled * (first_v / result));
    }
    if to_end >= threshold {
        to_end = average / 2.0;
    }
    let mut factor = (sampled + to_start + to_end) / sampled;
    if per_second {
        factor /= seconds(end - start);
    }
    Some(result * factor)
}

/// The labels an aggregation groups on.
fn group_key(labels: &Labels, by: bool, names: &[String]) -> Labels {
    labels
        .iter()
        .filter(|(k, _)| if by { names.contains(k) } else { !names.contains(k) && k.as_str() != NAME_LABEL })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn aggregate(
    op: AggOp,
    param: Option<f64>,
    by: bool,
    names: &[String],
    vector: Vec<(Labels, f64)>,
) -> Vec<(Labels, f64)> {
    let mut groups: BTreeMap<Labels, Vec<(Labels, f64)>> = BTreeMap::new();
    for (labels, v) in vector {
        groups.entry(group_key(&labels, by, names)).or_default().push((labels, v));
    }
    let mut out = Vec::new();
    for (key, mut members) in groups {
        let values = || members.iter().map(|(_, v)| *v);
        let value = match op {
            AggOp::Sum => values().sum(),
            AggOp::Avg => values().sum::<f64>() / members.len() as f64,
            AggOp::Min => values().fold(f64::NAN, |a, b| if a.is_nan() || b < a { b } else { a }),
            AggOp::Max => values().fold(f64::NAN, |a, b| if a.is_nan() || b > a { b } else { a }),
            AggOp::Count => members.len() as f64,
            AggOp::Group => 1.0,
            AggOp::Stddev => variance(values()).unwrap_or(f64::NAN).sqrt(),
            AggOp::Stdvar => variance(values()).unwrap_or(f64::NAN),
            AggOp::Quantile => quantile(param.unwrap_or(f64::NAN), values().collect()),
            AggOp::Topk | AggOp::Bottomk => {
                let k = param.unwrap_or(0.0);
                if k < 1.0 {
                    continue;
                }
                // Largest first for topk, smallest first for bottomk; NaN always last.
                members.sort_by(|a, b| {
                    let order = if op == AggOp::Topk { b.1.partial_cmp(&a.1) } else { a.1.partial_cmp(&b.1) };
                    order.unwrap_or_else(|| a.1.is_nan().cmp(&b.1.is_nan()))
                });
                out.extend(members.into_iter().take(k.min(1e9) as usize));
                continue;
            }
        };
        out.push((key, value));
    }
    out
}

/// Prometheus' `quantile`: linear interpolation between the closest ranks.
fn quantile(q: f64, mut values: Vec<f64>) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let rank = q * (values.len() - 1) as f64;
    let (lower, upper) = (rank.floor() as usize, (rank.ceil() as usize).min(values.len() - 1));
    let weight = rank - rank.floor();
    values[lower] * (1.0 - weight) + values[upper] * weight
}

fn binary(
    op: BinOp,
    bool_result: bool,
    on: Option<&(bool, Vec<String>)>,
    group: Option<&Group>,
    left: Value,
    right: Value,
) -> Result<Value, QueryError> {
    if let BinOp::Set(set) = op {
        return set_operation(set, on, left, right);
    }
    // What one pair gives: `None` drops the element (a comparison that does not hold).
    let combine = |l: f64, r: f64| -> Option<f64> {
        match op {
            BinOp::Arith(a) => Some(a.apply(l, r)),
            BinOp::Compare(c) if bool_result => Some(if c.holds(l, r) { 1.0 } else { 0.0 }),
            BinOp::Compare(c) => c.holds(l, r).then_some(l),
            BinOp::Set(_) => None,
        }
    };
    // Arithmetic and `bool` comparisons make a new quantity: the metric name goes.
    let drops_name = matches!(op, BinOp::Arith(_)) || bool_result;
    let name = |labels: Labels| if drops_name { without_name(labels) } else { labels };
    Ok(match (left, right) {
        (Value::Scalar(l), Value::Scalar(r)) => {
            Value::Scalar(combine(l, r).ok_or_else(|| unsupported("a comparison of scalars without bool"))?)
        }
        (Value::Vector(v), Value::Scalar(s)) => {
            Value::Vector(v.into_iter().filter_map(|(labels, x)| Some((name(labels), combine(x, s)?))).collect())
        }
        (Value::Scalar(s), Value::Vector(v)) => Value::Vector(
            v.into_iter()
                .filter_map(|(labels, x)| {
                    // A filter keeps the vector's value, whichever side it is on.
                    let kept = combine(s, x)?;
                    let value = if matches!(op, BinOp::Compare(_)) && !bool_result { x } else { kept };
                    Some((name(labels), value))
                })
                .collect(),
        ),
        (Value::Vector(lhs), Value::Vector(rhs)) => {
            // As Prometheus: the "one" side is hashed, the "many" side walked; for
            // group_right the sides swap, and the values swap back for the operation.
            let many_on_right = group.is_some_and(|g| !g.many_on_left);
            let (many, one) = if many_on_right { (rhs, lhs) } else { (lhs, rhs) };
            let one_side = if many_on_right { "left" } else { "right" };
            let mut ones: HashMap<Labels, (Labels, f64)> = HashMap::with_capacity(one.len());
            for (labels, v) in one {
                if ones.insert(signature(on, &labels), (labels, v)).is_some() {
                    return Err(QueryError::Execution(format!(
                        "found duplicate series for the match group on the {one_side} hand-side of the operation: \
                         many-to-many matching not allowed: matching labels must be unique on one side"
                    )));
                }
            }
            let mut matched: HashMap<Labels, HashSet<Labels>> = HashMap::with_capacity(many.len());
            let mut out = Vec::new();
            for (labels, v) in many {
                let key = signature(on, &labels);
                let Some((one_labels, o)) = ones.get(&key) else { continue };
                let (l, r) = if many_on_right { (*o, v) } else { (v, *o) };
                let Some(value) = combine(l, r) else { continue };
                let labels = result_labels(labels, one_labels, on, group);
                let labels = name(labels);
                let inserted = matched.entry(key).or_default();
                if !inserted.is_empty() && group.is_none() {
                    return Err(QueryError::Execution(
                        "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)"
                            .into(),
                    ));
                }
                if !inserted.insert(labels.clone()) {
                    return Err(QueryError::Execution(
                        "multiple matches for labels: grouping labels must ensure unique matches".into(),
                    ));
                }
                out.push((labels, value));
            }
            Value::Vector(out)
        }
    })
}

/// An element's labels after a vector operation, from its own (the "many" side's): one-to-one
/// `on` keeps only its labels and `ignoring` drops its own; `group_…(labels)` copies those
/// labels from the matched "one" element (dropping them where it has none).
fn result_labels(mut labels: Labels, one: &Labels, on: Option<&(bool, Vec<String>)>, group: Option<&Group>) -> Labels {
    match (on, group) {
        (Some((true, names)), None) => labels.retain(|k, _| names.contains(k)),
        (Some((false, names)), None) => labels.retain(|k, _| !names.contains(k)),
        _ => {}
    }
    for name in group.map_or(&[][..], |g| &g.include[..]) {
        match one.get(name) {
            Some(value) if !value.is_empty() => labels.insert(name.clone(), value.clone()),
            _ => labels.remove(name),
        };
    }
    labels
}

/// `histogram_quantile` over classic buckets, as Prometheus 2 computes it: elements grouped by
/// their labels but `le` (and the name), buckets with one bound summed, counts made
/// monotonic, linear interpolation within the bucket the rank falls in; the `+Inf` bucket
/// must be there, and an element without a number in `le` is left out.
fn histogram_quantile(phi: f64, elements: Vec<(Labels, f64)>) -> Vec<(Labels, f64)> {
    let mut groups: BTreeMap<Labels, Vec<(f64, f64)>> = BTreeMap::new();
    for (mut labels, count) in elements {
        let Some(bound) = labels.remove("le").and_then(|le| le.trim().parse::<f64>().ok()) else { continue };
        labels.remove(NAME_LABEL);
        groups.entry(labels).or_default().push((bound, count));
    }
    groups.into_iter().map(|(labels, buckets)| (labels, bucket_quantile(phi, buckets))).collect()
}

fn bucket_quantile(phi: f64, mut buckets: Vec<(f64, f64)>) -> f64 {
    if phi.is_nan() {
        return f64::NAN;
    }
    if phi < 0.0 {
        return f64::NEG_INFINITY;
    }
    if phi > 1.0 {
        return f64::INFINITY;
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Buckets with the same bound (the same series twice after a relabelling) are one.
    buckets.dedup_by(|later, kept| {
        let same = later.0 == kept.0;
        if same {
            kept.1 += later.1;
        }
        same
    });
    if buckets.len() < 2 || buckets.last().is_none_or(|b| b.0 != f64::INFINITY) {
        return f64::NAN;
    }
    // Counts read at slightly different times may decrease: never below an earlier bucket.
    let mut highest = f64::NEG_INFINITY;
    for bucket in &mut buckets {
        highest = highest.max(bucket.1);
        bucket.1 = highest;
    }
    let observations = buckets[buckets.len() - 1].1;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = phi * observations;
    let b = buckets.partition_point(|bucket| bucket.1 < rank);
    if b == buckets.len() - 1 {
        return buckets[buckets.len() - 2].0;
    }
    if b == 0 && buckets[0].0 <= 0.0 {
        return buckets[0].0;
    }
    let (mut start, end, mut count) = (0.0, buckets[b].0, buckets[b].1);
    if b > 0 {
        start = buckets[b - 1].0;
        count -= buckets[b - 1].1;
        rank -= buckets[b - 1].1;
    }
    start + (end - start) * (rank / count)
}

/// The labels two elements are matched by: those `on` names, all but those `ignoring`
/// names, or (neither) all; the metric name never.
fn signature(on: Option<&(bool, Vec<String>)>, labels: &Labels) -> Labels {
    labels
        .iter()
        .filter(|(k, _)| match on {
            Some((true, names)) => names.contains(k),
            Some((false, names)) => !names.contains(k) && k.as_str() != NAME_LABEL,
            None => k.as_str() != NAME_LABEL,
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// `and`, `or`, `unless`: many-to-many, elements kept whole (name included).
fn set_operation(set: SetOp, on: Option<&(bool, Vec<String>)>, left: Value, right: Value) -> Result<Value, QueryError> {
    let (Value::Vector(lhs), Value::Vector(rhs)) = (left, right) else {
        return Err(QueryError::BadData("set operators are only allowed between two instant vectors".into()));
    };
    let matched = |side: &[(Labels, f64)]| -> HashSet<Labels> { side.iter().map(|(l, _)| signature(on, l)).collect() };
    Ok(Value::Vector(match set {
        SetOp::And => {
            let right = matched(&rhs);
            lhs.into_iter().filter(|(l, _)| right.contains(&signature(on, l))).collect()
        }
        SetOp::Unless => {
            let right = matched(&rhs);
            lhs.into_iter().filter(|(l, _)| !right.contains(&signature(on, l))).collect()
        }
        SetOp::Or => {
            let left = matched(&lhs);
            let mut out = lhs;
            out.extend(rhs.into_iter().filter(|(l, _)| !left.contains(&signature(on, l))));
            out
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str, labels: &[(&str, &str)]) -> SeriesKey {
        SeriesKey::new(name, labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// Evaluates `text` at `at_ms` over `series`, reading for each selector what it matches.
    fn instant(text: &str, series: &[(SeriesKey, Vec<(i64, f64)>)], at_ms: i64) -> Result<Answer, QueryError> {
        let query = Query::parse(text)?;
        let data = read(&query, series, at_ms, at_ms);
        query.instant(&data, at_ms)
    }

    fn read(query: &Query, series: &[(SeriesKey, Vec<(i64, f64)>)], start: i64, end: i64) -> Vec<Fetched> {
        query
            .fetches(start, end)
            .iter()
            .map(|f| {
                series
                    .iter()
                    .filter(|(k, _)| f.matcher.matches(k))
                    .map(|(k, s)| {
                        (k.clone(), s.iter().copied().filter(|(t, _)| *t >= f.from_ms && *t <= f.to_ms).collect())
                    })
                    .collect()
            })
            .collect()
    }

    fn vector(answer: Answer) -> Vec<(Labels, f64)> {
        match answer {
            Answer::Vector(_, v) => v,
            other => panic!("not a vector: {other:?}"),
        }
    }

    /// A counter growing by `slope` per second, sampled every 10 s from `from_s` to `to_s`.
    fn counter(start: f64, slope: f64, from_s: i64, to_s: i64) -> Vec<(i64, f64)> {
        (from_s / 10..=to_s / 10).map(|i| (i * 10_000, start + slope * (i * 10 - from_s) as f64)).collect()
    }

    #[test]
    fn rate_of_a_steady_counter_is_its_slope_and_increase_its_growth() {
        let series = vec![(key("bytes_total", &[("host", "a")]), counter(1_000.0, 7.0, 0, 600))];
        let rate = vector(instant("rate(bytes_total[1m])", &series, 600_000).unwrap());
        assert_eq!(rate.len(), 1);
        assert_eq!(rate[0].0, labels(&[("host", "a")]), "rate drops the metric name");
        assert!((rate[0].1 - 7.0).abs() < 1e-9, "{}", rate[0].1);
        let increase = vector(instant("increase(bytes_total[5m])", &series, 600_000).unwrap());
        assert!((increase[0].1 - 7.0 * 300.0).abs() < 1e-6, "{}", increase[0].1);
        let irate = vector(instant("irate(bytes_total[1m])", &series, 605_000).unwrap());
        assert!((irate[0].1 - 7.0).abs() < 1e-9);
    }

    #[test]
    fn rate_over_a_counter_reset_counts_what_came_after() {
        // 0 → 3000 over 30 s, a reset to 500, then 1500: increase 3000 + 500 + 1000 over 45 s.
        let samples = vec![(10_000, 0.0), (40_000, 3_000.0), (50_000, 500.0), (55_000, 1_500.0)];
        let series = vec![(key("c", &[]), samples)];
        let rate = vector(instant("rate(c[1m])", &series, 60_000).unwrap())[0].1;
        // Prometheus: no extrapolation before a start at 0, 5 s (< 1.1 × 15 s) to the end.
        let expected = 4_500.0 * (45.0 + 0.0 + 5.0) / 45.0 / 60.0;
        assert!((rate - expected).abs() < 1e-9, "{rate} vs {expected}");
        let resets = vector(instant("resets(c[1m])", &series, 60_000).unwrap())[0].1;
        assert_eq!(resets, 1.0);
    }

    #[test]
    fn gaps_at_the_edges_extrapolate_by_half_an_interval() {
        // Samples at 30, 40, 50 s in a window (0, 100]: both gaps exceed 1.1 × 10 s.
        let series = vec![(key("g", &[]), vec![(30_000, 10.0), (40_000, 20.0), (50_000, 30.0)])];
        let delta = vector(instant("delta(g[100s])", &series, 100_000).unwrap())[0].1;
        assert!((delta - 20.0 * 30.0 / 20.0).abs() < 1e-9, "{delta}");
    }

    #[test]
    fn group_left_and_group_right_copy_the_one_sides_labels_onto_the_many() {
        let series = vec![
            (key("fs_free", &[("instance", "a"), ("mount", "/")]), vec![(0, 10.0)]),
            (key("fs_free", &[("instance", "a"), ("mount", "/var")]), vec![(0, 20.0)]),
            (key("fs_free", &[("instance", "b"), ("mount", "/")]), vec![(0, 30.0)]),
            (key("uname", &[("instance", "a"), ("nodename", "web-1")]), vec![(0, 1.0)]),
            (key("uname", &[("instance", "b"), ("nodename", "db-1")]), vec![(0, 1.0)]),
        ];
        let at = |text: &str| vector(instant(text, &series, 0).unwrap());
        let row =
            |instance, mount, node, v| (labels(&[("instance", instance), ("mount", mount), ("nodename", node)]), v);
        let expected = vec![row("a", "/", "web-1", 10.0), row("a", "/var", "web-1", 20.0), row("b", "/", "db-1", 30.0)];
        assert_eq!(at("fs_free * on (instance) group_left (nodename) uname"), expected);
        // The same from the other side: the values stay in operand order.
        assert_eq!(at("uname * on (instance) group_right (nodename) fs_free"), expected);
        let divided = at("uname / on (instance) group_right fs_free");
        assert_eq!(divided[0], (labels(&[("instance", "a"), ("mount", "/")]), 0.1));
        // Without a group modifier, many-to-one is an error, as in Prometheus.
        let error = Query::parse("fs_free * on (instance) uname").unwrap().instant(
            &Query::parse("fs_free * on (instance) uname")
                .unwrap()
                .fetches(0, 0)
                .iter()
                .map(|f| series.iter().filter(|(k, _)| f.matcher.matches(k)).cloned().collect())
                .collect::<Vec<_>>(),
            0,
        );
        assert!(matches!(error, Err(QueryError::Execution(m)) if m.contains("group_left")));
        assert!(matches!(Query::parse("a and on (x) group_left b"), Err(QueryError::BadData(_))));
    }

    #[test]
    fn histogram_quantile_interpolates_within_buckets_as_prometheus_does() {
        let bucket = |le: &str, v| (key("req_bucket", &[("le", le), ("path", "/")]), vec![(0, v)]);
        let series = vec![bucket("0.1", 10.0), bucket("0.5", 60.0), bucket("1", 90.0), bucket("+Inf", 100.0)];
        let at = |text: &str| vector(instant(text, &series, 0).unwrap());
        let path = labels(&[("path", "/")]);
        // Rank 50 falls in (0.1, 0.5]: 0.1 + 0.4 × (40 / 50).
        assert_eq!(at("histogram_quantile(0.5, req_bucket)"), vec![(path.clone(), 0.1 + 0.4 * 40.0 / 50.0)]);
        // In the +Inf bucket: the highest finite bound.
        assert_eq!(at("histogram_quantile(0.95, req_bucket)"), vec![(path.clone(), 1.0)]);
        // In the first bucket: from 0.
        assert_eq!(at("histogram_quantile(0.05, req_bucket)"), vec![(path.clone(), 0.05)]);
        assert_eq!(at("histogram_quantile(2, req_bucket)"), vec![(path.clone(), f64::INFINITY)]);
        let no_inf = vec![bucket("0.1", 1.0), bucket("1", 2.0)];
        let nan = vector(instant("histogram_quantile(0.5, req_bucket)", &no_inf, 0).unwrap());
        assert!(nan[0].1.is_nan(), "no +Inf bucket: {nan:?}");
        // Counts that dip are taken as the highest before them.
        let dipping = vec![bucket("0.1", 10.0), bucket("0.5", 8.0), bucket("+Inf", 20.0)];
        let q = vector(instant("histogram_quantile(0.5, req_bucket)", &dipping, 0).unwrap());
        assert_eq!(q[0].1, 0.1, "rank 10 is reached at the first bucket's end: {q:?}");
    }

    #[test]
    fn set_operators_match_label_sets_many_to_many_and_keep_elements_whole() {
        let series = vec![
            (key("up", &[("job", "a"), ("i", "1")]), vec![(0, 1.0)]),
            (key("up", &[("job", "a"), ("i", "2")]), vec![(0, 0.0)]),
            (key("up", &[("job", "b"), ("i", "1")]), vec![(0, 1.0)]),
            (key("hot", &[("job", "a"), ("i", "2")]), vec![(0, 7.0)]),
        ];
        let at = |text: &str| vector(instant(text, &series, 0).unwrap());
        let up = |job, i, v| (labels(&[("__name__", "up"), ("i", i), ("job", job)]), v);
        assert_eq!(at("up and hot"), vec![up("a", "2", 0.0)]);
        assert_eq!(at("up unless hot"), vec![up("a", "1", 1.0), up("b", "1", 1.0)]);
        // Many on the left match one on the right with `on`.
        assert_eq!(at("up and on (job) hot"), vec![up("a", "1", 1.0), up("a", "2", 0.0)]);
        assert_eq!(at("up unless ignoring (i) hot"), vec![up("b", "1", 1.0)]);
        assert_eq!(at("hot or up == 1").len(), 3, "hot{{a,2}} and both up == 1, none matching it");
        // The usual "no data means zero".
        assert_eq!(at("count(nothing) or vector(0)"), vec![(Labels::new(), 0.0)]);
        assert_eq!(at("count(up) or vector(0)"), vec![(Labels::new(), 3.0)]);
        assert!(matches!(Query::parse("1 and 2"), Err(QueryError::BadData(_))));
    }

    #[test]
    fn a_staleness_marker_ends_a_series_at_once_and_range_functions_skip_it() {
        let series = vec![(key("up", &[]), vec![(0, 1.0), (15_000, 1.0), (30_000, STALE_MARKER), (45_000, f64::NAN)])];
        assert_eq!(vector(instant("up", &series, 29_999).unwrap()).len(), 1);
        assert!(vector(instant("up", &series, 30_000).unwrap()).is_empty(), "ended by the marker");
        assert!(vector(instant("up", &series, 44_999).unwrap()).is_empty());
        // A NaN that is not the marker is a value.
        assert!(vector(instant("up", &series, 45_000).unwrap())[0].1.is_nan());
        // (10 s, 50 s]: 1.0 at 15 s and the NaN at 45 s; not the marker.
        assert_eq!(vector(instant("count_over_time(up[40s])", &series, 50_000).unwrap())[0].1, 2.0);
        let Answer::Matrix(raw) = instant("up[40s]", &series, 40_000).unwrap() else { panic!("a matrix") };
        assert_eq!(raw[0].1, vec![(15_000, 1.0)]);
    }

    #[test]
    fn instant_selectors_go_stale_after_five_minutes_and_offset_looks_back() {
        let series = vec![(key("load1", &[("host", "a")]), vec![(0, 1.0), (60_000, 2.0)])];
        let at = |t| vector(instant("load1", &series, t).unwrap());
        assert_eq!(at(60_000), vec![(labels(&[("__name__", "load1"), ("host", "a")]), 2.0)]);
        assert_eq!(at(60_000 + 299_999).len(), 1);
        assert!(at(60_000 + 300_000).is_empty(), "stale five minutes after the last sample");
        let offset = vector(instant("load1 offset 1m", &series, 90_000).unwrap());
        assert_eq!(offset[0].1, 1.0);
    }

    #[test]
    fn aggregations_by_and_without_and_topk() {
        let mut series = Vec::new();
        for (host, core, v) in [("a", "0", 0.9), ("a", "1", 0.7), ("b", "0", 0.2), ("b", "1", 0.1)] {
            series.push((key("cpu", &[("host", host), ("core", core)]), vec![(1_000, v)]));
        }
        let avg = vector(instant("avg by (host) (cpu)", &series, 1_000).unwrap());
        assert_eq!(avg.len(), 2);
        assert_eq!(avg[0].0, labels(&[("host", "a")]));
        assert!((avg[0].1 - 0.8).abs() < 1e-12 && (avg[1].1 - 0.15).abs() < 1e-12);
        let without = vector(instant("sum without (core) (cpu)", &series, 1_000).unwrap());
        assert_eq!(
            without.iter().map(|(l, _)| l.clone()).collect::<Vec<_>>(),
            [labels(&[("host", "a")]), labels(&[("host", "b")])]
        );
        let top = vector(instant("topk(3, cpu)", &series, 1_000).unwrap());
        assert_eq!(top.iter().map(|(_, v)| *v).collect::<Vec<_>>(), [0.9, 0.7, 0.2]);
        assert_eq!(top[0].0["__name__"], "cpu", "topk keeps the series' labels");
        let bottom = vector(instant("bottomk(1, cpu) by (host)", &series, 1_000).unwrap());
        assert_eq!(bottom.iter().map(|(_, v)| *v).collect::<Vec<_>>(), [0.7, 0.1]);
        assert_eq!(vector(instant("count(cpu)", &series, 1_000).unwrap()), [(Labels::new(), 4.0)]);
        let q = vector(instant("quantile(0.5, cpu)", &series, 1_000).unwrap())[0].1;
        assert!((q - 0.45).abs() < 1e-12);
    }

    #[test]
    fn arithmetic_comparisons_and_bool() {
        let series = vec![
            (key("used", &[("host", "a")]), vec![(0, 30.0)]),
            (key("used", &[("host", "b")]), vec![(0, 90.0)]),
            (key("size", &[("host", "a")]), vec![(0, 100.0)]),
            (key("size", &[("host", "b")]), vec![(0, 100.0)]),
        ];
        let ratio = vector(instant("used / size * 100", &series, 0).unwrap());
        assert_eq!(ratio, [(labels(&[("host", "a")]), 30.0), (labels(&[("host", "b")]), 90.0)]);
        let filtered = vector(instant("used > 50", &series, 0).unwrap());
        assert_eq!(filtered, [(labels(&[("__name__", "used"), ("host", "b")]), 90.0)]);
        let flipped = vector(instant("50 < used", &series, 0).unwrap());
        assert_eq!(flipped, filtered, "the vector's value is kept whichever side it is on");
        let bools = vector(instant("used > bool 50", &series, 0).unwrap());
        assert_eq!(bools, [(labels(&[("host", "a")]), 0.0), (labels(&[("host", "b")]), 1.0)]);
        let on = vector(instant("used / on(host) size", &series, 0).unwrap());
        assert_eq!(on.len(), 2);
        assert!(matches!(instant("1 + 2 * 3", &series, 0).unwrap(), Answer::Scalar(0, 7.0)));
        assert!(matches!(instant("2 > bool 1", &series, 0).unwrap(), Answer::Scalar(0, 1.0)));
        let neg = vector(instant("-used", &series, 0).unwrap());
        assert_eq!(neg[0], (labels(&[("host", "a")]), -30.0));
    }

    #[test]
    fn math_functions() {
        let series = vec![(key("x", &[]), vec![(0, -2.5)])];
        let one = |q: &str| vector(instant(q, &series, 0).unwrap())[0].1;
        assert_eq!(one("abs(x)"), 2.5);
        assert_eq!(one("ceil(x)"), -2.0);
        assert_eq!(one("floor(x)"), -3.0);
        assert_eq!(one("round(x)"), -2.0, "half rounds up");
        assert_eq!(one("round(x, 2)"), -2.0);
        assert_eq!(one("clamp_min(x, 0)"), 0.0);
        assert_eq!(one("clamp_max(x, -3)"), -3.0);
        assert_eq!(one("clamp(x, -1, 1)"), -1.0);
        assert_eq!(one("vector(3)"), 3.0);
    }

    #[test]
    fn range_queries_evaluate_at_each_step() {
        let series = vec![(key("bytes_total", &[("host", "a")]), counter(0.0, 2.0, 0, 1_200))];
        let query = Query::parse("rate(bytes_total[1m])").unwrap();
        let data = read(&query, &series, 300_000, 900_000);
        let Answer::Matrix(matrix) = query.range(&data, 300_000, 900_000, 60_000).unwrap() else { panic!() };
        assert_eq!(matrix.len(), 1);
        assert_eq!(matrix[0].1.len(), 11);
        assert!(matrix[0].1.iter().all(|(_, v)| (v - 2.0).abs() < 1e-9), "{matrix:?}");
        let scalar = Query::parse("time()").unwrap();
        let Answer::Matrix(m) = scalar.range(&[], 0, 120_000, 60_000).unwrap() else { panic!() };
        assert_eq!(m, [(Labels::new(), vec![(0, 0.0), (60_000, 60.0), (120_000, 120.0)])]);
        let error = query.range(&data, 0, 11_001 * 60_000, 60_000).unwrap_err();
        assert!(matches!(&error, QueryError::BadData(m) if m.contains("11,000")), "{error}");
        assert!(matches!(Query::parse("x[5m]").unwrap().range(&[vec![]], 0, 1, 1), Err(QueryError::BadData(_))));
    }

    #[test]
    fn unsupported_functions_are_named() {
        for (text, name) in [
            ("label_replace(x, \"a\", \"b\", \"c\", \"d\")", "label_replace"),
            ("rate(x[5m:1m])", "subquery"),
            ("count_values(\"v\", x)", "count_values"),
        ] {
            let error = Query::parse(text).unwrap_err();
            assert!(matches!(&error, QueryError::BadData(m) if m.contains(name)), "{text}: {error}");
        }
        assert!(matches!(Query::parse("rate(x)"), Err(QueryError::BadData(_))));
        assert!(matches!(Query::parse("x{"), Err(QueryError::BadData(_))));
    }

    #[test]
    fn selectors_without_a_name_and_name_matchers() {
        let m = SeriesMatcher::parse(r#"{__name__=~"cpu_.*", host!="b"}"#).unwrap();
        assert_eq!(m.name, None);
        assert!(m.matches(&key("cpu_usage", &[("host", "a")])));
        assert!(!m.matches(&key("cpu_usage", &[("host", "b")])));
        assert!(!m.matches(&key("mem", &[("host", "a")])));
        assert!(SeriesMatcher::parse("rate(x[1m])").is_err());
    }

    #[test]
    fn duplicate_label_sets_in_a_range_result_are_an_execution_error() {
        let series = vec![
            (key("a_total", &[("host", "x")]), counter(0.0, 1.0, 0, 120)),
            (key("b_total", &[("host", "x")]), counter(0.0, 1.0, 0, 120)),
        ];
        let query = Query::parse(r#"rate({__name__=~".+_total"}[1m])"#).unwrap();
        let data = read(&query, &series, 60_000, 120_000);
        assert!(matches!(query.range(&data, 60_000, 120_000, 60_000), Err(QueryError::Execution(_))));
        let instant = Query::parse(r#"rate({__name__=~".+_total"}[1m])"#).unwrap();
        let data = read(&instant, &series, 120_000, 120_000);
        assert!(matches!(instant.instant(&data, 120_000), Err(QueryError::Execution(_))));
    }
}
