//! A small PostgreSQL lexer: just enough to find `:name` placeholders and top-level `;`.
//!
//! The Data API takes named parameters (`:name`) while PostgreSQL's extended protocol wants
//! positional ones (`$1`). A placeholder is only a placeholder in plain SQL text: not inside
//! string literals ('...', E'...', $tag$...$tag$), quoted identifiers ("..."), comments
//! (`-- ...`, nested `/* ... */`), and not the second colon of a `::` cast.

/// One statement of the request's SQL, rewritten to positional parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Rewritten {
    /// SQL text with `$n` placeholders.
    pub sql: String,
    /// Parameter name for `$1`, `$2`, ... (a name used twice maps to one position).
    pub names: Vec<String>,
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || (c as u32) >= 0x80
}

fn is_ident_char(c: char) -> bool {
    is_ident_start(c) || c.is_ascii_digit() || c == '$'
}

/// Lexes `sql`, replacing placeholders in plain SQL text and copying literals and comments
/// verbatim. Returns the rewritten statements, split at top-level semicolons; empty statements
/// (only whitespace or comments) are dropped.
pub fn rewrite(sql: &str) -> Vec<Rewritten> {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut names: Vec<String> = Vec::new();
    let mut has_code = false;
    let mut i = 0;
    let n = chars.len();
    while i < n {
        let c = chars[i];
        // Line comment.
        if c == '-' && i + 1 < n && chars[i + 1] == '-' {
            while i < n && chars[i] != '\n' {
                cur.push(chars[i]);
                i += 1;
            }
            continue;
        }
        // Block comment; PostgreSQL allows nesting.
        if c == '/' && i + 1 < n && chars[i + 1] == '*' {
            let mut depth = 0usize;
            while i < n {
                if chars[i] == '/' && i + 1 < n && chars[i + 1] == '*' {
                    depth += 1;
                    cur.push_str("/*");
                    i += 2;
                } else if chars[i] == '*' && i + 1 < n && chars[i + 1] == '/' {
                    depth -= 1;
                    cur.push_str("*/");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    cur.push(chars[i]);
                    i += 1;
                }
            }
            continue;
        }
        // Escape string E'...': backslash escapes the next char. The E must start a token.
        if (c == 'e' || c == 'E') && i + 1 < n && chars[i + 1] == '\'' && (i == 0 || !is_ident_char(chars[i - 1])) {
            has_code = true;
            cur.push(c);
            cur.push('\'');
            i += 2;
            while i < n {
                let d = chars[i];
                cur.push(d);
                i += 1;
                if d == '\\' && i < n {
                    cur.push(chars[i]);
                    i += 1;
                } else if d == '\'' {
                    if i < n && chars[i] == '\'' {
                        cur.push('\'');
                        i += 1;
                    } else {
                        break;
                    }
                }
            }
            continue;
        }
        // Standard string ('' escapes a quote) or quoted identifier ("" escapes a quote).
        if c == '\'' || c == '"' {
            has_code = true;
            let q = c;
            cur.push(q);
            i += 1;
            while i < n {
                let d = chars[i];
                cur.push(d);
                i += 1;
                if d == q {
                    if i < n && chars[i] == q {
                        cur.push(q);
                        i += 1;
                    } else {
                        break;
                    }
                }
            }
            continue;
        }
        // Dollar quoting: $tag$ ... $tag$ (tag may be empty; `$1` is a parameter, not a tag).
        if c == '$' && (i == 0 || !is_ident_char(chars[i - 1])) {
            let mut j = i + 1;
            while j < n && chars[j] != '$' && is_ident_char(chars[j]) {
                j += 1;
            }
            let tag_ok = j < n && chars[j] == '$' && (j == i + 1 || is_ident_start(chars[i + 1]));
            if tag_ok {
                has_code = true;
                let tag: String = chars[i..=j].iter().collect();
                let tag_chars: Vec<char> = tag.chars().collect();
                cur.push_str(&tag);
                i = j + 1;
                loop {
                    if i >= n {
                        break;
                    }
                    if chars[i] == '$' && chars[i..].starts_with(&tag_chars) {
                        cur.push_str(&tag);
                        i += tag_chars.len();
                        break;
                    }
                    cur.push(chars[i]);
                    i += 1;
                }
                continue;
            }
        }
        // `::` cast: both colons are plain text and the type name after them is no parameter.
        if c == ':' && i + 1 < n && chars[i + 1] == ':' {
            has_code = true;
            cur.push_str("::");
            i += 2;
            continue;
        }
        // `:name` placeholder.
        if c == ':' && i + 1 < n && is_ident_start(chars[i + 1]) {
            let mut j = i + 1;
            while j < n && (chars[j].is_ascii_alphanumeric() || chars[j] == '_' || (chars[j] as u32) >= 0x80) {
                j += 1;
            }
            let name: String = chars[i + 1..j].iter().collect();
            let pos = match names.iter().position(|x| *x == name) {
                Some(p) => p + 1,
                None => {
                    names.push(name);
                    names.len()
                }
            };
            has_code = true;
            cur.push_str(&format!("${pos}"));
            i = j;
            continue;
        }
        if c == ';' {
            if has_code {
                out.push(Rewritten { sql: std::mem::take(&mut cur), names: std::mem::take(&mut names) });
            } else {
                cur.clear();
            }
            has_code = false;
            i += 1;
            continue;
        }
        // An identifier: copy it whole so an `e` inside a name never starts an E'' string.
        if is_ident_start(c) {
            has_code = true;
            while i < n && is_ident_char(chars[i]) {
                cur.push(chars[i]);
                i += 1;
            }
            continue;
        }
        if !c.is_whitespace() {
            has_code = true;
        }
        cur.push(c);
        i += 1;
    }
    if has_code {
        out.push(Rewritten { sql: cur, names });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(sql: &str) -> Rewritten {
        let mut v = rewrite(sql);
        assert_eq!(v.len(), 1, "{v:?}");
        v.remove(0)
    }

    #[test]
    fn named_parameters_become_positional_and_repeat_names_share_a_position() {
        let r = one("SELECT :a, :b, :a");
        assert_eq!(r.sql, "SELECT $1, $2, $1");
        assert_eq!(r.names, vec!["a", "b"]);
    }

    #[test]
    fn placeholders_inside_literals_comments_identifiers_and_casts_are_left_alone() {
        let r = one("SELECT ':x', E'\\':y', $$ :z $$, $t$ :w $t$, \"a:b\", x::jsonb, \
             CAST(:p AS jsonb) -- :c\n /* :d /* :e */ */ ");
        assert_eq!(r.names, vec!["p"]);
        assert!(r.sql.contains("CAST($1 AS jsonb)"));
        assert!(r.sql.contains("x::jsonb"));
        assert!(r.sql.contains("':x'"));
        assert!(r.sql.contains("-- :c"));
    }

    #[test]
    fn statements_split_at_top_level_semicolons_only() {
        let v = rewrite("SELECT ';'; SELECT :a; -- trailing ; comment\n");
        assert_eq!(v.len(), 2);
        assert_eq!(v[1].names, vec!["a"]);
    }

    #[test]
    fn identifiers_ending_in_e_do_not_start_escape_strings() {
        let r = one("SELECT name FROM t WHERE type='a' AND x = :v");
        assert_eq!(r.names, vec!["v"]);
    }
}
