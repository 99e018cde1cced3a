//! A strict reader for Python literals, the format the legacy producer still sends because the old
//! consumer parsed bodies with `eval`. It accepts only data: dicts with string keys, lists,
//! tuples, strings, integers, floats, `True`, `False` and `None`, and the `repr` of the two value
//! types the legacy producer's data held: `Decimal('12.50')` (read as a number, or as its text when
//! it is not a finite number) and `datetime.datetime(...)` / `datetime.date(...)` (read as ISO
//! text). Those names are matched whole, their arguments are literals, and nothing is ever
//! called: any other name, call, operator or attribute access is a parse error, so a body like
//! `__import__('os').system(...)` is refused, never run. Nesting is bounded so a hostile body
//! cannot exhaust the stack.

use serde_json::{Map, Number, Value};

/// Deepest nesting accepted; real orders are three levels deep.
pub const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PyLiteralError {
    pub offset: usize,
    pub message: String,
}

impl std::fmt::Display for PyLiteralError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at byte {}", self.message, self.offset)
    }
}

/// Parses one Python literal occupying the whole input (surrounding whitespace allowed).
pub fn parse(input: &str) -> Result<Value, PyLiteralError> {
    let mut p = Parser { src: input.as_bytes(), text: input, pos: 0 };
    let value = p.value(0)?;
    p.skip_ws();
    if p.pos != p.src.len() {
        return Err(p.error("unexpected text after the literal"));
    }
    Ok(value)
}

struct Parser<'a> {
    src: &'a [u8],
    text: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn error(&self, message: &str) -> PyLiteralError {
        PyLiteralError { offset: self.pos, message: message.to_owned() }
    }

    fn peek(&self) -> Option<u8> {
        self.src.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, PyLiteralError> {
        if depth > MAX_DEPTH {
            return Err(self.error("nested too deeply"));
        }
        self.skip_ws();
        match self.peek() {
            Some(b'{') => self.dict(depth),
            Some(b'[') => self.sequence(depth, b']'),
            Some(b'(') => self.sequence(depth, b')'),
            Some(b'\'' | b'"') => self.string().map(Value::String),
            Some(b'-' | b'+' | b'0'..=b'9' | b'.') => self.number(),
            Some(c) if c.is_ascii_alphabetic() || c == b'_' => self.keyword(depth),
            Some(_) => Err(self.error("unexpected character")),
            None => Err(self.error("unexpected end of input")),
        }
    }

    fn dict(&mut self, depth: usize) -> Result<Value, PyLiteralError> {
        self.pos += 1;
        let mut map = Map::new();
        loop {
            self.skip_ws();
            if self.peek() == Some(b'}') {
                self.pos += 1;
                return Ok(Value::Object(map));
            }
            if !matches!(self.peek(), Some(b'\'' | b'"')) {
                return Err(self.error("dict keys must be strings"));
            }
            let key = self.string()?;
            self.skip_ws();
            if self.peek() != Some(b':') {
                return Err(self.error("expected ':' after a dict key"));
            }
            self.pos += 1;
            let value = self.value(depth + 1)?;
            map.insert(key, value);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {}
                _ => return Err(self.error("expected ',' or '}' in a dict")),
            }
        }
    }

    fn sequence(&mut self, depth: usize, close: u8) -> Result<Value, PyLiteralError> {
        self.pos += 1;
        let mut items = Vec::new();
        loop {
            self.skip_ws();
            if self.peek() == Some(close) {
                self.pos += 1;
                return Ok(Value::Array(items));
            }
            items.push(self.value(depth + 1)?);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(c) if c == close => {}
                _ => return Err(self.error("expected ',' or the closing bracket")),
            }
        }
    }

    /// A name, possibly dotted (`datetime.date`).
    fn name(&mut self) -> &'a str {
        let start = self.pos;
        while matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric() || c == b'_' || c == b'.') {
            self.pos += 1;
        }
        &self.text[start..self.pos]
    }

    fn keyword(&mut self, depth: usize) -> Result<Value, PyLiteralError> {
        let start = self.pos;
        let name = self.name();
        match name {
            "True" => Ok(Value::Bool(true)),
            "False" => Ok(Value::Bool(false)),
            "None" => Ok(Value::Null),
            "Decimal" | "decimal.Decimal" => self.call(depth).and_then(|args| self.decimal(&args)),
            "datetime" | "datetime.datetime" => self.call(depth).and_then(|args| self.timestamp(&args, false)),
            "date" | "datetime.date" => self.call(depth).and_then(|args| self.timestamp(&args, true)),
            _ => {
                self.pos = start;
                Err(self.error("names and expressions are not literals"))
            }
        }
    }

    /// The arguments of one of the known constructors: positional literals, and keyword
    /// arguments whose value is a literal or a dotted name (`tzinfo=datetime.timezone.utc`),
    /// returned as `(keyword, value)` with an empty keyword for positional ones.
    fn call(&mut self, depth: usize) -> Result<Vec<(String, Value)>, PyLiteralError> {
        self.skip_ws();
        if self.peek() != Some(b'(') {
            return Err(self.error("names and expressions are not literals"));
        }
        self.pos += 1;
        let mut args = Vec::new();
        loop {
            self.skip_ws();
            if self.peek() == Some(b')') {
                self.pos += 1;
                return Ok(args);
            }
            if args.len() >= 8 {
                return Err(self.error("too many arguments"));
            }
            let before = self.pos;
            let keyword = match self.peek() {
                Some(c) if c.is_ascii_alphabetic() || c == b'_' => {
                    let k = self.name().to_owned();
                    self.skip_ws();
                    if self.peek() == Some(b'=') {
                        self.pos += 1;
                        Some(k)
                    } else {
                        self.pos = before;
                        None
                    }
                }
                _ => None,
            };
            self.skip_ws();
            let value = match (&keyword, self.peek()) {
                (Some(_), Some(c)) if c.is_ascii_alphabetic() => {
                    let n = self.name();
                    match n {
                        "True" | "False" | "None" => {
                            self.pos -= n.len();
                            self.value(depth + 1)?
                        }
                        _ => Value::String(n.to_owned()),
                    }
                }
                _ => self.value(depth + 1)?,
            };
            args.push((keyword.unwrap_or_default(), value));
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b')') => {}
                _ => return Err(self.error("expected ',' or ')' in a call")),
            }
        }
    }

    /// `Decimal('12.50')` or `Decimal(12)`: a number when finite, else its text (`'NaN'`), which
    /// the contract then refuses as an amount.
    fn decimal(&self, args: &[(String, Value)]) -> Result<Value, PyLiteralError> {
        match args {
            [(k, Value::String(text))] if k.is_empty() => {
                let finite = text.trim().parse::<f64>().ok().filter(|f| f.is_finite()).and_then(Number::from_f64);
                Ok(finite.map_or_else(|| Value::String(text.clone()), Value::Number))
            }
            [(k, n @ Value::Number(_))] if k.is_empty() => Ok(n.clone()),
            _ => Err(self.error("Decimal takes one string or number")),
        }
    }

    /// `datetime.date(2024, 1, 2)` as `2024-01-02`; `datetime.datetime(2024, 1, 2, 3, 4, 5[, us]
    /// [, tzinfo=...])` as `2024-01-02T03:04:05[.ffffff]`, with `+00:00` when the zone is UTC.
    fn timestamp(&self, args: &[(String, Value)], date_only: bool) -> Result<Value, PyLiteralError> {
        let mut parts = Vec::new();
        let mut utc = false;
        for (k, v) in args {
            match (k.as_str(), v) {
                ("", Value::Number(n)) => parts.push(n.as_i64().ok_or_else(|| self.error("date parts are integers"))?),
                ("tzinfo", Value::String(zone)) => utc = zone.ends_with("timezone.utc") || zone.ends_with("UTC"),
                ("tzinfo", Value::Null) => {}
                _ => return Err(self.error("unexpected argument in a date")),
            }
        }
        let expected = if date_only { 3..=3 } else { 3..=7 };
        if !expected.contains(&parts.len()) {
            return Err(self.error("wrong number of date parts"));
        }
        parts.resize(7, 0);
        let [y, mo, d, h, mi, s, us] = [parts[0], parts[1], parts[2], parts[3], parts[4], parts[5], parts[6]];
        if date_only {
            return Ok(Value::String(format!("{y:04}-{mo:02}-{d:02}")));
        }
        let mut text = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}");
        if us != 0 {
            text.push_str(&format!(".{us:06}"));
        }
        if utc {
            text.push_str("+00:00");
        }
        Ok(Value::String(text))
    }

    fn number(&mut self) -> Result<Value, PyLiteralError> {
        let start = self.pos;
        if matches!(self.peek(), Some(b'-' | b'+')) {
            self.pos += 1;
        }
        while matches!(self.peek(), Some(b'0'..=b'9' | b'.' | b'e' | b'E' | b'_'))
            || (matches!(self.peek(), Some(b'-' | b'+')) && matches!(self.src[self.pos - 1], b'e' | b'E'))
        {
            self.pos += 1;
        }
        let raw: String = self.text[start..self.pos].chars().filter(|c| *c != '_').collect();
        let raw = raw.strip_prefix('+').unwrap_or(&raw);
        if let Ok(i) = raw.parse::<i64>() {
            return Ok(Value::Number(i.into()));
        }
        let has_digits = raw.chars().any(|c| c.is_ascii_digit());
        match raw.parse::<f64>() {
            Ok(f) if has_digits => match Number::from_f64(f) {
                Some(n) => Ok(Value::Number(n)),
                // A well-formed number too large for a float (`1e400`): kept as its text, so the
                // field it sits in is judged (and dropped, if optional), not the whole message.
                None => Ok(Value::String(raw.to_owned())),
            },
            _ => {
                self.pos = start;
                Err(self.error("not a number literal"))
            }
        }
    }

    fn string(&mut self) -> Result<String, PyLiteralError> {
        let quote = self.src[self.pos];
        self.pos += 1;
        let mut out = String::new();
        loop {
            let Some(c) = self.text[self.pos..].chars().next() else {
                return Err(self.error("unterminated string"));
            };
            match c {
                c if c as u32 == quote as u32 => {
                    self.pos += 1;
                    return Ok(out);
                }
                '\n' => return Err(self.error("newline inside a string")),
                '\\' => {
                    self.pos += 1;
                    out.push(self.escape()?);
                }
                c => {
                    out.push(c);
                    self.pos += c.len_utf8();
                }
            }
        }
    }

    fn escape(&mut self) -> Result<char, PyLiteralError> {
        let Some(c) = self.peek() else {
            return Err(self.error("unterminated escape"));
        };
        self.pos += 1;
        let simple = match c {
            b'\\' => Some('\\'),
            b'\'' => Some('\''),
            b'"' => Some('"'),
            b'n' => Some('\n'),
            b'r' => Some('\r'),
            b't' => Some('\t'),
            b'0' => Some('\0'),
            _ => None,
        };
        if let Some(ch) = simple {
            return Ok(ch);
        }
        let digits = match c {
            b'x' => 2,
            b'u' => 4,
            b'U' => 8,
            _ => {
                self.pos -= 1;
                return Err(self.error("unknown escape"));
            }
        };
        let hex = self.text.get(self.pos..self.pos + digits).ok_or_else(|| self.error("short escape"))?;
        let code = u32::from_str_radix(hex, 16).map_err(|_| self.error("bad hex escape"))?;
        self.pos += digits;
        char::from_u32(code).ok_or_else(|| self.error("escape is not a character"))
    }
}

#[cfg(test)]
mod tests;
