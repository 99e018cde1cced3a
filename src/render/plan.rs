//! The templates compiled once per language into a plan of static text and value slots, so a
//! render only writes the order's values between chunks already joined (docs/design.md, "The
//! mail").
//!
//! The templates in `templates/` stay the layout's one source, written in the subset of Jinja
//! they use: `{{ value }}`, `{{ item.price or "" }}`, `{% if value %}`, `{% for item in items %}`,
//! comments, and `-` to trim whitespace. Each language's catalogue words (`t.*`) are resolved and
//! escaped when the plan is built, and joined with the text around them; what is left per order
//! is a dozen values. Anything else in a template is refused when the plan is built, which the
//! render tests do first. The result is byte for byte what minijinja writes for the same
//! template (`the_compiled_mail_is_byte_identical_to_minijinja_for_every_sample`).

use std::fmt::Write as _;

/// A value of one order that the templates show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Slot {
    Lang,
    Subject,
    Preheader,
    Greeting,
    OrderId,
    Total,
    EstimatedDelivery,
    StatusUrl,
    Items,
    ItemName,
    ItemQuantity,
    ItemPrice,
    ItemEach,
}

impl Slot {
    fn of(path: &str) -> Option<Self> {
        Some(match path {
            "lang" => Self::Lang,
            "subject" => Self::Subject,
            "preheader" => Self::Preheader,
            "greeting" => Self::Greeting,
            "order_id" => Self::OrderId,
            "total" => Self::Total,
            "estimated_delivery" => Self::EstimatedDelivery,
            "status_url" => Self::StatusUrl,
            "items" => Self::Items,
            "item.name" => Self::ItemName,
            "item.quantity" => Self::ItemQuantity,
            "item.price" => Self::ItemPrice,
            "item.each" => Self::ItemEach,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Text(String),
    /// `{{ value }}`; `or ""` is the same, since an absent value writes nothing either way.
    Value(Slot),
    If(Slot, Vec<Node>),
    ForItems(Vec<Node>),
}

/// One template for one language.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Plan {
    nodes: Vec<Node>,
    /// Bytes of static text written for an order without optional parts: the output's least size.
    static_len: usize,
    escape: bool,
}

/// One item's values.
pub(super) struct ItemValues<'a> {
    pub name: &'a str,
    pub quantity: u32,
    pub price: Option<String>,
    pub each: Option<String>,
}

/// One order's values.
pub(super) struct Values<'a> {
    pub lang: &'a str,
    pub subject: &'a str,
    pub preheader: &'a str,
    pub greeting: &'a str,
    pub order_id: &'a str,
    pub total: Option<String>,
    pub estimated_delivery: Option<String>,
    pub status_url: Option<String>,
    pub items: Vec<ItemValues<'a>>,
}

impl Values<'_> {
    /// The value of `slot` (for an item's slot, of `item`); `None` when it is absent or empty,
    /// which a template's `if` reads as false, as Jinja does.
    fn text<'v>(&'v self, slot: Slot, item: Option<&'v ItemValues<'_>>, quantity: &'v mut String) -> Option<&'v str> {
        let value = match slot {
            Slot::Lang => Some(self.lang),
            Slot::Subject => Some(self.subject),
            Slot::Preheader => Some(self.preheader),
            Slot::Greeting => Some(self.greeting),
            Slot::OrderId => Some(self.order_id),
            Slot::Total => self.total.as_deref(),
            Slot::EstimatedDelivery => self.estimated_delivery.as_deref(),
            Slot::StatusUrl => self.status_url.as_deref(),
            Slot::Items => None,
            Slot::ItemName => item.map(|i| i.name),
            Slot::ItemQuantity => item.map(|i| {
                quantity.clear();
                let _ = write!(quantity, "{}", i.quantity);
                quantity.as_str()
            }),
            Slot::ItemPrice => item.and_then(|i| i.price.as_deref()),
            Slot::ItemEach => item.and_then(|i| i.each.as_deref()),
        };
        value.filter(|v| !v.is_empty())
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
#[error("{template}: {problem}")]
pub struct PlanError {
    template: &'static str,
    problem: String,
}

impl PlanError {
    pub(super) fn no_language(language: &str) -> Self {
        Self { template: "confirmation", problem: format!("no catalogue for {language}") }
    }
}

impl Plan {
    /// Compiles `source`, resolving `t.<key>` with `label`; `escape` for an HTML template.
    pub(super) fn compile(
        template: &'static str,
        source: &str,
        escape: bool,
        label: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, PlanError> {
        let fail = |problem: String| PlanError { template, problem };
        let tokens = tokenize(source).map_err(fail)?;
        // The stack of open blocks: the nodes of each, with the `if`'s slot or `None` for the loop.
        let mut stack: Vec<(Option<Slot>, Vec<Node>)> = vec![(None, Vec::new())];
        for token in tokens {
            let top = &mut stack.last_mut().expect("the template's own level is never popped").1;
            match token {
                Token::Text(text) => push_text(top, &text),
                Token::Expr(expr) => {
                    let path = expr.strip_suffix(" or \"\"").unwrap_or(&expr).trim();
                    if let Some(key) = path.strip_prefix("t.") {
                        let text =
                            label(&key.replace('_', "-")).ok_or_else(|| fail(format!("no catalogue key {key}")))?;
                        push_text(top, &if escape { escaped(&text) } else { text });
                    } else {
                        top.push(Node::Value(Slot::of(path).ok_or_else(|| fail(format!("unknown value `{expr}`")))?));
                    }
                }
                Token::Tag(tag) => {
                    let words: Vec<&str> = tag.split_whitespace().collect();
                    match words.as_slice() {
                        ["if", path] => stack.push((
                            Some(Slot::of(path).ok_or_else(|| fail(format!("unknown value `{path}`")))?),
                            Vec::new(),
                        )),
                        ["for", "item", "in", "items"] => stack.push((None, Vec::new())),
                        ["endif"] | ["endfor"] if stack.len() > 1 => {
                            let (slot, nodes) = stack.pop().expect("more than one level");
                            let node = match (words[0], slot) {
                                ("endif", Some(slot)) => Node::If(slot, nodes),
                                ("endfor", None) => Node::ForItems(nodes),
                                _ => return Err(fail(format!("`{tag}` closes the wrong block"))),
                            };
                            stack.last_mut().expect("the template's own level").1.push(node);
                        }
                        _ => return Err(fail(format!("unsupported tag `{tag}`"))),
                    }
                }
            }
        }
        let [(_, nodes)]: [_; 1] = stack.try_into().map_err(|_| fail("a block is not closed".to_owned()))?;
        let static_len = nodes.iter().map(|n| if let Node::Text(t) = n { t.len() } else { 0 }).sum();
        Ok(Self { nodes, static_len, escape })
    }

    /// The template filled with `values`.
    pub(super) fn render(&self, values: &Values<'_>) -> String {
        // The static text, the values and room for a few rows: one allocation for most mails.
        let mut out = String::with_capacity(self.static_len + 2048);
        let mut scratch = String::new();
        self.write(&self.nodes, values, None, &mut out, &mut scratch);
        out
    }

    fn write(
        &self,
        nodes: &[Node],
        values: &Values<'_>,
        item: Option<&ItemValues<'_>>,
        out: &mut String,
        scratch: &mut String,
    ) {
        for node in nodes {
            match node {
                Node::Text(text) => out.push_str(text),
                Node::Value(slot) => {
                    if let Some(v) = values.text(*slot, item, scratch) {
                        if self.escape {
                            let _ = write!(out, "{}", minijinja::HtmlEscape(v));
                        } else {
                            out.push_str(v);
                        }
                    }
                }
                Node::If(Slot::Items, body) => {
                    if !values.items.is_empty() {
                        self.write(body, values, item, out, scratch);
                    }
                }
                Node::If(slot, body) => {
                    if values.text(*slot, item, scratch).is_some() {
                        self.write(body, values, item, out, scratch);
                    }
                }
                Node::ForItems(body) => {
                    for each in &values.items {
                        self.write(body, values, Some(each), out, scratch);
                    }
                }
            }
        }
    }
}

/// HTML-escaped as minijinja's auto-escape writes it.
fn escaped(text: &str) -> String {
    minijinja::HtmlEscape(text).to_string()
}

fn push_text(nodes: &mut Vec<Node>, text: &str) {
    match nodes.last_mut() {
        Some(Node::Text(last)) => last.push_str(text),
        _ if text.is_empty() => {}
        _ => nodes.push(Node::Text(text.to_owned())),
    }
}

#[derive(Debug, PartialEq)]
enum Token {
    Text(String),
    Expr(String),
    Tag(String),
}

/// The template's text, `{{ … }}` and `{% … %}` (comments dropped), with Jinja's whitespace
/// control: a `-` inside a delimiter trims the whitespace on its side, and one newline at the end
/// of the template is dropped (minijinja's default).
fn tokenize(source: &str) -> Result<Vec<Token>, String> {
    let source = source.strip_suffix('\n').unwrap_or(source);
    let mut tokens = Vec::new();
    let mut rest = source;
    let mut trim_next = false;
    while !rest.is_empty() {
        let open = ["{{", "{%", "{#"].iter().filter_map(|d| rest.find(d)).min();
        let (text, after) = match open {
            Some(at) => rest.split_at(at),
            None => (rest, ""),
        };
        let mut text = if trim_next { text.trim_start() } else { text };
        trim_next = false;
        if after.is_empty() {
            tokens.push(Token::Text(text.to_owned()));
            break;
        }
        let kind = &after[..2];
        let close = match kind {
            "{{" => "}}",
            "{%" => "%}",
            _ => "#}",
        };
        let end = after.find(close).ok_or_else(|| format!("`{kind}` is not closed"))?;
        let mut inner = &after[2..end];
        if let Some(stripped) = inner.strip_prefix('-') {
            text = text.trim_end();
            inner = stripped;
        }
        if let Some(stripped) = inner.strip_suffix('-') {
            trim_next = true;
            inner = stripped;
        }
        tokens.push(Token::Text(text.to_owned()));
        match kind {
            "{{" => tokens.push(Token::Expr(inner.trim().to_owned())),
            "{%" => tokens.push(Token::Tag(inner.trim().to_owned())),
            _ => {}
        }
        rest = &after[end + 2..];
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(key: &str) -> Option<String> {
        Some(format!("<{key}>"))
    }

    #[test]
    fn a_template_outside_the_supported_subset_is_refused_with_what_is_wrong() {
        let compile = |source| Plan::compile("t.html", source, true, words).unwrap_err().problem;
        assert_eq!(compile("{{ customer_email }}"), "unknown value `customer_email`");
        assert_eq!(compile("{% if total %}x"), "a block is not closed");
        assert_eq!(compile("{% for x in y %}{% endfor %}"), "unsupported tag `for x in y`");
        assert_eq!(compile("{% if total %}{% endfor %}"), "`endfor` closes the wrong block");
        assert_eq!(compile("{{ total | upper }}"), "unknown value `total | upper`");
        assert_eq!(compile("{{ total"), "`{{` is not closed");
    }

    #[test]
    fn labels_are_resolved_and_escaped_once_when_the_plan_is_built() {
        let plan =
            Plan::compile("t.html", "{#- c -#}\n  <b>{{ t.order_number }}</b> {{ order_id }}\n", true, words).unwrap();
        assert_eq!(plan.nodes, vec![Node::Text("<b>&lt;order-number&gt;</b> ".to_owned()), Node::Value(Slot::OrderId)]);
    }
}
