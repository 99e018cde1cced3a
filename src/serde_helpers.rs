//! How settings and reports print: durations as seconds, secrets masked. Used with serde's
//! `with` and `serialize_with` by every settings type, wherever it lives.

/// Prints only the last six characters: enough to tell two apart, not enough to spread a name.
pub fn masked<S: serde::Serializer>(value: &str, s: S) -> Result<S::Ok, S::Error> {
    let tail: String = value.chars().rev().take(6).collect::<Vec<_>>().into_iter().rev().collect();
    s.serialize_str(&format!("****{tail}"))
}

/// Durations print as seconds.
pub mod secs {
    pub fn serialize<S: serde::Serializer>(d: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}
