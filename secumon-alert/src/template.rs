//! Annotation templates, the part of Prometheus' alert templating that rules use:
//! `{{ $value }}`, `{{ $labels.NAME }}` (also `.Value`, `.Labels.NAME`), and the functions
//! `humanize`, `humanize1024`, `humanizePercentage`, `humanizeDuration` and `printf`,
//! called as `{{ humanize $value }}` or piped as `{{ $value | humanize }}`. Numbers are
//! formatted the way Go's `fmt` formats them (`%.4g` and friends), so a template copied from
//! a Prometheus rule reads the same here.
//!
//! [`check_template`] runs when a rule is loaded, so a misspelt function is refused with the
//! rule instead of showing up as raw text in someone's pager.

use std::collections::BTreeMap;

/// A value flowing through a template pipeline.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Number(f64),
    Text(String),
}

impl Value {
    fn number(&self) -> Result<f64, String> {
        match self {
            Value::Number(n) => Ok(*n),
            Value::Text(t) => t.trim().parse().map_err(|_| format!("{t:?} is not a number")),
        }
    }

    fn text(&self) -> String {
        match self {
            Value::Number(n) => format!("{n}"),
            Value::Text(t) => t.clone(),
        }
    }
}

/// One word of an action: what it evaluates to, or a function's name.
#[derive(Debug, Clone, PartialEq)]
enum Word {
    Value,
    Label(String),
    Literal(Value),
    Function(Function),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Function {
    Humanize,
    Humanize1024,
    HumanizePercentage,
    HumanizeDuration,
    Printf,
}

impl Function {
    fn named(name: &str) -> Option<Self> {
        Some(match name {
            "humanize" => Self::Humanize,
            "humanize1024" => Self::Humanize1024,
            "humanizePercentage" => Self::HumanizePercentage,
            "humanizeDuration" => Self::HumanizeDuration,
            "printf" => Self::Printf,
            _ => return None,
        })
    }

    fn call(self, args: &[Value]) -> Result<Value, String> {
        let one = || match args {
            [arg] => arg.number(),
            _ => Err(format!("{self:?} takes one argument, not {}", args.len())),
        };
        Ok(Value::Text(match self {
            Self::Humanize => humanize(one()?),
            Self::Humanize1024 => humanize_1024(one()?),
            Self::HumanizePercentage => format!("{}%", format_g(one()? * 100.0, 4)),
            Self::HumanizeDuration => humanize_duration(one()?),
            Self::Printf => match args.split_first() {
                Some((format, rest)) => printf(&format.text(), rest),
                None => return Err("printf needs a format".to_string()),
            },
        }))
    }
}

/// `{{ ... }}`'s content: stages separated by `|`, each a list of words; a later stage gets
/// the previous one's result as its last argument.
type Pipeline = Vec<Vec<Word>>;

/// Fills an annotation template for an alert with these labels and value. An action that
/// does not parse (only possible for templates never checked by [`check_template`]) is
/// left as written.
pub fn render_template(template: &str, labels: &BTreeMap<String, String>, value: f64) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let action = &rest[start + 2..start + end];
        match parse_action(action).and_then(|pipeline| evaluate(&pipeline, labels, value)) {
            Ok(filled) => out.push_str(&filled.text()),
            Err(_) => out.push_str(&rest[start..start + end + 2]),
        }
        rest = &rest[start + end + 2..];
    }
    out.push_str(rest);
    out
}

/// Whether every `{{ ... }}` of a template parses, and names only known functions.
pub fn check_template(template: &str) -> Result<(), String> {
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let end = rest[start..].find("}}").ok_or("`{{` without `}}`")?;
        let action = &rest[start + 2..start + end];
        parse_action(action).map_err(|e| format!("{{{{{action}}}}}: {e}"))?;
        rest = &rest[start + end + 2..];
    }
    Ok(())
}

fn parse_action(action: &str) -> Result<Pipeline, String> {
    // `{{- x -}}` trims surrounding space in Go; the words are what matter here.
    let action = action.trim().trim_start_matches("- ").trim_end_matches(" -").trim();
    let mut pipeline = Vec::new();
    for stage in split_outside_quotes(action, '|')? {
        let words: Vec<Word> = tokens(&stage)?.into_iter().map(word).collect::<Result<_, _>>()?;
        match words.first() {
            None => return Err("empty action".to_string()),
            Some(Word::Function(_)) => {}
            Some(_) if words.len() == 1 && pipeline.is_empty() => {}
            Some(_) => return Err(format!("{stage:?} is not a function call")),
        }
        pipeline.push(words);
    }
    Ok(pipeline)
}

fn evaluate(pipeline: &Pipeline, labels: &BTreeMap<String, String>, value: f64) -> Result<Value, String> {
    let mut previous: Option<Value> = None;
    for stage in pipeline {
        let resolve = |word: &Word| match word {
            Word::Value => Ok(Value::Number(value)),
            Word::Label(name) => Ok(Value::Text(labels.get(name).cloned().unwrap_or_default())),
            Word::Literal(literal) => Ok(literal.clone()),
            Word::Function(f) => Err(format!("{f:?} used as an argument")),
        };
        previous = Some(match stage.split_first() {
            Some((Word::Function(function), args)) => {
                let mut args: Vec<Value> = args.iter().map(resolve).collect::<Result<_, _>>()?;
                args.extend(previous.take());
                function.call(&args)?
            }
            Some((word, [])) => resolve(word)?,
            _ => return Err("not a function call".to_string()),
        });
    }
    previous.ok_or_else(|| "empty action".to_string())
}

fn word(token: Token) -> Result<Word, String> {
    let text = match token {
        Token::Quoted(text) => return Ok(Word::Literal(Value::Text(text))),
        Token::Bare(text) => text,
    };
    if text == "$value" || text == ".Value" {
        return Ok(Word::Value);
    }
    if let Some(name) = text.strip_prefix("$labels.").or_else(|| text.strip_prefix(".Labels.")) {
        return Ok(Word::Label(name.to_string()));
    }
    if let Some(function) = Function::named(&text) {
        return Ok(Word::Function(function));
    }
    match text.parse::<f64>() {
        Ok(number) => Ok(Word::Literal(Value::Number(number))),
        Err(_) => Err(format!("unknown function or value {text:?}")),
    }
}

enum Token {
    Bare(String),
    Quoted(String),
}

/// Splits on `separator` where it is not inside a quoted string.
fn split_outside_quotes(text: &str, separator: char) -> Result<Vec<String>, String> {
    let (mut parts, mut current, mut quote, mut escaped) = (Vec::new(), String::new(), None, false);
    for c in text.chars() {
        match quote {
            Some(q) => {
                current.push(c);
                if escaped {
                    escaped = false;
                } else if c == '\\' && q == '"' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
            }
            None if c == separator => parts.push(std::mem::take(&mut current)),
            None => {
                if c == '"' || c == '`' {
                    quote = Some(c);
                }
                current.push(c);
            }
        }
    }
    if quote.is_some() {
        return Err("unterminated string".to_string());
    }
    parts.push(current);
    Ok(parts)
}

/// Words separated by spaces; `"..."` (with `\"`, `\\`, `\n`, `\t`) and `` `...` `` strings.
fn tokens(stage: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut chars = stage.trim().chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        if c == '"' || c == '`' {
            chars.next();
            let mut text = String::new();
            loop {
                match chars.next() {
                    None => return Err("unterminated string".to_string()),
                    Some(end) if end == c => break,
                    Some('\\') if c == '"' => match chars.next() {
                        Some('n') => text.push('\n'),
                        Some('t') => text.push('\t'),
                        Some(other) => text.push(other),
                        None => return Err("unterminated string".to_string()),
                    },
                    Some(other) => text.push(other),
                }
            }
            out.push(Token::Quoted(text));
            continue;
        }
        let mut text = String::new();
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() {
                break;
            }
            text.push(c);
            chars.next();
        }
        out.push(Token::Bare(text));
    }
    Ok(out)
}

/// Go's `%.{precision}g`: `precision` significant digits, trailing zeros dropped, an exponent
/// (`1.5e+06`) when it is below -4 or at least the precision.
fn format_g(value: f64, precision: usize) -> String {
    if !value.is_finite() {
        return go_special(value);
    }
    if value == 0.0 {
        return "0".to_string();
    }
    let precision = precision.max(1);
    let scientific = format!("{:.*e}", precision - 1, value);
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    if exponent < -4 || exponent >= precision as i32 {
        let sign = if exponent < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", trim_fraction(mantissa), exponent.abs())
    } else {
        let decimals = (precision as i32 - 1 - exponent).max(0) as usize;
        trim_fraction(&format!("{value:.decimals$}")).to_string()
    }
}

fn trim_fraction(number: &str) -> &str {
    if number.contains('.') { number.trim_end_matches('0').trim_end_matches('.') } else { number }
}

fn go_special(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_string()
    } else if value > 0.0 {
        "+Inf".to_string()
    } else {
        "-Inf".to_string()
    }
}

/// Prometheus' `humanize`: SI prefixes, k/M/G/... for large values, m/u/n/... for small.
fn humanize(mut value: f64) -> String {
    if value == 0.0 || !value.is_finite() {
        return format_g(value, 4);
    }
    let mut prefix = "";
    if value.abs() >= 1.0 {
        for p in ["k", "M", "G", "T", "P", "E", "Z", "Y"] {
            if value.abs() < 1000.0 {
                break;
            }
            prefix = p;
            value /= 1000.0;
        }
    } else {
        for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
            if value.abs() >= 1.0 {
                break;
            }
            prefix = p;
            value *= 1000.0;
        }
    }
    format!("{}{prefix}", format_g(value, 4))
}

/// Prometheus' `humanize1024`: binary prefixes Ki/Mi/Gi/...
fn humanize_1024(mut value: f64) -> String {
    if value.abs() <= 1.0 || !value.is_finite() {
        return format_g(value, 4);
    }
    let mut prefix = "";
    for p in ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"] {
        if value.abs() < 1024.0 {
            break;
        }
        prefix = p;
        value /= 1024.0;
    }
    format!("{}{prefix}", format_g(value, 4))
}

/// Prometheus' `humanizeDuration` of seconds: `1d 2h 3m 4s`, `1.5s`, `250ms`.
fn humanize_duration(mut seconds: f64) -> String {
    if !seconds.is_finite() {
        return format_g(seconds, 4);
    }
    if seconds == 0.0 {
        return "0s".to_string();
    }
    if seconds.abs() >= 1.0 {
        let sign = if seconds < 0.0 { "-" } else { "" };
        let whole = seconds.abs() as i64;
        let (s, m, h, d) = (whole % 60, whole / 60 % 60, whole / 3_600 % 24, whole / 86_400);
        return match (d, h, m) {
            (0, 0, 0) => format!("{sign}{}s", format_g(seconds.abs(), 4)),
            (0, 0, _) => format!("{sign}{m}m {s}s"),
            (0, _, _) => format!("{sign}{h}h {m}m {s}s"),
            _ => format!("{sign}{d}d {h}h {m}m {s}s"),
        };
    }
    let mut prefix = "";
    for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if seconds.abs() >= 1.0 {
            break;
        }
        prefix = p;
        seconds *= 1000.0;
    }
    format!("{}{prefix}s", format_g(seconds, 4))
}

/// Go's `printf` for the verbs annotations use: `%d`, `%f`, `%e`, `%g`, `%s`, `%v`, `%q`,
/// `%%`, with flags (`-+ 0`), width and precision. A verb that does not fit its argument
/// prints `%!verb(...)` as Go does, rather than failing the whole text.
fn printf(format: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut args = args.iter();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let (mut left, mut plus, mut zero, mut space) = (false, false, false, false);
        while let Some(&flag) = chars.peek() {
            match flag {
                '-' => left = true,
                '+' => plus = true,
                '0' => zero = true,
                ' ' => space = true,
                '#' => {}
                _ => break,
            }
            chars.next();
        }
        let mut width = String::new();
        while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            width.push(d);
            chars.next();
        }
        let mut precision: Option<usize> = None;
        if chars.peek() == Some(&'.') {
            chars.next();
            let mut digits = String::new();
            while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                digits.push(d);
                chars.next();
            }
            precision = Some(digits.parse().unwrap_or(0));
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.next() else {
            out.push_str(&format!("%!{verb}(MISSING)"));
            continue;
        };
        let number = arg.number();
        let mut text = match (verb, &number) {
            ('d', Ok(n)) => format!("{}", n.trunc() as i64),
            ('f' | 'F', Ok(n)) => {
                if n.is_finite() {
                    format!("{n:.*}", precision.unwrap_or(6))
                } else {
                    go_special(*n)
                }
            }
            ('e' | 'E', Ok(n)) => {
                let formatted = if n.is_finite() { go_exponent(*n, precision.unwrap_or(6)) } else { go_special(*n) };
                if verb == 'E' { formatted.to_uppercase() } else { formatted }
            }
            ('g' | 'G', Ok(n)) => match precision {
                Some(p) => format_g(*n, p),
                None => shortest_g(*n),
            },
            ('s' | 'v', _) => match arg {
                Value::Number(n) => shortest_g(*n),
                Value::Text(t) => t.clone(),
            },
            ('q', _) => format!("{:?}", arg.text()),
            (_, _) => format!("%!{verb}({})", arg.text()),
        };
        if let (Some(p), 's' | 'q') = (precision, verb) {
            text = text.chars().take(p).collect();
        }
        let numeric = matches!(verb, 'd' | 'f' | 'F' | 'e' | 'E' | 'g' | 'G') && number.is_ok();
        if numeric && !text.starts_with('-') && (plus || space) {
            text.insert(0, if plus { '+' } else { ' ' });
        }
        let width: usize = width.parse().unwrap_or(0);
        let len = text.chars().count();
        if len < width {
            let pad = width - len;
            if left {
                text.push_str(&" ".repeat(pad));
            } else if zero && numeric {
                let sign = if text.starts_with(['-', '+', ' ']) { 1 } else { 0 };
                text.insert_str(sign, &"0".repeat(pad));
            } else {
                text.insert_str(0, &" ".repeat(pad));
            }
        }
        out.push_str(&text);
    }
    for extra in args {
        out.push_str(&format!("%!(EXTRA {})", extra.text()));
    }
    out
}

/// Go's `%e`: `1.234560e+06`.
fn go_exponent(value: f64, precision: usize) -> String {
    let formatted = format!("{value:.precision$e}");
    let (mantissa, exponent) = formatted.split_once('e').unwrap_or((&formatted, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    format!("{mantissa}e{}{:02}", if exponent < 0 { '-' } else { '+' }, exponent.abs())
}

/// Go's `%v`/`%g` of a float: the shortest digits that read back the same, with an exponent
/// when it is below -4 or 21 and above.
fn shortest_g(value: f64) -> String {
    if !value.is_finite() {
        return go_special(value);
    }
    let exponent = if value == 0.0 { 0 } else { value.abs().log10().floor() as i32 };
    if (-4..21).contains(&exponent) {
        format!("{value}")
    } else {
        let formatted = format!("{value:e}");
        let (mantissa, exponent) = formatted.split_once('e').unwrap_or((&formatted, "0"));
        let exponent: i32 = exponent.parse().unwrap_or(0);
        format!("{mantissa}e{}{:02}", if exponent < 0 { '-' } else { '+' }, exponent.abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(template: &str, value: f64) -> String {
        let labels = BTreeMap::from([("host".to_string(), "web-1".to_string())]);
        render_template(template, &labels, value)
    }

    #[test]
    fn labels_and_value_as_before() {
        assert_eq!(render("{{ $labels.host }} at {{$value}} {{ $labels.nope }}", 0.95), "web-1 at 0.95 ");
        assert_eq!(render("{{ .Labels.host }} {{ .Value }}", 2.0), "web-1 2");
        assert_eq!(render("unclosed {{ $value", 1.0), "unclosed {{ $value");
    }

    #[test]
    fn humanize_uses_si_prefixes_both_ways() {
        // Expected values as Prometheus' template tests give them.
        assert_eq!(render("{{ humanize $value }}", 1_234_567.0), "1.235M");
        assert_eq!(render("{{ $value | humanize }}", 1_234_567.0), "1.235M");
        assert_eq!(render("{{ humanize $value }}", 0.0), "0");
        assert_eq!(render("{{ humanize $value }}", 0.1234), "123.4m");
        assert_eq!(render("{{ humanize $value }}", 0.000_012_3), "12.3u");
        assert_eq!(render("{{ humanize $value }}", 12.5), "12.5");
        assert_eq!(render("{{ humanize $value }}", -2_500.0), "-2.5k");
        assert_eq!(render("{{ humanize $value }}", 1e30), "1e+06Y");
        assert_eq!(render("{{ humanize1024 $value }}", 1_048_576.0), "1Mi");
    }

    #[test]
    fn humanize_percentage_and_duration() {
        assert_eq!(render("{{ $value | humanizePercentage }}", 0.246_078_579_862_738_96), "24.61%");
        assert_eq!(render("{{ humanizePercentage $value }}", 1.0), "100%");
        assert_eq!(render("{{ humanizeDuration $value }}", 3_723.0), "1h 2m 3s");
        assert_eq!(render("{{ humanizeDuration $value }}", 93_784.0), "1d 2h 3m 4s");
        assert_eq!(render("{{ humanizeDuration $value }}", 61.0), "1m 1s");
        assert_eq!(render("{{ humanizeDuration $value }}", 1.5), "1.5s");
        assert_eq!(render("{{ humanizeDuration $value }}", 0.25), "250ms");
        assert_eq!(render("{{ humanizeDuration $value }}", 0.0), "0s");
        assert_eq!(render("{{ humanizeDuration $value }}", -90.0), "-1m 30s");
    }

    #[test]
    fn printf_verbs_and_pipes() {
        assert_eq!(render(r#"{{ printf "%.2f" $value }}"#, 0.246_078), "0.25");
        assert_eq!(render(r#"{{ $value | printf "%.1f%%" }}"#, 93.27), "93.3%");
        assert_eq!(render(r#"{{ printf "%d days" $value }}"#, 13.9), "13 days");
        assert_eq!(render(r#"{{ printf "%s is at %5.1f" $labels.host $value }}"#, 7.25), "web-1 is at   7.2");
        assert_eq!(render(r#"{{ printf "%-6s|%03d" "ab" 7 }}"#, 0.0), "ab    |007");
        assert_eq!(render(r#"{{ printf "%v %g %e" $value $value $value }}"#, 1_500.0), "1500 1500 1.500000e+03");
        assert_eq!(render(r#"{{ $value | printf "%.3f" | printf "[%s]" }}"#, 2.0), "[2.000]");
        assert_eq!(render(r#"{{ printf "a|b %s" "x" }}"#, 0.0), "a|b x", "a bar inside quotes is text");
        assert_eq!(render(r#"{{ printf "%d" }}"#, 0.0), "%!d(MISSING)");
    }

    #[test]
    fn go_g_formatting() {
        assert_eq!(format_g(1_234_567.0, 4), "1.235e+06");
        assert_eq!(format_g(999.95, 4), "1000");
        assert_eq!(format_g(0.000_012_345, 4), "1.234e-05");
        assert_eq!(format_g(100.0, 4), "100");
        assert_eq!(shortest_g(1e21), "1e+21");
    }

    #[test]
    fn unknown_functions_are_refused_when_checked_and_left_as_written_when_rendered() {
        assert!(check_template("{{ $value | humanize }} {{ printf \"%.1f\" $value }}").is_ok());
        let error = check_template("CPU {{ humanise $value }}").unwrap_err();
        assert!(error.contains("humanise"), "{error}");
        assert!(check_template("{{ printf \"%d }}").is_err(), "unterminated string");
        assert!(check_template("{{ $value $value }}").is_err());
        assert_eq!(render("CPU {{ humanise $value }}", 1.0), "CPU {{ humanise $value }}");
    }
}
