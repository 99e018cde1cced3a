//! The confirmation mail looked at, not only parsed: the sample orders (five shipped languages, a
//! language that falls back to English, five currencies, a 100-item order, a hostile name) are
//! rendered and opened in headless Chromium (Debian's `chromium`, which `make test` installs) at
//! 375 px (a phone) and 800 px (a desktop reading pane), in the light and the dark colour scheme.
//! Each run takes a screenshot and measures the page as a person would look at it: no horizontal
//! scroll, the total in view without scrolling at 800 px, the amount as CLDR writes it, nothing
//! escaped twice, the hostile name shown as typed, the preheader hidden, dark colours in the dark
//! scheme.
//!
//! Chromium's headless window is never narrower than 500 px (a 375 px screenshot of it is a crop of
//! a 500 px layout), so the mail is opened in a frame of exactly the width under test, which is
//! also how webmail shows it. A script added to the mail (only here) measures it and logs the
//! result on the console, which Chromium writes to stderr.
//!
//! `make mail-preview` runs this with `MAIL_PREVIEW_DIR=.local/preview`, where the screenshots and
//! an index.html stay for a person to open; otherwise they go to a temporary directory.

use order_confirmation::render::{MailSettings, StatusUrlTemplate, render};
use std::path::{Path, PathBuf};
use std::process::Command;

struct Sample {
    file: &'static str,
    body: String,
    /// The total as CLDR writes it for the mail's locale (written out here, not computed).
    total: &'static str,
    lang: &'static str,
    /// Text that must be on the page exactly as the customer typed it.
    shown: String,
}

const HOSTILE_NAME: &str = r#"<script>alert("x")</script> & O'Brien"#;

fn sample_batch_body(order_id: &str) -> String {
    let batch: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("events/sqs-batch.json")).unwrap(),
    )
    .unwrap();
    batch["Records"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["body"].as_str())
        .find(|b| b.contains(&format!("\"{order_id}\"")))
        .unwrap()
        .to_owned()
}

fn order(id: &str, name: &str, locale: &str, currency: &str, total: &str, items: serde_json::Value) -> String {
    serde_json::json!({
        "order_id": id, "customer_email": "customer@example.com", "customer_name": name, "locale": locale,
        "total": total, "currency": currency, "items": items,
        "fulfillment": {"estimated_delivery": "2026-12-02"}
    })
    .to_string()
}

fn samples() -> Vec<Sample> {
    let two = serde_json::json!([
        {"name": "Coffee mug", "quantity": 2, "price": "12.50"},
        {"name": "Coffee beans 1kg", "quantity": 1, "price": "17.50"}
    ]);
    let hundred: Vec<serde_json::Value> = (1..=100)
        .map(|i| serde_json::json!({"name": format!("Stoneware tea bowl no. {i}, speckled glaze"), "quantity": 1 + i % 3, "price": "24.00"}))
        .collect();
    vec![
        Sample {
            file: "ja-JP-JPY-ORD-1002",
            body: sample_batch_body("ORD-1002"),
            total: "￥129",
            lang: "ja-JP",
            shown: "山田 健二".into(),
        },
        Sample {
            file: "en-EUR-ORD-1001",
            body: sample_batch_body("ORD-1001"),
            total: "€42.50",
            lang: "en",
            shown: "Jane Doe".into(),
        },
        Sample {
            file: "de-DE-EUR",
            body: order("ORD-2001", "Jürgen Groß", "de-DE", "EUR", "1234.50", two.clone()),
            total: "1.234,50 €",
            lang: "de-DE",
            shown: "Jürgen Groß".into(),
        },
        Sample {
            file: "fr-FR-EUR",
            body: order("ORD-2002", "Élodie Lefèvre", "fr-FR", "EUR", "1234.50", two.clone()),
            total: "1 234,50 €",
            lang: "fr-FR",
            shown: "Élodie Lefèvre".into(),
        },
        Sample {
            file: "es-ES-EUR",
            body: order("ORD-2003", "Inés Núñez", "es-ES", "EUR", "42.50", two.clone()),
            total: "42,50 €",
            lang: "es-ES",
            shown: "Inés Núñez".into(),
        },
        Sample {
            file: "en-US-USD-hostile-name",
            body: order(
                "ORD-2004",
                HOSTILE_NAME,
                "en-US",
                "USD",
                "1234.50",
                serde_json::json!([{"name": format!("{HOSTILE_NAME} {}", "Unbreakable".repeat(8)), "quantity": 1, "price": "1234.50"}]),
            ),
            total: "$1,234.50",
            lang: "en-US",
            shown: HOSTILE_NAME.into(),
        },
        Sample {
            file: "en-GB-GBP-100-items",
            body: order("ORD-2005", "Harriet Smith", "en-GB", "GBP", "4800.00", serde_json::Value::Array(hundred)),
            total: "£4,800.00",
            lang: "en-GB",
            shown: "Stoneware tea bowl no. 100, speckled glaze".into(),
        },
        Sample {
            // Arabic is not shipped: English words and formats; the dinar keeps its three decimals.
            file: "ar-KW-KWD-falls-back-to-English",
            body: order("ORD-2006", "Fatima Al-Sabah", "ar-KW", "KWD", "12.5", two),
            total: "KWD 12.500",
            lang: "en",
            shown: "Fatima Al-Sabah".into(),
        },
    ]
}

/// What the script added to the mail reports, measured inside the frame.
const PROBE: &str = r#"<script>
(function () {
  var d = document, e = d.documentElement, total = d.getElementById('total');
  var r = total ? total.getBoundingClientRect() : null;
  var card = d.querySelector('.oc-card'), pre = d.querySelector('div[style*="display:none"]');
  var out = {
    width: innerWidth, height: innerHeight, scroll_width: Math.max(e.scrollWidth, d.body.scrollWidth),
    total: total ? total.innerText : null, total_bottom: r ? r.bottom : null, total_right: r ? r.right : null,
    text: d.body.innerText, lang: e.lang, dark: matchMedia('(prefers-color-scheme: dark)').matches,
    card_background: getComputedStyle(card).backgroundColor,
    text_colour: getComputedStyle(d.querySelector('.oc-text')).color,
    preheader_height: pre ? pre.getBoundingClientRect().height : -1,
    images_without_alt: d.querySelectorAll('img:not([alt])').length
  };
  console.log('MAILCHECK ' + JSON.stringify(out));
})();
</script>"#;

#[derive(serde::Deserialize, Debug)]
struct Probe {
    width: f64,
    height: f64,
    scroll_width: f64,
    total: Option<String>,
    total_bottom: Option<f64>,
    total_right: Option<f64>,
    text: String,
    lang: String,
    dark: bool,
    card_background: String,
    text_colour: String,
    preheader_height: f64,
    images_without_alt: u32,
}

fn chromium() -> PathBuf {
    let path = std::env::var_os("CHROMIUM").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(path.exists(), "{} not found: `make test` installs Debian's chromium (or set CHROMIUM)", path.display());
    path
}

/// Opens `frame` (the mail in a frame of `width` x `height`) once: a screenshot into `png` and the
/// probe's report.
fn look(frame: &Path, width: u32, height: u32, dark: bool, png: &Path) -> Probe {
    let profile = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(chromium());
    // As root and without a network: no sandbox, and nothing that would call out.
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--enable-logging=stderr",
        "--v=0",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .arg(format!("--window-size={width},{height}"))
    .arg(format!("--screenshot={}", png.display()));
    if dark {
        cmd.arg("--force-dark-mode");
    }
    let out = cmd.arg(format!("file://{}", frame.display())).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr
        .lines()
        .find(|l| l.contains("MAILCHECK "))
        .unwrap_or_else(|| panic!("no report from the page: {stderr}"));
    let json = &line[line.find("MAILCHECK ").unwrap() + "MAILCHECK ".len()..line.rfind("\", source:").unwrap()];
    assert!(png.exists(), "no screenshot: {stderr}");
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"))
}

/// CLDR's no-break spaces, compared as spaces.
fn plain(s: &str) -> String {
    s.replace(['\u{a0}', '\u{202f}'], " ")
}

#[test]
fn the_sample_mails_read_right_in_a_real_browser_at_phone_and_desktop_width_light_and_dark() {
    let kept = std::env::var_os("MAIL_PREVIEW_DIR").map(PathBuf::from);
    let temp = tempfile::tempdir().unwrap();
    let dir = kept.clone().unwrap_or_else(|| temp.path().to_owned());
    std::fs::create_dir_all(&dir).unwrap();
    let settings =
        MailSettings { status_url: Some(StatusUrlTemplate::parse("https://shop.example/orders/{order_id}").unwrap()) };
    let mut runs = Vec::new();
    for sample in samples() {
        let decoded = order_confirmation::decode::decode(&sample.body).unwrap();
        let mail = render(&decoded.order, &settings).unwrap();
        std::fs::write(dir.join(format!("{}.html", sample.file)), &mail.html).unwrap();
        std::fs::write(dir.join(format!("{}.txt", sample.file)), format!("Subject: {}\n\n{}", mail.subject, mail.text))
            .unwrap();
        let probe_page = mail.html.replace("</body>", &format!("{PROBE}\n</body>"));
        assert_ne!(probe_page, mail.html, "the mail has a </body> to add the probe before");
        std::fs::write(dir.join(format!("{}.probe.html", sample.file)), probe_page).unwrap();
        for (width, height) in [(375u32, 812u32), (800, 600)] {
            let frame = dir.join(format!("{}.{width}.frame.html", sample.file));
            std::fs::write(
                &frame,
                format!(
                    "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><style>html,body{{margin:0;padding:0;overflow:hidden}}\
                     iframe{{display:block;border:0}}</style></head><body><iframe src=\"{}.probe.html\" width=\"{width}\" \
                     height=\"{height}\" title=\"mail\"></iframe></body></html>",
                    sample.file
                ),
            )
            .unwrap();
            for dark in [false, true] {
                runs.push((sample.file, frame.clone(), width, height, dark));
            }
        }
        // The plain-text part carries the same facts.
        let text = plain(&mail.text);
        assert!(text.contains(sample.total), "{}: {text}", sample.file);
        assert!(text.contains(decoded.order.order_id.as_str()), "{}", sample.file);
        assert!(text.contains("https://shop.example/orders/"), "{}", sample.file);
        assert!(text.contains(&sample.shown), "{}", sample.file);
        assert!(mail.html.len() < 60 * 1024, "{}: {} bytes", sample.file, mail.html.len());
    }

    // Two browsers at a time: the machine has two cores.
    let results: Vec<(&str, u32, bool, PathBuf, Probe)> = std::thread::scope(|s| {
        let mut out = Vec::new();
        for pair in runs.chunks(2) {
            let handles: Vec<_> = pair
                .iter()
                .map(|(file, frame, width, height, dark)| {
                    let png = dir.join(format!("{file}-{width}-{}.png", if *dark { "dark" } else { "light" }));
                    s.spawn(move || (*file, *width, *dark, png.clone(), look(frame, *width, *height, *dark, &png)))
                })
                .collect();
            out.extend(handles.into_iter().map(|h| h.join().unwrap()));
        }
        out
    });

    let samples = samples();
    let mut failures = Vec::new();
    for (file, width, dark, _, p) in &results {
        let sample = samples.iter().find(|s| s.file == *file).unwrap();
        let at = format!("{file} at {width} px {}", if *dark { "dark" } else { "light" });
        let mut check = |ok: bool, what: String| {
            if !ok {
                failures.push(format!("{at}: {what}"));
            }
        };
        check(p.width == f64::from(*width), format!("the frame is {} px wide", p.width));
        check(
            p.scroll_width <= p.width,
            format!("scrolls sideways: {} px of content in {} px", p.scroll_width, p.width),
        );
        check(
            p.total.as_deref().map(plain).as_deref() == Some(sample.total),
            format!("total reads {:?}, CLDR writes {:?}", p.total, sample.total),
        );
        check(p.total_right.is_some_and(|r| r <= p.width), format!("the total's right edge is at {:?}", p.total_right));
        if *width == 800 {
            check(
                p.total_bottom.is_some_and(|b| b <= p.height),
                format!("the total ends at {:?}, below the {} px fold", p.total_bottom, p.height),
            );
        }
        let text = plain(&p.text);
        check(text.contains(&sample.shown), format!("{:?} is not on the page as typed", sample.shown));
        for entity in ["&amp;", "&lt;", "&gt;", "&quot;", "&#"] {
            check(!text.contains(entity), format!("{entity} shows on the page: escaped twice"));
        }
        check(p.lang == sample.lang, format!("lang is {:?}, expected {:?}", p.lang, sample.lang));
        check(p.preheader_height == 0.0 && !text.contains("Thank you! Order"), "the preheader shows".to_owned());
        check(p.images_without_alt == 0, format!("{} images without alt text", p.images_without_alt));
        check(p.dark == *dark, format!("prefers-color-scheme dark is {}", p.dark));
        let (card, colour) =
            if *dark { ("rgb(28, 32, 38)", "rgb(233, 236, 239)") } else { ("rgb(255, 255, 255)", "rgb(29, 35, 41)") };
        check(
            p.card_background == card && p.text_colour == colour,
            format!("colours {} on {}", p.text_colour, p.card_background),
        );
    }
    if let Some(dir) = &kept {
        let mut index = String::from(
            "<!DOCTYPE html><meta charset=\"utf-8\"><title>Mail preview</title><body style=\"font-family:sans-serif\">",
        );
        for sample in &samples {
            index.push_str(&format!(
                "<h2>{0}</h2><p><a href=\"{0}.html\">HTML</a> · <a href=\"{0}.txt\">text</a></p>",
                sample.file
            ));
            for (width, scheme) in [(375, "light"), (375, "dark"), (800, "light"), (800, "dark")] {
                index.push_str(&format!("<img src=\"{}-{width}-{scheme}.png\" alt=\"{} at {width} px, {scheme}\" style=\"vertical-align:top;margin:4px;border:1px solid #ccc\">", sample.file, sample.file));
            }
        }
        std::fs::write(dir.join("index.html"), index).unwrap();
        println!("{} screenshots in {}", results.len(), dir.display());
    }
    assert_eq!(results.len(), samples.len() * 4);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
