//! Amounts in the mail, by ISO 4217 minor units and CLDR's patterns (docs/design.md, "The mail").
//!
//! The rules are ICU4X's and CLDR's, not written here: how many decimals a currency has (JPY 0,
//! EUR 2, KWD 3, from CLDR's currency data, which ICU4X compiles in), its symbol in the mail's
//! locale and where it goes (`¥129` in English, `42,50 €` in German, `€42.50` in Irish English).
//! An amount the currency cannot hold (129.5 JPY) is never rounded into a different price: it is
//! shown as given, with its ISO code, and decode notes it (see [`fits`]). Pure: no I/O.
//!
//! Formatters are built once per thread for each locale and currency (building one loads its data
//! and costs far more than formatting with it); the caches are bounded so a stream of distinct
//! locales cannot grow them without limit.

use fixed_decimal::Decimal;
use icu_decimal::DecimalFormatter;
use icu_experimental::dimension::currency::CurrencyType;
use icu_experimental::dimension::currency::formatter::CurrencyFormatter;
use icu_experimental::dimension::provider::currency::fractions::CurrencyFractionsV1;
use icu_locale_core::LanguageIdentifier;
use icu_provider::prelude::*;
use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::Hash;
use std::rc::Rc;
use std::thread::LocalKey;

/// Distinct (locale, currency) formatters kept per thread before the cache starts over.
const CACHE_LIMIT: usize = 256;

/// The number of decimals `currency` has (ISO 4217 minor units as CLDR records them: JPY 0, EUR 2,
/// KWD 3). CLDR's default (2) for a code it does not know; `None` for text that is not a
/// three-letter code.
pub fn minor_units(currency: &str) -> Option<u8> {
    let code = CurrencyType::try_from_str(currency).ok()?;
    thread_local! {
        static FRACTIONS: Option<DataPayload<CurrencyFractionsV1>> =
            icu_experimental::provider::Baked.load(DataRequest::default()).ok().map(|r| r.payload);
    }
    // The fractions are compiled into the binary; without them every currency has CLDR's default.
    FRACTIONS.with(|f| Some(f.as_ref().map_or(2, |f| f.get().resolve(code).digits)))
}

/// Whether `amount` (decimal text, as decode keeps it) is exact in `currency`: no non-zero digit
/// past the currency's minor units. `129.00` fits JPY, `129.50` does not; `1.250` fits KWD.
pub fn fits(amount: &str, currency: &str) -> bool {
    let digits = minor_units(currency).unwrap_or(2) as usize;
    let fraction = amount.split_once('.').map_or("", |(_, f)| f);
    fraction.chars().skip(digits).all(|c| c == '0')
}

/// `amount` in `currency` as CLDR writes it for `locale`: the currency's symbol for that locale
/// (its ISO code where CLDR has none) in the locale's pattern, with exactly the currency's
/// decimals. An amount the currency cannot hold is shown as given, with the ISO code: the number
/// in the locale's digits and separators, every decimal kept (`129.5 JPY`). Without a currency,
/// the number alone in the locale's format.
pub fn format(amount: &str, currency: Option<&str>, locale: &LanguageIdentifier) -> String {
    let Ok(mut value) = Decimal::try_from_str(amount) else {
        // Decode only keeps decimal text; anything else is shown as it came.
        return amount.to_owned();
    };
    let Some(currency) = currency else {
        return number(&value, locale);
    };
    if !fits(amount, currency) {
        value.trim_end();
        return format!("{} {currency}", number(&value, locale));
    }
    let digits = minor_units(currency).unwrap_or(2);
    // Exactly the currency's decimals: `1.25` KWD is `1.250`, `129.00` JPY is `129`.
    value.trim_end();
    value.pad_end(-i16::from(digits));
    match currency_formatter(locale, currency) {
        Some(f) => f.format_fixed_decimal(&value).to_string(),
        None => format!("{} {currency}", number(&value, locale)),
    }
}

/// The number in the locale's digits, separators and grouping.
fn number(value: &Decimal, locale: &LanguageIdentifier) -> String {
    thread_local! {
        static CACHE: FormatterCache<LanguageIdentifier, DecimalFormatter> = RefCell::default();
    }
    match cached(&CACHE, locale, || DecimalFormatter::try_new(locale.into(), Default::default()).ok()) {
        Some(f) => f.format(value).to_string(),
        None => value.to_string(),
    }
}

fn currency_formatter(locale: &LanguageIdentifier, currency: &str) -> Option<Rc<CurrencyFormatter<DecimalFormatter>>> {
    thread_local! {
        static CACHE: FormatterCache<(LanguageIdentifier, CurrencyType), CurrencyFormatter<DecimalFormatter>> =
            RefCell::default();
    }
    let code = CurrencyType::try_from_str(currency).ok()?;
    cached(&CACHE, &(locale.clone(), code), || {
        CurrencyFormatter::try_new_symbol(locale.into(), code, Default::default()).ok()
    })
}

/// ICU4X formatters of one kind, kept by one thread (they are not `Sync`).
pub(crate) type FormatterCache<K, V> = RefCell<HashMap<K, Rc<V>>>;

/// The formatter for `key` from this thread's `cache`, built by `build` the first time. The cache
/// starts over past [`CACHE_LIMIT`] entries. `None` when ICU4X has no data to build it.
pub(crate) fn cached<K: Clone + Eq + Hash + 'static, V: 'static>(
    cache: &'static LocalKey<FormatterCache<K, V>>,
    key: &K,
    build: impl FnOnce() -> Option<V>,
) -> Option<Rc<V>> {
    cache.with(|cache| {
        if let Some(f) = cache.borrow().get(key) {
            return Some(f.clone());
        }
        let f = Rc::new(build()?);
        let mut cache = cache.borrow_mut();
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(key.clone(), f.clone());
        Some(f)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(locale: &str, amount: &str, currency: &str) -> String {
        // CLDR puts no-break spaces (U+00A0, U+202F) inside amounts; compared here as spaces.
        format(amount, Some(currency), &locale.parse().unwrap()).replace(['\u{a0}', '\u{202f}'], " ")
    }

    #[test]
    fn minor_units_come_from_cldr_currency_data() {
        assert_eq!(minor_units("JPY"), Some(0));
        assert_eq!(minor_units("EUR"), Some(2));
        assert_eq!(minor_units("KWD"), Some(3));
        assert_eq!(minor_units("XYZ"), Some(2), "CLDR's default for a code it does not know");
        assert_eq!(minor_units("12"), None);
    }

    #[test]
    fn amounts_read_as_cldr_writes_them_in_each_locale() {
        assert_eq!(at("en", "129.00", "JPY"), "¥129");
        assert_eq!(at("de-DE", "42.50", "EUR"), "42,50 €");
        assert_eq!(at("en-IE", "42.50", "EUR"), "€42.50");
        assert_eq!(at("fr-FR", "1234.50", "EUR"), "1 234,50 €");
        assert_eq!(at("es-ES", "42.50", "EUR"), "42,50 €");
        assert_eq!(at("en-US", "1234.50", "USD"), "$1,234.50");
        assert_eq!(at("en-GB", "19.90", "GBP"), "£19.90");
        assert_eq!(at("en", "1.25", "KWD"), "KWD 1.250");
    }

    #[test]
    fn yen_in_japanese_has_no_decimals() {
        // CLDR's Japanese symbol for the yen is the full-width sign.
        assert_eq!(at("ja-JP", "129.00", "JPY"), "￥129");
        assert_eq!(at("ja-JP", "12900.00", "JPY"), "￥12,900");
    }

    #[test]
    fn an_amount_the_currency_cannot_hold_is_shown_as_given_with_its_code() {
        assert!(!fits("129.50", "JPY"));
        assert!(fits("129.00", "JPY"));
        assert!(fits("1.250", "KWD"));
        assert!(!fits("1.2505", "KWD"));
        assert_eq!(at("en", "129.50", "JPY"), "129.5 JPY");
        assert_eq!(at("de-DE", "129.50", "JPY"), "129,5 JPY");
    }

    #[test]
    fn an_amount_without_currency_is_a_number_in_the_locale_format() {
        assert_eq!(format("1234.50", None, &"de-DE".parse().unwrap()), "1.234,50");
        assert_eq!(format("1234.50", None, &"en".parse().unwrap()), "1,234.50");
    }
}
