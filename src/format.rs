//! Docker-style output: human sizes and durations, timestamps, ID truncation, the Go-template-ish
//! `--format` language, and the tab-aligned tables docker prints.
//!
//! The row data of every listing is a JSON object (`serde_json::Value`) whose keys are the
//! template fields (`{{.ID}}`, `{{.Repository}}`, ...). A `--format` string is either:
//! - empty or `table`: the command's default table;
//! - `table TEMPLATE`: a table with a header line (the template run on the header names);
//! - `json`: one `{{json .}}` line per row;
//! - anything else: the template, one line per row, no header.
//!
//! Tables go through [`tabwrite`], a port of Go's `text/tabwriter` with the settings docker's
//! CLI uses (minimum width 10, padding 3, spaces), so columns line up exactly as docker's do.
//! The template language is the subset of Go's `text/template` people use with docker: field
//! paths (`.A.B`), pipelines (`|`), string/number literals and the functions `json`, `upper`,
//! `lower`, `title`, `truncate`, `join`, `split`, `pad` and `printf` (`%s %v %d %q %%` with
//! flags and width).

use std::fmt;
use std::fmt::Write as _;

use serde_json::{Map, Value};

/// `1000`-based byte size with `precision` significant digits, like go-units'
/// `HumanSizeWithPrecision` (Go's `%.*g`): `4.27MB`, `512B`, `1e+03kB`.
pub fn human_size_precision(bytes: u64, precision: usize) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut size = bytes as f64;
    let mut i = 0;
    while size >= 1000.0 && i < UNITS.len() - 1 {
        size /= 1000.0;
        i += 1;
    }
    format!("{}{}", go_format_g(size, precision), UNITS[i])
}

/// go-units' `HumanSize`: [`human_size_precision`] with 4 significant digits (what `system df`
/// and `system prune` print).
pub fn human_size(bytes: u64) -> String {
    human_size_precision(bytes, 4)
}

/// Go's `fmt.Sprintf("%.*g", precision, x)` for a finite non-negative `x`.
fn go_format_g(x: f64, precision: usize) -> String {
    let p = precision.max(1);
    if x == 0.0 {
        return "0".to_string();
    }
    // Round to `p` significant digits through Rust's `{:e}`, which gives the decimal exponent
    // after rounding (so 999.5 at p=3 becomes 1.00e3, as in Go).
    let sci = format!("{:.*e}", p - 1, x);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if exp < -4 || exp >= p as i32 {
        let m = trim_fraction_zeros(mantissa);
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{m}e{sign}{:02}", exp.unsigned_abs())
    } else {
        let decimals = (p as i32 - 1 - exp).max(0) as usize;
        trim_fraction_zeros(&format!("{x:.decimals$}")).to_string()
    }
}

fn trim_fraction_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// go-units' `HumanDuration`: "Less than a second", "About a minute", "2 hours", "3 weeks"...
pub fn human_duration(secs: i64) -> String {
    let seconds = secs;
    if seconds < 1 {
        return "Less than a second".to_string();
    }
    if seconds == 1 {
        return "1 second".to_string();
    }
    if seconds < 60 {
        return format!("{seconds} seconds");
    }
    let minutes = seconds / 60;
    if minutes == 1 {
        return "About a minute".to_string();
    }
    if minutes < 60 {
        return format!("{minutes} minutes");
    }
    // Go: int(d.Hours() + 0.5)
    let hours = (seconds as f64 / 3600.0 + 0.5) as i64;
    if hours == 1 {
        return "About an hour".to_string();
    }
    if hours < 48 {
        return format!("{hours} hours");
    }
    if hours < 24 * 7 * 2 {
        return format!("{} days", hours / 24);
    }
    if hours < 24 * 30 * 2 {
        return format!("{} weeks", hours / 24 / 7);
    }
    if hours < 24 * 365 * 2 {
        return format!("{} months", hours / 24 / 30);
    }
    format!("{} years", seconds / 3600 / 24 / 365)
}

/// A point in time: seconds and nanoseconds since the Unix epoch (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp {
    /// Whole seconds since 1970-01-01T00:00:00Z (negative before).
    pub secs: i64,
    /// Nanoseconds within the second.
    pub nanos: u32,
}

impl Timestamp {
    /// The current time.
    pub fn now() -> Timestamp {
        match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => Timestamp {
                secs: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                nanos: d.subsec_nanos(),
            },
            Err(e) => {
                let d = e.duration();
                Timestamp {
                    secs: -i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                    nanos: 0,
                }
            }
        }
    }

    /// Parses an RFC 3339 timestamp (`2024-01-02T03:04:05.123Z`, `...+02:00`). `None` if it
    /// is not one.
    pub fn parse_rfc3339(s: &str) -> Option<Timestamp> {
        let b = s.as_bytes();
        if b.len() < 20 {
            return None;
        }
        let num = |r: std::ops::Range<usize>| -> Option<i64> {
            let part = s.get(r)?;
            if part.bytes().all(|c| c.is_ascii_digit()) {
                part.parse().ok()
            } else {
                None
            }
        };
        let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (hour, min, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
            return None;
        }
        if b[13] != b':' || b[16] != b':' {
            return None;
        }
        if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 {
            return None;
        }
        if sec > 60 {
            return None;
        }
        let mut i = 19;
        let mut nanos: u32 = 0;
        if b.get(i) == Some(&b'.') {
            i += 1;
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            if i == start {
                return None;
            }
            let frac = &s[start..i];
            let digits: String = frac.chars().take(9).collect();
            let scale = 10u32.pow(9 - digits.len() as u32);
            nanos = digits.parse::<u32>().ok()? * scale;
        }
        let offset = match s.get(i..)? {
            "Z" | "z" => 0,
            rest if rest.len() == 6 && (rest.starts_with('+') || rest.starts_with('-')) => {
                let oh = num(i + 1..i + 3)?;
                let om = num(i + 4..i + 6)?;
                if b[i + 3] != b':' {
                    return None;
                }
                let off = oh * 3600 + om * 60;
                if rest.starts_with('-') { -off } else { off }
            }
            _ => return None,
        };
        let days = days_from_civil(year, month, day);
        let secs = days * 86400 + hour * 3600 + min * 60 + sec - offset;
        Some(Timestamp { secs, nanos })
    }

    /// Go's `time.Time.String()` in UTC, as docker prints `CreatedAt`:
    /// `2024-01-02 03:04:05 +0000 UTC`.
    pub fn to_go_string(self) -> String {
        let (y, m, d, hh, mm, ss) = self.civil();
        format!("{y:04}-{m:02}-{d:02} {hh:02}:{mm:02}:{ss:02} +0000 UTC")
    }

    /// RFC 3339 in UTC, seconds precision: `2024-01-02T03:04:05Z`.
    pub fn to_rfc3339(self) -> String {
        let (y, m, d, hh, mm, ss) = self.civil();
        format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
    }

    fn civil(self) -> (i64, i64, i64, i64, i64, i64) {
        let days = self.secs.div_euclid(86400);
        let rem = self.secs.rem_euclid(86400);
        let (y, m, d) = civil_from_days(days);
        (y, m, d, rem / 3600, rem % 3600 / 60, rem % 60)
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `2 hours ago` for an RFC 3339 creation time, `N/A` when there is none (or it can't be read).
pub fn created_since(created: Option<&str>, now: Timestamp) -> String {
    match created.and_then(Timestamp::parse_rfc3339) {
        Some(t) => format!("{} ago", human_duration(now.secs.saturating_sub(t.secs))),
        None => "N/A".to_string(),
    }
}

/// docker's `CreatedAt` column (`2024-01-02 03:04:05 +0000 UTC`), empty when unknown.
pub fn created_at(created: Option<&str>) -> String {
    created
        .and_then(Timestamp::parse_rfc3339)
        .map(Timestamp::to_go_string)
        .unwrap_or_default()
}

/// docker's `stringid.TruncateID`: drops an `algorithm:` prefix and keeps 12 characters.
pub fn truncate_id(id: &str) -> String {
    let hex = id.split_once(':').map_or(id, |(_, h)| h);
    hex.chars().take(12).collect()
}

/// docker's `Ellipsis`: at most `max` characters, the last one `…` when cut.
pub fn ellipsis(s: &str, max: usize) -> String {
    let n = s.chars().count();
    if n <= max {
        return s.to_string();
    }
    if max <= 3 {
        return s.chars().take(max).collect();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}

/// A `--format` template could not be parsed or run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError(pub String);

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "template: {}", self.0)
    }
}

impl std::error::Error for TemplateError {}

/// One argument or command of a pipeline.
#[derive(Debug, Clone, PartialEq)]
enum Operand {
    /// `.` or `.A.B`: a path into the row (empty = the row itself).
    Field(Vec<String>),
    /// A string literal.
    Str(String),
    /// A number literal.
    Num(i64),
    /// A parenthesised pipeline.
    Pipe(Pipeline),
}

/// One stage of a pipeline: a function with arguments, or a lone operand.
#[derive(Debug, Clone, PartialEq)]
enum Stage {
    Value(Operand),
    Call(String, Vec<Operand>),
}

type Pipeline = Vec<Stage>;

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Text(String),
    Action(Pipeline),
}

/// A parsed Go-template-ish format (see the module docs for the supported subset).
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    nodes: Vec<Node>,
}

const FUNCTIONS: [&str; 9] = [
    "json", "upper", "lower", "title", "truncate", "join", "split", "pad", "printf",
];

impl Template {
    /// Parses a template. `\t` and `\n` escapes in the text become tab and newline, as docker
    /// does before parsing.
    ///
    /// # Errors
    /// An unclosed action, an unknown function or a malformed expression.
    pub fn parse(src: &str) -> Result<Template, TemplateError> {
        let src = src.replace("\\t", "\t").replace("\\n", "\n");
        let mut nodes = Vec::new();
        let mut rest = src.as_str();
        let mut trim_next_text = false;
        while let Some(open) = rest.find("{{") {
            let mut text = &rest[..open];
            if trim_next_text {
                text = text.trim_start();
            }
            let after = &rest[open + 2..];
            let (trim_left, after) = match after.strip_prefix("- ") {
                Some(a) => (true, a),
                None => (false, after),
            };
            if trim_left {
                text = text.trim_end();
            }
            if !text.is_empty() {
                nodes.push(Node::Text(text.to_string()));
            }
            let close = find_close(after)
                .ok_or_else(|| TemplateError(":1: unclosed action".to_string()))?;
            let mut inner = &after[..close];
            trim_next_text = false;
            if let Some(i) = inner.strip_suffix(" -") {
                inner = i;
                trim_next_text = true;
            }
            let inner = inner.trim();
            if !inner.starts_with("/*") {
                let tokens = tokenize(inner)?;
                let mut pos = 0;
                let pipe = parse_pipeline(&tokens, &mut pos)?;
                if pos != tokens.len() {
                    return Err(TemplateError(format!(
                        ":1: unexpected {:?} in command",
                        tokens[pos]
                    )));
                }
                nodes.push(Node::Action(pipe));
            }
            rest = &after[close + 2..];
        }
        let text = if trim_next_text {
            rest.trim_start()
        } else {
            rest
        };
        if !text.is_empty() {
            nodes.push(Node::Text(text.to_string()));
        }
        Ok(Template { nodes })
    }

    /// Runs the template on one row.
    ///
    /// # Errors
    /// A field the row doesn't have, or a function given the wrong arguments.
    pub fn render(&self, data: &Value) -> Result<String, TemplateError> {
        self.run(data, false)
    }

    /// Runs the template on a header row (the column titles): missing fields give an empty
    /// string and the functions pass their first argument through, as docker's header
    /// functions do.
    pub fn render_header(&self, header: &Value) -> String {
        self.run(header, true).unwrap_or_default()
    }

    fn run(&self, data: &Value, header: bool) -> Result<String, TemplateError> {
        let mut out = String::new();
        for node in &self.nodes {
            match node {
                Node::Text(t) => out.push_str(t),
                Node::Action(p) => {
                    let v = eval_pipeline(p, data, header)?;
                    out.push_str(&go_print(&v));
                }
            }
        }
        Ok(out)
    }
}

/// The end of an action: the first `}}` outside a string literal.
fn find_close(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut quote: Option<u8> = None;
    while i < b.len() {
        match quote {
            Some(q) => {
                if b[i] == b'\\' && q == b'"' {
                    i += 1;
                } else if b[i] == q {
                    quote = None;
                }
            }
            None => {
                if b[i] == b'"' || b[i] == b'`' {
                    quote = Some(b[i]);
                } else if b[i] == b'}' && b.get(i + 1) == Some(&b'}') {
                    return Some(i);
                }
            }
        }
        i += 1;
    }
    None
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Field(Vec<String>),
    Ident(String),
    Str(String),
    Num(i64),
    Pipe,
    Open,
    Close,
}

fn tokenize(s: &str) -> Result<Vec<Token>, TemplateError> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let word_char = |c: char| c.is_alphanumeric() || c == '_';
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '|' => {
                out.push(Token::Pipe);
                i += 1;
            }
            '(' => {
                out.push(Token::Open);
                i += 1;
            }
            ')' => {
                out.push(Token::Close);
                i += 1;
            }
            '.' => {
                let mut path = Vec::new();
                i += 1;
                loop {
                    let start = i;
                    while i < chars.len() && word_char(chars[i]) {
                        i += 1;
                    }
                    if i > start {
                        path.push(chars[start..i].iter().collect());
                    }
                    if i < chars.len() && chars[i] == '.' && i > start {
                        i += 1;
                        continue;
                    }
                    break;
                }
                out.push(Token::Field(path));
            }
            '"' => {
                let mut lit = String::new();
                i += 1;
                loop {
                    let Some(&c) = chars.get(i) else {
                        return Err(TemplateError(":1: unterminated quoted string".into()));
                    };
                    i += 1;
                    match c {
                        '"' => break,
                        '\\' => {
                            let e = chars.get(i).copied().unwrap_or('\\');
                            i += 1;
                            lit.push(match e {
                                'n' => '\n',
                                't' => '\t',
                                other => other,
                            });
                        }
                        other => lit.push(other),
                    }
                }
                out.push(Token::Str(lit));
            }
            '`' => {
                let start = i + 1;
                let end = chars[start..]
                    .iter()
                    .position(|&c| c == '`')
                    .ok_or_else(|| TemplateError(":1: unterminated raw quoted string".into()))?;
                out.push(Token::Str(chars[start..start + end].iter().collect()));
                i = start + end + 1;
            }
            c if c.is_ascii_digit() || c == '-' => {
                let start = i;
                i += 1;
                while i < chars.len() && chars[i].is_ascii_digit() {
                    i += 1;
                }
                let text: String = chars[start..i].iter().collect();
                let n = text
                    .parse()
                    .map_err(|_| TemplateError(format!(":1: bad number syntax: {text:?}")))?;
                out.push(Token::Num(n));
            }
            c if word_char(c) => {
                let start = i;
                while i < chars.len() && word_char(chars[i]) {
                    i += 1;
                }
                out.push(Token::Ident(chars[start..i].iter().collect()));
            }
            other => {
                return Err(TemplateError(format!(
                    ":1: unexpected {other:?} in command"
                )));
            }
        }
    }
    Ok(out)
}

fn parse_pipeline(tokens: &[Token], pos: &mut usize) -> Result<Pipeline, TemplateError> {
    let mut stages = Vec::new();
    loop {
        let stage = match tokens.get(*pos) {
            Some(Token::Ident(name)) => {
                if !FUNCTIONS.contains(&name.as_str()) {
                    return Err(TemplateError(format!(":1: function {name:?} not defined")));
                }
                *pos += 1;
                let mut args = Vec::new();
                while let Some(t) = tokens.get(*pos) {
                    if matches!(t, Token::Pipe | Token::Close) {
                        break;
                    }
                    args.push(parse_operand(tokens, pos)?);
                }
                Stage::Call(name.clone(), args)
            }
            Some(_) => {
                let op = parse_operand(tokens, pos)?;
                if let Some(t) = tokens.get(*pos)
                    && !matches!(t, Token::Pipe | Token::Close)
                {
                    return Err(TemplateError(format!(":1: unexpected {t:?} in operand")));
                }
                Stage::Value(op)
            }
            None => return Err(TemplateError(":1: missing value for command".into())),
        };
        if !stages.is_empty() && matches!(stage, Stage::Value(_)) {
            return Err(TemplateError(
                ":1: non executable command in pipeline stage".into(),
            ));
        }
        stages.push(stage);
        if tokens.get(*pos) == Some(&Token::Pipe) {
            *pos += 1;
        } else {
            return Ok(stages);
        }
    }
}

fn parse_operand(tokens: &[Token], pos: &mut usize) -> Result<Operand, TemplateError> {
    let t = tokens
        .get(*pos)
        .ok_or_else(|| TemplateError(":1: missing operand".into()))?;
    *pos += 1;
    match t {
        Token::Field(p) => Ok(Operand::Field(p.clone())),
        Token::Str(s) => Ok(Operand::Str(s.clone())),
        Token::Num(n) => Ok(Operand::Num(*n)),
        Token::Open => {
            let p = parse_pipeline(tokens, pos)?;
            if tokens.get(*pos) != Some(&Token::Close) {
                return Err(TemplateError(":1: unclosed left paren".into()));
            }
            *pos += 1;
            Ok(Operand::Pipe(p))
        }
        Token::Ident(name) => Err(TemplateError(format!(
            ":1: function {name:?} needs parentheses as an argument"
        ))),
        Token::Pipe | Token::Close => Err(TemplateError(":1: missing value for command".into())),
    }
}

fn eval_operand(op: &Operand, data: &Value, header: bool) -> Result<Value, TemplateError> {
    match op {
        Operand::Str(s) => Ok(Value::String(s.clone())),
        Operand::Num(n) => Ok(Value::from(*n)),
        Operand::Pipe(p) => eval_pipeline(p, data, header),
        Operand::Field(path) => {
            let mut cur = data;
            for (i, name) in path.iter().enumerate() {
                match cur.get(name.as_str()) {
                    Some(v) => cur = v,
                    None if header => return Ok(Value::String(String::new())),
                    None if matches!(cur, Value::Object(_)) && i > 0 => {
                        // A nested map without the key: Go prints "<no value>".
                        return Ok(Value::Null);
                    }
                    None => {
                        return Err(TemplateError(format!(
                            ":1: executing \"\" at <.{}>: can't evaluate field {name}",
                            path.join(".")
                        )));
                    }
                }
            }
            Ok(cur.clone())
        }
    }
}

fn eval_pipeline(p: &Pipeline, data: &Value, header: bool) -> Result<Value, TemplateError> {
    let mut prev: Option<Value> = None;
    for stage in p {
        prev = Some(match stage {
            Stage::Value(op) => eval_operand(op, data, header)?,
            Stage::Call(name, args) => {
                let mut vals = args
                    .iter()
                    .map(|a| eval_operand(a, data, header))
                    .collect::<Result<Vec<_>, _>>()?;
                if let Some(v) = prev.take() {
                    vals.push(v);
                }
                call(name, &vals, header)?
            }
        });
    }
    Ok(prev.unwrap_or(Value::Null))
}

fn call(name: &str, args: &[Value], header: bool) -> Result<Value, TemplateError> {
    let arity = |n: usize| -> Result<(), TemplateError> {
        if args.len() == n {
            Ok(())
        } else {
            Err(TemplateError(format!(
                ":1: wrong number of args for {name}: want {n} got {}",
                args.len()
            )))
        }
    };
    if header && name != "printf" {
        // docker's HeaderFunctions return the header text unchanged.
        return Ok(args.first().cloned().unwrap_or(Value::Null));
    }
    let s = |v: &Value| go_print(v);
    Ok(match name {
        "json" => {
            arity(1)?;
            Value::String(go_json(&args[0]))
        }
        "upper" => {
            arity(1)?;
            Value::String(s(&args[0]).to_uppercase())
        }
        "lower" => {
            arity(1)?;
            Value::String(s(&args[0]).to_lowercase())
        }
        "title" => {
            arity(1)?;
            Value::String(title_case(&s(&args[0])))
        }
        "truncate" => {
            arity(2)?;
            let n = int_arg(&args[1])?;
            Value::String(s(&args[0]).chars().take(n).collect())
        }
        "join" => {
            arity(2)?;
            let sep = s(&args[1]);
            match &args[0] {
                Value::Array(items) => {
                    Value::String(items.iter().map(go_print).collect::<Vec<_>>().join(&sep))
                }
                other => Value::String(s(other)),
            }
        }
        "split" => {
            arity(2)?;
            let sep = s(&args[1]);
            Value::Array(
                s(&args[0])
                    .split(sep.as_str())
                    .map(|p| Value::String(p.to_string()))
                    .collect(),
            )
        }
        "pad" => {
            arity(3)?;
            let (before, after) = (int_arg(&args[1])?, int_arg(&args[2])?);
            Value::String(format!(
                "{}{}{}",
                " ".repeat(before),
                s(&args[0]),
                " ".repeat(after)
            ))
        }
        "printf" => {
            let Some((fmt, rest)) = args.split_first() else {
                return Err(TemplateError(
                    ":1: wrong number of args for printf: want at least 1 got 0".into(),
                ));
            };
            Value::String(go_printf(&s(fmt), rest))
        }
        other => return Err(TemplateError(format!(":1: function {other:?} not defined"))),
    })
}

fn int_arg(v: &Value) -> Result<usize, TemplateError> {
    v.as_u64()
        .and_then(|n| usize::try_from(n).ok())
        .or_else(|| go_print(v).parse().ok())
        .ok_or_else(|| TemplateError(format!(":1: expected an integer, got {}", go_print(v))))
}

fn title_case(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut at_start = true;
    for c in s.chars() {
        if at_start && c.is_alphanumeric() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        at_start = !c.is_alphanumeric();
    }
    out
}

/// A small `fmt.Sprintf`: verbs `%s %v %d %q %%`, flags `-` and `0`, and a width.
fn go_printf(fmt: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut args = args.iter();
    let mut chars = fmt.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut left = false;
        let mut zero = false;
        while let Some(&f) = chars.peek() {
            match f {
                '-' => left = true,
                '0' => zero = true,
                _ => break,
            }
            chars.next();
        }
        let mut width = 0usize;
        while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
            width = width.saturating_mul(10).saturating_add(d as usize);
            chars.next();
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
            let _ = write!(out, "%!{verb}(MISSING)");
            continue;
        };
        let text = match verb {
            'q' => go_json(&Value::String(go_print(arg))),
            'd' => match arg {
                Value::Number(n) => n.to_string(),
                other => format!("%!d({})", go_print(other)),
            },
            _ => go_print(arg),
        };
        let pad = width.saturating_sub(text.chars().count());
        if left {
            out.push_str(&text);
            out.push_str(&" ".repeat(pad));
        } else {
            let fill = if zero { "0" } else { " " };
            out.push_str(&fill.repeat(pad));
            out.push_str(&text);
        }
    }
    out
}

/// How Go's template engine prints a value: strings raw, `[a b]` for lists, `map[k:v]` for maps,
/// `<no value>` for nothing.
pub fn go_print(v: &Value) -> String {
    match v {
        Value::Null => "<no value>".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(go_print_nested).collect();
            format!("[{}]", inner.join(" "))
        }
        Value::Object(m) => {
            let inner: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{k}:{}", go_print_nested(v)))
                .collect();
            format!("map[{}]", inner.join(" "))
        }
    }
}

fn go_print_nested(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".to_string(),
        other => go_print(other),
    }
}

/// Go's `json.Marshal` of a value: compact, with `<`, `>`, `&`, U+2028 and U+2029 escaped.
pub fn go_json(v: &Value) -> String {
    let s = serde_json::to_string(v).unwrap_or_default();
    go_html_escape(&s)
}

/// Go's `json.MarshalIndent` flavour docker uses for `inspect` (4-space indent, HTML escaped).
pub fn go_json_pretty(v: &Value) -> String {
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    if serde::Serialize::serialize(v, &mut ser).is_err() {
        return String::new();
    }
    go_html_escape(&String::from_utf8_lossy(&buf))
}

fn go_html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            other => out.push(other),
        }
    }
    out
}

/// A `--format` flag, decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Format {
    /// A table with a header line.
    Table(Template),
    /// One template line per row.
    Raw(Template),
}

impl Format {
    /// Interprets `--format` (`None` or `table` = `default_table`; `json` = `{{json .}}`).
    ///
    /// # Errors
    /// The template does not parse.
    pub fn new(spec: Option<&str>, default_table: &str) -> Result<Format, TemplateError> {
        let spec = spec.unwrap_or("table");
        let trimmed = spec.trim();
        if trimmed == "table" {
            let default = default_table.strip_prefix("table").unwrap_or(default_table);
            return Ok(Format::Table(Template::parse(
                default.trim_start_matches(' '),
            )?));
        }
        if trimmed == "json" {
            return Ok(Format::Raw(Template::parse("{{json .}}")?));
        }
        if let Some(rest) = spec.strip_prefix("table") {
            let rest = rest.trim_matches(' ');
            return Ok(Format::Table(Template::parse(rest)?));
        }
        Ok(Format::Raw(Template::parse(spec.trim_matches(' '))?))
    }

    /// Renders the rows (and, for a table, the header) as the command's whole output.
    ///
    /// # Errors
    /// A row makes the template fail (a field it does not have).
    pub fn render(&self, header: &Value, rows: &[Value]) -> Result<String, TemplateError> {
        match self {
            Format::Raw(t) => {
                let mut out = String::new();
                for row in rows {
                    out.push_str(&t.render(row)?);
                    out.push('\n');
                }
                Ok(out)
            }
            Format::Table(t) => {
                let mut text = t.render_header(header);
                text.push('\n');
                for row in rows {
                    text.push_str(&t.render(row)?);
                    text.push('\n');
                }
                Ok(tabwrite(&text))
            }
        }
    }
}

/// Builds a JSON object from `(key, value)` pairs (the row or header of a listing).
pub fn object<K: Into<String>, V: Into<Value>>(pairs: impl IntoIterator<Item = (K, V)>) -> Value {
    let map: Map<String, Value> = pairs
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect();
    Value::Object(map)
}

/// Go's `text/tabwriter` with docker's settings (minwidth 10, tabwidth 1, padding 3, padchar
/// space, no flags): cells are tab-terminated; each column block is as wide as its widest cell
/// plus 3 (at least 10); the text after a line's last tab is not aligned.
pub fn tabwrite(text: &str) -> String {
    const MIN_WIDTH: usize = 10;
    const PADDING: usize = 3;
    let has_final_newline = text.ends_with('\n');
    let body = text.strip_suffix('\n').unwrap_or(text);
    let lines: Vec<Vec<&str>> = body.split('\n').map(|l| l.split('\t').collect()).collect();

    fn format(
        out: &mut String,
        lines: &[Vec<&str>],
        widths: &mut Vec<usize>,
        mut line0: usize,
        line1: usize,
    ) {
        let column = widths.len();
        let mut this = line0;
        while this < line1 {
            if column + 1 >= lines[this].len() {
                this += 1;
                continue;
            }
            write_lines(out, lines, widths, line0, this);
            line0 = this;
            let mut width = MIN_WIDTH;
            while this < line1 && column + 1 < lines[this].len() {
                width = width.max(lines[this][column].chars().count() + PADDING);
                this += 1;
            }
            widths.push(width);
            format(out, lines, widths, line0, this);
            widths.pop();
            line0 = this;
        }
        write_lines(out, lines, widths, line0, line1);
    }

    fn write_lines(out: &mut String, lines: &[Vec<&str>], widths: &[usize], l0: usize, l1: usize) {
        for line in &lines[l0..l1] {
            for (j, cell) in line.iter().enumerate() {
                out.push_str(cell);
                if j + 1 < line.len() {
                    let w = widths.get(j).copied().unwrap_or(0);
                    out.push_str(&" ".repeat(w.saturating_sub(cell.chars().count())));
                }
            }
            out.push('\n');
        }
    }

    let mut out = String::new();
    let mut widths = Vec::new();
    format(&mut out, &lines, &mut widths, 0, lines.len());
    if !has_final_newline {
        out.pop();
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn human_sizes_match_go_units() {
        assert_eq!(human_size_precision(0, 3), "0B");
        assert_eq!(human_size_precision(512, 3), "512B");
        assert_eq!(human_size_precision(4_268_000, 3), "4.27MB");
        assert_eq!(human_size_precision(4_000_000, 3), "4MB");
        assert_eq!(human_size_precision(1_240_000, 3), "1.24MB");
        assert_eq!(human_size_precision(999_500, 3), "1e+03kB");
        assert_eq!(human_size_precision(77_800_000, 3), "77.8MB");
        assert_eq!(human_size_precision(1000, 3), "1kB");
        assert_eq!(human_size(1_234_567), "1.235MB");
        assert_eq!(human_size(1_200_000), "1.2MB");
        assert_eq!(human_size(16_430_000_000), "16.43GB");
        assert_eq!(human_size(999), "999B");
    }

    #[test]
    fn human_durations_match_go_units() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(1), "1 second");
        assert_eq!(human_duration(59), "59 seconds");
        assert_eq!(human_duration(60), "About a minute");
        assert_eq!(human_duration(150), "2 minutes");
        assert_eq!(human_duration(3600), "About an hour");
        assert_eq!(human_duration(2 * 3600), "2 hours");
        assert_eq!(human_duration(47 * 3600), "47 hours");
        assert_eq!(human_duration(3 * 86400), "3 days");
        assert_eq!(human_duration(21 * 86400), "3 weeks");
        assert_eq!(human_duration(90 * 86400), "3 months");
        assert_eq!(human_duration(3 * 365 * 86400), "3 years");
    }

    #[test]
    fn rfc3339_round_trip() {
        let t = Timestamp::parse_rfc3339("2024-02-29T23:59:58.5Z").expect("valid");
        assert_eq!(t.nanos, 500_000_000);
        assert_eq!(t.to_rfc3339(), "2024-02-29T23:59:58Z");
        assert_eq!(t.to_go_string(), "2024-02-29 23:59:58 +0000 UTC");
        let off = Timestamp::parse_rfc3339("2024-03-01T01:59:58+02:00").expect("valid");
        assert_eq!(off.secs, t.secs);
        assert_eq!(
            Timestamp::parse_rfc3339("1970-01-01T00:00:00Z").map(|t| t.secs),
            Some(0)
        );
        assert_eq!(
            Timestamp::parse_rfc3339("1969-12-31T23:59:59Z").map(|t| t.secs),
            Some(-1)
        );
        for bad in ["", "2024-13-01T00:00:00Z", "2024-01-01 00:00:00", "x"] {
            assert_eq!(Timestamp::parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn created_since_and_at() {
        let now = Timestamp::parse_rfc3339("2024-01-01T02:00:00Z").expect("valid");
        assert_eq!(
            created_since(Some("2024-01-01T00:00:00Z"), now),
            "2 hours ago"
        );
        assert_eq!(created_since(None, now), "N/A");
        assert_eq!(
            created_at(Some("2024-01-01T00:00:00Z")),
            "2024-01-01 00:00:00 +0000 UTC"
        );
    }

    #[test]
    fn ids_and_ellipsis() {
        assert_eq!(
            truncate_id("sha256:0123456789abcdef0123456789abcdef"),
            "0123456789ab"
        );
        assert_eq!(ellipsis("abcdef", 4), "abc…");
        assert_eq!(ellipsis("abc", 4), "abc");
    }

    #[test]
    fn templates_render_fields_and_functions() {
        let row = json!({"ID": "abc", "Repository": "<none>", "Tag": "latest", "List": ["a", "b"]});
        let r = |t: &str| Template::parse(t).and_then(|t| t.render(&row));
        assert_eq!(r("{{.ID}}:{{ .Tag }}").as_deref(), Ok("abc:latest"));
        assert_eq!(r("{{.ID}}\\t{{.Tag}}").as_deref(), Ok("abc\tlatest"));
        assert_eq!(r("{{upper .Tag}}").as_deref(), Ok("LATEST"));
        assert_eq!(r("{{.Tag | upper}}").as_deref(), Ok("LATEST"));
        assert_eq!(r("{{truncate .Tag 3}}").as_deref(), Ok("lat"));
        assert_eq!(r("{{join .List \",\"}}").as_deref(), Ok("a,b"));
        assert_eq!(r("{{.List}}").as_deref(), Ok("[a b]"));
        assert_eq!(
            r("{{json .Repository}}").as_deref(),
            Ok("\"\\u003cnone\\u003e\"")
        );
        assert_eq!(r("{{printf \"%-6s|\" .Tag}}").as_deref(), Ok("latest|"));
        assert_eq!(r("{{printf \"%8s|\" .ID}}").as_deref(), Ok("     abc|"));
        assert_eq!(r("{{title \"hello world\"}}").as_deref(), Ok("Hello World"));
        assert_eq!(r("a {{- .ID -}} b").as_deref(), Ok("aabcb"));
        assert!(r("{{.Nope}}").is_err());
        assert!(Template::parse("{{.ID").is_err());
        assert!(Template::parse("{{nosuch .ID}}").is_err());
        assert!(Template::parse("{{.ID .Tag}}").is_err());
        assert!(Template::parse("{{\"abc}}").is_err());
    }

    #[test]
    fn json_of_the_whole_row_is_sorted_and_escaped() {
        let row = object([("Tag", "<none>"), ("ID", "x")]);
        let t = Template::parse("{{json .}}").expect("parses");
        assert_eq!(
            t.render(&row).as_deref(),
            Ok(r#"{"ID":"x","Tag":"\u003cnone\u003e"}"#)
        );
    }

    #[test]
    fn tables_align_like_docker() {
        let header = object([
            ("Repository", "REPOSITORY"),
            ("Tag", "TAG"),
            ("ID", "IMAGE ID"),
            ("CreatedSince", "CREATED"),
            ("Size", "SIZE"),
        ]);
        let row = object([
            ("Repository", "busybox"),
            ("Tag", "latest"),
            ("ID", "0123456789ab"),
            ("CreatedSince", "2 hours ago"),
            ("Size", "4.27MB"),
        ]);
        let f = Format::new(
            None,
            "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}",
        )
        .expect("parses");
        let out = f.render(&header, &[row]).expect("renders");
        assert_eq!(
            out,
            "REPOSITORY   TAG       IMAGE ID       CREATED       SIZE\n\
             busybox      latest    0123456789ab   2 hours ago   4.27MB\n"
        );
    }

    #[test]
    fn format_flag_forms() {
        let row = object([("ID", "x")]);
        let header = object([("ID", "IMAGE ID")]);
        let raw = Format::new(Some("{{.ID}}"), "table {{.ID}}").expect("parses");
        assert_eq!(
            raw.render(&header, std::slice::from_ref(&row)).as_deref(),
            Ok("x\n")
        );
        let table = Format::new(Some("table {{.ID}}"), "").expect("parses");
        assert_eq!(
            table.render(&header, std::slice::from_ref(&row)).as_deref(),
            Ok("IMAGE ID\nx\n")
        );
        let json = Format::new(Some("json"), "").expect("parses");
        assert_eq!(
            json.render(&header, &[row]).as_deref(),
            Ok("{\"ID\":\"x\"}\n")
        );
    }

    #[test]
    fn tabwriter_blocks() {
        assert_eq!(
            tabwrite("a\tb\nlonger-cell-x\tc\n"),
            "a               b\nlonger-cell-x   c\n"
        );
        assert_eq!(tabwrite("no tabs\n"), "no tabs\n");
        assert_eq!(tabwrite(""), "");
    }
}
