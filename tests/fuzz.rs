//! A time-bounded fuzz run of what reads untrusted text: the message decoder, the legacy
//! Python-literal reader and the mail renderer (docs/design.md, "Hostile input").
//!
//! Why not cargo-fuzz: libFuzzer's instrumentation needs a nightly toolchain, and the project's
//! machines have one stable toolchain. This runs everywhere the tests run: inputs come from the
//! committed seed corpus (`fuzz/corpus/`), mutated (byte flips, insertions and deletions, splices
//! of two seeds, hostile tokens such as `\ud800`, `1e400`, `Decimal(`, deep nesting), and from
//! proptest strategies that build order-shaped JSON and legacy literals with hostile leaves. Each
//! input must hold these properties, checked in a debug build (overflow checks on):
//!
//! - `decode` and `pylit::parse` never panic;
//! - an order that decodes renders, and its canonical payload decodes to the same order (what
//!   reconciliation relies on when it re-sends from the ledger);
//! - a rejection reason or note never repeats a planted marker value (no echo into logs).
//!
//! `make test` runs it for `FUZZ_SECONDS` (default 5); `make fuzz` runs it for 600 seconds. A
//! failing input is written to `target/fuzz-crashes/` and named in the failure.

use order_confirmation::decode::decode;
use order_confirmation::pylit;
use order_confirmation::render::render;
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use rand::{RngExt, SeedableRng};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Planted in generated values: no reason or note may ever contain it.
const MARKER: &str = "zq.marker@leak.example";

/// Tokens that have broken parsers of this kind before, spliced into seeds.
const TOKENS: &[&str] = &[
    "\\ud800",
    "\\udc00",
    "\\u0000",
    "1e400",
    "-1e400",
    "1e-400",
    "9223372036854775808",
    "-9223372036854775809",
    "NaN",
    "Infinity",
    "Decimal('",
    "Decimal(",
    "datetime.datetime(",
    "datetime.date(",
    "tzinfo=datetime.timezone.utc",
    "__import__('os')",
    "'''",
    "\"\"\"",
    "\\x",
    "\\U0010ffff",
    "\\U00110000",
    "\r\n",
    "\u{0}",
    "\u{202e}",
    "🎁",
    "{'a': ",
    "[[[[[[[[",
    "]]]]]]]]",
    "\"priority\": \"HIGH\"",
    "\"total\": ",
    "\"schema_version\": ",
    "\"items\": [",
    "\"fulfillment\": {\"estimated_delivery\": ",
    "True",
    "None",
    ",,",
    ": :",
];

fn seconds() -> u64 {
    std::env::var("FUZZ_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(5)
}

fn corpus() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let mut seeds: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    seeds.sort();
    assert!(seeds.len() >= 10, "the seed corpus in fuzz/corpus/ is missing");
    seeds.into_iter().map(|(_, b)| b).collect()
}

/// One mutation of a seed, as libFuzzer's default mutators would do it, without coverage.
fn mutate(rng: &mut impl RngExt, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut data = seeds[rng.random_range(0..seeds.len())].clone();
    for _ in 0..rng.random_range(1..=4) {
        let len = data.len();
        match rng.random_range(0..7) {
            0 if len > 0 => {
                let i = rng.random_range(0..len);
                data[i] ^= 1 << rng.random_range(0..8);
            }
            1 if len > 0 => {
                let i = rng.random_range(0..len);
                let n = rng.random_range(1..=(len - i).min(16));
                data.drain(i..i + n);
            }
            2 => {
                let i = rng.random_range(0..=len);
                let b: u8 = rng.random();
                data.insert(i, b);
            }
            3 => {
                let i = rng.random_range(0..=len);
                let t = TOKENS[rng.random_range(0..TOKENS.len())].as_bytes();
                data.splice(i..i, t.iter().copied());
            }
            4 => {
                // Splice: the head of this seed, the tail of another.
                let other = &seeds[rng.random_range(0..seeds.len())];
                let cut = rng.random_range(0..=len);
                let from = rng.random_range(0..=other.len());
                data.truncate(cut);
                data.extend_from_slice(&other[from..]);
            }
            5 if len > 0 => {
                // Repeat a slice: long strings, deep nesting.
                let i = rng.random_range(0..len);
                let n = rng.random_range(1..=(len - i).min(8));
                let chunk = data[i..i + n].to_vec();
                for _ in 0..rng.random_range(1..200) {
                    data.splice(i..i, chunk.iter().copied());
                }
            }
            _ => {
                let i = rng.random_range(0..=len);
                data.splice(i..i, MARKER.bytes());
            }
        }
    }
    data
}

/// Order-shaped JSON or legacy literals whose optional and vendor fields hold hostile values.
fn structured() -> impl Strategy<Value = String> {
    use proptest::prelude::*;
    let hostile = prop_oneof![
        Just(format!("\"{MARKER}\"")),
        Just("1e400".to_owned()),
        Just("-0".to_owned()),
        Just("\"\\ud800\"".to_owned()),
        Just("[]".to_owned()),
        Just("{}".to_owned()),
        Just("null".to_owned()),
        Just("true".to_owned()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| f.to_string()),
        "\\PC{0,40}".prop_map(|s| serde_json::Value::String(format!("{s}{MARKER}")).to_string()),
    ];
    let field = prop_oneof![
        Just("priority"),
        Just("total"),
        Just("currency"),
        Just("schema_version"),
        Just("items"),
        Just("fulfillment"),
        Just("extra"),
    ];
    let json = (prop::collection::vec((field, hostile.clone()), 0..6), any::<bool>()).prop_map(|(fields, nested)| {
        let mut body =
            String::from("{\"order_id\": \"F-1\", \"customer_email\": \"f@example.com\", \"customer_name\": \"Fuzz\"");
        for (name, value) in fields {
            let value = match (name, nested) {
                ("items", _) => format!("[{{\"name\": \"x\", \"price\": {value}, \"quantity\": {value}}}]"),
                ("fulfillment", true) => format!("{{\"center\": {value}, \"estimated_delivery\": {value}}}"),
                _ => value,
            };
            body.push_str(&format!(", \"{name}\": {value}"));
        }
        body.push('}');
        body
    });
    let legacy = (any::<u16>(), 0u8..3, any::<i32>()).prop_map(|(y, kind, n)| {
        let detail = match kind {
            0 => format!("Decimal('{n}.{y}')"),
            1 => format!("datetime.datetime({y}, {}, {}, 1, 2, 3)", n % 13, n % 32),
            _ => format!("datetime.date({y}, {n}, 1)"),
        };
        format!("{{'order_id': 'F-2', 'customer_email': 'f@example.com', 'customer_name': 'Fuzz', 'total': {detail}, 'fulfillment': {{'estimated_delivery': {detail}}}}}")
    });
    prop_oneof![json, legacy]
}

/// The properties one input must hold; `Err` says which one broke.
fn check(text: &str) -> Result<(), String> {
    let _ = pylit::parse(text);
    match decode(text) {
        Ok(d) => {
            for note in &d.notes {
                if note.to_string().contains(MARKER) {
                    return Err(format!("a note repeats the refused value: {note}"));
                }
            }
            render(&d.order, &Default::default()).map_err(|e| format!("a decoded order does not render: {e}"))?;
            let again =
                decode(&d.order.canonical_json()).map_err(|e| format!("the canonical payload does not decode: {e}"))?;
            if again.order != d.order {
                return Err("the canonical payload decodes to another order".to_owned());
            }
            // The canonical form adds no note of its own: a note it still carries is about a value
            // the order keeps (an amount its currency cannot hold, shown as given), which the
            // first reading noted too.
            let first: Vec<String> = d.notes.iter().map(ToString::to_string).collect();
            if let Some(new) = again.notes.iter().find(|n| !first.contains(&n.to_string())) {
                return Err(format!("the canonical payload has a note the message did not: {new:?}"));
            }
        }
        Err(reason) => {
            // Required fields may be refused with the field's own rule, never with its value.
            if reason.to_string().contains(MARKER) {
                return Err(format!("a rejection repeats the refused value: {reason}"));
            }
        }
    }
    Ok(())
}

fn save(input: &[u8]) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-crashes");
    std::fs::create_dir_all(&dir).unwrap();
    let name = format!(
        "crash-{:016x}",
        input.iter().fold(0xcbf29ce484222325u64, |h, b| (h ^ *b as u64).wrapping_mul(0x100000001b3))
    );
    let path = dir.join(name);
    std::fs::write(&path, input).unwrap();
    path
}

#[test]
fn decode_pylit_and_render_hold_their_properties_on_mutated_and_generated_input() {
    let seeds = corpus();
    let budget = Duration::from_secs(seconds());
    let seed: u64 = std::env::var("FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &seed.to_le_bytes().repeat(4)),
    );
    let strategy = structured();
    // Quiet the default hook: a panic is reported once, with its input, below.
    std::panic::set_hook(Box::new(|_| {}));
    let started = Instant::now();
    let (mut runs, mut failures) = (0u64, Vec::new());
    for s in &seeds {
        runs += 1;
        if let Err(e) = run_one(s) {
            failures.push((save(s), e));
        }
    }
    while started.elapsed() < budget && failures.len() < 5 {
        let input = if runs % 4 == 0 {
            strategy.new_tree(&mut runner).map(|t| t.current().into_bytes()).unwrap_or_default()
        } else {
            mutate(&mut rng, &seeds)
        };
        runs += 1;
        if let Err(e) = run_one(&input) {
            failures.push((save(&input), e));
        }
    }
    let _ = std::panic::take_hook();
    println!(
        "fuzz: {runs} inputs in {:.0} s ({:.0}/s), seed {seed}, {} seeds, {} failures",
        started.elapsed().as_secs_f64(),
        runs as f64 / started.elapsed().as_secs_f64(),
        seeds.len(),
        failures.len()
    );
    assert!(failures.is_empty(), "FUZZ_SEED={seed}: {failures:#?}");
}

fn run_one(input: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(input);
    match std::panic::catch_unwind(AssertUnwindSafe(|| check(&text))) {
        Ok(result) => result,
        Err(panic) => Err(format!(
            "panic: {}",
            panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default()
        )),
    }
}
