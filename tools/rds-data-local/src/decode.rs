//! PostgreSQL result values (binary wire format) to Data API `Field`s.
//!
//! tokio-postgres always asks for binary results, so every supported type is decoded here and
//! rendered the way the Data API for Aurora PostgreSQL renders it: integers as `longValue`,
//! floats as `doubleValue`, `bool` as `booleanValue`, `bytea` as `blobValue`, one-dimensional
//! arrays as `arrayValue`, and everything else as `stringValue` in PostgreSQL's own text format
//! (`timestamptz` in UTC without an offset, as the service documents).

use std::fmt::Write as _;

use base64::Engine as _;
use serde_json::{Value, json};
use tokio_postgres::types::{FromSql, Kind, Type};

use crate::error::ApiError;

/// Raw column bytes, so decoding never depends on tokio-postgres knowing a Rust type for it.
pub struct Raw<'a>(pub Option<&'a [u8]>);

impl<'a> FromSql<'a> for Raw<'a> {
    fn from_sql(_ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(Some(raw)))
    }

    fn from_sql_null(_ty: &Type) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(None))
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }
}

/// A decoded value, before it is rendered as a `Field` or as a JSON-format record value.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Bool(bool),
    Long(i64),
    Double(f64),
    Str(String),
    Blob(Vec<u8>),
    Array(ArrayCell),
}

#[derive(Debug, Clone, PartialEq)]
pub enum ArrayCell {
    Longs(Vec<Option<i64>>),
    Doubles(Vec<Option<f64>>),
    Bools(Vec<Option<bool>>),
    Strings(Vec<Option<String>>),
}

/// `resultSetOptions` from the request.
#[derive(Debug, Clone, Copy, Default)]
pub struct ResultOptions {
    /// `decimalReturnType: DOUBLE_OR_LONG`.
    pub decimal_as_number: bool,
    /// `longReturnType: STRING`.
    pub long_as_string: bool,
}

fn unsupported(ty: &Type) -> ApiError {
    ApiError::UnsupportedResult(format!("The result contains the unsupported data type {}.", ty.name()))
}

fn malformed(ty: &Type) -> ApiError {
    ApiError::InternalServerError.log(&format!("malformed binary value for {}", ty.name()))
}

impl ApiError {
    /// Logs why an internal error happened (the wire error itself carries no message).
    fn log(self, why: &str) -> ApiError {
        tracing::error!("{why}");
        self
    }
}

/// Follows domains to their base type: a domain's binary format is its base type's.
fn base_type(ty: &Type) -> &Type {
    match ty.kind() {
        Kind::Domain(inner) => base_type(inner),
        _ => ty,
    }
}

fn be_i16(b: &[u8], at: usize) -> Option<i16> {
    Some(i16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn be_i32(b: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn be_i64(b: &[u8], at: usize) -> Option<i64> {
    Some(i64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Decodes one value of type `ty`.
pub fn decode(ty: &Type, raw: Option<&[u8]>, opts: ResultOptions) -> Result<Cell, ApiError> {
    let Some(b) = raw else { return Ok(Cell::Null) };
    let ty = base_type(ty);
    if let Kind::Array(elem) = ty.kind() {
        return decode_array(ty, elem, b, opts);
    }
    if let Kind::Enum(_) = ty.kind() {
        return text(ty, b);
    }
    let long = |v: i64| {
        if opts.long_as_string { Cell::Str(v.to_string()) } else { Cell::Long(v) }
    };
    let cell = match *ty {
        Type::BOOL => Cell::Bool(*b.first().ok_or_else(|| malformed(ty))? != 0),
        Type::INT2 => long(be_i16(b, 0).ok_or_else(|| malformed(ty))?.into()),
        Type::INT4 => long(be_i32(b, 0).ok_or_else(|| malformed(ty))?.into()),
        Type::INT8 => long(be_i64(b, 0).ok_or_else(|| malformed(ty))?),
        Type::OID => long(be_i32(b, 0).ok_or_else(|| malformed(ty))? as u32 as i64),
        Type::FLOAT4 => {
            let v = f32::from_be_bytes(b.try_into().map_err(|_| malformed(ty))?);
            // PgJDBC reads float4 through its text form, so 0.1::float4 is 0.1, not 0.10000000149.
            Cell::Double(v.to_string().parse::<f64>().unwrap_or(v as f64))
        }
        Type::FLOAT8 => Cell::Double(f64::from_be_bytes(b.try_into().map_err(|_| malformed(ty))?)),
        Type::NUMERIC => {
            let s = numeric_to_string(b).ok_or_else(|| malformed(ty))?;
            if opts.decimal_as_number {
                if !s.contains('.') {
                    match s.parse::<i64>() {
                        Ok(v) => Cell::Long(v),
                        Err(_) => Cell::Double(s.parse::<f64>().unwrap_or(f64::NAN)),
                    }
                } else {
                    Cell::Double(s.parse::<f64>().unwrap_or(f64::NAN))
                }
            } else {
                Cell::Str(s)
            }
        }
        Type::TEXT
        | Type::VARCHAR
        | Type::BPCHAR
        | Type::NAME
        | Type::UNKNOWN
        | Type::CHAR
        | Type::XML
        | Type::JSON => return text(ty, b),
        Type::JSONB => {
            // Binary jsonb is a version byte (1) followed by the text form.
            match b.split_first() {
                Some((1, rest)) => return text(ty, rest),
                _ => return Err(malformed(ty)),
            }
        }
        Type::UUID => {
            if b.len() != 16 {
                return Err(malformed(ty));
            }
            let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
            Cell::Str(format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32]))
        }
        Type::BYTEA => Cell::Blob(b.to_vec()),
        Type::DATE => Cell::Str(format_date(be_i32(b, 0).ok_or_else(|| malformed(ty))?)),
        Type::TIME => Cell::Str(format_time(be_i64(b, 0).ok_or_else(|| malformed(ty))?)),
        Type::TIMETZ => {
            let t = be_i64(b, 0).ok_or_else(|| malformed(ty))?;
            let zone = be_i32(b, 8).ok_or_else(|| malformed(ty))?;
            Cell::Str(format!("{}{}", format_time(t), format_offset(-zone)))
        }
        Type::TIMESTAMP | Type::TIMESTAMPTZ => Cell::Str(format_timestamp(be_i64(b, 0).ok_or_else(|| malformed(ty))?)),
        Type::INTERVAL => {
            let us = be_i64(b, 0).ok_or_else(|| malformed(ty))?;
            let days = be_i32(b, 8).ok_or_else(|| malformed(ty))?;
            let months = be_i32(b, 12).ok_or_else(|| malformed(ty))?;
            Cell::Str(format_interval(months, days, us))
        }
        Type::INET | Type::CIDR => Cell::Str(format_inet(b, *ty == Type::CIDR).ok_or_else(|| malformed(ty))?),
        _ => {
            // Extension types whose binary format is their text (citext) are common enough to
            // support by name; anything else is what the service calls an unsupported type.
            if ty.name() == "citext" {
                return text(ty, b);
            }
            return Err(unsupported(ty));
        }
    };
    Ok(cell)
}

fn text(ty: &Type, b: &[u8]) -> Result<Cell, ApiError> {
    String::from_utf8(b.to_vec()).map(Cell::Str).map_err(|_| malformed(ty))
}

fn decode_array(ty: &Type, elem: &Type, b: &[u8], opts: ResultOptions) -> Result<Cell, ApiError> {
    let ndim = be_i32(b, 0).ok_or_else(|| malformed(ty))?;
    if ndim > 1 {
        return Err(ApiError::UnsupportedResult("Multidimensional arrays are not supported.".into()));
    }
    let mut cells = Vec::new();
    if ndim == 1 {
        let len = be_i32(b, 12).ok_or_else(|| malformed(ty))?;
        let mut at = 20usize;
        for _ in 0..len {
            let n = be_i32(b, at).ok_or_else(|| malformed(ty))?;
            at += 4;
            if n < 0 {
                cells.push(Cell::Null);
            } else {
                let end = at + n as usize;
                let v = b.get(at..end).ok_or_else(|| malformed(ty))?;
                cells.push(decode(elem, Some(v), opts)?);
                at = end;
            }
        }
    }
    // The element type, not the values, picks the list so empty arrays are typed too.
    let probe = match base_type(elem).clone() {
        Type::INT2 | Type::INT4 | Type::INT8 | Type::OID if !opts.long_as_string => 'l',
        Type::FLOAT4 | Type::FLOAT8 => 'd',
        Type::NUMERIC if opts.decimal_as_number => 'd',
        Type::BOOL => 'b',
        Type::BYTEA => return Err(unsupported(ty)),
        _ => 's',
    };
    let arr = match probe {
        'l' => ArrayCell::Longs(
            cells
                .into_iter()
                .map(|c| match c {
                    Cell::Long(v) => Some(v),
                    _ => None,
                })
                .collect(),
        ),
        'd' => ArrayCell::Doubles(
            cells
                .into_iter()
                .map(|c| match c {
                    Cell::Double(v) => Some(v),
                    Cell::Long(v) => Some(v as f64),
                    _ => None,
                })
                .collect(),
        ),
        'b' => ArrayCell::Bools(
            cells
                .into_iter()
                .map(|c| match c {
                    Cell::Bool(v) => Some(v),
                    _ => None,
                })
                .collect(),
        ),
        _ => ArrayCell::Strings(
            cells
                .into_iter()
                .map(|c| match c {
                    Cell::Str(v) => Some(v),
                    Cell::Long(v) => Some(v.to_string()),
                    _ => None,
                })
                .collect(),
        ),
    };
    Ok(Cell::Array(arr))
}

/// restJson1 encodes non-finite doubles as strings.
fn double_json(v: f64) -> Value {
    if v.is_nan() {
        json!("NaN")
    } else if v == f64::INFINITY {
        json!("Infinity")
    } else if v == f64::NEG_INFINITY {
        json!("-Infinity")
    } else {
        json!(v)
    }
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// The `Field` union member for a cell.
pub fn field_json(c: &Cell) -> Value {
    match c {
        Cell::Null => json!({ "isNull": true }),
        Cell::Bool(v) => json!({ "booleanValue": v }),
        Cell::Long(v) => json!({ "longValue": v }),
        Cell::Double(v) => json!({ "doubleValue": double_json(*v) }),
        Cell::Str(v) => json!({ "stringValue": v }),
        Cell::Blob(v) => json!({ "blobValue": b64(v) }),
        Cell::Array(a) => json!({ "arrayValue": array_json(a) }),
    }
}

fn array_json(a: &ArrayCell) -> Value {
    match a {
        ArrayCell::Longs(v) => json!({ "longValues": v }),
        ArrayCell::Doubles(v) => {
            json!({ "doubleValues": v.iter().map(|x| x.map_or(Value::Null, double_json)).collect::<Vec<_>>() })
        }
        ArrayCell::Bools(v) => json!({ "booleanValues": v }),
        ArrayCell::Strings(v) => json!({ "stringValues": v }),
    }
}

/// The value of a cell inside `formattedRecords` (formatRecordsAs JSON).
pub fn plain_json(c: &Cell) -> Value {
    match c {
        Cell::Null => Value::Null,
        Cell::Bool(v) => json!(v),
        Cell::Long(v) => json!(v),
        Cell::Double(v) => double_json(*v),
        Cell::Str(v) => json!(v),
        Cell::Blob(v) => json!(b64(v)),
        Cell::Array(ArrayCell::Longs(v)) => json!(v),
        Cell::Array(ArrayCell::Doubles(v)) => {
            Value::Array(v.iter().map(|x| x.map_or(Value::Null, double_json)).collect())
        }
        Cell::Array(ArrayCell::Bools(v)) => json!(v),
        Cell::Array(ArrayCell::Strings(v)) => json!(v),
    }
}

/// PostgreSQL's numeric binary format (base-10000 digits) to its text form.
pub fn numeric_to_string(b: &[u8]) -> Option<String> {
    let ndigits = be_i16(b, 0)? as usize;
    let weight = be_i16(b, 2)? as i32;
    let sign = be_i16(b, 4)? as u16;
    let dscale = be_i16(b, 6)? as usize;
    match sign {
        0xC000 => return Some("NaN".into()),
        0xD000 => return Some("Infinity".into()),
        0xF000 => return Some("-Infinity".into()),
        _ => {}
    }
    let mut digits = Vec::with_capacity(ndigits);
    for i in 0..ndigits {
        digits.push(be_i16(b, 8 + 2 * i)?);
    }
    let digit = |i: i32| -> i16 { if i >= 0 && (i as usize) < digits.len() { digits[i as usize] } else { 0 } };
    let mut s = String::new();
    if sign == 0x4000 {
        s.push('-');
    }
    if weight < 0 {
        s.push('0');
    } else {
        for i in 0..=weight {
            if i == 0 {
                let _ = write!(s, "{}", digit(i));
            } else {
                let _ = write!(s, "{:04}", digit(i));
            }
        }
    }
    if dscale > 0 {
        let mut frac = String::new();
        let mut k = 1;
        while frac.len() < dscale {
            let _ = write!(frac, "{:04}", digit(weight + k));
            k += 1;
        }
        frac.truncate(dscale);
        s.push('.');
        s.push_str(&frac);
    }
    Some(s)
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day) (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// 2000-01-01 (PostgreSQL's epoch) in days since 1970-01-01.
const PG_EPOCH_DAYS: i64 = 10_957;

/// (date text, " BC" suffix or "") for days since 2000-01-01.
fn date_parts(days: i64) -> (String, &'static str) {
    let (y, m, d) = civil_from_days(days + PG_EPOCH_DAYS);
    if y <= 0 { (format!("{:04}-{m:02}-{d:02}", 1 - y), " BC") } else { (format!("{y:04}-{m:02}-{d:02}"), "") }
}

pub fn format_date(days: i32) -> String {
    match days {
        i32::MAX => "infinity".into(),
        i32::MIN => "-infinity".into(),
        d => {
            let (s, bc) = date_parts(d.into());
            format!("{s}{bc}")
        }
    }
}

/// Microseconds since midnight to `HH:MM:SS[.ffffff]` with trailing zeros trimmed.
pub fn format_time(us: i64) -> String {
    let secs = us.div_euclid(1_000_000);
    let frac = us.rem_euclid(1_000_000);
    let mut s = format!("{:02}:{:02}:{:02}", secs / 3600, (secs / 60) % 60, secs % 60);
    push_fraction(&mut s, frac);
    s
}

fn push_fraction(s: &mut String, frac_us: i64) {
    if frac_us != 0 {
        let f = format!("{frac_us:06}");
        s.push('.');
        s.push_str(f.trim_end_matches('0'));
    }
}

/// UTC offset in seconds east to PostgreSQL's `+HH[:MM[:SS]]`.
fn format_offset(east: i32) -> String {
    let sign = if east < 0 { '-' } else { '+' };
    let a = east.abs();
    let (h, m, sec) = (a / 3600, (a / 60) % 60, a % 60);
    if sec != 0 {
        format!("{sign}{h:02}:{m:02}:{sec:02}")
    } else if m != 0 {
        format!("{sign}{h:02}:{m:02}")
    } else {
        format!("{sign}{h:02}")
    }
}

/// Microseconds since 2000-01-01 00:00 (UTC for timestamptz) to `YYYY-MM-DD HH:MM:SS[.f]`.
pub fn format_timestamp(us: i64) -> String {
    match us {
        i64::MAX => "infinity".into(),
        i64::MIN => "-infinity".into(),
        _ => {
            let days = us.div_euclid(86_400_000_000);
            let tod = us.rem_euclid(86_400_000_000);
            let (d, bc) = date_parts(days);
            format!("{d} {}{bc}", format_time(tod))
        }
    }
}

/// PostgreSQL's default (`IntervalStyle = postgres`) interval output.
pub fn format_interval(months: i32, days: i32, us: i64) -> String {
    let mut parts: Vec<String> = Vec::new();
    let (years, mons) = (months / 12, months % 12);
    let plural = |n: i64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    if years != 0 {
        parts.push(plural(years.into(), "year", "years"));
    }
    if mons != 0 {
        parts.push(plural(mons.into(), "mon", "mons"));
    }
    if days != 0 {
        parts.push(plural(days.into(), "day", "days"));
    }
    let any_negative = years < 0 || mons < 0 || days < 0;
    if us != 0 || parts.is_empty() {
        let neg = us < 0;
        let a = us.unsigned_abs() as i64;
        let secs = a / 1_000_000;
        let mut t = format!("{:02}:{:02}:{:02}", secs / 3600, (secs / 60) % 60, secs % 60);
        push_fraction(&mut t, a % 1_000_000);
        let sign = if neg {
            "-"
        } else if any_negative {
            "+"
        } else {
            ""
        };
        parts.push(format!("{sign}{t}"));
    }
    parts.join(" ")
}

fn format_inet(b: &[u8], is_cidr_type: bool) -> Option<String> {
    let family = *b.first()?;
    let bits = *b.get(1)?;
    let nb = *b.get(3)? as usize;
    let addr = b.get(4..4 + nb)?;
    let (text, max) = match family {
        2 if nb == 4 => (std::net::Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]).to_string(), 32),
        3 if nb == 16 => {
            let a: [u8; 16] = addr.try_into().ok()?;
            (std::net::Ipv6Addr::from(a).to_string(), 128)
        }
        _ => return None,
    };
    if is_cidr_type || bits != max { Some(format!("{text}/{bits}")) } else { Some(text) }
}

/// Catalog facts about a result column that comes straight from a table column.
#[derive(Debug, Clone, Default)]
pub struct TableColumnInfo {
    pub table_name: String,
    pub not_null: bool,
    pub auto_increment: bool,
}

/// JDBC `java.sql.Types` code PgJDBC reports for a PostgreSQL type.
pub fn jdbc_type(ty: &Type) -> i32 {
    let ty = base_type(ty);
    if let Kind::Array(_) = ty.kind() {
        return 2003; // ARRAY
    }
    match *ty {
        Type::BOOL => -7,                              // BIT (PgJDBC reports bool as BIT)
        Type::INT2 => 5,                               // SMALLINT
        Type::INT4 => 4,                               // INTEGER
        Type::INT8 | Type::OID => -5,                  // BIGINT
        Type::FLOAT4 => 7,                             // REAL
        Type::FLOAT8 | Type::MONEY => 8,               // DOUBLE
        Type::NUMERIC => 2,                            // NUMERIC
        Type::TEXT | Type::VARCHAR | Type::NAME => 12, // VARCHAR
        Type::BPCHAR | Type::CHAR => 1,                // CHAR
        Type::BYTEA => -2,                             // BINARY
        Type::DATE => 91,
        Type::TIME | Type::TIMETZ => 92,
        Type::TIMESTAMP | Type::TIMESTAMPTZ => 93,
        Type::XML => 2009, // SQLXML
        _ => 1111,         // OTHER (uuid, json, jsonb, enums, ...)
    }
}

/// `precision`, `scale` as PgJDBC's ResultSetMetaData computes them from the type modifier.
fn precision_scale(ty: &Type, typmod: i32) -> (i32, i32) {
    let ty = base_type(ty);
    match *ty {
        Type::INT2 => (5, 0),
        Type::INT4 | Type::OID => (10, 0),
        Type::INT8 => (19, 0),
        Type::FLOAT4 => (8, 8),
        Type::FLOAT8 => (17, 17),
        Type::BOOL => (1, 0),
        Type::NUMERIC => {
            if typmod == -1 {
                (0, 0)
            } else {
                (((typmod - 4) >> 16) & 0xffff, (typmod - 4) & 0xffff)
            }
        }
        Type::BPCHAR | Type::VARCHAR => {
            if typmod == -1 {
                (i32::MAX, 0)
            } else {
                (typmod - 4, 0)
            }
        }
        Type::DATE => (13, 0),
        Type::TIME | Type::TIMETZ | Type::TIMESTAMP | Type::TIMESTAMPTZ => {
            let frac = if typmod == -1 { 6 } else { typmod };
            let base = match *ty {
                Type::TIME => 8,
                Type::TIMETZ => 14,
                Type::TIMESTAMP => 19,
                _ => 25,
            };
            (base + if frac > 0 { frac + 1 } else { 0 }, frac)
        }
        _ => (i32::MAX, 0),
    }
}

fn is_signed(ty: &Type) -> bool {
    matches!(
        *base_type(ty),
        Type::INT2 | Type::INT4 | Type::INT8 | Type::FLOAT4 | Type::FLOAT8 | Type::NUMERIC | Type::MONEY
    )
}

fn is_case_sensitive(ty: &Type) -> bool {
    !matches!(
        *base_type(ty),
        Type::OID
            | Type::INT2
            | Type::INT4
            | Type::INT8
            | Type::FLOAT4
            | Type::FLOAT8
            | Type::NUMERIC
            | Type::BOOL
            | Type::BIT
            | Type::VARBIT
            | Type::DATE
            | Type::TIME
            | Type::TIMETZ
            | Type::TIMESTAMP
            | Type::TIMESTAMPTZ
            | Type::INTERVAL
    )
}

/// One `ColumnMetadata` structure.
pub fn column_metadata(col: &tokio_postgres::Column, table: Option<&TableColumnInfo>) -> Value {
    let ty = col.type_();
    let (precision, scale) = precision_scale(ty, col.type_modifier());
    // java.sql.ResultSetMetaData: columnNoNulls = 0, columnNullable = 1, unknown = 2.
    let nullable = match table {
        Some(t) if t.not_null => 0,
        Some(_) => 1,
        None => 2,
    };
    let array_base = match base_type(ty).kind() {
        Kind::Array(elem) => jdbc_type(elem),
        _ => 0,
    };
    json!({
        "name": col.name(),
        "label": col.name(),
        "type": jdbc_type(ty),
        "typeName": ty.name(),
        "schemaName": "",
        "tableName": table.map(|t| t.table_name.as_str()).unwrap_or(""),
        "isAutoIncrement": table.is_some_and(|t| t.auto_increment),
        "isSigned": is_signed(ty),
        "isCurrency": *base_type(ty) == Type::MONEY,
        "isCaseSensitive": is_case_sensitive(ty),
        "nullable": nullable,
        "precision": precision,
        "scale": scale,
        "arrayBaseColumnType": array_base,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_render_like_postgresql_text_output_without_offset() {
        assert_eq!(format_timestamp(0), "2000-01-01 00:00:00");
        assert_eq!(format_timestamp(1_500_000), "2000-01-01 00:00:01.5");
        assert_eq!(format_timestamp(-1), "1999-12-31 23:59:59.999999");
        assert_eq!(format_date(-730_120), "0001-12-31 BC");
    }

    #[test]
    fn numeric_binary_decodes_to_text_with_scale() {
        // 12345.6700: ndigits 3, weight 1, sign +, dscale 4, digits [1, 2345, 6700]
        let b = [0, 3, 0, 1, 0, 0, 0, 4, 0, 1, 0x09, 0x29, 0x1a, 0x2c];
        assert_eq!(numeric_to_string(&b).as_deref(), Some("12345.6700"));
        // -0.05: ndigits 1, weight -1, sign -, dscale 2, digits [500]
        let b = [0, 1, 0xff, 0xff, 0x40, 0, 0, 2, 0x01, 0xf4];
        assert_eq!(numeric_to_string(&b).as_deref(), Some("-0.05"));
    }

    #[test]
    fn intervals_render_in_postgres_style() {
        assert_eq!(format_interval(14, 3, 4 * 3_600_000_000 + 5), "1 year 2 mons 3 days 04:00:00.000005");
        assert_eq!(format_interval(0, 0, 0), "00:00:00");
        assert_eq!(format_interval(0, -1, 3_600_000_000), "-1 days +01:00:00");
    }
}
