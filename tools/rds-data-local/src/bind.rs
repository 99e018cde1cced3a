//! Request parameters (`SqlParameter` with a `Field` union) turned into PostgreSQL binds.
//!
//! The real service binds through PgJDBC, so the parameter types PostgreSQL sees are PgJDBC's:
//! `setString` binds `varchar` (PgJDBC's default `stringtype=VARCHAR`), `setLong` binds `int8`,
//! `setDouble` `float8`, `setBoolean` `bool`, `setBytes` `bytea` and `setNull` an unspecified
//! type that the server infers. That is why a plain string into a `jsonb` column fails with
//! "column ... is of type jsonb but expression is of type character varying" on Aurora, and why
//! it must fail here too. A `typeHint` sends the string as that type instead; we declare the
//! parameter with that type and send the value in text format, so PostgreSQL's own input
//! function parses it, as it does for PgJDBC's typed objects.

use base64::Engine as _;
use bytes::BytesMut;
use serde_json::Value;
use tokio_postgres::types::{Format, IsNull, Kind, ToSql, Type, to_sql_checked};

use crate::error::ApiError;

/// One bound value.
#[derive(Debug, Clone, PartialEq)]
pub enum Bind {
    Null,
    /// Sent in text format; PostgreSQL parses it with the declared type's input function.
    Text(String, Type),
    Long(i64),
    Double(f64),
    Bool(bool),
    Bytes(Vec<u8>),
}

impl Bind {
    /// The parameter type declared in the Parse message. `Null` declares oid 0 ("unspecified"),
    /// which lets PostgreSQL infer the type from context, as PgJDBC's `setNull` does.
    pub fn declared_type(&self) -> Type {
        match self {
            Bind::Null => Type::new("unspecified".into(), 0, Kind::Pseudo, "pg_catalog".into()),
            Bind::Text(_, t) => t.clone(),
            Bind::Long(_) => Type::INT8,
            Bind::Double(_) => Type::FLOAT8,
            Bind::Bool(_) => Type::BOOL,
            Bind::Bytes(_) => Type::BYTEA,
        }
    }
}

impl ToSql for Bind {
    fn to_sql(&self, _ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Bind::Null => return Ok(IsNull::Yes),
            Bind::Text(s, _) => out.extend_from_slice(s.as_bytes()),
            Bind::Long(v) => out.extend_from_slice(&v.to_be_bytes()),
            Bind::Double(v) => out.extend_from_slice(&v.to_be_bytes()),
            Bind::Bool(v) => out.extend_from_slice(&[u8::from(*v)]),
            Bind::Bytes(b) => out.extend_from_slice(b),
        }
        Ok(IsNull::No)
    }

    // The declared types above are what the server uses, so every bind fits its parameter.
    fn accepts(_ty: &Type) -> bool {
        true
    }

    fn encode_format(&self, _ty: &Type) -> Format {
        match self {
            Bind::Text(..) => Format::Text,
            _ => Format::Binary,
        }
    }

    to_sql_checked!();
}

/// A named parameter from the request.
#[derive(Debug, Clone)]
pub struct NamedBind {
    pub name: String,
    pub value: Bind,
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::BadRequest(msg.into())
}

fn ser(msg: impl Into<String>) -> ApiError {
    ApiError::Serialization(msg.into())
}

/// Parses a `SqlParametersList` JSON value.
pub fn parse_parameters(v: Option<&Value>) -> Result<Vec<NamedBind>, ApiError> {
    let Some(v) = v else { return Ok(Vec::new()) };
    if v.is_null() {
        return Ok(Vec::new());
    }
    let arr = v.as_array().ok_or_else(|| ser("parameters must be a list of SqlParameter"))?;
    arr.iter().map(parse_parameter).collect()
}

fn parse_parameter(p: &Value) -> Result<NamedBind, ApiError> {
    let obj = p.as_object().ok_or_else(|| ser("each parameter must be a SqlParameter object"))?;
    let name = match obj.get("name") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => return Err(bad("Parameter name must be specified")),
        Some(_) => return Err(ser("SqlParameter.name must be a string")),
    };
    let hint = match obj.get("typeHint") {
        Some(Value::String(s)) => Some(s.as_str()),
        Some(Value::Null) | None => None,
        Some(_) => return Err(ser("SqlParameter.typeHint must be a string")),
    };
    let field = obj.get("value").filter(|v| !v.is_null());
    let value = match field {
        None => return Err(bad(format!("Parameter \"{name}\" has no value"))),
        Some(f) => parse_field(&name, f, hint)?,
    };
    Ok(NamedBind { name, value })
}

fn parse_field(name: &str, f: &Value, hint: Option<&str>) -> Result<Bind, ApiError> {
    let obj = f.as_object().ok_or_else(|| ser("SqlParameter.value must be a Field object"))?;
    // A union carries exactly one member; SDKs never send nulls for the unset ones, but tolerate
    // them the way smithy servers do.
    let set: Vec<(&String, &Value)> = obj.iter().filter(|(_, v)| !v.is_null()).collect();
    if set.len() != 1 {
        return Err(bad(format!("Parameter \"{name}\": a Field must have exactly one member set")));
    }
    let (member, v) = set[0];
    match member.as_str() {
        "isNull" => match v {
            Value::Bool(true) => Ok(Bind::Null),
            Value::Bool(false) => Err(bad(format!("Parameter \"{name}\": isNull must be true when it is set"))),
            _ => Err(ser("Field.isNull must be a boolean")),
        },
        "booleanValue" => v.as_bool().map(Bind::Bool).ok_or_else(|| ser("Field.booleanValue must be a boolean")),
        "longValue" => v.as_i64().map(Bind::Long).ok_or_else(|| ser("Field.longValue must be a 64-bit integer")),
        "doubleValue" => parse_double(v).map(Bind::Double).ok_or_else(|| ser("Field.doubleValue must be a number")),
        "blobValue" => {
            let s = v.as_str().ok_or_else(|| ser("Field.blobValue must be a base64 string"))?;
            base64::engine::general_purpose::STANDARD
                .decode(s)
                .map(Bind::Bytes)
                .map_err(|_| ser("Field.blobValue must be valid base64"))
        }
        "stringValue" => {
            let s = v.as_str().ok_or_else(|| ser("Field.stringValue must be a string"))?;
            string_with_hint(s, hint)
        }
        // The API reference: "Array parameters are not supported."
        "arrayValue" => Err(bad("Array parameters are not supported.")),
        other => Err(ser(format!("Unknown Field member {other}"))),
    }
}

/// restJson1 sends non-finite doubles as the strings "NaN", "Infinity" and "-Infinity".
fn parse_double(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => match s.as_str() {
            "NaN" => Some(f64::NAN),
            "Infinity" => Some(f64::INFINITY),
            "-Infinity" => Some(f64::NEG_INFINITY),
            _ => None,
        },
        _ => None,
    }
}

fn all_digits(s: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

/// `YYYY-MM-DD` (Java's `Date.valueOf` also takes one-digit month and day).
fn valid_date(s: &str) -> bool {
    let p: Vec<&str> = s.split('-').collect();
    p.len() == 3 && all_digits(p[0], 4, 4) && all_digits(p[1], 1, 2) && all_digits(p[2], 1, 2)
}

/// `HH:MM:SS[.F...]` with up to nine fraction digits (`java.sql.Timestamp` precision).
fn valid_time(s: &str) -> bool {
    let (hms, frac) = match s.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (s, None),
    };
    let p: Vec<&str> = hms.split(':').collect();
    p.len() == 3 && p.iter().all(|x| all_digits(x, 2, 2)) && frac.is_none_or(|f| all_digits(f, 1, 9))
}

fn valid_decimal(s: &str) -> bool {
    let s = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (mant, exp) = match s.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e)),
        None => (s, None),
    };
    let (int, frac) = match mant.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (mant, None),
    };
    let digits = |x: &str| x.bytes().all(|b| b.is_ascii_digit());
    let mant_ok = digits(int) && frac.is_none_or(digits) && !(int.is_empty() && frac.is_none_or(str::is_empty));
    let exp_ok = exp.is_none_or(|e| {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        !e.is_empty() && digits(e)
    });
    mant_ok && exp_ok
}

fn string_with_hint(s: &str, hint: Option<&str>) -> Result<Bind, ApiError> {
    // Date/time hints are parsed by the service before anything reaches the database (Java's
    // `Date/Time/Timestamp.valueOf`), so a malformed value is a BadRequestException there too.
    let cannot_parse = || bad(format!("Cannot parse date or time \"{s}\""));
    let ty = match hint {
        None => Type::VARCHAR,
        Some("JSON") => Type::JSON,
        Some("UUID") => Type::UUID,
        Some("DECIMAL") => {
            if !valid_decimal(s) {
                return Err(bad(format!("Cannot parse decimal \"{s}\"")));
            }
            Type::NUMERIC
        }
        Some("DATE") => {
            if !valid_date(s) {
                return Err(cannot_parse());
            }
            Type::DATE
        }
        Some("TIME") => {
            if !valid_time(s) {
                return Err(cannot_parse());
            }
            Type::TIME
        }
        Some("TIMESTAMP") => {
            let ok = s.split_once(' ').is_some_and(|(d, t)| valid_date(d) && valid_time(t));
            if !ok {
                return Err(cannot_parse());
            }
            Type::TIMESTAMP
        }
        Some(other) => {
            return Err(ser(format!(
                "Invalid typeHint {other}: must be one of JSON, UUID, TIMESTAMP, DATE, TIME, DECIMAL"
            )));
        }
    };
    Ok(Bind::Text(s.to_owned(), ty))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typehint_formats_are_checked_like_the_service_does() {
        assert!(valid_date("2024-01-31"));
        assert!(!valid_date("2024-01-31T00:00:00"));
        assert!(valid_time("12:34:56.789"));
        assert!(!valid_time("12:34"));
        assert!(string_with_hint("2026-07-22T02:17:21.804Z", Some("TIMESTAMP")).is_err());
        assert!(string_with_hint("2026-07-22 02:17:21.804", Some("TIMESTAMP")).is_ok());
        assert!(valid_decimal("-12.50"));
        assert!(valid_decimal("1e10"));
        assert!(!valid_decimal("abc"));
        assert!(!valid_decimal("."));
    }
}
