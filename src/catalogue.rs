//! The mail's words: one Fluent catalogue per language in `templates/i18n/`, compiled into the
//! binary, and the choice of the mail's locale from the order's (docs/design.md, "The mail").
//!
//! English is the fallback twice over: for an order without a usable locale or in a language
//! not shipped, and for a key a catalogue lacks (which the catalogue test refuses, so it only
//! happens between a catalogue edit and its test run). Pure: no I/O.

use fluent_bundle::concurrent::FluentBundle;
use fluent_bundle::{FluentArgs, FluentResource};
use icu_locale_core::{LanguageIdentifier, Locale};
use std::collections::HashMap;
use std::sync::OnceLock;

/// The languages shipped, English first: each has `templates/i18n/<language>.ftl`.
pub const LANGUAGES: [(&str, &str); 5] = [
    ("en", include_str!("../templates/i18n/en.ftl")),
    ("de", include_str!("../templates/i18n/de.ftl")),
    ("fr", include_str!("../templates/i18n/fr.ftl")),
    ("es", include_str!("../templates/i18n/es.ftl")),
    ("ja", include_str!("../templates/i18n/ja.ftl")),
];

/// One language's strings. Messages without variables are resolved once, when the catalogue is
/// built, so a render only formats the few that carry the order's values.
pub struct Catalogue {
    language: &'static str,
    bundle: FluentBundle<FluentResource>,
    fixed: HashMap<String, String>,
}

impl std::fmt::Debug for Catalogue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalogue").field("language", &self.language).finish_non_exhaustive()
    }
}

impl Catalogue {
    /// Builds a catalogue from Fluent source. The shipped sources are checked by the tests, so an
    /// error here is a broken build, reported by the test that loads every catalogue.
    pub fn from_source(language: &'static str, source: &str) -> Result<Self, String> {
        let resource = FluentResource::try_new(source.to_owned())
            .map_err(|(_, errors)| format!("templates/i18n/{language}.ftl does not parse: {errors:?}"))?;
        let ids = message_ids(&resource);
        let langid = language.parse().map_err(|e| format!("{language}: {e}"))?;
        let mut bundle = FluentBundle::new_concurrent(vec![langid]);
        // The mail is in left-to-right languages only; isolation marks around each value would be
        // invisible characters in the plain-text part and in copied order numbers.
        bundle.set_use_isolating(false);
        bundle.add_resource(resource).map_err(|errors| format!("templates/i18n/{language}.ftl: {errors:?}"))?;
        let mut fixed = HashMap::new();
        for id in ids {
            if let Some(pattern) = bundle.get_message(&id).and_then(|m| m.value()) {
                let mut errors = Vec::new();
                let text = bundle.format_pattern(pattern, None, &mut errors);
                if errors.is_empty() {
                    fixed.insert(id, text.into_owned());
                }
            }
        }
        Ok(Self { language, bundle, fixed })
    }

    /// The shipped catalogue of `language`, or English for a language not shipped.
    pub fn of(language: &str) -> &'static Catalogue {
        static ALL: OnceLock<Vec<Catalogue>> = OnceLock::new();
        let all = ALL.get_or_init(|| {
            LANGUAGES
                .iter()
                // A shipped catalogue that does not build leaves its language to the English one;
                // `every_shipped_catalogue_builds` fails on it.
                .filter_map(|(language, source)| Catalogue::from_source(language, source).ok())
                .collect()
        });
        all.iter().find(|c| c.language == language).or_else(|| all.iter().find(|c| c.language == "en")).unwrap_or_else(
            // Only reachable if en.ftl itself is broken, which every render test catches.
            || {
                static EMPTY: OnceLock<Catalogue> = OnceLock::new();
                EMPTY.get_or_init(|| Catalogue {
                    language: "en",
                    bundle: FluentBundle::new_concurrent(vec![unic_langid::LanguageIdentifier::default()]),
                    fixed: HashMap::new(),
                })
            },
        )
    }

    pub fn language(&self) -> &'static str {
        self.language
    }

    /// A message without variables; from English when this catalogue lacks it, the key itself
    /// when English does too.
    pub fn text<'a>(&'a self, key: &'a str) -> &'a str {
        match self.fixed.get(key) {
            Some(text) => text,
            None if self.language != "en" => Catalogue::of("en").text(key),
            None => key,
        }
    }

    /// A message with variables, each value inserted as given (escaping is the template's job).
    pub fn format(&self, key: &str, args: &[(&'static str, &str)]) -> String {
        let Some(pattern) = self.bundle.get_message(key).and_then(|m| m.value()) else {
            return if self.language != "en" { Catalogue::of("en").format(key, args) } else { key.to_owned() };
        };
        let mut fluent_args = FluentArgs::with_capacity(args.len());
        for (name, value) in args {
            fluent_args.set(*name, *value);
        }
        let mut errors = Vec::new();
        self.bundle.format_pattern(pattern, Some(&fluent_args), &mut errors).into_owned()
    }
}

/// The ids of the messages a Fluent resource defines.
pub fn message_ids(resource: &FluentResource) -> Vec<String> {
    resource
        .entries()
        .filter_map(|entry| match entry {
            fluent_syntax::ast::Entry::Message(m) => Some(m.id.name.to_owned()),
            _ => None,
        })
        .collect()
}

/// The keys of `reference` (English) that `source` lacks, in the reference's order.
pub fn missing_keys(source: &str, reference: &str) -> Vec<String> {
    let ids = |s: &str| match FluentResource::try_new(s.to_owned()) {
        Ok(r) | Err((r, _)) => message_ids(&r),
    };
    let have = ids(source);
    ids(reference).into_iter().filter(|k| !have.contains(k)).collect()
}

/// The locale a mail is written for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailLocale {
    /// Its catalogue's language.
    pub catalogue: &'static Catalogue,
    /// The locale dates and numbers are formatted for, and the HTML's `lang`.
    pub id: LanguageIdentifier,
}

impl PartialEq for Catalogue {
    fn eq(&self, other: &Self) -> bool {
        self.language == other.language
    }
}
impl Eq for Catalogue {}

impl MailLocale {
    /// The order's locale when its language is shipped (`de-AT` keeps its region: Austrian dates
    /// and amounts in German words); English otherwise, words, dates and numbers alike, so a mail
    /// never mixes English words with another language's month names.
    pub fn for_order(locale: Option<&Locale>) -> Self {
        if let Some(locale) = locale {
            let language = locale.id.language.as_str();
            if LANGUAGES.iter().any(|(l, _)| *l == language) {
                return Self { catalogue: Catalogue::of(language), id: locale.id.clone() };
            }
        }
        Self::english()
    }

    pub fn english() -> Self {
        Self { catalogue: Catalogue::of("en"), id: icu_locale_core::langid!("en") }
    }

    /// The `lang` attribute: the BCP 47 tag of the locale the mail is written in.
    pub fn tag(&self) -> String {
        self.id.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_catalogue_builds() {
        for (language, source) in LANGUAGES {
            let catalogue = Catalogue::from_source(language, source).unwrap();
            assert_eq!(Catalogue::of(language).language(), language);
            assert!(!catalogue.fixed.is_empty(), "{language}");
        }
    }

    #[test]
    fn every_catalogue_has_every_key_of_the_english_one() {
        let english = LANGUAGES[0].1;
        for (language, source) in &LANGUAGES[1..] {
            assert_eq!(missing_keys(source, english), Vec::<String>::new(), "templates/i18n/{language}.ftl lacks keys");
            // And no key English lacks: a key only one language has is a typo or a stale string.
            assert_eq!(
                missing_keys(english, source),
                Vec::<String>::new(),
                "templates/i18n/{language}.ftl has extra keys"
            );
        }
    }

    #[test]
    fn the_key_check_names_a_key_a_catalogue_lost() {
        let german = LANGUAGES[1].1;
        let without_total: String =
            german.lines().filter(|l| !l.starts_with("total =")).map(|l| format!("{l}\n")).collect();
        assert_eq!(missing_keys(&without_total, LANGUAGES[0].1), vec!["total".to_owned()]);
    }

    #[test]
    fn a_missing_string_falls_back_to_english() {
        let german = LANGUAGES[1].1;
        let partial: String = german
            .lines()
            .filter(|l| !l.starts_with("total =") && !l.starts_with("greeting ="))
            .map(|l| format!("{l}\n"))
            .collect();
        let catalogue = Catalogue::from_source("de", &partial).unwrap();
        assert_eq!(catalogue.text("total"), "Total");
        assert_eq!(catalogue.text("items"), "Ihre Artikel");
        assert_eq!(catalogue.format("greeting", &[("name", "Jürgen")]), "Hi Jürgen,");
    }

    #[test]
    fn values_go_into_messages_without_isolation_marks() {
        assert_eq!(Catalogue::of("ja").format("subject", &[("order_id", "ORD-1002")]), "ご注文 ORD-1002 を承りました");
        assert_eq!(Catalogue::of("de").format("greeting", &[("name", "<b>Jürgen</b>")]), "Hallo <b>Jürgen</b>,");
    }

    #[test]
    fn the_mail_locale_follows_the_order_with_english_as_the_fallback() {
        let of = |tag: &str| MailLocale::for_order(Some(&tag.parse().unwrap()));
        assert_eq!((of("ja-JP").catalogue.language(), of("ja-JP").tag()), ("ja", "ja-JP".to_owned()));
        assert_eq!((of("de-AT").catalogue.language(), of("de-AT").tag()), ("de", "de-AT".to_owned()));
        assert_eq!((of("en-IE").catalogue.language(), of("en-IE").tag()), ("en", "en-IE".to_owned()));
        assert_eq!((of("pt-BR").catalogue.language(), of("pt-BR").tag()), ("en", "en".to_owned()));
        assert_eq!(MailLocale::for_order(None).tag(), "en");
    }
}
